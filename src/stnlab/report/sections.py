"""The report page's sections in page order, each figure declared once: name, caption, drawing.

A section is a heading and its items, shown in the order this file declares them:
figures (``@SECTION.figure(name, caption)`` on a function of :class:`Inputs` that draws
figures/NAME.png) and HTML between them (``@SECTION.html``: tables, notes).
:data:`FIGURES`, the names the report owns under DIR/figures, is read from the same
declarations, so adding a figure is one decorated function here.

Example:
    >>> FIGURES[:2]
    ('grid', 'paper')
"""

from __future__ import annotations

import html
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from stnlab import models
from stnlab.data import ClutteredMNIST
from stnlab.diagnostics import measure_model
from stnlab.report import figures, grid_figures, paper, results
from stnlab.report import theta_figures as figures_theta
from stnlab.runs import RunDir
from stnlab.train import monitor
from stnlab.train.evaluation import confusion_matrix, per_class_accuracy

__all__ = ["FIGURES", "SECTIONS", "Drawing", "Inputs", "Section", "Shown"]

_DIGITS = 10  # the classes of the per-digit tables and figures


@dataclass
class Inputs:
    """Everything a report reads, read and checked before anything is written."""

    rows: list[dict[str, Any]]
    record: dict[str, Any]
    runs: dict[str, list[RunDir]]  # design -> its final runs, in seed order
    history: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]
    theta_history: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]  # designs with θ records
    predictions: dict[str, dict[str, np.ndarray]]
    comparisons: results.Comparisons  # budget -> (design a, design b) -> a − b
    data: ClutteredMNIST | None = None  # the data set, when its file is still there
    sampled: list[figures.Sampled] = field(default_factory=list)
    index: np.ndarray | None = None  # the test images of the sampled figure
    grid: results.GridEstimates | None = None  # the designs across the grid's cells
    paper: list[paper.Beside] = field(default_factory=list)  # our errors beside the paper's
    cell: str = ""  # the cell the other sections show ("model.size = small"), "" for no grid


# What a figure's function returns: the Figure; or the Figure and the values of its caption's
# {fields}; or HTML shown in its place (a note on why it is missing); or None to leave it out.
Drawing = Figure | tuple[Figure, dict[str, Any]] | str | None


@dataclass(frozen=True)
class Shown:
    """A figure as the page shows it: its name (figures/NAME.png), the Figure, its caption."""

    name: str
    figure: Figure
    caption: str


@dataclass(frozen=True)
class _Item:
    """A figure (with its name and caption template) or, without a name, HTML."""

    draw: Callable[[Inputs], Drawing]
    name: str | None = None
    caption: str = ""


@dataclass
class Section:
    """A heading and its figures and HTML; ``absent`` gives the note that replaces them all
    when the section has nothing to show (else None)."""

    title: str
    absent: Callable[[Inputs], str | None] | None = None
    items: list[_Item] = field(default_factory=list)

    def figure(self, name: str, caption: str) -> Callable[[Callable], Callable]:
        """Declare figure ``name`` here, drawn by the decorated function (see :data:`Drawing`);
        ``caption`` is HTML whose ``{fields}`` are filled by ``str.format`` (``{{`` for a brace)."""
        if any(item.name == name for s in (*SECTIONS, self) for item in s.items):
            raise ValueError(f"report figure {name!r} is declared twice")

        def declare(draw: Callable[[Inputs], Drawing]) -> Callable[[Inputs], Drawing]:
            self.items.append(_Item(draw, name, caption))
            return draw

        return declare

    def html(self, write: Callable[[Inputs], str]) -> Callable[[Inputs], str]:
        """Declare HTML between the figures: the decorated function returns it ("" for none)."""
        self.items.append(_Item(write))
        return write

    def show(self, found: Inputs) -> Iterator[str | Shown]:
        """The section's HTML parts and figures for ``found``, in page order; nothing at all
        when its ``absent`` note is empty."""
        note = self.absent(found) if self.absent is not None else None
        if note == "":
            return
        yield f"<h2>{html.escape(self.title)}</h2>"
        if note is not None:
            yield note
            return
        for item in self.items:
            drawn = item.draw(found)
            if isinstance(drawn, str):
                if drawn:
                    yield drawn
            elif drawn is not None:
                fig, fields = drawn if isinstance(drawn, tuple) else (drawn, {})
                yield Shown(item.name, fig, item.caption.format(**fields))


SECTIONS: list[Section] = []


def _section(title: str, absent: Callable[[Inputs], str | None] | None = None) -> Section:
    """A new section at the end of the page."""
    SECTIONS.append(section := Section(title, absent))
    return section


def _table(
    header: Sequence[str],
    body: Sequence[Sequence[str]],
    bold: Collection[tuple[int, int]] = frozenset(),
) -> str:
    """An HTML table; cells (row, col) in ``bold`` are emphasised."""
    th = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    trs = []
    for i, row in enumerate(body):
        tds = "".join(
            f"<td><b>{html.escape(c)}</b></td>" if (i, j) in bold else f"<td>{html.escape(c)}</td>"
            for j, c in enumerate(row)
        )
        trs.append(f"<tr>{tds}</tr>")
    return f"<table><thead><tr>{th}</tr></thead><tbody>{''.join(trs)}</tbody></table>"


# ------------------------------------------------------------------------------ the grid

GRID = _section("Across the grid", absent=lambda found: None if found.grid else "")


@GRID.figure(
    "grid",
    "Top: test error of each design after {budget} epochs in each cell of the grid, along "
    "each axis; the band is its 95% interval (over test images and runs). Bottom: each "
    "design's error over {first}'s, with its interval; below the dashed line it errs less.",
)
def _grid(found: Inputs) -> Drawing:
    """Error and error ratio against each axis (:func:`grid_figures.grid_figure`)."""
    grid = found.grid
    return grid_figures.grid_figure(grid), {"budget": grid.budget, "first": grid.designs[0]}


@GRID.html
def _grid_table(found: Inputs) -> str:
    """The same numbers as a table, then which cell the sections below show."""
    header, body = results.grid_table(found.grid)
    shown = (
        f"<p>The sections below show one cell: <b>{html.escape(found.cell)}</b> "
        "(<code>stnlab report DIR --cell AXIS=VALUE,...</code> shows another; summary.md "
        "has every cell).</p>"
    )
    return _table(header, body) + shown


# ------------------------------------------------------------------------------ the paper

PAPER = _section("Beside the paper", absent=lambda found: None if found.paper else "")


@PAPER.figure(
    "paper",
    "Our test error after the last budget (the bar: its 95% interval over test images and "
    "runs) against the error Jaderberg et al. (2015) report for the same design and data "
    "(Table 1; section 4.1 for the cluttered 60×60); on the dashed diagonal we match it.",
)
def _paper(found: Inputs) -> Drawing:
    return paper.paper_figure(found.paper)


@PAPER.html
def _paper_table(found: Inputs) -> str:
    header, body = paper.paper_table(found.paper)
    return _table(header, body)


# ------------------------------------------------------------------------------ comparison

COMPARISON = _section("Comparison of network results")


@COMPARISON.figure(
    "comparison",
    "Test accuracy of each design after each epoch budget: the line is the mean over runs "
    "(seeds), the band spans the worst to the best run. Right: the same against the mean "
    "training time per run.",
)
def _comparison(found: Inputs) -> Drawing:
    """Each design's test accuracy (R, B) per budget, and its mean training time per budget."""
    return figures.comparison(*results.accuracy_series(found.rows))


@COMPARISON.html
def _summary(found: Inputs) -> str:
    """The test-accuracy table under its caption."""
    header, body, bold = results.summary_table(found.rows)
    caption = html.escape(results.summary_caption(found.rows))
    return f"<p>{caption}</p>" + _table(header, body, bold)


@COMPARISON.figure(
    "differences",
    "Each pair of designs: the difference in mean test accuracy after each budget, with a 95% "
    "interval from a bootstrap over test images (paired) and runs. A filled dot is a "
    "difference whose interval excludes 0; a hollow one is within noise: the order of those "
    "two designs there may be chance.",
)
def _differences(found: Inputs) -> Drawing:
    """Per pair of designs: budgets and the mean difference and its interval, in points."""
    if len(found.runs) < 2:
        return None
    comparisons = found.comparisons
    budgets = sorted(comparisons)
    pairs = {}
    for a, b in comparisons[budgets[0]]:
        ds = [comparisons[e][(a, b)] for e in budgets]
        values = [100 * np.array([getattr(d, k) for d in ds]) for k in ("mean", "low", "high")]
        pairs[f"{a} − {b}"] = (np.array(budgets, dtype=float), *values)
    return figures.differences(pairs)


@COMPARISON.html
def _significance(found: Inputs) -> str:
    """The differences with their intervals and verdicts, as a table."""
    if len(found.runs) < 2:
        return ""
    body = [
        [
            str(e),
            f"{a} − {b}",
            f"{100 * d.mean:+.2f}",
            f"[{100 * d.low:.2f}, {100 * d.high:.2f}]",
            f"{d.runs[0]} vs {d.runs[1]}",
            "significant" if d.called else "within noise",
        ]
        for e in sorted(found.comparisons)
        for (a, b), d in found.comparisons[e].items()
    ]
    return _table(["epochs", "difference", "points", "95% interval", "runs", "verdict"], body)


# ------------------------------------------------------------------ sampled test images


def _nothing_sampled(found: Inputs) -> str | None:
    """Why no test image can be shown through a transformer, or None."""
    if found.data is None:
        return "<p>The data file is missing, so no images can be shown.</p>"
    if not found.sampled:
        return "<p>No design in this experiment has a spatial transformer to show.</p>"
    return None


SAMPLED = _section("Sampled STN results", absent=_nothing_sampled)


@SAMPLED.figure(
    "stn_samples",
    "{images} fixed test images (rows). For each design with transformers (first seed's "
    "final model): the input with the outline of each transformer's sampling grid (solid: "
    "first; dashed: second, mapped back to the image), then what each transformer produced; "
    "a transformer on feature maps is shown as the mean over channels. The number is the "
    "design's prediction.",
)
def _stn_samples(found: Inputs) -> Drawing:
    """The fixed draw of test images through each design's transformers."""
    images = found.data.x_test[found.index, 0].numpy()
    labels = found.data.y_test[found.index].numpy()
    return figures.sampled(images, labels, found.sampled), {"images": len(found.index)}


# ---------------------------------------------------------------- what θ learned


def _no_transformers(found: Inputs) -> str | None:
    """A note when no design has a transformer (known only with the data file), else None."""
    if not found.sampled and found.data is not None:
        return "<p>No design in this experiment has a spatial transformer.</p>"
    return None


THETA = _section("What the transformers learned", absent=_no_transformers)


@THETA.figure(
    "theta_curves",
    "After each epoch, each transformer's θ on a fixed batch of validation images (the first "
    "<code>theta_images</code>): the median sampled area relative to the image (below 1 the "
    "transformer zooms in, above 1 it zooms out) and the median share of sampling points "
    "that fall off the image and read padding. Mean over each design's final runs, band = "
    "min–max; solid: first transformer, dashed: second. Grey dotted lines: the collapse "
    "limits of the training warnings.",
)
def _theta_per_epoch(found: Inputs) -> Drawing:
    """θ's statistics per epoch from the runs' records, or a note that none recorded them."""
    if not found.theta_history:
        return (
            "<p>No run recorded θ statistics (trained with <code>theta_images = 0</code>, "
            "by an older stnlab, or without transformers).</p>"
        )
    return figures_theta.theta_curves(found.theta_history)


@THETA.figure(
    "theta_distribution",
    "θ of each transformer on all {images} test images (each design's first final model): the "
    "scale along x and y (below 1: zooms in), the rotation, and where the output's centre "
    "looks, in input pixels from the image's centre, coloured by the true digit. A "
    "transformer on feature maps counts in feature-map cells.",
)
def _theta_on_test_set(found: Inputs) -> Drawing:
    """θ of every transformer on the whole test set, or a note that the data file is missing."""
    if found.data is None:
        return "<p>The data file is missing, so θ on the test set cannot be shown.</p>"
    labels = found.data.y_test.numpy()
    return figures_theta.theta_distribution(_test_thetas(found), labels), {"images": len(labels)}


def _test_thetas(found: Inputs) -> dict[str, dict[str, np.ndarray]]:
    """Per-sample θ figures (N,) on the test set of each transformer of each design's first
    final model, by ``design transformer``."""
    parts = {}
    for name, runs in found.runs.items():
        measured = measure_model(models.load(runs[0].path), found.data.x_test)
        for transformer, figs in measured.items():
            parts[monitor.label(name, transformer)] = {k: v.numpy() for k, v in figs.items()}
    return parts


# ------------------------------------------------------------------ errors per digit

HARDEST = _section("Harder digits to identify")


@HARDEST.figure(
    "hardest",
    "The {shown} test images misclassified by the most of the {runs} final runs (all "
    "designs): index, true label, how many runs got it wrong; below, each run's prediction "
    "per design (seed order) and their mean confidence.",
)
def _hardest(found: Inputs) -> Drawing:
    """The test images most runs got wrong (needs the data file for the images)."""
    if found.data is None:
        return None
    preds = found.predictions
    fig, shown = figures.hardest(
        found.data.x_test[:, 0].numpy(),
        next(iter(preds.values()))["labels"],
        {m: p["predictions"] for m, p in preds.items()},
        {m: p["confidence"] for m, p in preds.items()},
    )
    runs = sum(len(p["predictions"]) for p in preds.values())
    return fig, {"shown": len(shown), "runs": runs}


def _class_errors(found: Inputs) -> dict[str, np.ndarray]:
    """Per design, test error (%) per true digit (K,), mean over its final runs."""
    errors = {}
    for m, p in found.predictions.items():
        per_run = [
            per_class_accuracy(confusion_matrix(p["labels"], yhat, _DIGITS))
            for yhat in p["predictions"]  # (N,) per run
        ]
        errors[m] = 100 * (1 - np.nanmean(np.stack(per_run), axis=0))
    return errors


def _confusions(found: Inputs) -> dict[str, np.ndarray]:
    """Per design, the test set's confusion matrix (K, K) summed over its final runs."""
    return {
        m: confusion_matrix(
            np.broadcast_to(p["labels"], p["predictions"].shape), p["predictions"], _DIGITS
        )
        for m, p in found.predictions.items()
    }


@HARDEST.html
def _error_table(found: Inputs) -> str:
    """Test error (%) per true digit and overall, one row per design."""
    overall = {m: 100 * (1 - np.trace(c) / c.sum()) for m, c in _confusions(found).items()}
    body = [
        [m, *(f"{e:.1f}" for e in errs), f"{overall[m]:.1f}"]
        for m, errs in _class_errors(found).items()
    ]
    header = ["design", *map(str, range(_DIGITS)), "all"]
    return "<p>Test error (%) per true digit, mean over each design's final runs:</p>" + _table(
        header, body
    )


@HARDEST.figure(
    "per_class_error",
    "The table above as bars: which digits each design gets wrong most often.",
)
def _per_class_error(found: Inputs) -> Drawing:
    """The error table's per-digit errors as grouped bars."""
    return figures.per_class_error(_class_errors(found))


@HARDEST.figure(
    "confusion",
    "Confusion matrices of the test set, summed over each design's final runs: row = true "
    "digit, column = prediction. Red cells are errors (darker = more).",
)
def _confusion(found: Inputs) -> Drawing:
    """One confusion matrix per design, summed over its final runs."""
    runs = {m: len(p["predictions"]) for m, p in found.predictions.items()}
    return figures.confusions(_confusions(found), runs)


# ----------------------------------------------------------------------- training

CURVES = _section("Training curves")


@CURVES.figure(
    "curves",
    "Training loss per epoch (log scale when it spans a factor of 10) and validation accuracy "
    "at each evaluation, for each design's longest runs: mean over runs, band = min–max.",
)
def _curves(found: Inputs) -> Drawing:
    """Training loss and validation accuracy per epoch, per design."""
    return figures.curves(found.history)


# Last, after every declaration.
FIGURES: tuple[str, ...] = tuple(item.name for s in SECTIONS for item in s.items if item.name)
"""Every figure a report can make (DIR/figures/NAME.png), in page order; write_report deletes
one it did not make this time, so a stale figure from an older report cannot survive."""
