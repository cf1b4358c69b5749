"""The report's figure of an experiment's grid: test error and error ratio against each axis.

Values along an axis are drawn as categories, in the order the config lists them (a size
preset has no numeric order). Each other combination of the other axes gets its own
panel, so no number is averaged over cells.
"""

from __future__ import annotations

import itertools

from matplotlib.figure import Figure

from stnlab.report.figures import colors
from stnlab.report.results import GridEstimates
from stnlab.report.significance import Estimate

__all__ = ["grid_figure", "panels"]

Panel = tuple[str, str, list[tuple[str, tuple[str, ...]]]]  # axis, other values, (x label, cell)


def panels(grid: GridEstimates) -> list[Panel]:
    """One panel per axis and combination of the other axes' values: the axis, a title
    naming the others' values, and the (value, cell) pairs along the axis."""
    cells = list(grid.errors)
    out = []
    for i, axis in enumerate(grid.axes):
        others = sorted({c[:i] + c[i + 1 :] for c in cells}, key=lambda o: _first(cells, i, o))
        for rest in others:
            along = [(c[i], c) for c in cells if c[:i] + c[i + 1 :] == rest]
            names = [a for j, a in enumerate(grid.axes) if j != i]
            title = ", ".join(f"{a} = {v}" for a, v in zip(names, rest, strict=True))
            out.append((axis, title, along))
    return out


def _first(cells: list[tuple[str, ...]], i: int, rest: tuple[str, ...]) -> int:
    """Where the cells of ``rest`` (the values of all axes but ``i``) first appear."""
    return next(k for k, c in enumerate(cells) if c[:i] + c[i + 1 :] == rest)


def grid_figure(grid: GridEstimates) -> Figure:
    """Top row: each design's test error (%) along an axis, the band its 95% interval;
    bottom row: each later design's error over the first design's (1: equal)."""
    shown = panels(grid)
    fig = Figure(figsize=(4.2 * len(shown), 6.4), layout="constrained")
    axes = fig.subplots(2, len(shown), squeeze=False)
    palette = colors(grid.designs)
    for k, (axis, title, along) in enumerate(shown):
        top, bottom = axes[0, k], axes[1, k]
        x = list(range(len(along)))
        for design in grid.designs:
            _line(
                top, x, [grid.errors[c].get(design) for _, c in along], palette[design], design, 100
            )
            if design != grid.designs[0]:
                ratios = [grid.ratios[c].get(design) for _, c in along]
                _line(bottom, x, ratios, palette[design], f"{design} / {grid.designs[0]}", 1)
        bottom.axhline(1.0, color="0.5", lw=0.8, ls="--")
        for ax in (top, bottom):
            ax.set_xticks(x, [v for v, _ in along])
            ax.set_xlabel(axis)
            ax.grid(alpha=0.3)
        top.set_title(title or f"after {grid.budget} epochs", fontsize=9)
        top.set_ylabel("test error (%)")
        bottom.set_ylabel(f"error over {grid.designs[0]}'s")
        if k == 0:
            top.legend(fontsize=8)
            bottom.legend(fontsize=8)
    return fig


def _line(ax, x: list[int], values: list[Estimate | None], color, label: str, scale: float) -> None:
    """A design's values along an axis with its interval as a band; gaps where it has none."""
    kept = [(i, e) for i, e in itertools.zip_longest(x, values) if e is not None]
    if not kept:
        return
    xs = [i for i, _ in kept]
    ax.plot(xs, [scale * e.value for _, e in kept], marker="o", color=color, label=label)
    lows, highs = [scale * e.low for _, e in kept], [scale * e.high for _, e in kept]
    ax.fill_between(xs, lows, highs, color=color, alpha=0.2, lw=0)
