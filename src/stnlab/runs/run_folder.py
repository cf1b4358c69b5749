"""A training run's folder: every file name and format in it, written and read here only.

    config.json        the run's config (:class:`~stnlab.config.RunConfig`) and facts about it
    metrics.jsonl      one record per line (:mod:`stnlab.runs.records`), appended live
    checkpoint.pt      what a resume needs, replaced atomically as training goes
    final.safetensors  the final weights
    predictions.npz    per-sample test predictions at every evaluated epoch
    summary.json       the run's final figures (a :class:`~stnlab.runs.records.RunSummary`);
                       written last, so it marks a finished run

Everything read is checked: a missing, truncated or garbled file raises
:class:`~stnlab.config.errors.RunFolderError` naming the file, the problem and what to do. A
torn last line of metrics.jsonl (what a crash leaves) is dropped, not fatal.

Example:
    >>> run = RunDir("runs/stn")
    >>> run.file(METRICS).name
    'metrics.jsonl'
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from numbers import Real
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stnlab.config import ModelConfig, RunConfig
from stnlab.config.errors import ConfigError, RunFolderError
from stnlab.runs import records
from stnlab.runs.atomic import atomic_write
from stnlab.runs.records import EvalRecord, Record, RecordError, RunSummary

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "CHECKPOINT",
    "CONFIG",
    "METRICS",
    "PREDICTIONS",
    "SUMMARY",
    "WEIGHTS",
    "Checkpoint",
    "Predictions",
    "RunDir",
]

CONFIG, METRICS, CHECKPOINT = "config.json", "metrics.jsonl", "checkpoint.pt"
WEIGHTS, PREDICTIONS, SUMMARY = "final.safetensors", "predictions.npz", "summary.json"

_AGAIN = "delete the run folder and train it again"
_START_OVER = "delete it to start the run over"
_REWRITE = "delete it and resume the run to write it again"


@dataclass
class Checkpoint:
    """What checkpoint.pt holds: enough to continue a run exactly where it stopped."""

    config: dict[str, Any]  # RunConfig.to_dict() of the run
    epoch: int  # the last finished epoch
    train_seconds: float
    model: dict[str, Any]  # state dicts
    optimizer: dict[str, Any]
    scaler: dict[str, Any]
    rng: Any  # torch.get_rng_state()
    evaluations: dict[int, dict[str, dict[str, Any]]]  # epoch -> split -> Evaluation.state()
    metrics_bytes: int  # metrics.jsonl's size after this epoch's lines
    cuda_rng: Any = None


@dataclass
class Predictions:
    """A run's per-sample test predictions at each evaluated epoch.

    Attributes:
        labels: (N,) true classes.
        epochs: (E,) the evaluated epochs, ascending.
        predictions: (E, N) predicted class after each epoch.
        confidence: (E, N) softmax probability of the predicted class.
        probabilities: (N, K) softmax probabilities after the last epoch (or ``None``).
    """

    labels: np.ndarray
    epochs: np.ndarray
    predictions: np.ndarray
    confidence: np.ndarray
    probabilities: np.ndarray | None = None

    def at(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """(predictions (N,), confidence (N,)) after ``epoch``."""
        where = (self.epochs == epoch).nonzero()[0]
        if not len(where):
            raise KeyError(f"epoch {epoch} was not evaluated; evaluated: {self.epochs.tolist()}")
        return self.predictions[where[0]], self.confidence[where[0]]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class RunDir:
    """The folder of one training run (see the module docstring for its files)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def file(self, name: str) -> Path:
        return self.path / name

    def holds_run(self) -> bool:
        """Whether a run has saved a checkpoint or finished here."""
        return self.file(CHECKPOINT).exists() or self.file(SUMMARY).exists()

    def is_finished(self) -> bool:
        return self.file(SUMMARY).exists()

    def damaged(self, name: str, problem: str, todo: str = _AGAIN) -> RunFolderError:
        """The error for a file of this run: ``PATH problem; todo``."""
        return RunFolderError(f"{self.file(name)} {problem}; {todo}")

    # ------------------------------------------------------------------------- JSON files

    def _write_json(self, name: str, obj: Any) -> None:
        with atomic_write(self.file(name)) as f:
            f.write((json.dumps(obj, indent=2) + "\n").encode())

    def _read_json(self, name: str, todo: str) -> dict[str, Any]:
        """A JSON object from ``name``, or an error naming the file."""
        if not self.path.is_dir():
            raise RunFolderError(f"no run directory {str(self.path)!r}")
        path = self.file(name)
        if not path.is_file():
            raise RunFolderError(f"{str(self.path)!r} has no {name} (is it a finished run?)")
        try:
            value = json.loads(path.read_bytes())
        except (ValueError, UnicodeDecodeError) as exc:
            raise self.damaged(name, f"is not valid JSON ({_first_line(exc)})", todo) from None
        if not isinstance(value, dict):
            raise self.damaged(name, "is not a JSON object", todo)
        return value

    def write_config(self, run: RunConfig, **facts: Any) -> None:
        """config.json: the run's config, then facts such as the data's shapes and versions."""
        self._write_json(CONFIG, {**run.to_dict(), **facts})

    def config(self) -> dict[str, Any]:
        """config.json as written (a run config's tables and the facts beside them)."""
        return self._read_json(CONFIG, _AGAIN)

    def model_config(self) -> ModelConfig:
        """The model's config; also from run folders of older versions of stnlab."""
        config = self.config()
        if not isinstance(config.get("model"), dict):
            raise self.damaged(CONFIG, "has no model configuration (a 'model' table)")
        try:
            return ModelConfig.from_dict(config["model"])
        except ConfigError as exc:
            raise self.damaged(CONFIG, f"holds a bad model config ({exc})") from None

    def run_config(self) -> RunConfig:
        """The run's whole config (model, train, data), as :meth:`write_config` wrote it."""
        return self._run_config(self.config(), CONFIG, _AGAIN)

    def _run_config(self, values: dict[str, Any], name: str, todo: str) -> RunConfig:
        if not isinstance(values.get("train"), dict):
            raise self.damaged(name, "was written by an older stnlab (no 'train' table)", todo)
        try:
            return RunConfig.from_dict(values)
        except ConfigError as exc:
            raise self.damaged(name, f"holds a bad config ({exc})", todo) from None

    def differences(self, run: RunConfig) -> list[str]:
        """Fields deciding a result where the run saved here differs from ``run`` (none when
        the folder holds no config)."""
        if not self.file(CONFIG).exists():
            return []
        return run.differences(self.run_config().to_dict())

    def precision(self) -> str:
        """The precision the run trained in (float32, bfloat16 or float16), as config.json
        records it; for a run written before it did, from its ``train.amp``; empty for a
        finished run without config.json (nothing else needs it)."""
        if self.is_finished() and not self.file(CONFIG).exists():
            return ""
        config = self.config()
        if isinstance(config.get("precision"), str):
            return config["precision"]
        train = config.get("train")
        return "bfloat16" if isinstance(train, dict) and train.get("amp") is True else "float32"

    def write_summary(self, summary: RunSummary) -> None:
        """summary.json, the last file a run writes."""
        self._write_json(SUMMARY, summary.to_dict())

    def summary(self) -> RunSummary:
        """summary.json, checked."""
        try:
            return RunSummary.from_dict(self._read_json(SUMMARY, _REWRITE))
        except RecordError as exc:
            raise self.damaged(SUMMARY, str(exc), _REWRITE) from None

    # ------------------------------------------------------------------------- metrics.jsonl

    def start_metrics(self) -> None:
        """An empty metrics.jsonl for a run that starts (lines of an earlier try dropped)."""
        self.path.mkdir(parents=True, exist_ok=True)
        self.file(METRICS).write_bytes(b"")

    def append(self, record: Record) -> None:
        """Append one record as a line of metrics.jsonl."""
        with open(self.file(METRICS), "a") as f:
            f.write(records.to_line(record))

    def metrics_bytes(self) -> int:
        path = self.file(METRICS)
        return path.stat().st_size if path.exists() else 0

    def records(self, upto: int | None = None) -> list[Record]:
        """The records of metrics.jsonl (of its first ``upto`` bytes), checked.

        A last line without its newline is a write cut short by a crash: it is dropped. A
        line of an event this version does not know (a newer stnlab's) is skipped.
        """
        path = self.file(METRICS)
        if not path.is_file():
            raise self.damaged(METRICS, "is missing")
        data = path.read_bytes()[:upto]
        lines = data.split(b"\n")[:-1]  # the piece after the last newline is torn (or empty)
        found = (self._record(i + 1, line) for i, line in enumerate(lines) if line.strip())
        return [r for r in found if r is not None]

    def _record(self, number: int, line: bytes) -> Record | None:
        try:
            return records.from_line(line)
        except RecordError as exc:
            raise self.damaged(METRICS, f"line {number} {exc}") from None

    def check_metrics(self, size: int) -> None:
        """Check that metrics.jsonl starts with ``size`` bytes of whole records (the lines a
        checkpoint covers)."""
        if not self.file(METRICS).is_file():
            raise self.damaged(METRICS, f"is missing, but {CHECKPOINT} covers {size} bytes of it")
        if self.metrics_bytes() < size:
            raise self.damaged(
                METRICS,
                f"is shorter than the {size} bytes that {CHECKPOINT} "
                "recorded: lines of saved epochs are lost",
            )
        self.records(size)

    def rewind_metrics(self, size: int) -> None:
        """Cut metrics.jsonl back to its first ``size`` bytes, dropping the lines of an epoch
        that a crash cut short (after :meth:`check_metrics`)."""
        self.check_metrics(size)
        if self.metrics_bytes() > size:
            with open(self.file(METRICS), "r+b") as f:
                f.truncate(size)

    def evaluations(self) -> dict[tuple[int, str], EvalRecord]:
        """The last evaluation record of each (epoch, split)."""
        return {(r.epoch, r.split): r for r in self.records() if isinstance(r, EvalRecord)}

    # ------------------------------------------------------------------------- checkpoint.pt

    def save_checkpoint(self, ck: Checkpoint) -> None:
        """Atomically replace checkpoint.pt (tensors, numbers, strings, lists and dicts only)."""
        import torch

        with atomic_write(self.file(CHECKPOINT)) as f:
            torch.save(asdict(ck), f)

    def load_checkpoint(self) -> Checkpoint:
        """checkpoint.pt, loaded as data only (``weights_only``: never pickled code), checked."""
        import torch

        try:
            state = torch.load(self.file(CHECKPOINT), map_location="cpu", weights_only=True)
        except Exception as exc:  # the zip reader, the unpickler: any damage at all
            raise self.damaged(
                CHECKPOINT, f"cannot be read ({_first_line(exc)})", _START_OVER
            ) from None
        need = {f.name: f.type for f in fields(Checkpoint) if f.name != "cuda_rng"}
        missing = [k for k in need if not isinstance(state, dict) or k not in state]
        if missing:
            raise self.damaged(
                CHECKPOINT, f"lacks {missing[0]!r} (another version of stnlab?)", _START_OVER
            )
        kinds = {
            "config": dict,
            "epoch": int,
            "model": dict,
            "optimizer": dict,
            "scaler": dict,
            "evaluations": dict,
            "metrics_bytes": int,
            "train_seconds": Real,
        }
        for key, kind in kinds.items():
            if not isinstance(state[key], kind):
                raise self.damaged(CHECKPOINT, f"has a bad {key!r}", _START_OVER)
        self._run_config(state["config"], CHECKPOINT, _START_OVER)
        return Checkpoint(
            **{k: v for k, v in state.items() if k in {f.name for f in fields(Checkpoint)}}
        )

    # ------------------------------------------------------------------------- final weights

    def save_weights(self, model: Any, name: str = WEIGHTS) -> None:
        """Atomically save ``model``'s state dict as safetensors (CPU, contiguous copies)."""
        from safetensors.torch import save

        state = {
            k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()
        }
        with atomic_write(self.file(name)) as f:
            f.write(save(state))

    def load_weights(self, model: Any, name: str | None = None) -> None:
        """Load the weights file ``name`` (final.safetensors) into ``model``."""
        from safetensors.torch import load_file

        name = name or WEIGHTS
        if not self.file(name).is_file():
            raise RunFolderError(f"{str(self.path)!r} has no {name} (is it a finished run?)")
        try:
            state = load_file(str(self.file(name)), device="cpu")
        except Exception as exc:  # SafetensorError, OSError: a damaged file
            raise self.damaged(name, f"cannot be read ({_first_line(exc)})") from None
        try:
            model.load_state_dict(state)
        except RuntimeError:
            raise self.damaged(name, f"does not fit the model in {CONFIG}") from None

    # ------------------------------------------------------------------------- predictions

    def write_predictions(self, p: Predictions) -> None:
        import numpy as np  # not at the top: `stnlab --help` imports this module

        arrays = {k: v for k, v in asdict(p).items() if v is not None}
        with atomic_write(self.file(PREDICTIONS)) as f:
            np.savez(f, **arrays)

    def predictions(self) -> Predictions:
        """predictions.npz, checked; a file of an older stnlab (final epoch only) reads too."""
        import numpy as np

        path = self.file(PREDICTIONS)
        if not path.is_file():
            raise self.damaged(PREDICTIONS, "is missing")
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except Exception as exc:  # the zip reader, a cut-off array: any damage at all
            raise self.damaged(PREDICTIONS, f"cannot be read ({_first_line(exc)})") from None
        if "epochs" not in arrays and "predictions" in arrays:  # older: the final epoch only
            arrays["epochs"] = np.array([self.summary().epochs])
            for key in ("predictions", "confidence"):
                arrays[key] = arrays[key][None] if key in arrays else None
        missing = [k for k in ("labels", "epochs", "predictions", "confidence") if k not in arrays]
        if missing:
            raise self.damaged(PREDICTIONS, f"lacks {missing[0]!r}")
        p = Predictions(
            **{k: v for k, v in arrays.items() if k in {f.name for f in fields(Predictions)}}
        )
        n, e = len(p.labels), len(p.epochs)
        if (
            p.predictions.shape != (e, n)
            or p.confidence.shape != (e, n)
            or (p.probabilities is not None and p.probabilities.shape[:1] != (n,))
        ):
            raise self.damaged(PREDICTIONS, "holds arrays of mismatched shapes")
        return p
