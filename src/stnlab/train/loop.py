"""Training: one readable loop over on-device tensors, with evaluation, checkpoints and DDP.

:func:`train` emits one stream of per-epoch records (a ``train`` record per epoch, an
``eval`` record per evaluated split); each goes to the run folder's metrics.jsonl and
to every ``on_record`` callback. The run folder (:mod:`stnlab.runs.run_folder`) also gets the
config, a checkpoint now and then (:func:`checkpoint_due`) and, at the end, the final
weights, per-sample test predictions at every evaluated epoch and a summary.

Example:
    >>> from stnlab.config import ModelConfig, RunConfig, TrainConfig
    >>> from stnlab.data import make_dataset
    >>> data = make_dataset(sizes=(200, 50, 50))
    >>> run = RunConfig(ModelConfig("cnn", size="small"), TrainConfig(epochs=1, batch_size=100))
    >>> seen = []
    >>> res = train(run, data, progress=False, on_record=[seen.append])
    >>> [r["event"] for r in seen], 0 <= res.summary["test_accuracy"] <= 1
    (['train', 'eval', 'eval'], True)
"""

from __future__ import annotations

import math
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from stnlab import __version__, models
from stnlab.config import RunConfig, TrainConfig
from stnlab.config.errors import (
    ConfigError,
    RunFolderError,
    TrainingDivergedError,
    TransformerCollapsedError,
)
from stnlab.runs.run_folder import CHECKPOINT, Checkpoint, Predictions, RunDir
from stnlab.train import distributed, monitor
from stnlab.train.devices import MixedPrecision, resolve_device
from stnlab.train.evaluation import Evaluation, evaluate
from stnlab.train.tensorboard import TensorBoardWriter, log_dir

__all__ = [
    "Record",
    "TrainResult",
    "checkpoint_due",
    "epoch_batches",
    "loss",
    "lr_factor",
    "train",
]

Record = dict[str, Any]  # a line of metrics.jsonl: {"event": "train" | "eval" | "theta", ...}


@dataclass
class TrainResult:
    """What :func:`train` returns: the trained model (eval mode), summary and evaluations.

    ``evaluations`` (epoch -> {"valid": ..., "test": ...}) is empty for a finished run
    that is reloaded from its folder; read its records with :class:`~stnlab.runs.run_folder.RunDir`.
    """

    model: nn.Module
    summary: dict[str, Any]
    evaluations: dict[int, dict[str, Evaluation]]
    out_dir: Path | None = None


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


def loss(logits: torch.Tensor, labels: torch.Tensor, cfg: TrainConfig) -> torch.Tensor:
    """The training loss of a batch: mean cross-entropy of logits (N, K) in float32, with
    ``cfg.label_smoothing`` of each target spread over all classes."""
    return F.cross_entropy(logits.float(), labels, label_smoothing=cfg.label_smoothing)


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


@dataclass
class _Progress:
    """Where a run stands: the last finished epoch, training time, evaluations so far."""

    epoch: int = 0
    train_seconds: float = 0.0
    evaluations: dict[int, dict[str, Evaluation]] = field(default_factory=dict)
    saved: int = 0  # the epoch of the last checkpoint


def train(
    run: RunConfig,
    data: Any,
    out_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    on_record: Sequence[Callable[[Record], None]] = (),
) -> TrainResult:
    """Train ``run.model`` on ``data`` (a :class:`~stnlab.data.ClutteredMNIST`).

    Under ``torchrun`` (``WORLD_SIZE`` > 1) this trains data-parallel, each process on
    its share of every batch; only rank 0 writes files, emits records and draws the bar.

    Args:
        run: the run's config; the model's image shape and classes are taken from ``data``
            and ``run.train.device`` ``auto`` is resolved here.
        data: ``x_train``/``y_train``/``x_valid``/``y_valid``/``x_test``/``y_test`` tensors.
        out_dir: run folder (``None``: write nothing, keep no checkpoints).
        resume: continue from the folder's checkpoint if there is one; a finished run
            is reloaded and returned. Without it a folder that holds a run is an error.
        progress: draw a tqdm progress bar.
        on_record: callbacks that get each record as it is made (the metrics.jsonl lines).

    Raises:
        TrainingDivergedError: the loss became NaN or infinite.
        ConfigError: bad data for the config, or a config that differs from the saved run's.
        RunFolderError: the folder holds a run (without ``resume``) or damaged files.
    """
    if run.train.threads is not None:
        torch.set_num_threads(run.train.threads)
    dist, device = distributed.setup(torch.device(resolve_device(run.train.device)))
    try:
        folder = RunDir(out_dir) if out_dir is not None else None
        return _train(run, data, folder, resume, progress, dist, device, on_record)
    finally:
        distributed.teardown(dist)


def _train(run, data, folder, resume, progress, dist, device, on_record) -> TrainResult:
    precision = MixedPrecision.of(run.train, device)
    run = _as_run(run, data, device, precision)
    _check_batches(run.train, len(data.y_train), dist.world_size)
    torch.manual_seed(run.train.seed)
    model = models.create(run.model).to(device)
    optimizer = _optimizer(model, run.train)
    writes = folder is not None and dist.is_main
    state = _open(folder, resume, writes, run, model, optimizer, precision, device)
    if isinstance(state, TrainResult):  # a finished run, reloaded
        return state
    if writes:
        folder.write_config(run, **_facts(data, dist.world_size))
    sinks = _consumers(
        run, folder if writes else None, on_record, dist.is_main, model, data, state.epoch
    )
    try:
        _epochs(
            run,
            model,
            optimizer,
            precision,
            data,
            dist,
            device,
            state,
            _emitter(sinks),
            folder if writes else None,
            progress,
        )
    finally:
        for sink in sinks:
            getattr(sink, "close", lambda: None)()
    if not distributed.replicas_identical(model, dist):
        raise RuntimeError("data-parallel replicas ended with different weights")
    model.to(memory_format=torch.contiguous_format).eval()
    summary = _summary(run, model, state, len(data.y_train), dist.world_size, device)
    if writes:
        _finish(folder, model, data, state.evaluations, summary)
    return TrainResult(model, summary, state.evaluations, folder.path if folder else None)


def _as_run(
    run: RunConfig, data: Any, device: torch.device, precision: MixedPrecision
) -> RunConfig:
    """The config as this run executes it: image shape and classes from the data, the device
    and mixed precision as chosen."""
    c, h, w = data.x_train.shape[1:]
    model = replace(
        run.model, in_channels=c, in_size=(h, w), num_classes=int(getattr(data, "num_classes", 10))
    )
    return replace(
        run, model=model, train=replace(run.train, device=str(device), amp=precision.enabled)
    )


def _check_batches(cfg: TrainConfig, n: int, world: int) -> None:
    if cfg.batch_size % world:
        raise ConfigError(
            f"train.batch_size {cfg.batch_size} does not split over {world} processes",
            "train.batch_size",
        )
    if n < cfg.batch_size:
        raise ConfigError(
            f"train.batch_size {cfg.batch_size} is more than the {n} training images",
            "train.batch_size",
        )


def _facts(data: Any, world: int) -> dict[str, Any]:
    """What config.json records beside the config: data shapes, processes, versions."""
    shapes = {f"{s}_size": len(getattr(data, f"y_{s}")) for s in ("train", "valid", "test")}
    versions = {
        "stnlab": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    return {
        "shapes": {"image_size": list(data.x_train.shape[2:]), **shapes},
        "world_size": world,
        "versions": versions,
    }


def _consumers(
    run: RunConfig, folder: RunDir | None, on_record, main: bool, model, data, start: int
) -> list:
    """Where the records go: metrics.jsonl, the consumers that config fields switch on (collapse
    warnings, TensorBoard), then the caller's callbacks (main process only). A consumer with
    a ``close`` method is closed when training ends."""
    if not main:
        return []
    sinks = [folder.append] if folder is not None else []
    if run.train.theta_images:
        earlier = folder.records() if folder is not None and start else ()
        sinks.append(monitor.CollapseWarnings(run.model.name, earlier))
    if run.train.tensorboard is not None:
        path = log_dir(run.train.tensorboard, folder.path if folder is not None else None)
        sinks.append(TensorBoardWriter(path, model, data.x_valid, run.train.epochs, start))
    return [*sinks, *on_record]


def _emitter(sinks: list[Callable[[Record], None]]) -> Callable[[Record], None]:
    def emit(record: Record) -> None:
        for sink in sinks:
            sink(record)

    return emit


# ----------------------------------------------------------------------------- opening a run


def _open(folder, resume, writes, run, model, optimizer, precision, device):
    """Start the run folder, or restore from it when resuming.

    Returns the :class:`_Progress` to continue from, or a :class:`TrainResult` for a run
    that had already finished.
    """
    if folder is None:
        return _Progress()
    if folder.holds_run() and not resume:
        raise RunFolderError(
            f"{folder.path} already holds a run; resume it (--resume) or "
            "choose another directory (--out)"
        )
    if resume and folder.is_finished():
        _refuse_changes(folder.differences(run), "finished run's")
        summary = folder.summary()
        folder.load_weights(model)
        return TrainResult(model.eval(), summary, {}, folder.path)
    if resume and folder.file(CHECKPOINT).exists():
        return _restore(folder, writes, run, model, optimizer, precision, device)
    if writes:
        folder.start_metrics()
    return _Progress()


def _refuse_changes(diff: list[str], whose: str) -> None:
    if diff:
        raise ConfigError(f"cannot resume: the config differs from the {whose} ({'; '.join(diff)})")


def _restore(folder: RunDir, writes, run, model, optimizer, precision, device) -> _Progress:
    """Load checkpoint.pt into the model, optimizer, scaler and RNGs; rewind metrics.jsonl."""
    ck = folder.load_checkpoint()
    _refuse_changes(run.differences(ck.config), "checkpoint's")
    try:
        model.load_state_dict(ck.model)
        optimizer.load_state_dict(ck.optimizer)
        precision.scaler.load_state_dict(ck.scaler)
        evaluations = {
            int(e): {s: Evaluation.from_state(v) for s, v in evs.items()}
            for e, evs in ck.evaluations.items()
        }
        torch.set_rng_state(ck.rng)
        if device.type == "cuda" and ck.cuda_rng is not None:
            torch.cuda.set_rng_state(ck.cuda_rng, device)
    except (RuntimeError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise folder.damaged(
            CHECKPOINT,
            f"does not fit this run ({str(exc).splitlines()[0]})",
            "delete it to start the run over",
        ) from None
    if writes:  # drop the lines of an epoch cut short
        folder.rewind_metrics(ck.metrics_bytes)
    return _Progress(ck.epoch, ck.train_seconds, evaluations, saved=ck.epoch)


# ----------------------------------------------------------------------------- the epochs


def checkpoint_due(cfg: TrainConfig, epoch: int, since_last: float) -> bool:
    """Whether to checkpoint after ``epoch``, ``since_last`` seconds after the last checkpoint
    (or the start): every ``checkpoint_every`` seconds, and after each ``eval_at`` epoch (a
    budget) and the last. On a GPU an epoch can take less time than its checkpoint."""
    return epoch == cfg.epochs or epoch in cfg.eval_at or since_last >= cfg.checkpoint_every


def _epochs(run, model, optimizer, precision, data, dist, device, state, emit, folder, progress):
    """Train from ``state.epoch + 1`` to the last epoch: train, record, evaluate, checkpoint."""
    cfg, n = run.train, len(data.y_train)
    # channels_last: mkldnn's convolutions (and cuDNN's under AMP) run faster in NHWC.
    model.to(memory_format=torch.channels_last)
    x = data.x_train.to(device).contiguous(memory_format=torch.channels_last)
    y = data.y_train.to(device)
    held = _on_device(data, device)  # the evaluated splits, copied to the device once
    saved_at = time.monotonic()
    net = DistributedDataParallel(model) if dist.enabled else model
    net = torch.compile(net) if cfg.compile else net
    iters, due = n // cfg.batch_size, set(cfg.eval_epochs())
    probe = monitor.ThetaProbe.of(model, data.x_valid, cfg.theta_images, run.model.name)
    bar = tqdm(
        total=cfg.epochs * iters,
        initial=state.epoch * iters,
        desc=run.model.name,
        unit="it",
        disable=not (progress and dist.is_main),
        dynamic_ncols=True,
    )
    with bar:
        for epoch in range(state.epoch + 1, cfg.epochs + 1):
            record = _train_epoch(net, model, optimizer, precision, x, y, cfg, epoch, dist, bar)
            if not math.isfinite(record["loss"]):
                kept = (
                    f"the checkpoint of epoch {state.saved} is kept"
                    if state.saved and folder
                    else "nothing saved"
                )
                raise TrainingDivergedError(
                    f"training diverged: the loss became {record['loss']} in epoch {epoch}; {kept}"
                )
            state.train_seconds += record["seconds"]
            emit(record)
            if epoch in due and dist.is_main:
                state.evaluations[epoch] = _evaluate(model, held, epoch, state, cfg, emit)
            step = epoch * iters  # optimizer steps so far: "frozen" is judged by these
            thetas = probe.records(model, epoch, step) if probe is not None else []  # every rank
            for theta in thetas:
                emit(theta)
            stop = cfg.stop_on_collapse and epoch < cfg.epochs and thetas
            collapsed = monitor.collapsed(thetas, run.model.name) if stop else []
            if folder is not None and (
                collapsed or checkpoint_due(cfg, epoch, time.monotonic() - saved_at)
            ):
                folder.save_checkpoint(
                    _checkpoint(run, epoch, state, model, optimizer, precision, device, folder)
                )
                saved_at, state.saved = time.monotonic(), epoch
            state.epoch = epoch
            _stop_on_collapse(epoch, collapsed, folder)


def _stop_on_collapse(epoch: int, collapsed: list[str], folder) -> None:
    """End the run (an error) after an epoch with a collapsed transformer; the caller saved
    the epoch's checkpoint first, so ``--resume`` goes on."""
    if collapsed:
        kept = f"the checkpoint of epoch {epoch} is kept" if folder is not None else "no folder"
        raise TransformerCollapsedError(
            f"stopped after epoch {epoch} (stop_on_collapse): {'; '.join(collapsed)} looks "
            f"collapsed; {kept}: resume without stop_on_collapse to go on"
        )


def _on_device(data: Any, device: torch.device) -> SimpleNamespace:
    """The valid and test splits on ``device``, so evaluations do not copy them each time."""
    return SimpleNamespace(
        **{
            f"{a}_{s}": getattr(data, f"{a}_{s}").to(device)
            for s in ("valid", "test")
            for a in "xy"
        }
    )


def _train_epoch(net, model, optimizer, precision, x, y, cfg, epoch, dist, bar) -> Record:
    """One pass over the training set; returns the epoch's ``train`` record."""
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * lr_factor(cfg.schedule, epoch, cfg.epochs)
    batches = epoch_batches(len(y), cfg.batch_size, cfg.seed, epoch, dist.rank, dist.world_size)
    model.train()
    t0 = time.perf_counter()
    # Running sums stay on the device: no host sync per step.
    stats = torch.zeros(2, dtype=torch.float64, device=y.device)  # loss sum, correct
    for step, idx in enumerate(batches.to(y.device)):
        xb, yb = x[idx], y[idx]
        with torch.autocast(y.device.type, dtype=precision.dtype, enabled=precision.enabled):
            logits = net(xb)
            batch_loss = loss(logits, yb, cfg)
        optimizer.zero_grad(set_to_none=True)
        precision.scaler.scale(batch_loss).backward()
        precision.scaler.step(optimizer)
        precision.scaler.update()
        stats += torch.stack([batch_loss.detach() * len(yb), (logits.argmax(1) == yb).sum()])
        if not bar.disable and ((step + 1) % 10 == 0 or step + 1 == len(batches)):
            s, seen = stats.tolist(), (step + 1) * len(yb)
            bar.set_postfix(epoch=epoch, loss=f"{s[0] / seen:.4f}", acc=f"{s[1] / seen:.3f}")
        bar.update(1)
    loss_sum, correct = distributed.all_reduce_sum(stats, dist).tolist()
    count = len(batches) * cfg.batch_size
    return {
        "event": "train",
        "epoch": epoch,
        "loss": loss_sum / count,
        "accuracy": correct / count,
        "lr": optimizer.param_groups[0]["lr"],
        "seconds": time.perf_counter() - t0,
    }


def _evaluate(model, data, epoch: int, state: _Progress, cfg: TrainConfig, emit):
    """Valid and test after ``epoch``, one ``eval`` record each; probabilities kept only for
    the last epoch."""
    found = {}
    for split in ("valid", "test"):
        ev = evaluate(model, getattr(data, f"x_{split}"), getattr(data, f"y_{split}"))
        if epoch != cfg.epochs:
            ev.probabilities = None
        found[split] = ev
        emit(
            {
                "event": "eval",
                "epoch": epoch,
                "split": split,
                "accuracy": ev.accuracy,
                "loss": ev.loss,
                "train_seconds": state.train_seconds,
            }
        )
    return found


def _checkpoint(run, epoch, state, model, optimizer, precision, device, folder) -> Checkpoint:
    evaluations = {
        e: {s: v.state() for s, v in evs.items()} for e, evs in state.evaluations.items()
    }
    cuda_rng = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return Checkpoint(
        run.to_dict(),
        epoch,
        state.train_seconds,
        model.state_dict(),
        optimizer.state_dict(),
        precision.scaler.state_dict(),
        torch.get_rng_state(),
        evaluations,
        folder.metrics_bytes(),
        cuda_rng,
    )


# ----------------------------------------------------------------------------- the end


def _summary(run, model, state, n, world, device) -> dict[str, Any]:
    cfg = run.train
    final = state.evaluations.get(cfg.epochs, {})
    images = cfg.epochs * (n // cfg.batch_size) * cfg.batch_size
    seconds = state.train_seconds
    return {
        "model": run.model.name,
        "size": run.model.size,
        "transform": run.model.transform,
        "epochs": cfg.epochs,
        "seed": cfg.seed,
        "valid_accuracy": final["valid"].accuracy if final else None,
        "test_accuracy": final["test"].accuracy if final else None,
        "valid_loss": final["valid"].loss if final else None,
        "test_loss": final["test"].loss if final else None,
        "train_seconds": seconds,
        "train_images_per_second": images / seconds if seconds > 0 else None,
        "parameters": models.count_parameters(model),
        "batch_size": cfg.batch_size,
        "device": str(device),
        "world_size": world,
        "test_per_class_accuracy": final["test"].to_dict()["per_class_accuracy"] if final else None,
    }


def _finish(folder: RunDir, model: nn.Module, data: Any, evaluations, summary: dict) -> None:
    """Write the final weights, the test set's per-sample predictions, then summary.json."""
    epochs = sorted(e for e, evs in evaluations.items() if "test" in evs)
    last = evaluations[epochs[-1]]["test"]
    if last.probabilities is None:  # evaluated before a resume: probabilities are not kept
        last = evaluate(model, data.x_test, data.y_test)
    folder.save_weights(model)
    tests = [evaluations[e]["test"] for e in epochs]
    folder.write_predictions(
        Predictions(
            labels=last.labels,
            epochs=np.array(epochs),
            predictions=np.stack([t.predictions for t in tests]).astype(np.int16),
            confidence=np.stack([t.confidence for t in tests]),
            probabilities=last.probabilities,
        )
    )
    folder.write_summary(summary)
