"""Watching the transformers while a model trains: per-epoch θ records and collapse warnings.

After every epoch :class:`ThetaProbe` measures each transformer of the model on a fixed
batch of validation images (the first ``train.theta_images``) and makes one
:class:`~stnlab.runs.records.ThetaRecord` per transformer: the
:func:`stnlab.diagnostics.summarize` figures (median and 10–90% spread of the area ratio,
out-of-image fraction, centre shift, distance from the identity and, for matrix families,
scale, rotation and shear) and the names of the collapse conditions it meets
(:func:`collapse`). :class:`CollapseWarnings` is a record consumer of
:func:`stnlab.train.loop.train`: it prints each condition once per transformer, and a
condition already in earlier records (a resumed run's) counts as warned.

Example:
    >>> import torch
    >>> from stnlab import models
    >>> model = models.create("stn", size="small")
    >>> probe = ThetaProbe.of(model, torch.rand(10, 1, 40, 40), 10)
    >>> [(r.transformer, round(r.figures["area_ratio_median"], 2), r.collapse)
    ...  for r in probe.records(model, 1, 50)]  # an stn starts at a centred 0.7 zoom
    [('transformers.0', 0.49, ())]
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from torch import Tensor, nn
from tqdm.auto import tqdm

from stnlab import diagnostics
from stnlab.runs.records import Record, ThetaRecord

__all__ = [
    "AREA_RATIO_MAX",
    "AREA_RATIO_MIN",
    "FROZEN_DISTANCE_PX",
    "FROZEN_FROM_STEP",
    "OUTSIDE_MAX",
    "REMEDIES",
    "CollapseWarnings",
    "ThetaProbe",
    "collapse",
    "collapsed",
    "label",
]

# The failure modes that STN users report (issue 10): zooming out until the digit is a speck,
# sliding off into the padding, zooming in on a speck, or never moving. The limits sit far from
# what healthy default models do (docs/results.md, "What the transformers learned").
AREA_RATIO_MAX = 4.0  # a centred 2× zoom-out: only a quarter of the output shows the image
AREA_RATIO_MIN = 0.02  # a side under a quarter of a digit's (~24 of 40 px): a stroke, not a digit
# Three quarters in padding, the same line as AREA_RATIO_MAX (a centred zoom-out crosses both
# at once, area > 4 always puts > 75% outside), so a zoom-out is reported once, as zoomed out.
OUTSIDE_MAX = 0.75
# Frozen is judged against where a transformer starts (the identity or a centred zoom,
# SpatialTransformer.init_zoom), so the default stn's 0.7 zoom can be caught frozen too.
FROZEN_DISTANCE_PX = 0.5  # 90% of the grids within half a pixel of the start: no learnt warp
# Every transformer starts still; judge "frozen" after this many optimizer steps (three epochs
# of the protocol's 50), not epochs, so runs of a few batches per epoch are not called frozen.
FROZEN_FROM_STEP = 150
REMEDIES = (
    "try a lower --loc-lr, a restart from the identity init, normalised inputs, or padding='border'"
)


def _text(name: str, what: str, figure: str, remedies: str = REMEDIES) -> str:
    return f"{name} looks collapsed ({what}): {figure}; {remedies}"


def collapse(summary: Mapping[str, float], name: str, step: int | None = None) -> dict[str, str]:
    """The collapse conditions a :func:`summarize` summary meets: {condition: one-line warning}.

    Conditions (see the limits above): ``zoomed_out`` (median area
    ratio > AREA_RATIO_MAX), ``zoomed_in`` (< AREA_RATIO_MIN), ``off_image`` (median
    outside fraction > OUTSIDE_MAX, unless already reported as zoomed out, which implies
    it) and ``frozen`` (after FROZEN_FROM_STEP optimizer steps, 90% of the batch within
    FROZEN_DISTANCE_PX of the transformer's initial warp, or of the identity for a summary
    without ``start_distance_px``; needs ``step``, the steps trained so far). Each text is
    one line naming the transformer (``name``, e.g. ``"stn transformers.0"``), the figure and
    the remedies.
    """
    found = {}
    area, outside = summary["area_ratio_median"], summary["outside_fraction_median"]
    if area > AREA_RATIO_MAX:
        figure = f"median area ratio {area:.3g} > {AREA_RATIO_MAX:g}, {outside:.0%} of it padding"
        found["zoomed_out"] = _text(name, "zoomed out", figure)
    if area < AREA_RATIO_MIN:
        figure = f"median area ratio {area:.3g} < {AREA_RATIO_MIN:g} of the image"
        found["zoomed_in"] = _text(name, "zoomed in", figure)
    if outside > OUTSIDE_MAX and "zoomed_out" not in found:
        figure = f"median {outside:.0%} of the sampling points off the image (> {OUTSIDE_MAX:.0%})"
        found["off_image"] = _text(name, "off the image", figure)
    start = "start_distance_px_p90" in summary
    distance = summary["start_distance_px_p90" if start else "identity_distance_px_p90"]
    if step is not None and step >= FROZEN_FROM_STEP and distance < FROZEN_DISTANCE_PX:
        where = "its initial warp" if start else "the identity"
        figure = f"90% of the grids within {distance:.2g} px of {where} after {step} steps"
        remedies = "try a higher --loc-lr, or check that the localization net gets gradients"
        found["frozen"] = _text(name, f"frozen at {where}", figure, remedies)
    return found


def label(design: str, transformer: str) -> str:
    """How warnings name a transformer: design and module name (``stn transformers.0``)."""
    return f"{design} {transformer}"


@dataclass
class ThetaProbe:
    """Measures every transformer of a model on the same images after each epoch."""

    images: Tensor  # (N, C, H, W), on the model's device
    design: str = "model"  # the model's name, for the warnings

    @classmethod
    def of(
        cls, model: nn.Module, x_valid: Tensor, count: int, design: str = "model"
    ) -> ThetaProbe | None:
        """A probe on the first ``count`` images of ``x_valid``, on the model's device;
        ``None`` when there is nothing to measure (no images, no transformer)."""
        if count == 0 or len(x_valid) == 0 or not diagnostics.find_transformers(model):
            return None
        device = next(model.parameters()).device
        return cls(x_valid[:count].to(device), design)

    def records(self, model: nn.Module, epoch: int, step: int) -> list[ThetaRecord]:
        """One record per transformer after ``epoch`` (``step`` optimizer steps in all): its
        summary and the collapse conditions met."""
        found = diagnostics.summarize_model(model, self.images)
        return [
            ThetaRecord(
                epoch=epoch,
                transformer=name,
                figures=summary,
                collapse=tuple(collapse(summary, label(self.design, name), step)),
                step=step,
            )
            for name, summary in found.items()
        ]


def collapsed(records: Iterable[ThetaRecord], design: str) -> list[str]:
    """``stn transformers.0 (zoomed out)`` for each transformer of ``records`` that collapsed."""
    found = []
    for r in records:
        if r.collapse:
            conditions = ", ".join(c.replace("_", " ") for c in r.collapse)
            found.append(f"{label(design, r.transformer)} ({conditions})")
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
    ) -> None:
        self.design, self.write = design, write
        self.warned = {
            (r.transformer, c) for r in earlier if isinstance(r, ThetaRecord) for c in r.collapse
        }

    def __call__(self, record: Record) -> None:
        if not isinstance(record, ThetaRecord):
            return
        name = record.transformer
        texts = collapse(record.figures, label(self.design, name), record.step)
        for condition, text in texts.items():
            if (name, condition) not in self.warned:
                self.warned.add((name, condition))
                self.write(f"warning: after epoch {record.epoch}, {text}")
