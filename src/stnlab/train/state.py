"""A training run's state (:class:`RunState`) and its life in the run folder: opened (started
or resumed from its checkpoint), checkpointed, finished.

:mod:`stnlab.train.loop` moves a :class:`RunState` on epoch by epoch; what it reads from and
writes to the folder (:class:`~stnlab.runs.run_folder.RunDir`) at the start and the end of a
run, and at each checkpoint, is here.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor, nn

from stnlab import __version__, models
from stnlab.config import RunConfig
from stnlab.config.errors import ConfigError, RunFolderError
from stnlab.runs.records import Record, RunSummary
from stnlab.runs.run_folder import CHECKPOINT, Checkpoint, Predictions, RunDir
from stnlab.train.devices import MixedPrecision
from stnlab.train.distributed import Dist
from stnlab.train.evaluation import Evaluation, evaluate

__all__ = [
    "RunState",
    "Sink",
    "Splits",
    "TrainResult",
    "finish",
    "open_run",
    "save_checkpoint",
    "summary_of",
]

Sink = Callable[[Record], None]  # a consumer of the records: metrics.jsonl, a callback, ...


class Splits(Protocol):
    """What training reads of a data set (a :class:`~stnlab.data.ClutteredMNIST`): images
    (N, C, H, W) and labels (N,) of each split."""

    x_train: Tensor
    y_train: Tensor
    x_valid: Tensor
    y_valid: Tensor
    x_test: Tensor
    y_test: Tensor


@dataclass
class RunState:
    """Everything one run holds while it trains: made by :func:`stnlab.train.loop.train`,
    moved on by each step of the loop."""

    config: RunConfig  # as this run executes it: shapes from the data, the device resolved
    data: Splits
    model: nn.Module
    optimizer: torch.optim.Optimizer
    precision: MixedPrecision
    dist: Dist
    device: torch.device
    folder: RunDir | None  # the run folder (None: nothing is read or written)
    sinks: list[Sink] = field(default_factory=list)  # where each record goes (:meth:`emit`)
    epoch: int = 0  # the last finished epoch
    train_seconds: float = 0.0  # training time so far, evaluations not counted
    evaluations: dict[int, dict[str, Evaluation]] = field(default_factory=dict)
    saved: int = 0  # the epoch of the last checkpoint (0: none)
    saved_at: float = 0.0  # when it was saved, or the epochs started (time.monotonic)

    @property
    def out(self) -> RunDir | None:
        """The folder this process writes: the run folder, in the main process only."""
        return self.folder if self.dist.is_main else None

    def emit(self, record: Record) -> None:
        """Hand ``record`` to every sink."""
        for sink in self.sinks:
            sink(record)


@dataclass
class TrainResult:
    """What :func:`stnlab.train.loop.train` returns: the trained model (eval mode), summary
    and evaluations.

    ``evaluations`` (epoch -> {"valid": ..., "test": ...}) is empty for a finished run
    that is reloaded from its folder; read its records with :class:`~stnlab.runs.run_folder.RunDir`.
    """

    model: nn.Module
    summary: RunSummary
    evaluations: dict[int, dict[str, Evaluation]]
    out_dir: Path | None = None


# ----------------------------------------------------------------------------- the start


def open_run(s: RunState, resume: bool) -> TrainResult | None:
    """Start the run folder, or restore ``s`` from it when resuming, and write config.json;
    for a run that had already finished, its result (reloaded), else ``None``."""
    folder = s.folder
    if folder is None:
        return None
    if folder.holds_run() and not resume:
        raise RunFolderError(
            f"{folder.path} already holds a run; resume it (--resume) or "
            "choose another directory (--out)"
        )
    if resume and folder.is_finished():
        _refuse_changes(folder.differences(s.config), "finished run's")
        summary = folder.summary()
        folder.load_weights(s.model)
        return TrainResult(s.model.eval(), summary, {}, folder.path)
    if resume and folder.file(CHECKPOINT).exists():
        _restore(s, folder)
    elif s.out is not None:
        s.out.start_metrics()
    if s.out is not None:
        s.out.write_config(
            s.config, precision=s.precision.name, **_facts(s.data, s.dist.world_size)
        )
    return None


def _refuse_changes(diff: list[str], whose: str) -> None:
    if diff:
        raise ConfigError(f"cannot resume: the config differs from the {whose} ({'; '.join(diff)})")


def _restore(s: RunState, folder: RunDir) -> None:
    """Load checkpoint.pt into the model, optimizer, scaler, RNGs and ``s``; rewind
    metrics.jsonl to the checkpoint's lines."""
    ck = folder.load_checkpoint()
    _refuse_changes(s.config.differences(ck.config), "checkpoint's")
    _keep_precision(s, ck.config)
    try:
        s.model.load_state_dict(ck.model)
        s.optimizer.load_state_dict(ck.optimizer)
        s.precision.scaler.load_state_dict(ck.scaler)
        s.evaluations = {
            int(e): {split: Evaluation.from_state(v) for split, v in evs.items()}
            for e, evs in ck.evaluations.items()
        }
        torch.set_rng_state(ck.rng)
        if s.device.type == "cuda" and ck.cuda_rng is not None:
            torch.cuda.set_rng_state(ck.cuda_rng, s.device)
    except (RuntimeError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise folder.damaged(
            CHECKPOINT,
            f"does not fit this run ({str(exc).splitlines()[0]})",
            "delete it to start the run over",
        ) from None
    if s.out is not None:  # drop the lines of an epoch cut short
        s.out.rewind_metrics(ck.metrics_bytes)
    s.epoch, s.train_seconds, s.saved = ck.epoch, ck.train_seconds, ck.epoch


def _keep_precision(s: RunState, saved: dict[str, Any]) -> None:
    """Go on in the precision the checkpoint's run trained in (its resolved ``train.amp``),
    on any machine: see :meth:`MixedPrecision.resumed`."""
    train = saved.get("train")
    recorded = isinstance(train, dict) and train.get("amp") is True
    s.precision = s.precision.resumed(recorded, s.device)
    s.config = replace(s.config, train=replace(s.config.train, amp=s.precision.enabled))


def _facts(data: Splits, world: int) -> dict[str, Any]:
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


# ----------------------------------------------------------------------------- checkpoints


def save_checkpoint(s: RunState, out: RunDir) -> None:
    """Replace checkpoint.pt with what a resume after ``s.epoch`` needs."""
    cuda = s.device.type == "cuda"
    out.save_checkpoint(
        Checkpoint(
            config=s.config.to_dict(),
            epoch=s.epoch,
            train_seconds=s.train_seconds,
            model=s.model.state_dict(),
            optimizer=s.optimizer.state_dict(),
            scaler=s.precision.scaler.state_dict(),
            rng=torch.get_rng_state(),
            evaluations={
                e: {split: v.state() for split, v in evs.items()}
                for e, evs in s.evaluations.items()
            },
            metrics_bytes=out.metrics_bytes(),
            cuda_rng=torch.cuda.get_rng_state(s.device) if cuda else None,
        )
    )
    s.saved, s.saved_at = s.epoch, time.monotonic()


# ----------------------------------------------------------------------------- the end


def summary_of(s: RunState) -> RunSummary:
    """The run's summary: its config and the last epoch's evaluations (``None`` in a
    data-parallel process other than rank 0, which evaluates nothing)."""
    cfg, model = s.config.train, s.config.model
    final = s.evaluations.get(cfg.epochs, {})
    valid, test = final.get("valid"), final.get("test")
    images = cfg.epochs * (len(s.data.y_train) // cfg.batch_size) * cfg.batch_size
    seconds = s.train_seconds
    return RunSummary(
        model=model.name,
        size=model.size,
        transform=model.transform,
        epochs=cfg.epochs,
        seed=cfg.seed,
        valid_accuracy=valid.accuracy if valid else None,
        test_accuracy=test.accuracy if test else None,
        valid_loss=valid.loss if valid else None,
        test_loss=test.loss if test else None,
        train_seconds=seconds,
        train_images_per_second=images / seconds if seconds > 0 else None,
        parameters=models.count_parameters(s.model),
        batch_size=cfg.batch_size,
        device=str(s.device),
        world_size=s.dist.world_size,
        test_per_class_accuracy=tuple(test.to_dict()["per_class_accuracy"]) if test else None,
    )


def finish(s: RunState, out: RunDir, summary: RunSummary) -> None:
    """Write the final weights, the test set's per-sample predictions, then summary.json."""
    epochs = sorted(e for e, evs in s.evaluations.items() if "test" in evs)
    tests = [s.evaluations[e]["test"] for e in epochs]
    last = tests[-1]
    if last.probabilities is None:  # evaluated before a resume: probabilities are not kept
        last = evaluate(s.model, s.data.x_test, s.data.y_test)
    out.save_weights(s.model)
    out.write_predictions(
        Predictions(
            labels=last.labels,
            epochs=np.array(epochs),
            predictions=np.stack([t.predictions for t in tests]).astype(np.int16),
            confidence=np.stack([t.confidence for t in tests]),
            probabilities=last.probabilities,
        )
    )
    out.write_summary(summary)
