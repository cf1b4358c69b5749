"""The typed records of a run: metrics.jsonl's lines and summary.json, built, written and read here.

A run's history is a stream of records, one kind per class: :class:`TrainRecord` (an epoch of
training), :class:`EvalRecord` (an evaluated split) and :class:`ThetaRecord` (what a spatial
transformer does after an epoch). :class:`RunSummary` is the run's final figures. Readers pick
records by class (``isinstance(r, EvalRecord)``), never by the ``"event"`` string, which lives
only in the JSON form.

Frozen dataclasses, not TypedDicts: a TypedDict is a plain dict at run time, so it cannot be
told apart by ``isinstance`` and a misspelt key reads as a missing one; a dataclass is its own
type, its fields are attributes that tools check, and frozen says what a record is, a fact
about an epoch that is past. The price is one conversion each way at the edges
(:meth:`TrainRecord.to_dict` and :func:`parse`): writing metrics.jsonl, and Dask's event log,
which carries plain data only.

The JSON form is that of earlier releases, key for key and in the same order, so new files
are byte-identical to theirs and their folders read: a θ record without ``"step"`` (before
"frozen" was judged by steps) reads with ``step=None``. A line of an event this version does
not know (a newer stnlab's) is skipped by :func:`from_line`, not an error.

Example:
    >>> r = TrainRecord(epoch=1, loss=2.25, accuracy=0.125, lr=0.001, seconds=4.5)
    >>> print(to_line(r), end="")
    {"event": "train", "epoch": 1, "loss": 2.25, "accuracy": 0.125, "lr": 0.001, "seconds": 4.5}
    >>> from_line(to_line(r).encode()) == r, isinstance(parse(r.to_dict()), TrainRecord)
    (True, True)
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from numbers import Real
from typing import Any, ClassVar

from stnlab.config import SPLITS

__all__ = [
    "EvalRecord",
    "JSONRecord",
    "Record",
    "RecordError",
    "RunSummary",
    "ThetaRecord",
    "TrainRecord",
    "from_line",
    "parse",
    "to_line",
]

JSONRecord = dict[str, Any]  # a record as plain JSON data: a metrics.jsonl line, a Dask event


class RecordError(ValueError):
    """JSON data that is not a record of its kind; the text reads after a file's name
    (``has a bad 'epoch': 0``)."""


# ----------------------------------------------------------------------------- checked fields


def _is_number(value: object) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def _is_sequence(value: object) -> bool:
    """A JSON array: a list, or the tuple that Dask's event log (msgpack) turns it into."""
    return isinstance(value, list | tuple)


def _get(values: Mapping[str, Any], key: str) -> Any:
    if key not in values:
        raise RecordError(f"has no {key!r}")
    return values[key]


def _bad(key: str, value: object) -> RecordError:
    return RecordError(f"has a bad {key!r}: {value!r}")


def _number(values: Mapping[str, Any], key: str) -> float:
    value = _get(values, key)
    if not _is_number(value):
        raise _bad(key, value)
    return float(value)


def _number_or_none(values: Mapping[str, Any], key: str) -> float | None:
    return None if _get(values, key) is None else _number(values, key)


def _count(values: Mapping[str, Any], key: str, least: int = 0) -> int:
    value = _get(values, key)
    if not (isinstance(value, int) and not isinstance(value, bool) and value >= least):
        raise _bad(key, value)
    return value


def _text(values: Mapping[str, Any], key: str, allowed: tuple[str, ...] = ()) -> str:
    value = _get(values, key)
    if not isinstance(value, str) or (allowed and value not in allowed):
        raise _bad(key, value)
    return value


def _epoch(values: Mapping[str, Any]) -> int:
    return _count(values, "epoch", least=1)


# ----------------------------------------------------------------------------- metrics.jsonl


@dataclass(frozen=True)
class TrainRecord:
    """One epoch of training: mean loss and accuracy over its batches (all ranks), the
    learning rate of the first parameter group, and the epoch's wall time."""

    EVENT: ClassVar[str] = "train"

    epoch: int
    loss: float
    accuracy: float
    lr: float
    seconds: float

    def to_dict(self) -> JSONRecord:
        return {"event": self.EVENT, **asdict(self)}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainRecord:
        return cls(
            _epoch(values),
            *(_number(values, k) for k in ("loss", "accuracy", "lr", "seconds")),
        )


@dataclass(frozen=True)
class EvalRecord:
    """A split (``valid`` or ``test``) evaluated after ``epoch``, and the training time by then."""

    EVENT: ClassVar[str] = "eval"

    epoch: int
    split: str
    accuracy: float
    loss: float
    train_seconds: float

    def to_dict(self) -> JSONRecord:
        return {"event": self.EVENT, **asdict(self)}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> EvalRecord:
        return cls(
            _epoch(values),
            _text(values, "split", SPLITS),
            _number(values, "accuracy"),
            _number(values, "loss"),
            _number(values, "train_seconds"),
        )


@dataclass(frozen=True)
class ThetaRecord:
    """One transformer after ``epoch``: its :func:`stnlab.diagnostics.summarize` figures on
    fixed validation images and the collapse conditions it meets
    (:func:`stnlab.train.monitor.collapse`).

    In JSON the figures are top-level keys beside the others (``"area_ratio_median": 0.49``).
    """

    EVENT: ClassVar[str] = "theta"
    _NAMED: ClassVar[tuple[str, ...]] = ("event", "epoch", "step", "transformer", "collapse")

    epoch: int
    transformer: str  # its module name, e.g. "transformers.0"
    figures: Mapping[str, float]  # {figure}_{p10,median,p90}
    collapse: tuple[str, ...] = ()  # condition names, e.g. ("zoomed_out",)
    step: int | None = None  # optimizer steps so far; None in records of older releases

    def to_dict(self) -> JSONRecord:
        step = {} if self.step is None else {"step": self.step}
        return {
            "event": self.EVENT,
            "epoch": self.epoch,
            **step,
            "transformer": self.transformer,
            **self.figures,
            "collapse": list(self.collapse),
        }

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> ThetaRecord:
        conditions = values.get("collapse", [])
        if not (_is_sequence(conditions) and all(isinstance(c, str) for c in conditions)):
            raise _bad("collapse", conditions)
        figures = {k: _number(values, k) for k in values if k not in cls._NAMED}
        step = _count(values, "step") if values.get("step") is not None else None
        return cls(_epoch(values), _text(values, "transformer"), figures, tuple(conditions), step)


Record = TrainRecord | EvalRecord | ThetaRecord  # a line of metrics.jsonl
_KINDS: dict[str, type[Record]] = {k.EVENT: k for k in (TrainRecord, EvalRecord, ThetaRecord)}


def parse(values: Mapping[str, Any]) -> Record:
    """The record that JSON data holds (a decoded metrics.jsonl line, a Dask event), checked.

    Raises:
        RecordError: not a record of a known event, or a field missing or of the wrong kind.
    """
    event = values.get("event")
    if not (isinstance(event, str) and event in _KINDS):
        raise _bad("event", event)
    return _KINDS[event].from_dict(values)


def to_line(record: Record) -> str:
    """``record`` as a line of metrics.jsonl (with its newline)."""
    return json.dumps(record.to_dict()) + "\n"


def from_line(line: bytes) -> Record | None:
    """The record of one line of metrics.jsonl (without its newline), checked; ``None`` for
    an event this version does not know.

    Raises:
        RecordError: not a JSON object with an ``"event"``, or a bad field of a known event.
    """
    try:
        values = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        values = None
    if not isinstance(values, dict) or not isinstance(values.get("event"), str):
        raise RecordError("is not a JSON record with an 'event'")
    return parse(values) if values["event"] in _KINDS else None


# ----------------------------------------------------------------------------- summary.json


@dataclass(frozen=True, kw_only=True)
class RunSummary:
    """A finished run's figures (summary.json): what it was, how it ended, what it cost.

    The accuracies and losses are those of the last epoch's evaluation; they are ``None``
    only in a data-parallel process other than rank 0 (which evaluates nothing and writes
    no folder), so summary.json always holds them.
    """

    model: str
    size: str
    transform: str
    epochs: int
    seed: int
    valid_accuracy: float | None
    test_accuracy: float | None
    valid_loss: float | None
    test_loss: float | None
    train_seconds: float
    train_images_per_second: float | None  # None for a run of no measurable time
    parameters: int
    batch_size: int
    device: str
    world_size: int
    test_per_class_accuracy: tuple[float | None, ...] | None  # (K,); None: an absent class

    def to_dict(self) -> JSONRecord:
        values = asdict(self)
        if self.test_per_class_accuracy is not None:
            values["test_per_class_accuracy"] = list(self.test_per_class_accuracy)
        return values

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> RunSummary:
        """The summary that summary.json's object holds, checked (keys of a newer stnlab are
        ignored).

        Raises:
            RecordError: a field missing or of the wrong kind.
        """
        per_class = _get(values, "test_per_class_accuracy")
        if per_class is not None and not (
            _is_sequence(per_class) and all(v is None or _is_number(v) for v in per_class)
        ):
            raise _bad("test_per_class_accuracy", per_class)
        return cls(
            model=_text(values, "model"),
            size=_text(values, "size"),
            transform=_text(values, "transform"),
            epochs=_count(values, "epochs", least=1),
            seed=_count(values, "seed"),
            valid_accuracy=_number_or_none(values, "valid_accuracy"),
            test_accuracy=_number(values, "test_accuracy"),  # what the results are made of
            valid_loss=_number_or_none(values, "valid_loss"),
            test_loss=_number_or_none(values, "test_loss"),
            train_seconds=_number(values, "train_seconds"),
            train_images_per_second=_number_or_none(values, "train_images_per_second"),
            parameters=_count(values, "parameters"),
            batch_size=_count(values, "batch_size", least=1),
            device=_text(values, "device"),
            world_size=_count(values, "world_size", least=1),
            test_per_class_accuracy=None if per_class is None else tuple(per_class),
        )
