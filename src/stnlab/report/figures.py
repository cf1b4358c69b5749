"""The report's figures, each a function of plain arrays that returns a matplotlib Figure.

Images are (H, W) arrays in [0, 1]; points are pixel coordinates (x, y) with pixel
centres at integers, as ``imshow`` draws them. Nothing here reads files or models.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

__all__ = [
    "ControlPoints",
    "Sampled",
    "comparison",
    "confusions",
    "curves",
    "differences",
    "hardest",
    "per_class_error",
    "sampled",
]

_COLORS = colormaps["tab10"].colors
_OUTLINE = ("#ff3b30", "#00c7ff", "#ffcc00")  # stage 1, stage 2, ...: bright on grey digits
_POINTS = colormaps["rainbow"]  # TPS control point k has the same colour on input and output
_MARKERS = ("o", "s", "D")  # TPS control points of stage 1, 2, ...
_FRAME = "#ffffff"  # where the user's own picture lies in a padded input


def _subplots(rows: int, cols: int, figsize, **kwargs) -> tuple[Figure, np.ndarray]:
    """A pyplot-free figure (no global state) and its axes."""
    fig = Figure(figsize=figsize, layout=kwargs.pop("layout", None))
    return fig, fig.subplots(rows, cols, **kwargs)


def colors(names: Sequence[str]) -> dict[str, tuple]:
    """A fixed colour per design, in order."""
    return {name: _COLORS[i % len(_COLORS)] for i, name in enumerate(names)}


def _band(ax, x, runs: np.ndarray, color, label: str, marker: str | None = "o") -> None:
    """Mean line over runs (rows of ``runs``) with a min–max band when there are several."""
    runs = np.atleast_2d(runs)
    mean = np.nanmean(runs, axis=0)
    ax.plot(x, mean, color=color, marker=marker, ms=4, lw=1.8, label=label)
    if len(runs) > 1:
        ax.fill_between(x, np.nanmin(runs, 0), np.nanmax(runs, 0), color=color, alpha=0.18, lw=0)


def comparison(
    accuracy: Mapping[str, tuple[np.ndarray, np.ndarray]],
    seconds: Mapping[str, np.ndarray],
) -> Figure:
    """Test accuracy vs epochs and vs training time per design: mean, min–max band over runs.

    Args:
        accuracy: design -> (budgets (B,), test accuracy in % (R, B) with one row per run).
        seconds: design -> mean training seconds at each budget (B,).
    """
    fig, (left, right) = _subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    palette = colors(list(accuracy))
    for name, (budgets, acc) in accuracy.items():
        label = f"{name} ({len(acc)} run{'s' * (len(acc) > 1)})"
        _band(left, budgets, acc, palette[name], label)
        _band(right, seconds[name], acc, palette[name], name)
    left.set(xlabel="training epochs (budget)", ylabel="test accuracy (%)")
    left.set_title("Test accuracy vs epochs (mean, band = min–max over runs)")
    right.set(xlabel="training time per run (s)", ylabel="test accuracy (%)")
    right.set_title("Test accuracy vs training time")
    ticks = sorted({int(e) for budgets, _ in accuracy.values() for e in budgets})
    left.set_xticks(ticks if len(ticks) <= 12 else ticks[:: len(ticks) // 10 + 1])
    for ax in (left, right):
        ax.grid(alpha=0.3)
    left.legend(loc="lower right")
    return fig


def differences(
    pairs: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
) -> Figure:
    """The difference in test accuracy of each pair of designs per budget, with its interval.

    Args:
        pairs: "stn − cnn" -> (budgets (B,), mean difference, interval low, interval high),
            in points. A filled marker is a difference whose interval excludes 0 (called);
            a hollow one is within noise.
    """
    fig, ax = _subplots(1, 1, figsize=(11, 3.6), layout="constrained")
    ax.axhline(0, color="#444", lw=1, ls="--")
    width = max(1, len(pairs))
    for i, (name, (budgets, mean, low, high)) in enumerate(pairs.items()):
        color = _COLORS[i % len(_COLORS)]
        step = np.min(np.diff(budgets)) if len(budgets) > 1 else 1.0
        x = budgets + (i - (width - 1) / 2) * 0.12 * step  # side by side, not on top
        called = (low > 0) | (high < 0)
        ax.errorbar(x, mean, yerr=[mean - low, high - mean], fmt="none", ecolor=color, capsize=3)
        ax.plot(x[called], mean[called], "o", color=color, label=name)
        ax.plot(x[~called], mean[~called], "o", mfc="white", color=color)
    ax.set(xlabel="training epochs (budget)", ylabel="difference (points)")
    ax.set_title("Differences in test accuracy with 95% intervals (hollow: within noise)")
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    return fig


def curves(history: Mapping[str, dict[str, tuple[np.ndarray, np.ndarray]]]) -> Figure:
    """Training loss and validation accuracy per epoch for each design (mean, min–max band).

    Args:
        history: design -> {"loss": (epochs (E,), values (R, E)), "valid": (epochs, (R, E'))},
            accuracies in %.
    """
    fig, (left, right) = _subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    palette = colors(list(history))
    for name, h in history.items():
        many = len(h["loss"][0]) > 30
        _band(left, *h["loss"], palette[name], name, marker=None if many else "o")
        _band(right, *h["valid"], palette[name], name, marker=None if many else "o")
    losses = np.concatenate([np.ravel(h["loss"][1]) for h in history.values()])
    wide = losses.size and np.nanmax(losses) > 10 * max(np.nanmin(losses), 1e-12)
    left.set(
        xlabel="epoch", ylabel="training loss (cross-entropy)", yscale="log" if wide else "linear"
    )
    left.set_title("Training loss")
    right.set(xlabel="epoch", ylabel="validation accuracy (%)")
    right.set_title("Validation accuracy")
    for ax in (left, right):
        ax.grid(alpha=0.3, which="both")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend()
    return fig


@dataclass
class ControlPoints:
    """A thin-plate spline's control points: ``target`` (K, 2) where they rest in the
    stage's output, in output pixels; ``source`` (N, K, 2) where θ sends them in the
    input image, in input pixels (the output's pixel at target k reads the input at
    source k)."""

    source: np.ndarray
    target: np.ndarray


@dataclass
class Sampled:
    """One design's transformer outputs for the sampled images.

    ``outputs`` holds each stage's (N, H', W') image (feature maps averaged over
    channels), ``outlines`` each stage's grid border in input pixels (N, M, 2);
    ``lattices`` each stage's warped grid lines in input pixels (N, L, P, 2) and
    ``controls`` its :class:`ControlPoints`, where the stage is a thin-plate spline
    (``None`` otherwise).
    """

    name: str
    outputs: list[np.ndarray]
    outlines: list[np.ndarray]
    predictions: np.ndarray  # (N,)
    stage_titles: list[str] = field(default_factory=list)
    captions: list[list[str]] = field(default_factory=list)  # per stage, per image: under it
    lattices: list[np.ndarray | None] = field(default_factory=list)
    controls: list[ControlPoints | None] = field(default_factory=list)

    def lattice(self, stage: int) -> np.ndarray | None:
        """Stage ``stage``'s warped grid lines (N, L, P, 2), if it has them."""
        return self.lattices[stage] if stage < len(self.lattices) else None

    def control(self, stage: int) -> ControlPoints | None:
        """Stage ``stage``'s control points, if it is a thin-plate spline."""
        return self.controls[stage] if stage < len(self.controls) else None


def _bare(ax) -> None:
    """No ticks and no frame: an image panel whose labels may still be set."""
    ax.set(xticks=[], yticks=[])
    for spine in ax.spines.values():
        spine.set_visible(False)


def _fit(ax, shape: tuple[int, int], lines: Sequence[np.ndarray]) -> None:
    """Limits that show the whole image and the outlines (a grid may reach outside it)."""
    h, w = shape
    pts = np.concatenate([np.asarray(line) for line in lines]) if lines else np.zeros((0, 2))
    x0, y0 = np.min([*pts, (-0.5, -0.5)], axis=0) - 1
    x1, y1 = np.max([*pts, (w - 0.5, h - 0.5)], axis=0) + 1
    x0, x1 = max(x0, -0.5 - w / 2), min(x1, w - 0.5 + w / 2)  # at most half an image around
    y0, y1 = max(y0, -0.5 - h / 2), min(y1, h - 0.5 + h / 2)
    ax.set(xlim=(x0, x1), ylim=(y1, y0), facecolor="#d0d4d9")


def sampled(
    images: np.ndarray,
    labels: np.ndarray | None,
    designs: Sequence[Sampled],
    row_titles: Sequence[str] | None = None,
    frames: Sequence[Sequence[float] | None] | None = None,
    notes: Sequence[str] | None = None,
) -> Figure:
    """Rows of test images: per design, the input with its grid outlines, then each stage.

    Without ``labels`` (the user's own images) predictions are shown uncoloured, and
    ``row_titles`` (default ``label K``) name the rows. A thin-plate spline's stage also
    shows its warped grid and its control points' sources on the input and their targets
    on its output, point k in the same colour on both. ``frames`` gives, per image, the
    rectangle (x0, y0, x1, y1) in input pixels where a padded picture lies (drawn dotted),
    or ``None``; ``notes`` a line under each input (what was done to the picture).
    """
    if row_titles is None:
        row_titles = [f"label {k}" for k in labels] if labels is not None else []
    cols = [(d, s) for d in designs for s in [None, *range(len(d.outputs))]]
    n = len(images)
    tps = any(c is not None for d in designs for c in d.controls)
    fig, axes = _subplots(
        n,
        len(cols),
        (1.75 * len(cols), 1.75 * n + 0.9 + 0.2 * tps),  # a title line more for TPS points
        squeeze=False,
        layout="constrained",
    )
    for j, (d, stage) in enumerate(cols):
        for i in range(n):
            ax = axes[i, j]
            _bare(ax)
            if stage is None:
                _input_panel(ax, images[i], d, i)
                if frames is not None and frames[i] is not None:
                    _frame(ax, frames[i])
                if notes:
                    ax.set_xlabel(notes[i], fontsize=8)
            else:
                _stage_panel(ax, d, stage, i, None if labels is None else labels[i])
            if j == 0 and row_titles:
                ax.set_ylabel(row_titles[i], fontsize=10)
        title = "input + grid" if stage is None else d.stage_titles[stage]
        axes[0, j].set_title(f"{d.name}\n{title}", fontsize=9)
    fig.suptitle(_sampled_title(labels is not None, narrow=len(cols) < 4, tps=tps), fontsize=10)
    return fig


def _input_panel(ax, image: np.ndarray, d: Sampled, i: int) -> None:
    """Input image ``i`` (H, W) with each stage's grid outline (M, 2), solid first, dashed
    next; a thin-plate spline's warped grid and its control points' sources too."""
    ax.imshow(image, cmap="gray", vmin=0, vmax=1)
    shown = []
    for k, line in enumerate(d.outlines):
        color = _OUTLINE[k % 3]
        lattice, control = d.lattice(k), d.control(k)
        if lattice is not None:
            for j, part in enumerate(lattice[i]):  # (P, 2) each
                ax.plot(*part.T, color=color, lw=0.6, alpha=0.7, gid=f"lattice-{k}-{j}")
            shown.extend(lattice[i])
        closed = np.concatenate([line[i], line[i][:1]])  # (M + 1, 2)
        ax.plot(*closed.T, color=color, lw=1.5, ls="-" if k == 0 else "--", gid=f"outline-{k}")
        shown.append(line[i])
        if control is not None:
            _points(ax, control.source[i], k, f"control-source-{k}")
            shown.append(control.source[i])
    _fit(ax, image.shape, shown)


def _points(ax, points: np.ndarray, stage: int, gid: str, clip: bool = True) -> None:
    """Control points (K, 2), point k coloured k of K (the same on input and output), in
    the stage's marker (circles first, squares next); without ``clip``, drawn whole on the
    panel's edge."""
    shades = _POINTS(np.linspace(0, 1, len(points)))
    ax.scatter(
        *points.T,
        s=14,
        c=shades,
        marker=_MARKERS[stage % len(_MARKERS)],
        edgecolors="black",
        linewidths=0.5,
        zorder=3,
        clip_on=clip,
        gid=gid,
    )


def _frame(ax, frame: Sequence[float]) -> None:
    """The rectangle (x0, y0, x1, y1) where the user's picture lies in a padded input."""
    x0, y0, x1, y1 = frame
    xs, ys = [x0, x1, x1, x0, x0], [y0, y0, y1, y1, y0]
    ax.plot(xs, ys, color=_FRAME, lw=1, ls=":", gid="picture-frame")


def _stage_panel(ax, d: Sampled, stage: int, i: int, label: int | None) -> None:
    """What ``stage`` of design ``d`` produced for image ``i``; the last stage shows the
    prediction (green right, red wrong, blue without a ``label``)."""
    out = d.outputs[stage][i]
    lo, hi = (0, 1) if stage == 0 else (out.min(), out.max() + 1e-8)
    ax.imshow(out, cmap="gray" if stage == 0 else "magma", vmin=lo, vmax=hi)
    if (control := d.control(stage)) is not None:
        _points(ax, control.target, stage, f"control-target-{stage}", clip=False)
        h, w = out.shape
        ax.set(xlim=(-0.5, w - 0.5), ylim=(h - 0.5, -0.5))  # the image; edge points unclipped
    if stage == len(d.outputs) - 1:
        if label is None:
            color = "#4da3ff"
        else:
            color = "#34c759" if d.predictions[i] == label else "#ff3b30"
        ax.text(
            0.04,
            0.96,
            str(d.predictions[i]),
            transform=ax.transAxes,
            va="top",
            color=color,
            fontsize=12,
            weight="bold",
        )
    if d.captions:
        ax.set_xlabel(d.captions[stage][i], fontsize=8)


def _sampled_title(labelled: bool, narrow: bool, tps: bool = False) -> str:
    """The sampled figure's title and legend, on three short lines when the figure is narrow
    (a fourth on the control points of a thin-plate spline)."""
    head = "Sampled STN results" if labelled else "What the transformer looked at"
    verdict = " (green = right)" if labelled else ""
    if narrow:
        dots = "\ndots: TPS control points, in → out" if tps else ""
        return f"{head}\ngrids: solid 1st, dashed 2nd\nnumber: prediction{verdict}{dots}"
    dots = (
        "\ndots: TPS control points, where θ sends them on the input and where they rest "
        "on the output (same colour, same point)"
        if tps
        else ""
    )
    return (
        f"{head}\ngrid outline: solid = first transformer, dashed = second; "
        f"corner number = prediction{verdict}{dots}"
    )


def hardest(
    images: np.ndarray,
    labels: np.ndarray,
    predictions: Mapping[str, np.ndarray],
    confidence: Mapping[str, np.ndarray],
    count: int = 18,
) -> tuple[Figure, np.ndarray]:
    """The test images misclassified by the most runs, with each run's prediction.

    Args:
        images: (N, H, W); labels: (N,).
        predictions, confidence: design -> (R, N), one row per run.
    Returns: the figure and the indices shown.
    """
    shown, wrong = _most_wrong(labels, predictions, confidence, count)
    runs = sum(len(p) for p in predictions.values())
    cols = 6
    rows = max(1, -(-len(shown) // cols))
    fig, axes = _subplots(
        rows,
        cols,
        (2.3 * cols, (2.6 + 0.22 * len(predictions)) * rows + 0.6),
        squeeze=False,
        layout="constrained",
    )
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, shown, strict=False):
        ax.axis("on")
        _bare(ax)
        ax.imshow(images[i], cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"#{i}: true {labels[i]}, {wrong[i]}/{runs} wrong", fontsize=9)
        ax.set_xlabel(_votes(predictions, confidence, i), fontsize=8.5, family="monospace")
    if not len(shown):
        axes[0, 0].text(0, 0.5, "every test image was classified correctly by every run")
    fig.suptitle(
        "Hardest digits: test images most runs got wrong\n"
        "under each: every run's prediction per design (seed order), mean confidence",
        fontsize=10,
    )
    return fig, shown


def _most_wrong(
    labels: np.ndarray,
    predictions: Mapping[str, np.ndarray],
    confidence: Mapping[str, np.ndarray],
    count: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``count`` indices of images some run got wrong, most runs wrong first (then the
    most confidently wrong), and how many runs got each image (N,) wrong."""
    preds = np.concatenate(list(predictions.values()))  # (runs, N)
    conf = np.concatenate(list(confidence.values()))
    missed = preds != labels[None]
    wrong = missed.sum(0)
    order = np.lexsort((-np.where(missed, conf, 0).sum(0), -wrong))
    return order[: min(count, int((wrong > 0).sum()))], wrong


def _votes(
    predictions: Mapping[str, np.ndarray], confidence: Mapping[str, np.ndarray], i: int
) -> str:
    """One line per design: each run's prediction for image ``i`` and their mean confidence."""
    width = max(len(n) for n in predictions)
    return "\n".join(
        f"{name:<{width}} {' '.join(map(str, predictions[name][:, i]))} "
        f"({100 * confidence[name][:, i].mean():.0f}%)"
        for name in predictions
    )


def confusions(matrices: Mapping[str, np.ndarray], runs: Mapping[str, int]) -> Figure:
    """One confusion matrix per design, summed over runs; colour shows the errors only."""
    n = len(matrices)
    fig, axes = _subplots(1, n, figsize=(4.6 * n, 4.6), squeeze=False, layout="constrained")
    for ax, (name, m) in zip(axes[0], matrices.items(), strict=True):
        k = len(m)
        errors = m.astype(float).copy()
        errors[errors == 0] = np.nan  # no colour where nothing went wrong
        np.fill_diagonal(errors, np.nan)
        top = max(1.0, np.nanmax(errors))
        ax.imshow(np.diag(np.diag(m)) > 0, cmap="Greys", vmin=0, vmax=4)
        ax.imshow(errors, cmap="Reds", vmin=0, vmax=top)
        for r in range(k):
            for c in range(k):
                if m[r, c]:
                    dark = r != c and m[r, c] > 0.6 * top
                    ax.text(
                        c,
                        r,
                        str(m[r, c]),
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if dark else "black",
                    )
        total = int(m.sum() - np.trace(m))
        ax.set_title(f"{name}: {total} errors over {runs[name]} run(s)", fontsize=10)
        ax.set(xlabel="predicted digit", ylabel="true digit", xticks=range(k), yticks=range(k))
    fig.suptitle("Confusion matrices on the test set (red: errors; grey diagonal: correct)")
    return fig


def per_class_error(errors: Mapping[str, np.ndarray]) -> Figure:
    """Test error per true digit for each design (mean over runs), as grouped bars."""
    fig, ax = _subplots(1, 1, figsize=(10, 3.8), layout="constrained")
    palette = colors(list(errors))
    width = 0.8 / max(1, len(errors))
    for j, (name, e) in enumerate(errors.items()):
        x = np.arange(len(e)) + (j - (len(errors) - 1) / 2) * width
        ax.bar(x, e, width, color=palette[name], label=name)
    ax.set(
        xlabel="true digit", ylabel="test error (%)", xticks=range(len(next(iter(errors.values()))))
    )
    ax.set_title("Test error per digit (mean over runs)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    return fig
