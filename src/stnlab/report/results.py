"""An experiment's numbers: test-accuracy statistics of results.csv rows, significance of
the differences between designs (from each run's per-sample predictions), and summary.md."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from stnlab.report import significance
from stnlab.runs.experiment_folder import axes_of

if TYPE_CHECKING:
    from stnlab.runs.experiment_folder import ExperimentDir

__all__ = [
    "GridEstimates",
    "Stats",
    "accuracy_series",
    "best_per_budget",
    "compare",
    "correctness",
    "format_stats",
    "grid_cells",
    "grid_estimates",
    "grid_from_rows",
    "grid_markdown",
    "grid_rows",
    "grid_table",
    "ranking",
    "summarize",
    "summary_caption",
    "summary_markdown",
    "summary_table",
]

Comparisons = dict[int, dict[tuple[str, str], significance.Difference]]


@dataclass(frozen=True)
class Stats:
    """Test accuracy over the runs of one model at one budget."""

    runs: int
    mean: float
    std: float  # sample standard deviation (0 for one run)
    min: float
    max: float
    seconds: float  # mean training time


def summarize(rows: Sequence[dict[str, Any]]) -> dict[tuple[str, int], Stats]:
    """Stats of test accuracy per (model, epochs), in the rows' order."""
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["model"], int(row["epochs"])), []).append(row)
    out = {}
    for key, group in groups.items():
        acc = [float(r["test_accuracy"]) for r in group]
        mean = sum(acc) / len(acc)
        var = sum((a - mean) ** 2 for a in acc) / (len(acc) - 1) if len(acc) > 1 else 0.0
        secs = sum(float(r["train_seconds"]) for r in group) / len(group)
        out[key] = Stats(len(acc), mean, math.sqrt(var), min(acc), max(acc), secs)
    return out


def accuracy_series(
    rows: Sequence[dict[str, Any]],
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict[str, np.ndarray]]:
    """Per design: the budgets (B,) and each run's test accuracy in % (R, B); and the mean
    training seconds at each budget (B,): what :func:`figures.comparison` draws."""
    accuracy, seconds = {}, {}
    for m in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == m]
        budgets = sorted({int(r["epochs"]) for r in mine})
        seeds = sorted({r["seed"] for r in mine})
        acc = np.full((len(seeds), len(budgets)), np.nan)
        for r in mine:
            acc[seeds.index(r["seed"]), budgets.index(int(r["epochs"]))] = 100 * r["test_accuracy"]
        stats = summarize(mine)
        accuracy[m] = (np.array(budgets), acc)
        seconds[m] = np.array([stats[(m, b)].seconds for b in budgets])
    return accuracy, seconds


def best_per_budget(stats: dict[tuple[str, int], Stats]) -> dict[int, str]:
    """The model with the highest mean test accuracy at each budget."""
    best: dict[int, str] = {}
    for (model, epochs), s in stats.items():
        if epochs not in best or s.mean > stats[(best[epochs], epochs)].mean:
            best[epochs] = model
    return best


def format_stats(s: Stats) -> str:
    """``98.10 ± 0.21 (97.90–98.30)`` in percent; one run is its value alone, ``98.10``."""
    if s.runs == 1:
        return f"{100 * s.mean:.2f}"
    return f"{100 * s.mean:.2f} ± {100 * s.std:.2f} ({100 * s.min:.2f}–{100 * s.max:.2f})"


def summary_table(
    rows: Sequence[dict[str, Any]],
) -> tuple[list[str], list[list[str]], set[tuple[int, int]]]:
    """The test-accuracy table: header, one row of cells per budget (mean ± std (min–max) per
    model, then the best model), and the (row, column) cells of each budget's best mean."""
    stats = summarize(rows)
    names = list(dict.fromkeys(r["model"] for r in rows))
    best = best_per_budget(stats)
    body, bold = [], set()
    for i, b in enumerate(sorted({int(r["epochs"]) for r in rows})):
        cells = [str(b)]
        for j, m in enumerate(names):
            cells.append(format_stats(stats[(m, b)]) if (m, b) in stats else "–")
            if best.get(b) == m:
                bold.add((i, j + 1))
        body.append([*cells, best.get(b, "–")])
    return ["epochs", *names, "best"], body, bold


def summary_caption(rows: Sequence[dict[str, Any]]) -> str:
    """What the cells of :func:`summary_table` hold, for these rows."""
    if max(s.runs for s in summarize(rows).values()) == 1:
        return "Test accuracy (%) of one run per design; the best at each budget is bold."
    return (
        "Test accuracy (%): mean ± standard deviation over runs (min–max); the best mean at "
        "each budget is bold (best by the mean, not necessarily by a significant margin)."
    )


def correctness(folder: ExperimentDir, rows: Sequence[dict[str, Any]]) -> dict[int, dict]:
    """Per budget and design, (runs, N) bools: each run's test predictions == labels."""
    found: dict[int, dict[str, list]] = {}
    for row in rows:
        predictions = folder.run(row["run"]).predictions()
        guessed, _ = predictions.at(int(row["epochs"]))
        found.setdefault(int(row["epochs"]), {}).setdefault(row["model"], []).append(
            guessed == predictions.labels
        )
    return {b: {m: np.stack(runs) for m, runs in by.items()} for b, by in found.items()}


def compare(folder: ExperimentDir, rows: Sequence[dict[str, Any]]) -> Comparisons:
    """Every pair of designs at every budget: the difference in test accuracy and its interval."""
    return {b: significance.compare_designs(by) for b, by in correctness(folder, rows).items()}


def ranking(rows: Sequence[dict[str, Any]], comparisons: Comparisons) -> tuple[int, str]:
    """The last budget and the designs' ranking there, "within noise" where that is the truth."""
    top = max(int(r["epochs"]) for r in rows)
    means = {m: s.mean for (m, b), s in summarize(rows).items() if b == top}
    return top, significance.ranking_sentence(means, comparisons[top])


def summary_markdown(
    rows: Sequence[dict[str, Any]],
    title: str,
    notes: Sequence[str] = (),
    comparisons: Comparisons | None = None,
) -> str:
    """summary.md: test accuracy per model and budget, the ranking, the differences' intervals
    (or, before any run has finished, a line that says so)."""
    if not rows:
        return "\n".join([f"# {title}", "", *notes, "", "No run has finished yet."]) + "\n"
    header, body, bold = summary_table(rows)
    names = header[1:-1]
    lines = [f"# {title}", "", *notes, ""] if notes else [f"# {title}", ""]
    if comparisons and len(names) > 1:
        top, sentence = ranking(rows, comparisons)
        lines += [f"After {top} epochs: {sentence}.", ""]
    lines += [
        summary_caption(rows),
        "",
        "| " + " | ".join(header) + " |",
        "|---:|" + "---|" * len(names) + "---|",
    ]
    for i, cells in enumerate(body):
        shown = [f"**{c}**" if (i, j) in bold else c for j, c in enumerate(cells)]
        lines.append("| " + " | ".join(shown) + " |")
    stats = summarize(rows)
    lines += ["", "Mean training time per run (s) up to each budget:", ""]
    lines += ["| epochs | " + " | ".join(names) + " |", "|---:|" + "---:|" * len(names)]
    for b in sorted({int(r["epochs"]) for r in rows}):
        cells = [f"{stats[(m, b)].seconds:.0f}" if (m, b) in stats else "–" for m in names]
        lines.append(f"| {b} | " + " | ".join(cells) + " |")
    if comparisons and len(names) > 1:
        lines += ["", "## Are the differences real?", ""]
        lines.append(significance.significance_markdown(comparisons).rstrip("\n"))
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------ the grid's cells


def grid_cells(rows: Sequence[dict[str, Any]]) -> dict[tuple[str, ...], list[dict[str, Any]]]:
    """The rows of each cell of the grid (its axes' values, as results.csv writes them)."""
    axes, cells = axes_of(rows), {}
    for row in rows:
        cells.setdefault(tuple(row[a] for a in axes), []).append(row)
    return cells


@dataclass(frozen=True)
class GridEstimates:
    """The designs across the grid's cells after the last budget: each design's test error
    and the error ratio of every later design to the first, with their intervals."""

    axes: list[str]
    budget: int
    designs: list[str]
    errors: dict[tuple[str, ...], dict[str, significance.Estimate]]  # cell -> design -> error
    ratios: dict[tuple[str, ...], dict[str, significance.Estimate]]  # cell -> design -> ratio


def grid_estimates(folder: ExperimentDir, rows: Sequence[dict[str, Any]]) -> GridEstimates:
    """:class:`GridEstimates` from results rows with axes and the runs' predictions."""
    top = max(int(r["epochs"]) for r in rows)
    designs = list(dict.fromkeys(r["model"] for r in rows))
    errors, ratios = {}, {}
    for cell, cell_rows in grid_cells(rows).items():
        correct = correctness(folder, [r for r in cell_rows if int(r["epochs"]) == top]).get(
            top, {}
        )
        errors[cell] = {m: significance.error_interval(c) for m, c in correct.items()}
        first = correct.get(designs[0])
        ratios[cell] = {
            m: significance.error_ratio(c, first)
            for m, c in correct.items()
            if m != designs[0] and first is not None
        }
    return GridEstimates(axes_of(rows), top, designs, errors, ratios)


def grid_rows(grid: GridEstimates) -> list[dict[str, Any]]:
    """The estimates as grid.csv rows (fractions; no ratio for the first design)."""
    rows = []
    for cell, errors in grid.errors.items():
        for m, e in errors.items():
            r = grid.ratios[cell].get(m)
            rows.append(
                {
                    **dict(zip(grid.axes, cell, strict=True)),
                    "model": m,
                    "epochs": grid.budget,
                    "error": e.value,
                    "error_low": e.low,
                    "error_high": e.high,
                    "ratio": r.value if r else "",
                    "ratio_low": r.low if r else "",
                    "ratio_high": r.high if r else "",
                }
            )
    return rows


def grid_from_rows(rows: Sequence[dict[str, Any]]) -> GridEstimates:
    """The estimates read back from grid.csv rows."""
    axes = axes_of(rows)
    errors: dict[tuple[str, ...], dict[str, significance.Estimate]] = {}
    ratios: dict[tuple[str, ...], dict[str, significance.Estimate]] = {}
    for row in rows:
        cell = tuple(row[a] for a in axes)
        errors.setdefault(cell, {})[row["model"]] = significance.Estimate(
            row["error"], row["error_low"], row["error_high"]
        )
        ratios.setdefault(cell, {})
        if row["ratio"] is not None:
            ratios[cell][row["model"]] = significance.Estimate(
                row["ratio"], row["ratio_low"], row["ratio_high"]
            )
    designs = list(dict.fromkeys(r["model"] for r in rows))
    return GridEstimates(axes, rows[0]["epochs"], designs, errors, ratios)


def grid_table(grid: GridEstimates) -> tuple[list[str], list[list[str]]]:
    """Per cell: each design's test error (%) with its 95% interval, and the error ratio of
    every other design to the first, with its interval."""
    names = grid.designs
    header = [
        *grid.axes,
        *(f"{m} error %" for m in names),
        *(f"{m} / {names[0]}" for m in names[1:]),
    ]
    body = []
    for cell, errors in grid.errors.items():
        shown = [_shown(errors.get(m), 100) for m in names]
        shown += [_shown(grid.ratios[cell].get(m), 1) for m in names[1:]]
        body.append([*cell, *shown])
    return header, body


def _shown(e: significance.Estimate | None, scale: float) -> str:
    """``4.10 (3.20–5.05)``; "–" for none."""
    if e is None:
        return "–"
    return f"{scale * e.value:.2f} ({scale * e.low:.2f}–{scale * e.high:.2f})"


def grid_markdown(
    folder: ExperimentDir,
    rows: Sequence[dict[str, Any]],
    grid: GridEstimates | None,
    title: str,
    notes: Sequence[str] = (),
) -> str:
    """summary.md of an experiment with axes: the designs across the cells at the last budget
    (``grid``), then each cell's own summary (its table and its designs compared within it)."""
    if not rows or grid is None:
        return summary_markdown(rows, title, notes)
    header, body = grid_table(grid)
    lines = [f"# {title}", "", *notes, "", "## Across the grid", ""]
    lines += [
        f"After {grid.budget} epochs: test error (%) of each design with its 95% interval "
        "(over test images and runs), and its error over the first design's, with its "
        "interval (below 1: fewer errors).",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(cells) + " |" for cells in body),
    ]
    axes = axes_of(rows)
    for cell, cell_rows in grid_cells(rows).items():
        name = ", ".join(f"{a} = {v}" for a, v in zip(axes, cell, strict=True))
        part = summary_markdown(cell_rows, name, comparisons=compare(folder, cell_rows))
        lines += ["", *("#" + line if line.startswith("#") else line for line in part.splitlines())]
    return "\n".join(lines) + "\n"
