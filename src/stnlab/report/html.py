"""An experiment folder -> PNG figures under DIR/figures and a self-contained DIR/report.html.

Reads only what :func:`stnlab.experiment.runner.run_experiment` leaves behind (through
:mod:`stnlab.runs`): results.csv, experiment.json, the data
file and each final run's metrics, predictions and weights. Everything is read and
checked before anything is written. Images are embedded as base64, so the page opens
without a server.

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
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from stnlab import models
from stnlab.config import REPORT_SAMPLES, ReportError
from stnlab.data import describe, load
from stnlab.diagnostics import measure_model
from stnlab.report import figures, results
from stnlab.report import theta_figures as figures_theta
from stnlab.report.introspect import sample_design
from stnlab.runs import ExperimentDir, RunDir
from stnlab.train import monitor
from stnlab.train.evaluation import confusion_matrix, per_class_accuracy

__all__ = ["FIGURES", "final_runs", "write_report"]

FIGURES = (
    "comparison",
    "differences",
    "stn_samples",
    "theta_curves",
    "theta_distribution",
    "hardest",
    "per_class_error",
    "confusion",
    "curves",
)


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
        loss.append(sorted({r["epoch"]: r["loss"] for r in recs if r["event"] == "train"}.items()))
        evals = [r for r in recs if r["event"] == "eval" and r["split"] == "valid"]
        valid.append(sorted({r["epoch"]: 100 * r["accuracy"] for r in evals}.items()))
    return {"loss": _stack(loss), "valid": _stack(valid)}


def _predictions(runs: list[RunDir]) -> dict[str, np.ndarray]:
    """labels (N,), predictions and confidence (R, N) of the runs' final test evaluations."""
    loaded = [run.predictions() for run in runs]
    return {
        "labels": loaded[0].labels,
        "predictions": np.stack([p.predictions[-1] for p in loaded]),
        "confidence": np.stack([p.confidence[-1] for p in loaded]),
    }


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()


def _table(header: Sequence[str], body: Sequence[Sequence[str]], bold: set = frozenset()) -> str:
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


def _summary_table(rows: Sequence[dict[str, Any]]) -> str:
    header, body, bold = results.summary_table(rows)
    return _table(header, body, bold)


def _differences(comparisons: results.Comparisons):
    """The differences figure's input: per pair, budgets and the mean and interval in points."""
    budgets = sorted(comparisons)
    pairs = {}
    for a, b in comparisons[budgets[0]]:
        ds = [comparisons[e][(a, b)] for e in budgets]
        values = [100 * np.array([getattr(d, k) for d in ds]) for k in ("mean", "low", "high")]
        pairs[f"{a} − {b}"] = (np.array(budgets, dtype=float), *values)
    return figures.differences(pairs)


def _significance_table(comparisons: results.Comparisons) -> str:
    body = [
        [
            str(e),
            f"{a} − {b}",
            f"{100 * d.mean:+.2f}",
            f"[{100 * d.low:.2f}, {100 * d.high:.2f}]",
            f"{d.runs[0]} vs {d.runs[1]}",
            "significant" if d.called else "within noise",
        ]
        for e in sorted(comparisons)
        for (a, b), d in comparisons[e].items()
    ]
    return _table(["epochs", "difference", "points", "95% interval", "runs", "verdict"], body)


def _comparison(rows: Sequence[dict[str, Any]]):
    accuracy, seconds = {}, {}
    for m in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == m]
        budgets = sorted({r["epochs"] for r in mine})
        seeds = sorted({r["seed"] for r in mine})
        acc = np.full((len(seeds), len(budgets)), np.nan)
        for r in mine:
            acc[seeds.index(r["seed"]), budgets.index(r["epochs"])] = 100 * r["test_accuracy"]
        stats = results.summarize(mine)
        accuracy[m] = (np.array(budgets), acc)
        seconds[m] = np.array([stats[(m, b)].seconds for b in budgets])
    return figures.comparison(accuracy, seconds)


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


def _figure(data: str, alt: str, caption: str) -> str:
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'
        f"<figcaption>{caption}</figcaption></figure>"
    )


class _Page:
    """Collects the report's HTML parts and its figures (PNG bytes by name)."""

    def __init__(self):
        self.parts: list[str] = []
        self.figures: dict[str, bytes] = {}

    def add(self, name: str, fig, caption: str) -> None:
        self.figures[name] = png = _png(fig)
        self.parts.append(_figure(base64.b64encode(png).decode("ascii"), name, caption))

    def html(self, text: str) -> None:
        self.parts.append(text)


@dataclass
class _Inputs:
    """Everything a report reads, read and checked before anything is written."""

    rows: list[dict[str, Any]]
    record: dict[str, Any]
    runs: dict[str, list[RunDir]]  # design -> its final runs, in seed order
    history: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]
    predictions: dict[str, dict[str, np.ndarray]]
    comparisons: results.Comparisons  # budget -> (design a, design b) -> a − b
    data: Any = None  # the data set, when its file is still there
    sampled: list[figures.Sampled] = field(default_factory=list)
    index: np.ndarray | None = None  # the test images of the sampled figure


def _read(folder: ExperimentDir, samples: int) -> _Inputs:
    rows = folder.results()
    if not rows:
        raise ReportError(f"{folder.file('results.csv')} has no rows: no run has finished")
    record = folder.record()
    if record is None:
        raise ReportError(f"{folder.path} has no experiment.json (is it an experiment folder?)")
    runs = {m: [folder.run(r) for r in names] for m, names in final_runs(rows).items()}
    found = _Inputs(
        rows,
        record,
        runs,
        {m: _history(r) for m, r in runs.items()},
        {m: _predictions(r) for m, r in runs.items()},
        results.compare(folder, rows),
    )
    path = next((p for p in (record["data_path"], folder.data_file) if os.path.isfile(p)), None)
    if path is not None:
        found.data = load(path)
        _sample(found, samples)
    return found


def _sample(found: _Inputs, samples: int) -> None:
    """Pass a fixed draw of test images through each design's first final model."""
    y = found.data.y_test
    rng = np.random.default_rng(0)
    found.index = np.sort(rng.choice(len(y), size=min(samples, len(y)), replace=False))
    x = found.data.x_test[found.index]
    for name, runs in found.runs.items():
        design = sample_design(name, models.load(runs[0].path), x)
        if design is not None:
            found.sampled.append(design)


def _sampled_section(page: _Page, found: _Inputs) -> None:
    page.html("<h2>Sampled STN results</h2>")
    if found.data is None:
        page.html("<p>The data file is missing, so no images can be shown.</p>")
        return
    if not found.sampled:
        page.html("<p>No design in this experiment has a spatial transformer to show.</p>")
        return
    images, labels = found.data.x_test[found.index, 0].numpy(), found.data.y_test[found.index]
    page.add(
        "stn_samples",
        figures.sampled(images, labels.numpy(), found.sampled),
        f"{len(found.index)} fixed test images (rows). For each design with transformers "
        "(first seed's final model): the input with the outline of each transformer's "
        "sampling grid (solid: first; dashed: second, mapped back to the image), then "
        "what each transformer produced; a transformer on feature maps is shown as the "
        "mean over channels. The number is the design's prediction.",
    )


def _theta_curves(runs: list[RunDir]) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Epochs (E,), median area ratio and outside fraction (T, R, E) from the runs' ``theta``
    records; ``None`` when a run recorded none (trained without the statistics)."""
    per_run = [[r for r in run.records() if r["event"] == monitor.EVENT] for run in runs]
    if not all(per_run):
        return None
    names = list(dict.fromkeys(r["transformer"] for recs in per_run for r in recs))
    area, outside = [], []
    for name in names:
        for key, out in (("area_ratio_median", area), ("outside_fraction_median", outside)):
            series = [
                sorted({r["epoch"]: r[key] for r in recs if r["transformer"] == name}.items())
                for recs in per_run
            ]
            epochs, values = _stack(series)
            out.append(values)
    return epochs, np.stack(area), np.stack(outside)


def _test_thetas(found: _Inputs) -> dict[str, dict[str, np.ndarray]]:
    """Per-sample θ figures on the whole test set for each transformer of each design's
    first final model, by ``design transformer``."""
    parts = {}
    for name, runs in found.runs.items():
        measured = measure_model(models.load(runs[0].path), found.data.x_test)
        for transformer, figs in measured.items():
            parts[monitor.label(name, transformer)] = {k: v.numpy() for k, v in figs.items()}
    return parts


def _theta_section(page: _Page, found: _Inputs) -> None:
    page.html("<h2>What the transformers learned</h2>")
    if not found.sampled and found.data is not None:
        page.html("<p>No design in this experiment has a spatial transformer.</p>")
        return
    history = {m: h for m, runs in found.runs.items() if (h := _theta_curves(runs)) is not None}
    if history:
        page.add(
            "theta_curves",
            figures_theta.theta_curves(history),
            "After each epoch, each transformer's θ on a fixed batch of validation images "
            "(the first <code>theta_images</code>): the median sampled area relative to the "
            "image (below 1 the transformer zooms in, above 1 it zooms out) and the median "
            "share of sampling points that fall off the image and read padding. Mean over "
            "each design's final runs, band = min–max; solid: first transformer, dashed: "
            "second. Grey dotted lines: the collapse limits of the training warnings.",
        )
    else:
        page.html(
            "<p>No run recorded θ statistics (trained with <code>theta_images = 0"
            "</code>, by an older stnlab, or without transformers).</p>"
        )
    if found.data is None:
        page.html("<p>The data file is missing, so θ on the test set cannot be shown.</p>")
        return
    page.add(
        "theta_distribution",
        figures_theta.theta_distribution(_test_thetas(found), found.data.y_test.numpy()),
        f"θ of each transformer on all {len(found.data.y_test)} test images (each design's "
        "first final model): the scale along x and y (below 1: zooms in), the rotation, "
        "and where the output's centre looks, in input pixels from the image's centre, "
        "coloured by the true digit. A transformer on feature maps counts in feature-map "
        "cells.",
    )


def _hardest_section(page: _Page, preds: dict[str, dict[str, np.ndarray]], data) -> None:
    page.html("<h2>Harder digits to identify</h2>")
    labels = next(iter(preds.values()))["labels"]
    if data is not None:
        images = data.x_test[:, 0].numpy()
        fig, shown = figures.hardest(
            images,
            labels,
            {m: p["predictions"] for m, p in preds.items()},
            {m: p["confidence"] for m, p in preds.items()},
        )
        total = sum(len(p["predictions"]) for p in preds.values())
        page.add(
            "hardest",
            fig,
            f"The {len(shown)} test images misclassified by the most of the {total} final "
            "runs (all designs): index, true label, how many runs got it wrong; below, "
            "each run's prediction per design (seed order) and their mean confidence.",
        )
    k = 10
    errors, matrices, runs = {}, {}, {}
    for m, p in preds.items():
        yhat = p["predictions"]  # (R, N)
        per_run = [
            per_class_accuracy(confusion_matrix(labels, yhat[r], k)) for r in range(len(yhat))
        ]
        errors[m] = 100 * (1 - np.nanmean(np.stack(per_run), axis=0))
        matrices[m] = confusion_matrix(np.broadcast_to(labels, yhat.shape), yhat, k)
        runs[m] = len(yhat)
    overall = {m: 100 * (1 - np.trace(c) / c.sum()) for m, c in matrices.items()}
    body = [[m, *(f"{e:.1f}" for e in errs), f"{overall[m]:.1f}"] for m, errs in errors.items()]
    page.html(
        "<p>Test error (%) per true digit, mean over each design's final runs:</p>"
        + _table(["design", *map(str, range(k)), "all"], body)
    )
    page.add(
        "per_class_error",
        figures.per_class_error(errors),
        "The table above as bars: which digits each design gets wrong most often.",
    )
    page.add(
        "confusion",
        figures.confusions(matrices, runs),
        "Confusion matrices of the test set, summed over each design's final runs: row = "
        "true digit, column = prediction. Red cells are errors (darker = more).",
    )


def write_report(out: str | os.PathLike, samples: int = REPORT_SAMPLES) -> os.PathLike:
    """Write DIR/figures/*.png and DIR/report.html for the experiment in ``out``.

    Raises:
        UserError: ``out`` has no finished runs, or a file it reads is missing or damaged
            (nothing is written then).
    """
    folder = ExperimentDir(out)
    found = _read(folder, samples)
    page = _Page()
    page.html("<h2>Comparison of network results</h2>")
    page.add(
        "comparison",
        _comparison(found.rows),
        "Test accuracy of each design after each epoch budget: the line is the mean over "
        "runs (seeds), the band spans the worst to the best run. Right: the same against "
        "the mean training time per run.",
    )
    page.html(
        f"<p>{html.escape(results.summary_caption(found.rows))}</p>" + _summary_table(found.rows)
    )
    if len(found.runs) > 1:
        page.add(
            "differences",
            _differences(found.comparisons),
            "Each pair of designs: the difference in mean test accuracy after each budget, "
            "with a 95% interval from a bootstrap over test images (paired) and runs. A "
            "filled dot is a difference whose interval excludes 0; a hollow one is within "
            "noise: the order of those two designs there may be chance.",
        )
        page.html(_significance_table(found.comparisons))
    _sampled_section(page, found)
    _theta_section(page, found)
    _hardest_section(page, found.predictions, found.data)
    page.html("<h2>Training curves</h2>")
    page.add(
        "curves",
        figures.curves(found.history),
        "Training loss per epoch (log scale when it spans a factor of 10) and validation "
        "accuracy at each evaluation, for each design's longest runs: mean over runs, "
        "band = min–max.",
    )
    return folder.write_report(_html(folder, found, page.parts), page.figures, FIGURES)


def _html(folder: ExperimentDir, found: _Inputs, parts: list[str]) -> str:
    rows, config = found.rows, found.record["config"]
    name = config.get("name", folder.path.name)
    n_runs = len({r["run"] for r in rows})
    how = (
        "budget reuse (one run per model and seed, read at every budget)"
        if found.record["reuse"]
        else "separate runs per budget"
    )
    designs = ", ".join(dict.fromkeys(r["model"] for r in rows))
    when = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    header = (
        f"<h1>{html.escape(name)}: Spatial Transformer Networks on Cluttered MNIST</h1>"
        f'<p class="meta">{n_runs} runs of {html.escape(designs)}; '
        f"{html.escape(how)}. Data: {html.escape(describe(found.record['data']))}. "
        f"Made {when}. "
        'Files: <a href="summary.md">summary.md</a>, <a href="results.csv">results.csv</a>, '
        '<a href="figures/">figures/</a>.</p>'
    )
    top, ranking = results.ranking(rows, found.comparisons)
    header += f'<p class="lead">After {top} epochs (mean test accuracy): {html.escape(ranking)}</p>'
    config_text = html.escape(json.dumps(config, indent=2))
    footer = f"<h2>Configuration</h2><pre><code>{config_text}</code></pre>"
    body = header + "".join(parts) + footer
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(name)} report</title><style>{_CSS}</style></head>"
        f"<body><main>{body}</main></body></html>\n"
    )
