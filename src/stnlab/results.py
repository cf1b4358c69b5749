"""An experiment's numbers: results.csv rows, test-accuracy statistics and summary.md."""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "RESULT_COLUMNS",
    "Stats",
    "best_per_budget",
    "format_stats",
    "read_evaluations",
    "read_results",
    "summarize",
    "summary_markdown",
    "write_results",
]

RESULT_COLUMNS = ("model", "epochs", "seed", "valid_accuracy", "test_accuracy", "train_seconds")


def read_evaluations(run_dir: str | os.PathLike) -> dict[tuple[int, str], dict[str, Any]]:
    """The last ``eval`` record of each (epoch, split) in a run's metrics.jsonl."""
    found: dict[tuple[int, str], dict[str, Any]] = {}
    path = Path(run_dir) / "metrics.jsonl"
    if path.is_file():
        for line in path.read_text().splitlines():
            rec = json.loads(line) if line.strip() else {}
            if rec.get("event") == "eval":
                found[(int(rec["epoch"]), rec["split"])] = rec
    return found


def write_results(path: str | os.PathLike, rows: Sequence[dict[str, Any]]) -> None:
    """results.csv: the protocol's columns, then the run folder each row comes from."""
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[*RESULT_COLUMNS, "run"])
        writer.writeheader()
        for row in rows:
            writer.writerow({k: round(v, 6) if isinstance(v, float) else v for k, v in row.items()})


def read_results(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Rows of a results.csv with numbers parsed."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        row["epochs"], row["seed"] = int(row["epochs"]), int(row["seed"])
        for key in ("valid_accuracy", "test_accuracy", "train_seconds"):
            row[key] = float(row[key])
    return rows


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


def summary_markdown(rows: Sequence[dict[str, Any]], title: str, notes: Sequence[str] = ()) -> str:
    """summary.md: mean ± std and min–max test accuracy per model and budget, best per budget."""
    stats = summarize(rows)
    names = list(dict.fromkeys(r["model"] for r in rows))
    budgets = sorted({int(r["epochs"]) for r in rows})
    best = best_per_budget(stats)
    lines = [f"# {title}", "", *notes, ""] if notes else [f"# {title}", ""]
    lines += [
        "Test accuracy (%): mean ± standard deviation over runs (min–max); the best mean is bold.",
        "",
        "| epochs | " + " | ".join(names) + " | best |",
        "|---:|" + "---|" * len(names) + "---|",
    ]
    for b in budgets:
        cells = []
        for m in names:
            text = format_stats(stats[(m, b)]) if (m, b) in stats else "–"
            cells.append(f"**{text}**" if best.get(b) == m else text)
        lines.append(f"| {b} | " + " | ".join(cells) + f" | {best.get(b, '–')} |")
    lines += ["", "Mean training time per run (s) up to each budget:", ""]
    lines += ["| epochs | " + " | ".join(names) + " |", "|---:|" + "---:|" * len(names)]
    for b in budgets:
        cells = [f"{stats[(m, b)].seconds:.0f}" if (m, b) in stats else "–" for m in names]
        lines.append(f"| {b} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
