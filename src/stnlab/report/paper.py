"""The STN paper's test errors beside ours: Jaderberg et al., "Spatial Transformer Networks"
(2015), Table 1 (distorted MNIST) and section 4.1 (translated and cluttered MNIST, 60×60).

Our error of a design in a cell comes with its 95% interval (:class:`GridEstimates`); the
comparison says whether the paper's value lies inside it and the ratio ours / paper.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from matplotlib.figure import Figure

from stnlab.report.figures import colors
from stnlab.report.results import GridEstimates
from stnlab.report.significance import Estimate

__all__ = ["COLUMNS", "PAPER", "Beside", "beside_paper", "paper_error", "paper_figure"]

# Our data variants as the paper's columns: rotated (R), rotated-translated-scaled (RTS),
# projective (P), elastic (E), and the 60×60 translated-and-cluttered layout.
COLUMNS: dict[str, str] = {
    "rotated": "R",
    "rts": "RTS",
    "projective": "P",
    "projective-paper": "P",
    "elastic": "E",
    "60x60-stn": "cluttered",
}
_FAMILY = {"affine": 0, "projective": 1, "tps": 2}  # Aff / Proj / TPS in the paper's table
# Test error (%): design -> column -> one value, or (Aff, Proj, TPS) for a transformer's.
PAPER: dict[str, dict[str, float | tuple[float, float, float]]] = {
    "fcn": {"R": 2.1, "RTS": 5.2, "P": 3.1, "E": 3.2, "cluttered": 13.2},
    "paper-cnn": {"R": 1.2, "RTS": 0.8, "P": 1.5, "E": 1.4, "cluttered": 3.5},
    "st-fcn": {
        "R": (1.2, 1.3, 1.1),
        "RTS": (0.8, 0.9, 0.8),
        "P": (1.5, 1.4, 1.4),
        "E": (2.7, 2.6, 2.4),
        "cluttered": (2.0, float("nan"), float("nan")),  # affine only
    },
    "st-cnn": {
        "R": (0.7, 0.8, 0.7),
        "RTS": (0.5, 0.6, 0.5),
        "P": (0.8, 0.8, 0.8),
        "E": (1.2, 1.3, 1.1),
        "cluttered": (1.7, float("nan"), float("nan")),
    },
}


def paper_error(design: str, variant: str, transform: str) -> float | None:
    """The paper's test error (a fraction) of ``design`` on ``variant`` with ``transform``;
    None where the paper has no such number."""
    value = PAPER.get(design, {}).get(COLUMNS.get(variant, ""))
    if isinstance(value, tuple):
        value = value[_FAMILY[transform]] if transform in _FAMILY else None
    return None if value is None or value != value else value / 100  # nan: not reported


@dataclass(frozen=True)
class Beside:
    """One design in one cell: our test error with its interval, and the paper's."""

    cell: tuple[str, ...]
    design: str
    column: str  # the paper's column (R, RTS, P, E, cluttered), with the family for ST nets
    ours: Estimate
    paper: float

    @property
    def inside(self) -> bool:
        """Whether the paper's value lies in our 95% interval."""
        return self.ours.contains(self.paper)

    @property
    def ratio(self) -> float:
        return self.ours.value / self.paper


def beside_paper(grid: GridEstimates, config: Mapping[str, Any]) -> list[Beside]:
    """Every (cell, design) of ``grid`` that the paper reports, with its number; a cell's
    variant and family come from its axes, else from the experiment's ``config``."""
    out = []
    for cell, errors in grid.errors.items():
        values = dict(zip(grid.axes, cell, strict=True))
        variant = values.get("data.variant", config.get("data", {}).get("variant", ""))
        family = values.get("model.transform", config.get("model", {}).get("transform", ""))
        for design, ours in errors.items():
            paper = paper_error(design, variant, family)
            if paper is not None:
                column = COLUMNS[variant] + (f" {family}" if design.startswith("st-") else "")
                out.append(Beside(cell, design, column, ours, paper))
    return out


def paper_table(rows: Sequence[Beside]) -> tuple[list[str], list[list[str]]]:
    """Header and rows: the paper's column, the design, our error (%) with its interval, the
    paper's, whether it lies inside, and the ratio."""
    header = ["column", "design", "ours (95% interval)", "paper", "inside?", "ours / paper"]
    body = [
        [
            r.column,
            r.design,
            f"{100 * r.ours.value:.2f} ({100 * r.ours.low:.2f}–{100 * r.ours.high:.2f})",
            f"{100 * r.paper:.1f}",
            "yes" if r.inside else "no",
            f"{r.ratio:.2f}",
        ]
        for r in rows
    ]
    return header, body


def paper_markdown(rows: Sequence[Beside], scale: str) -> str:
    """summary.md's section on the paper (``scale``: which schedule these runs had)."""
    header, body = paper_table(rows)
    lines = [
        "## Beside the paper",
        "",
        "Test error (%) after the last budget beside Jaderberg et al. (2015), Table 1 and "
        f"section 4.1; {scale}",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(cells) + " |" for cells in body),
    ]
    return "\n".join(lines) + "\n"


def paper_figure(rows: Sequence[Beside]) -> Figure:
    """Our error against the paper's, one point per (cell, design) with our interval as its
    bar; on the diagonal we match the paper."""
    fig = Figure(figsize=(6.4, 5.6), layout="constrained")
    ax = fig.subplots()
    palette = colors(list(dict.fromkeys(r.design for r in rows)))
    for design in palette:
        mine = [r for r in rows if r.design == design]
        x = [100 * r.paper for r in mine]
        y = [100 * r.ours.value for r in mine]
        err = [[100 * (r.ours.value - r.ours.low) for r in mine]]
        err.append([100 * (r.ours.high - r.ours.value) for r in mine])
        ax.errorbar(x, y, yerr=err, fmt="o", color=palette[design], label=design, capsize=3)
    top = max([100 * max(r.paper, r.ours.high) for r in rows] + [1.0]) * 1.1
    ax.plot([0, top], [0, top], color="0.5", ls="--", lw=0.8)
    ax.set(xlim=(0, top), ylim=(0, top), xlabel="paper's test error (%)")
    ax.set(ylabel="our test error (%), 95% interval")
    ax.set_title("Our errors against the paper's (diagonal: equal)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig
