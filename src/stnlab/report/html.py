"""An experiment folder -> PNG figures under DIR/figures and a self-contained DIR/report.html.

Reads only what :func:`stnlab.experiment.runner.run_experiment` leaves behind (through
:mod:`stnlab.runs`): results.csv, experiment.json, the data
file and each final run's metrics, predictions and weights. Everything is read and
checked before anything is written. Images are embedded as base64, so the page opens
without a server. What the page shows, section by section, is declared in
:mod:`stnlab.report.sections`.

Example:
    >>> write_report("runs/demo")  # doctest: +SKIP
    PosixPath('runs/demo/report.html')
"""

from __future__ import annotations

import base64
import datetime
import html
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from stnlab import models
from stnlab.config import REPORT_SAMPLES, ReportError
from stnlab.data import describe, load
from stnlab.report import paper, results
from stnlab.report.introspect import sample_design
from stnlab.report.sections import FIGURES, SECTIONS, Inputs, Shown
from stnlab.runs import EvalRecord, ExperimentDir, RunDir, ThetaRecord, TrainRecord
from stnlab.runs.experiment_folder import axes_of

__all__ = ["FIGURES", "final_runs", "write_report"]


def final_runs(rows: Sequence[dict[str, Any]]) -> dict[str, list[str]]:
    """Per design, the run folder with the most epochs for each seed (ordered by seed)."""
    best: dict[tuple[str, int], dict[str, Any]] = {}
    for r in rows:
        key = (r["model"], r["seed"])
        if key not in best or r["epochs"] > best[key]["epochs"]:
            best[key] = r
    out: dict[str, list[str]] = {}
    for (model, _), r in sorted(best.items(), key=lambda kv: kv[0][1]):
        out.setdefault(model, []).append(r["run"])
    return {m: out[m] for m in dict.fromkeys(r["model"] for r in rows)}


def _stack(series: list[list[tuple[int, float]]]) -> tuple[np.ndarray, np.ndarray]:
    """Runs' (epoch, value) lists -> common epochs (E,) and values (R, E)."""
    common = sorted(set.intersection(*(set(e for e, _ in s) for s in series)))
    values = [[dict(s)[e] for e in common] for s in series]
    return np.array(common), np.array(values, dtype=float).reshape(len(series), len(common))


def _history(runs: list[RunDir]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Training loss per epoch and validation accuracy (%) per evaluation, over runs."""
    loss, valid = [], []
    for run in runs:
        recs = run.records()
        loss.append(sorted({r.epoch: r.loss for r in recs if isinstance(r, TrainRecord)}.items()))
        evals = [r for r in recs if isinstance(r, EvalRecord) and r.split == "valid"]
        valid.append(sorted({r.epoch: 100 * r.accuracy for r in evals}.items()))
    return {"loss": _stack(loss), "valid": _stack(valid)}


def _predictions(runs: list[RunDir]) -> dict[str, np.ndarray]:
    """labels (N,), predictions and confidence (R, N) of the runs' final test evaluations."""
    loaded = [run.predictions() for run in runs]
    return {
        "labels": loaded[0].labels,
        "predictions": np.stack([p.predictions[-1] for p in loaded]),
        "confidence": np.stack([p.confidence[-1] for p in loaded]),
    }


def _png(fig: Figure) -> bytes:
    """The figure as PNG bytes, at the report's resolution."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()


_CSS = """
body{font:15px/1.5 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#f6f7f9;
color:#1d1d1f}main{max-width:1180px;margin:auto;padding:24px}h1{margin:0 0 4px}
.lead{font-size:18px;background:#fff;border-left:4px solid #1f77b4;padding:8px 14px}
h2{margin-top:36px;border-bottom:2px solid #dde1e6;padding-bottom:4px}.meta{color:#555}
figure{background:#fff;border:1px solid #dde1e6;border-radius:8px;padding:12px;margin:14px 0}
figure img{max-width:100%;height:auto;display:block;margin:auto}figcaption{color:#444;
margin-top:8px;font-size:14px}table{border-collapse:collapse;background:#fff;margin:10px 0;
font-variant-numeric:tabular-nums}th,td{border:1px solid #dde1e6;padding:4px 10px;text-align:right}
th{background:#eef1f4}td:first-child,th:first-child{text-align:left}code{background:#eef1f4;
padding:1px 4px;border-radius:4px}
"""


def _figure(png: bytes, alt: str, caption: str) -> str:
    """A figure element with the PNG embedded, so the page needs no other file."""
    data = base64.b64encode(png).decode("ascii")
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'
        f"<figcaption>{caption}</figcaption></figure>"
    )


def _body(found: Inputs) -> tuple[str, dict[str, bytes]]:
    """Every section's HTML, figures embedded, and the figures' PNG bytes by name."""
    parts, pngs = [], {}
    for section in SECTIONS:
        for part in section.show(found):
            if isinstance(part, Shown):
                pngs[part.name] = png = _png(part.figure)
                part = _figure(png, part.name, part.caption)
            parts.append(part)
    return "".join(parts), pngs


def _read(folder: ExperimentDir, samples: int, cell: str | None = None) -> Inputs:
    """Everything the sections draw from (see :class:`stnlab.report.sections.Inputs`)."""
    rows = folder.results()
    if not rows:
        raise ReportError(f"{folder.file('results.csv')} has no rows: no run has finished")
    record = folder.record()
    if record is None:
        raise ReportError(f"{folder.path} has no experiment.json (is it an experiment folder?)")
    estimates = results.grid_estimates(folder, rows)
    grid, shown = (estimates, "") if axes_of(rows) else (None, "")
    if grid is not None:
        shown, rows = _cell(rows, cell)
    runs = {m: [folder.run(r) for r in names] for m, names in final_runs(rows).items()}
    found = Inputs(
        rows,
        record,
        runs,
        history={m: _history(r) for m, r in runs.items()},
        theta_history={m: h for m, r in runs.items() if (h := _theta_curves(r)) is not None},
        predictions={m: _predictions(r) for m, r in runs.items()},
        comparisons=results.compare(folder, rows),
        grid=grid,
        cell=shown,
        paper=paper.beside_paper(estimates, record["config"]),
    )
    path = _data_file(folder, record, next(iter(runs.values()))[0])
    if path is not None:
        found.data = load(path)
        _sample(found, samples)
    return found


def _cell(rows: list[dict[str, Any]], wanted: str | None) -> tuple[str, list[dict[str, Any]]]:
    """The cell the report's sections show, named as ``model.size = small, ...``, and its rows:
    ``wanted`` (``AXIS=VALUE,...``, any axes left out free), else the grid's last cell."""
    axes, cells = axes_of(rows), results.grid_cells(rows)
    chosen = list(cells)
    if wanted:
        pairs = [p.partition("=") for p in wanted.split(",")]
        asked = {a.strip(): v.strip() for a, _, v in pairs}
        unknown = [a for a in asked if a not in axes]
        if unknown or any(not sep for _, sep, _ in pairs):
            raise ReportError(f"--cell {wanted!r}: give AXIS=VALUE pairs of the axes {axes}")
        chosen = [c for c in cells if all(c[axes.index(a)] == v for a, v in asked.items())]
        if not chosen:
            known = "; ".join(
                ", ".join(f"{a}={v}" for a, v in zip(axes, c, strict=True)) for c in cells
            )
            raise ReportError(f"--cell {wanted!r} matches no cell with results; cells: {known}")
    cell = chosen[-1]
    return ", ".join(f"{a} = {v}" for a, v in zip(axes, cell, strict=True)), cells[cell]


def _data_file(folder: ExperimentDir, record: dict[str, Any], run: RunDir) -> str | None:
    """The data file the shown runs trained on, if it is still there."""
    data = run.run_config().data
    generated = data.path is None and not data.published
    mine = folder.data_file_for(data, record["data"]) if generated else None
    found = (p for p in (mine, data.path, record["data_path"]) if p and os.path.isfile(p))
    return next(iter(found), None)


def _sample(found: Inputs, samples: int) -> None:
    """Pass a fixed draw of test images through each design's first final model."""
    y = found.data.y_test
    rng = np.random.default_rng(0)
    found.index = np.sort(rng.choice(len(y), size=min(samples, len(y)), replace=False))
    x = found.data.x_test[found.index]
    for name, runs in found.runs.items():
        design = sample_design(name, models.load(runs[0].path), x)
        if design is not None:
            found.sampled.append(design)


def _theta_curves(runs: list[RunDir]) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Epochs (E,), median area ratio and outside fraction (T, R, E) from the runs' θ
    records; ``None`` when a run recorded none (trained without the statistics)."""
    per_run = [[r for r in run.records() if isinstance(r, ThetaRecord)] for run in runs]
    if not all(per_run):
        return None
    names = list(dict.fromkeys(r.transformer for recs in per_run for r in recs))
    area, outside = [], []
    for name in names:
        for key, out in (("area_ratio_median", area), ("outside_fraction_median", outside)):
            series = [
                sorted({r.epoch: r.figures[key] for r in recs if r.transformer == name}.items())
                for recs in per_run
            ]
            epochs, values = _stack(series)
            out.append(values)
    return epochs, np.stack(area), np.stack(outside)


def write_report(
    out: str | os.PathLike, samples: int = REPORT_SAMPLES, cell: str | None = None
) -> Path:
    """Write DIR/figures/*.png and DIR/report.html for the experiment in ``out``.

    Args:
        out: the experiment folder.
        samples: how many test images the sampled figure shows.
        cell: with a grid, the cell the sections after "Across the grid" show, as
            ``AXIS=VALUE,...`` (default: the last cell).

    Raises:
        UserError: ``out`` has no finished runs, or a file it reads is missing or damaged
            (nothing is written then).
    """
    folder = ExperimentDir(out)
    found = _read(folder, samples, cell)
    body, pngs = _body(found)
    return folder.write_report(_html(folder, found, body), pngs, FIGURES)


def _header(folder: ExperimentDir, found: Inputs) -> str:
    """The title, what was run on which data, and the lead: the designs' ranking."""
    rows = found.rows
    name = found.record["config"].get("name", folder.path.name)
    n_runs = len({r["run"] for r in rows})
    how = (
        "budget reuse (one run per model and seed, read at every budget)"
        if found.record["reuse"]
        else "separate runs per budget"
    )
    designs = ", ".join(dict.fromkeys(r["model"] for r in rows))
    when = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    top, ranking = results.ranking(rows, found.comparisons)
    return (
        f"<h1>{html.escape(name)}: Spatial Transformer Networks on Cluttered MNIST</h1>"
        f'<p class="meta">{n_runs} runs of {html.escape(designs)}; '
        f"{html.escape(how)}. Data: {html.escape(describe(found.record['data']))}. "
        f"Made {when}. "
        'Files: <a href="summary.md">summary.md</a>, <a href="results.csv">results.csv</a>, '
        '<a href="figures/">figures/</a>.</p>'
        f'<p class="lead">After {top} epochs (mean test accuracy): {html.escape(ranking)}</p>'
    )


def _html(folder: ExperimentDir, found: Inputs, body: str) -> str:
    """The whole page: header, the sections' ``body``, and the configuration as run."""
    config = found.record["config"]
    name = config.get("name", folder.path.name)
    footer = (
        f"<h2>Configuration</h2><pre><code>{html.escape(json.dumps(config, indent=2))}</code></pre>"
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(name)} report</title><style>{_CSS}</style></head>"
        f"<body><main>{_header(folder, found)}{body}{footer}</main></body></html>\n"
    )
