"""Watching the transformers while a model trains: per-epoch θ records and collapse warnings.

After every epoch :class:`ThetaProbe` measures each transformer of the model on a fixed
batch of validation images (the first ``train.theta_images``) and makes one ``theta``
record per transformer for metrics.jsonl: the :func:`stnlab.diagnostics.summarize` figures
(median and 10–90% spread of the area ratio, out-of-image fraction, centre shift, distance
from the identity and, for matrix families, scale, rotation and shear) and the names of the
collapse conditions it meets (:func:`stnlab.diagnostics.collapse`). :class:`CollapseWarnings`
is a record consumer of :func:`stnlab.training.train`: it prints each condition once per
transformer, and a condition already in earlier records (a resumed run's) counts as warned.

Example:
    >>> import torch
    >>> from stnlab import models
    >>> model = models.create("stn", size="small")
    >>> probe = ThetaProbe.of(model, torch.rand(10, 1, 40, 40), 10)
    >>> [(r["transformer"], round(r["area_ratio_median"], 2), r["collapse"])
    ...  for r in probe.records(model, 1, 50)]  # an stn starts at a centred 0.7 zoom
    [('transformers.0', 0.49, [])]
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn
from tqdm.auto import tqdm

from stnlab import diagnostics

__all__ = ["EVENT", "CollapseWarnings", "ThetaProbe", "collapsed", "label"]

EVENT = "theta"  # the records' event in metrics.jsonl

Record = dict[str, Any]


def label(design: str, transformer: str) -> str:
    """How warnings name a transformer: design and module name (``stn transformers.0``)."""
    return f"{design} {transformer}"


@dataclass
class ThetaProbe:
    """Measures every transformer of a model on the same images after each epoch."""

    images: Tensor  # (N, C, H, W), on the model's device
    design: str = "model"  # the model's name, for the warnings

    @classmethod
    def of(cls, model: nn.Module, x_valid: Tensor, count: int, design: str = "model"):
        """A probe on the first ``count`` images of ``x_valid``, on the model's device;
        ``None`` when there is nothing to measure (no images, no transformer)."""
        if count == 0 or len(x_valid) == 0 or not diagnostics.find_transformers(model):
            return None
        device = next(model.parameters()).device
        return cls(x_valid[:count].to(device), design)

    def records(self, model: nn.Module, epoch: int, step: int) -> list[Record]:
        """One ``theta`` record per transformer after ``epoch`` (``step`` optimizer steps in
        all): its summary and the collapse conditions met."""
        found = diagnostics.summarize_model(model, self.images)
        return [
            {"event": EVENT, "epoch": epoch, "step": step, "transformer": name, **summary,
             "collapse": list(diagnostics.collapse(summary, label(self.design, name), step))}
            for name, summary in found.items()
        ]  # fmt: skip


def collapsed(records: Iterable[Record], design: str) -> list[str]:
    """``stn transformers.0 (zoomed out)`` for each transformer of ``records`` that collapsed."""
    found = []
    for r in records:
        if r["collapse"]:
            conditions = ", ".join(c.replace("_", " ") for c in r["collapse"])
            found.append(f"{label(design, r['transformer'])} ({conditions})")
    return found


def _stderr(line: str) -> None:
    tqdm.write(line, file=sys.stderr)  # above a progress bar, not through it


class CollapseWarnings:
    """A record consumer that prints a warning the first time a transformer meets a
    collapse condition (once per transformer and condition, not every epoch)."""

    def __init__(
        self,
        design: str,
        earlier: Iterable[Record] = (),
        write: Callable[[str], None] = _stderr,
    ):
        self.design, self.write = design, write
        self.warned = {(r["transformer"], c) for r in earlier if r.get("event") == EVENT
                       for c in r.get("collapse", ())}  # fmt: skip

    def __call__(self, record: Record) -> None:
        if record.get("event") != EVENT:
            return
        name, epoch = record["transformer"], record["epoch"]
        texts = diagnostics.collapse(record, label(self.design, name), record.get("step"))
        for condition, text in texts.items():
            if (name, condition) not in self.warned:
                self.warned.add((name, condition))
                self.write(f"warning: after epoch {epoch}, {text}")
