"""Training: one readable loop over on-device tensors, with evaluation, checkpoints and DDP.

A run directory holds ``config.json`` (the resolved config), ``metrics.jsonl`` (one JSON
line per epoch and per evaluation, appended as they happen), ``checkpoint.pt`` (written
atomically after every epoch), and at the end ``final.safetensors``, ``summary.json``
and ``predictions.npz`` (the final test set's per-sample predictions).

Example:
    >>> from stnlab.data import make_dataset
    >>> ds = make_dataset(sizes=(400, 100, 100))
    >>> res = train(TrainConfig(model="stn", epochs=2), ds, out_dir="runs/demo")
    >>> res.summary["test_accuracy"]
"""

from __future__ import annotations

import json
import math
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from stnlab import __version__, distributed, models
from stnlab.atomic import atomic_write
from stnlab.checkpoint import load_checkpoint, save_checkpoint, save_weights
from stnlab.checkpoint import write_json as _write_json
from stnlab.evaluation import Evaluation, evaluate

__all__ = [
    "SCHEDULES",
    "Evaluation",
    "TrainConfig",
    "TrainResult",
    "TrainingDiverged",
    "TrainingDivergedError",
    "evaluate",
    "lr_factor",
    "resolve_device",
    "train",
]

SCHEDULES = ("constant", "cosine", "step")
# Fields that may change when a run is resumed: they do not change what is computed.
_RESUMABLE_CHANGES = ("device", "threads", "compile", "amp", "eval_epochs")


class TrainingDivergedError(RuntimeError):
    """The training loss became NaN or infinite; the last good checkpoint is kept."""


TrainingDiverged = TrainingDivergedError  # the name the issue uses


@dataclass
class TrainConfig:
    """Everything that decides a training run (the data aside).

    Args:
        model: a name from :func:`stnlab.models.names`.
        model_kwargs: extra arguments of :func:`stnlab.models.create` (``size``, ``transform``...).
        epochs: passes over the training set.
        batch_size: global batch (split across processes under DDP); 200 makes 10,000
            training images 50 iterations per epoch, the study's protocol.
        lr: Adam's learning rate.
        loc_lr: learning rate of the localization networks (``None``: same as ``lr``).
        weight_decay: Adam's L2 penalty.
        schedule: ``constant``; ``cosine`` (to 0 over the run); ``step`` (×0.1 at 50% and 75%).
        seed: seeds the initial weights, each epoch's shuffle and dropout.
        eval_epochs: epochs after which to evaluate valid and test (the last one always is).
        device: ``cpu``, ``cuda`` or ``cuda:N`` (resolve ``auto`` with :func:`resolve_device`).
        amp: mixed precision on CUDA (bf16, or fp16 with loss scaling); ignored on CPU.
        compile: ``torch.compile`` the model for training.
        threads: ``torch.set_num_threads`` for this process (``None``: leave as is).
    """

    model: str = "stn"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    epochs: int = 100
    batch_size: int = 200
    lr: float = 1e-3
    loc_lr: float | None = None
    weight_decay: float = 0.0
    schedule: str = "constant"
    seed: int = 0
    eval_epochs: tuple[int, ...] = ()
    device: str = "cpu"
    amp: bool = True
    compile: bool = False
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.model not in models.names():
            raise ValueError(f"unknown model {self.model!r}; known: {', '.join(models.names())}")
        for name in ("epochs", "batch_size"):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not self.lr > 0 or (self.loc_lr is not None and not self.loc_lr > 0):
            raise ValueError(
                f"learning rates must be positive, got lr={self.lr}, loc_lr={self.loc_lr}"
            )
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be non-negative, got {self.weight_decay}")
        if self.schedule not in SCHEDULES:
            raise ValueError(
                f"unknown schedule {self.schedule!r}; choose from {', '.join(SCHEDULES)}"
            )
        if self.device == "auto" or torch.device(self.device).type not in ("cpu", "cuda"):
            raise ValueError(f"device must be cpu, cuda or cuda:N, got {self.device!r}")
        if self.threads is not None and int(self.threads) <= 0:
            raise ValueError(f"threads must be positive, got {self.threads}")
        self.epochs, self.batch_size = int(self.epochs), int(self.batch_size)
        self.eval_epochs = tuple(sorted({int(e) for e in self.eval_epochs}))
        bad = [e for e in self.eval_epochs if not 1 <= e <= self.epochs]
        if bad:
            raise ValueError(f"eval_epochs must lie in 1..{self.epochs}, got {bad}")
        self.model_kwargs = dict(self.model_kwargs)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["eval_epochs"] = list(self.eval_epochs)
        return d


@dataclass
class TrainResult:
    """What :func:`train` returns: the trained model (eval mode), summary and evaluations."""

    model: nn.Module
    summary: dict[str, Any]
    evaluations: dict[int, dict[str, Evaluation]]  # epoch -> {"valid": ..., "test": ...}
    out_dir: Path | None = None


def resolve_device(name: str = "auto") -> str:
    """``auto`` → ``cuda`` when available, else ``cpu``; checks that CUDA exists if asked for.

    For the CLI and experiment runners only: library code takes the device it is given.
    """
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if torch.device(name).type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but CUDA is not available here")
    return name


def lr_factor(schedule: str, epoch: int, epochs: int) -> float:
    """The multiplier of the base learning rates during ``epoch`` (1-based)."""
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * (epoch - 1) / epochs))
    if schedule == "step":
        return 0.1 ** sum(epoch > m * epochs for m in (0.5, 0.75))
    return 1.0


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int, rank: int = 0, world: int = 1):
    """This rank's sample indices for each iteration of ``epoch``: (iters, batch_size // world).

    The shuffle depends on (seed, epoch) only, so a resumed run sees the same batches.
    Each global batch is dealt out across ranks; the incomplete last batch is dropped.
    """
    g = torch.Generator().manual_seed((seed * 1_000_003 + epoch) % 2**63)
    iters = n // batch_size
    perm = torch.randperm(n, generator=g)[: iters * batch_size]
    return perm.view(iters, batch_size)[:, rank::world]  # (iters, B / world)


def _optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Adam; the localization networks form their own group when ``loc_lr`` is set."""
    loc = list(model.localization_parameters()) if cfg.loc_lr is not None else []
    loc_ids = {id(p) for p in loc}
    rest = [p for p in model.parameters() if id(p) not in loc_ids]
    groups = [{"params": rest, "lr": cfg.lr, "base_lr": cfg.lr}]
    if loc:
        groups.append({"params": loc, "lr": cfg.loc_lr, "base_lr": cfg.loc_lr})
    # Fused Adam: one kernel for all parameters, ~8x faster than the default per-parameter
    # loop on CPU (the FC layers hold most weights); foreach where fused is unsupported.
    try:
        return torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
    except RuntimeError:
        return torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True)


def _describe(data: Any) -> dict[str, Any]:
    """A JSON-able description of the data set's shapes, for config.json."""
    desc = {"image_size": list(data.x_train.shape[2:])}
    for split in ("train", "valid", "test"):
        desc[f"{split}_size"] = len(getattr(data, f"y_{split}"))
    return desc


def _check_resumable(saved: dict[str, Any], cfg: TrainConfig) -> None:
    now = cfg.to_dict()
    diff = [k for k in now if k not in _RESUMABLE_CHANGES and saved.get(k) != now[k]]
    if diff:
        shown = ", ".join(f"{k}: {saved.get(k)!r} -> {now[k]!r}" for k in diff)
        raise ValueError(f"cannot resume: the config differs from the checkpoint's ({shown})")


class _Log:
    """Appends metric lines to ``metrics.jsonl`` (main process with an out_dir only)."""

    def __init__(self, path: Path | None):
        self.path = path

    def __call__(self, **record: Any) -> None:
        if self.path is not None:
            with open(self.path, "a") as f:
                f.write(json.dumps(record) + "\n")

    def size(self) -> int:
        return self.path.stat().st_size if self.path is not None and self.path.exists() else 0


def train(
    cfg: TrainConfig,
    data: Any,
    out_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    data_info: dict[str, Any] | None = None,
) -> TrainResult:
    """Train ``cfg.model`` on ``data`` (a :class:`~stnlab.data.ClutteredMNIST`).

    Under ``torchrun`` (``WORLD_SIZE`` > 1) this trains data-parallel, each process on
    its share of every batch; only rank 0 writes files and draws the progress bar.

    Args:
        cfg: the run's configuration.
        data: ``x_train``/``y_train``/``x_valid``/``y_valid``/``x_test``/``y_test`` tensors.
        out_dir: run directory (``None``: write nothing, keep no checkpoints).
        resume: continue from ``out_dir/checkpoint.pt`` if there is one; a finished run
            is reloaded and returned. Without it an existing run directory is an error.
        progress: draw a tqdm progress bar.
        data_info: where the data came from (a path, a variant...), recorded in config.json.

    Raises:
        TrainingDiverged: the loss became NaN or infinite.
        ValueError: bad data for the config, or a config that differs from the checkpoint's.
        FileExistsError: ``out_dir`` holds a run and ``resume`` is false.
    """
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    dist, device = distributed.setup(torch.device(cfg.device))
    try:
        out = Path(out_dir) if out_dir else None
        return _train(cfg, data, out, resume, progress, dist, device, data_info or {})
    finally:
        distributed.teardown(dist)


def _train(cfg, data, out, resume, progress, dist, device, data_info) -> TrainResult:
    n, world = len(data.y_train), dist.world_size
    if cfg.batch_size % world:
        raise ValueError(f"batch_size {cfg.batch_size} does not split over {world} processes")
    if n < cfg.batch_size:
        raise ValueError(f"{n} training images make no batch of {cfg.batch_size}")
    writes = out is not None and dist.is_main
    torch.manual_seed(cfg.seed)
    num_classes = int(getattr(data, "num_classes", 10))
    c, h, w = data.x_train.shape[1:]
    in_size = h if h == w else (h, w)
    model = models.create(cfg.model, in_channels=c, in_size=in_size, num_classes=num_classes,
                          **cfg.model_kwargs).to(device)  # fmt: skip
    optimizer = _optimizer(model, cfg)
    use_amp = cfg.amp and device.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    log = _Log(out / "metrics.jsonl" if writes else None)
    ckpt_path = out / "checkpoint.pt" if out is not None else None

    restored = _open_run(out, resume, writes, cfg, model, optimizer, scaler, log, device)
    if isinstance(restored, TrainResult):  # a finished run, reloaded
        return restored
    start, train_seconds, evaluations = restored
    if writes:
        _write_json(out / "config.json", {
            **cfg.to_dict(), "model": model.config, "world_size": world,
            "data": {**_describe(data), **data_info},
            "versions": {"stnlab": __version__, "torch": torch.__version__,
                         "python": platform.python_version()},
        })  # fmt: skip

    # channels_last: mkldnn's convolutions (and cuDNN's under AMP) run faster in NHWC.
    model.to(memory_format=torch.channels_last)
    x_train = data.x_train.to(device).contiguous(memory_format=torch.channels_last)
    y_train = data.y_train.to(device)
    net = DistributedDataParallel(model) if dist.enabled else model
    if cfg.compile:
        net = torch.compile(net)
    iters = n // cfg.batch_size
    eval_at = set(cfg.eval_epochs) | {cfg.epochs}
    bar = tqdm(total=cfg.epochs * iters, initial=start * iters, desc=cfg.model, unit="it",
               disable=not (progress and dist.is_main), dynamic_ncols=True)  # fmt: skip

    for epoch in range(start + 1, cfg.epochs + 1):
        for group in optimizer.param_groups:
            group["lr"] = group["base_lr"] * lr_factor(cfg.schedule, epoch, cfg.epochs)
        batches = epoch_batches(n, cfg.batch_size, cfg.seed, epoch, dist.rank, world).to(device)
        model.train()
        t0 = time.perf_counter()
        # Running sums stay on the device: no host sync per step.
        stats = torch.zeros(2, dtype=torch.float64, device=device)  # loss sum, correct
        for step, idx in enumerate(batches):
            xb, yb = x_train[idx], y_train[idx]
            with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                logits = net(xb)
                loss = F.cross_entropy(logits.float(), yb)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            stats += torch.stack([loss.detach() * len(yb), (logits.argmax(1) == yb).sum()])
            if not bar.disable and ((step + 1) % 10 == 0 or step + 1 == iters):
                seen = (step + 1) * len(yb)
                s = stats.tolist()
                bar.set_postfix(epoch=epoch, loss=f"{s[0] / seen:.4f}", acc=f"{s[1] / seen:.3f}")
            bar.update(1)
        loss_sum, correct = distributed.all_reduce_sum(stats, dist).tolist()
        count = iters * cfg.batch_size
        seconds = time.perf_counter() - t0
        if not math.isfinite(loss_sum):
            bar.close()
            kept = (
                f"the checkpoint of epoch {start} is kept" if start and writes else "nothing saved"
            )
            raise TrainingDivergedError(
                f"the training loss became {loss_sum} in epoch {epoch}; {kept}"
            )
        train_seconds += seconds
        lr = optimizer.param_groups[0]["lr"]
        log(event="train", epoch=epoch, loss=loss_sum / count, accuracy=correct / count, lr=lr,
            seconds=seconds)  # fmt: skip
        if epoch in eval_at and dist.is_main:
            evaluations[epoch] = {}
            for split in ("valid", "test"):
                ev = evaluate(model, getattr(data, f"x_{split}"), getattr(data, f"y_{split}"))
                evaluations[epoch][split] = ev
                log(event="eval", epoch=epoch, split=split, accuracy=ev.accuracy, loss=ev.loss,
                    train_seconds=train_seconds)  # fmt: skip
        if writes:
            save_checkpoint(ckpt_path, {
                "config": cfg.to_dict(), "epoch": epoch, "train_seconds": train_seconds,
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict(), "rng": torch.get_rng_state(),
                "evaluations": {e: {s: v.state() for s, v in evs.items()}
                                for e, evs in evaluations.items()},
                "metrics_bytes": log.size(),
                **({"cuda_rng": torch.cuda.get_rng_state(device)} if device.type == "cuda" else {}),
            })  # fmt: skip
        start = epoch  # the last good checkpoint
    bar.close()

    identical = distributed.replicas_identical(model, dist)
    if not identical:
        raise RuntimeError("data-parallel replicas ended with different weights")
    model.to(memory_format=torch.contiguous_format).eval()
    summary = _summary(cfg, model, evaluations, train_seconds, iters, world, device)
    if writes:
        _finish(out, model, data, evaluations[cfg.epochs]["test"], summary)
    return TrainResult(model, summary, evaluations, out)


def _open_run(out, resume, writes, cfg, model, optimizer, scaler, log, device):
    """Restore state from ``out/checkpoint.pt`` when resuming, or start a fresh run directory.

    Returns ``(start_epoch, train_seconds, evaluations)``, or a :class:`TrainResult` for a
    run that had already finished.
    """
    ckpt_path = out / "checkpoint.pt" if out is not None else None
    if ckpt_path is not None and ckpt_path.exists() and resume:
        ck = load_checkpoint(ckpt_path)
        _check_resumable(ck["config"], cfg)
        model.load_state_dict(ck["model"])
        optimizer.load_state_dict(ck["optimizer"])
        scaler.load_state_dict(ck["scaler"])
        torch.set_rng_state(ck["rng"])
        if device.type == "cuda" and "cuda_rng" in ck:
            torch.cuda.set_rng_state(ck["cuda_rng"], device)
        evaluations = {e: {s: Evaluation.from_state(v) for s, v in evs.items()}
                       for e, evs in ck["evaluations"].items()}  # fmt: skip
        if ck["epoch"] == cfg.epochs and (out / "summary.json").exists():
            summary = json.loads((out / "summary.json").read_text())
            return TrainResult(model.eval(), summary, evaluations, out)
        if writes and log.size() > ck["metrics_bytes"]:  # drop lines of the epoch cut short
            with open(log.path, "r+b") as f:
                f.truncate(ck["metrics_bytes"])
        return ck["epoch"], ck["train_seconds"], evaluations
    if (
        out is not None
        and not resume
        and any((out / f).exists() for f in ("checkpoint.pt", "summary.json"))
    ):
        raise FileExistsError(f"{out} already holds a run; resume it or choose another directory")
    if writes:
        out.mkdir(parents=True, exist_ok=True)
        log.path.write_text("")
    return 0, 0.0, {}


def _summary(cfg, model, evaluations, train_seconds, iters, world, device) -> dict[str, Any]:
    final = evaluations.get(cfg.epochs, {})
    images = cfg.epochs * iters * cfg.batch_size
    return {
        "model": cfg.model,
        "size": model.config.get("size"),
        "transform": model.config.get("transform"),
        "epochs": cfg.epochs,
        "seed": cfg.seed,
        "valid_accuracy": final["valid"].accuracy if final else None,
        "test_accuracy": final["test"].accuracy if final else None,
        "valid_loss": final["valid"].loss if final else None,
        "test_loss": final["test"].loss if final else None,
        "train_seconds": train_seconds,
        "train_images_per_second": images / train_seconds if train_seconds > 0 else None,
        "parameters": models.count_parameters(model),
        "batch_size": cfg.batch_size,
        "device": str(device),
        "world_size": world,
        "test_per_class_accuracy": final["test"].to_dict()["per_class_accuracy"] if final else None,
    }


def _finish(out: Path, model: nn.Module, data: Any, test: Evaluation, summary: dict) -> None:
    """Write the final weights, the test set's per-sample predictions, then summary.json."""
    if test.probabilities is None:  # evaluated before a resume: probabilities are not kept
        test = evaluate(model, data.x_test, data.y_test)
    save_weights(out / "final.safetensors", model, metadata={"model": json.dumps(model.config)})

    with atomic_write(out / "predictions.npz") as f:
        np.savez(f, labels=test.labels, predictions=test.predictions,
                 confidence=test.confidence, probabilities=test.probabilities)  # fmt: skip
    _write_json(out / "summary.json", summary)
