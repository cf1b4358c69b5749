"""Training: one readable loop over on-device tensors, with evaluation, checkpoints and DDP.

:func:`train` emits one stream of typed records (:mod:`stnlab.runs.records`): a
:class:`~stnlab.runs.records.TrainRecord` per epoch, an
:class:`~stnlab.runs.records.EvalRecord` per evaluated split and a
:class:`~stnlab.runs.records.ThetaRecord` per transformer; each goes to the run folder's
metrics.jsonl and to every ``on_record`` callback. The run folder
(:mod:`stnlab.runs.run_folder`) also gets the config, a checkpoint now and then
(:func:`checkpoint_due`) and, at the end, the final weights, per-sample test predictions at
every evaluated epoch and a :class:`~stnlab.runs.records.RunSummary`.

Everything a run holds while it trains (config, model, optimizer, data, where it stands) is
one :class:`~stnlab.train.state.RunState`, made once and handed to each step: what nanoGPT's
train.py keeps as module globals, in one object so that a process can train run after run.
Its start, checkpoints and end in the run folder are :mod:`stnlab.train.state`'s.

Example:
    >>> from stnlab.config import ModelConfig, RunConfig, TrainConfig
    >>> from stnlab.data import make_dataset
    >>> data = make_dataset(sizes=(200, 50, 50))
    >>> run = RunConfig(ModelConfig("cnn", size="small"), TrainConfig(epochs=1, batch_size=100))
    >>> seen = []
    >>> res = train(run, data, progress=False, on_record=[seen.append])
    >>> [type(r).__name__ for r in seen], 0 <= res.summary.test_accuracy <= 1
    (['TrainRecord', 'EvalRecord', 'EvalRecord'], True)
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from stnlab import models
from stnlab.config import RunConfig, TrainConfig
from stnlab.config.errors import ConfigError, TrainingDivergedError, TransformerCollapsedError
from stnlab.runs.records import EvalRecord, TrainRecord
from stnlab.runs.run_folder import RunDir
from stnlab.train import distributed, monitor
from stnlab.train.devices import MixedPrecision, resolve_device
from stnlab.train.distributed import Dist
from stnlab.train.evaluation import Evaluation, evaluate
from stnlab.train.state import (
    RunState,
    Sink,
    Splits,
    TrainResult,
    finish,
    open_run,
    save_checkpoint,
    summary_of,
)
from stnlab.train.tensorboard import TensorBoardWriter, log_dir

__all__ = [
    "TrainResult",
    "checkpoint_due",
    "epoch_batches",
    "loss",
    "lr_factor",
    "train",
]


@dataclass(frozen=True)
class _Tensors:
    """The splits on the run's device, copied there once (see :func:`_on_device`)."""

    x_train: Tensor  # (N, C, H, W), channels-last
    y_train: Tensor
    x_valid: Tensor
    y_valid: Tensor
    x_test: Tensor
    y_test: Tensor


def lr_factor(schedule: str, epoch: int, epochs: int) -> float:
    """The multiplier of the base learning rates during ``epoch`` (1-based)."""
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * (epoch - 1) / epochs))
    if schedule == "step":
        return 0.1 ** sum(epoch > m * epochs for m in (0.5, 0.75))
    if schedule == "thirds":
        return 0.1 ** sum(3 * (epoch - 1) >= m * epochs for m in (1, 2))
    return 1.0


def epoch_batches(
    n: int,
    batch_size: int,
    seed: int,
    epoch: int,
    rank: int = 0,
    world: int = 1,
    iterations: int | None = None,
) -> Tensor:
    """This rank's sample indices for each iteration of ``epoch``: (iters, batch_size // world).

    Without ``iterations`` an epoch is one pass over the ``n`` images (the incomplete last
    batch dropped). With it, an epoch is ``iterations`` batches taken in turn from a stream
    of passes, each a fresh shuffle, so every image is seen equally often whatever ``n``;
    when the stream's passes line up with the epochs it gives the same batches as the one
    pass. The shuffles depend on (seed, pass) only, so a resumed run sees the same batches.
    Each global batch is dealt out across ranks.
    """
    if iterations is None or iterations * batch_size == n:
        iters = n // batch_size if iterations is None else iterations
        perm = _shuffle(n, seed, epoch)[: iters * batch_size]
    else:
        iters, take = iterations, iterations * batch_size
        start = (epoch - 1) * take  # where this epoch starts in the stream of passes
        passes = range(start // n + 1, (start + take - 1) // n + 2)
        perm = torch.cat([_shuffle(n, seed, p) for p in passes])[start % n :][:take]
    return perm.view(iters, batch_size)[:, rank::world]  # (iters, B / world)


def _shuffle(n: int, seed: int, number: int) -> Tensor:
    """Shuffle ``number`` (1-based) of ``n`` indices for ``seed``."""
    g = torch.Generator().manual_seed((seed * 1_000_003 + number) % 2**63)
    return torch.randperm(n, generator=g)


def loss(logits: Tensor, labels: Tensor, cfg: TrainConfig) -> Tensor:
    """The training loss of a batch: mean cross-entropy of logits (N, K) in float32, with
    ``cfg.label_smoothing`` of each target spread over all classes."""
    return F.cross_entropy(logits.float(), labels, label_smoothing=cfg.label_smoothing)


def _optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Adam or plain SGD; the localization networks form their own group when ``loc_lr`` is
    set."""
    loc = list(model.localization_parameters()) if cfg.loc_lr is not None else []
    loc_ids = {id(p) for p in loc}
    rest = [p for p in model.parameters() if id(p) not in loc_ids]
    groups = [{"params": rest, "lr": cfg.lr, "base_lr": cfg.lr}]
    if loc:
        groups.append({"params": loc, "lr": cfg.loc_lr, "base_lr": cfg.loc_lr})
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True)
    # Fused Adam updates all parameters in one kernel; the default's loop over them costs much
    # of a step on CPU, where the FC layers hold most weights (benchmarks/bench_train.py
    # measures it, docs/benchmarks.md). foreach where fused is unsupported.
    try:
        return torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
    except RuntimeError:
        return torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True)


def train(
    run: RunConfig,
    data: Splits,
    out_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    on_record: Sequence[Sink] = (),
    log: Callable[[str], None] | None = None,
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
        log: where the line naming the run's precision goes before it trains (``None``:
            nowhere, unless a resumed run keeps a precision slower here: then to stderr).

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
        return _train(_start(run, data, folder, dist, device), resume, progress, on_record, log)
    finally:
        distributed.teardown(dist)


def _start(
    run: RunConfig, data: Splits, folder: RunDir | None, dist: Dist, device: torch.device
) -> RunState:
    """A run at its start: the config as executed, the seeded model and its optimizer."""
    precision = MixedPrecision.of(run.train, device)
    run = _as_run(run, data, device, precision)
    _check_batches(run.train, len(data.y_train), dist.world_size)
    torch.manual_seed(run.train.seed)
    model = models.create(run.model).to(device)
    optimizer = _optimizer(model, run.train)
    return RunState(run, data, model, optimizer, precision, dist, device, folder)


def _train(
    s: RunState,
    resume: bool,
    progress: bool,
    on_record: Sequence[Sink],
    log: Callable[[str], None] | None,
) -> TrainResult:
    finished = open_run(s, resume)
    if finished is not None:
        return finished
    _announce(s, log)
    s.sinks = _consumers(s, on_record)
    try:
        _epochs(s, progress)
    finally:
        for sink in s.sinks:
            getattr(sink, "close", lambda: None)()
    if not distributed.replicas_identical(s.model, s.dist):
        raise RuntimeError("data-parallel replicas ended with different weights")
    s.model.to(memory_format=torch.contiguous_format).eval()
    summary = summary_of(s)
    if s.out is not None:
        finish(s, s.out, summary)
    return TrainResult(s.model, summary, s.evaluations, s.folder.path if s.folder else None)


def _announce(s: RunState, log: Callable[[str], None] | None) -> None:
    """Name the precision the run trains in (main process): to ``log``, or as a warning on
    stderr when a resumed run keeps one that is slower here than auto's choice."""
    if not s.dist.is_main:
        return
    if log is not None:
        log(s.precision.describe())
    elif s.precision.kept:
        where = s.folder.path if s.folder is not None else s.config.model.name
        tqdm.write(f"warning: {where}: {s.precision.describe()}", file=sys.stderr)


def _as_run(
    run: RunConfig, data: Splits, device: torch.device, precision: MixedPrecision
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


def _consumers(s: RunState, on_record: Sequence[Sink]) -> list[Sink]:
    """Where the records go: metrics.jsonl, the consumers that config fields switch on (collapse
    warnings, TensorBoard), then the caller's callbacks (main process only). A consumer with
    a ``close`` method is closed when training ends."""
    if not s.dist.is_main:
        return []
    cfg, out = s.config.train, s.out
    sinks: list[Sink] = [out.append] if out is not None else []
    if cfg.theta_images:
        earlier = out.records() if out is not None and s.epoch else ()
        sinks.append(monitor.CollapseWarnings(s.config.model.name, earlier))
    if cfg.tensorboard is not None:
        path = log_dir(cfg.tensorboard, out.path if out is not None else None)
        sinks.append(TensorBoardWriter(path, s.model, s.data.x_valid, cfg.epochs, s.epoch))
    return [*sinks, *on_record]


# ----------------------------------------------------------------------------- the epochs


def checkpoint_due(cfg: TrainConfig, epoch: int, since_last: float) -> bool:
    """Whether to checkpoint after ``epoch``, ``since_last`` seconds after the last checkpoint
    (or the start): every ``checkpoint_every`` seconds, and after each ``eval_at`` epoch (a
    budget) and the last. On a GPU an epoch can take less time than its checkpoint."""
    return epoch == cfg.epochs or epoch in cfg.eval_at or since_last >= cfg.checkpoint_every


def _epochs(s: RunState, progress: bool) -> None:
    """Train from ``s.epoch + 1`` to the last epoch: train, record, evaluate, watch the
    transformers, checkpoint."""
    cfg, name = s.config.train, s.config.model.name
    data, net = _on_device(s), _network(s)
    iters, due = len(data.y_train) // cfg.batch_size, set(cfg.eval_epochs())
    probe = monitor.ThetaProbe.of(s.model, data.x_valid, cfg.theta_images, name)
    show = progress and s.dist.is_main
    bar = tqdm(
        total=cfg.epochs * iters,
        initial=s.epoch * iters,
        desc=name,
        unit="it",
        disable=not show,
        dynamic_ncols=True,
    )
    s.saved_at = time.monotonic()
    with bar:
        for epoch in range(s.epoch + 1, cfg.epochs + 1):
            record = _train_epoch(s, net, data, epoch, bar)
            _refuse_divergence(s, record)
            s.train_seconds += record.seconds
            s.emit(record)
            if epoch in due and s.dist.is_main:
                s.evaluations[epoch] = _evaluate(s, data, epoch)
            # Every rank measures θ, so that all reach the same stop on a collapse; "frozen"
            # is judged by the optimizer steps so far.
            thetas = probe.records(s.model, epoch, epoch * iters) if probe is not None else []
            for theta in thetas:
                s.emit(theta)
            s.epoch = epoch
            stops = cfg.stop_on_collapse and epoch < cfg.epochs
            collapsed = monitor.collapsed(thetas, name) if stops else []
            since = time.monotonic() - s.saved_at
            if s.out is not None and (collapsed or checkpoint_due(cfg, epoch, since)):
                save_checkpoint(s, s.out)
            _stop_on_collapse(s, collapsed)


def _on_device(s: RunState) -> _Tensors:
    """The splits on the run's device, copied once; the training images in channels-last
    order, as :func:`_network` puts the model."""
    d, device = s.data, s.device
    return _Tensors(
        x_train=d.x_train.to(device).contiguous(memory_format=torch.channels_last),
        y_train=d.y_train.to(device),
        x_valid=d.x_valid.to(device),
        y_valid=d.y_valid.to(device),
        x_test=d.x_test.to(device),
        y_test=d.y_test.to(device),
    )


def _network(s: RunState) -> nn.Module:
    """What a training step calls: the model in channels-last order (mkldnn's convolutions,
    and cuDNN's under AMP, run faster in NHWC), data-parallel and compiled as configured."""
    s.model.to(memory_format=torch.channels_last)
    net = DistributedDataParallel(s.model) if s.dist.enabled else s.model
    return torch.compile(net) if s.config.train.compile else net


def _train_epoch(s: RunState, net: nn.Module, data: _Tensors, epoch: int, bar: tqdm) -> TrainRecord:
    """One epoch (:func:`epoch_batches`), this rank's share of each batch; the epoch's record."""
    cfg, x, y = s.config.train, data.x_train, data.y_train
    for group in s.optimizer.param_groups:
        group["lr"] = group["base_lr"] * lr_factor(cfg.schedule, epoch, cfg.epochs)
    batches = epoch_batches(
        len(y), cfg.batch_size, cfg.seed, epoch, s.dist.rank, s.dist.world_size, cfg.iterations
    )
    s.model.train()
    t0 = time.perf_counter()
    # Running sums stay on the device: no host sync per step.
    stats = torch.zeros(2, dtype=torch.float64, device=y.device)  # loss sum, correct
    for i, idx in enumerate(batches.to(y.device)):
        xb, yb = x[idx], y[idx]
        logits, batch_loss = _step(s, net, xb, yb)
        stats += torch.stack([batch_loss.detach() * len(yb), (logits.argmax(1) == yb).sum()])
        if not bar.disable and ((i + 1) % 10 == 0 or i + 1 == len(batches)):
            sums, seen = stats.tolist(), (i + 1) * len(yb)
            bar.set_postfix(epoch=epoch, loss=f"{sums[0] / seen:.4f}", acc=f"{sums[1] / seen:.3f}")
        bar.update(1)
    loss_sum, correct = distributed.all_reduce_sum(stats, s.dist).tolist()
    count = len(batches) * cfg.batch_size
    return TrainRecord(
        epoch=epoch,
        loss=loss_sum / count,
        accuracy=correct / count,
        lr=s.optimizer.param_groups[0]["lr"],
        seconds=time.perf_counter() - t0,
    )


def _step(s: RunState, net: nn.Module, xb: Tensor, yb: Tensor) -> tuple[Tensor, Tensor]:
    """One optimizer step on a batch (B, C, H, W); returns its logits (B, K) and loss."""
    p = s.precision
    with torch.autocast(yb.device.type, dtype=p.dtype, enabled=p.enabled):
        logits = net(xb)
        batch_loss = loss(logits, yb, s.config.train)
    s.optimizer.zero_grad(set_to_none=True)
    p.scaler.scale(batch_loss).backward()
    p.scaler.step(s.optimizer)
    p.scaler.update()
    return logits, batch_loss


def _refuse_divergence(s: RunState, record: TrainRecord) -> None:
    """End the run (an error) on a loss that is no longer finite; the last checkpoint stays."""
    if not math.isfinite(record.loss):
        saved = s.saved and s.out is not None
        kept = f"the checkpoint of epoch {s.saved} is kept" if saved else "nothing saved"
        raise TrainingDivergedError(
            f"training diverged: the loss became {record.loss} in epoch {record.epoch}; {kept}"
        )


def _evaluate(s: RunState, data: _Tensors, epoch: int) -> dict[str, Evaluation]:
    """Valid and test after ``epoch``, one record each; probabilities kept only for the last
    epoch."""
    found = {}
    for split in ("valid", "test"):
        ev = evaluate(s.model, getattr(data, f"x_{split}"), getattr(data, f"y_{split}"))
        if epoch != s.config.train.epochs:
            ev.probabilities = None
        found[split] = ev
        s.emit(
            EvalRecord(
                epoch=epoch,
                split=split,
                accuracy=ev.accuracy,
                loss=ev.loss,
                train_seconds=s.train_seconds,
            )
        )
    return found


def _stop_on_collapse(s: RunState, collapsed: list[str]) -> None:
    """End the run (an error) after an epoch with a collapsed transformer; its checkpoint was
    saved first, so ``--resume`` goes on."""
    if collapsed:
        where = f"the checkpoint of epoch {s.epoch} is kept" if s.out is not None else "no folder"
        raise TransformerCollapsedError(
            f"stopped after epoch {s.epoch} (stop_on_collapse): {'; '.join(collapsed)} looks "
            f"collapsed; {where}: resume without stop_on_collapse to go on"
        )
