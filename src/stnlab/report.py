"""An experiment folder -> PNG figures under DIR/figures and a self-contained DIR/report.html.

Reads only what :func:`stnlab.runner.run_experiment` leaves behind: results.csv,
experiment.json, the data file and each run's metrics.jsonl, predictions.npz and
final weights. Images are embedded as base64, so the page opens without a server.

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
import torch
import torch.nn.functional as F

from stnlab import figures, results

__all__ = ["FIGURES", "ReportError", "final_runs", "outlines", "sample_design", "write_report"]

SAMPLES = 8  # test images in the sampled-STN figure
FIGURES = ("comparison", "stn_samples", "hardest", "per_class_error", "confusion", "curves")
_BORDER = 48  # points per side of a grid outline


class ReportError(ValueError):
    """An experiment folder a report cannot be made from, with a one-line reason."""


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


def _history(run_dirs: list[Path]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Training loss per epoch and validation accuracy (%) per evaluation, over runs."""
    loss, valid = [], []
    for run in run_dirs:
        lines = (run / "metrics.jsonl").read_text().splitlines()
        recs = [json.loads(line) for line in lines if line.strip()]
        loss.append(sorted({r["epoch"]: r["loss"] for r in recs if r["event"] == "train"}.items()))
        evals = [r for r in recs if r["event"] == "eval" and r["split"] == "valid"]
        valid.append(sorted({r["epoch"]: 100 * r["accuracy"] for r in evals}.items()))
    return {"loss": _stack(loss), "valid": _stack(valid)}


def _predictions(run_dirs: list[Path]) -> dict[str, np.ndarray]:
    """labels (N,), predictions and confidence (R, N) of the runs' final test evaluations."""
    loaded = [np.load(run / "predictions.npz") for run in run_dirs]
    return {
        "labels": loaded[0]["labels"],
        "predictions": np.stack([p["predictions"] for p in loaded]),
        "confidence": np.stack([p["confidence"] for p in loaded]),
    }


def _border(grid: torch.Tensor) -> torch.Tensor:
    """The outline of a sampling grid (N, K, K, 2), walked around once: (N, 4K - 4, 2)."""
    top, right = grid[:, 0, :-1], grid[:, :-1, -1]
    bottom, left = grid[:, -1, 1:].flip(1), grid[:, 1:, 0].flip(1)
    return torch.cat([top, right, bottom, left], dim=1)


@torch.no_grad()
def outlines(model: torch.nn.Module, thetas: Sequence[torch.Tensor], image_size) -> list:
    """Each transformer's output border in input-image pixels, (N, M, 2) arrays of (x, y).

    A transformer whose input is the image (same channels and size) is drawn as is; one
    that warps feature maps (MSTN's second) is mapped back through the previous warp,
    since a 'same'-padded conv block keeps normalised coordinates in place.
    """
    h, w = image_size
    c = model.config["in_channels"]
    found, previous = [], None  # previous: the last image-space fine grid (N, K, K, 2)
    for st, theta in zip(model.transformers, thetas, strict=True):
        fine = st.transform.grid(theta.float(), (_BORDER, _BORDER))  # (N, K, K, 2), normalised
        on_image = st.in_channels == c and tuple(st.in_size) == (h, w)
        if not on_image and previous is not None:  # sample the previous grid at these points
            field = previous.permute(0, 3, 1, 2)  # (N, 2, K, K)
            fine = F.grid_sample(field, fine, align_corners=False, padding_mode="border")
            fine = fine.permute(0, 2, 3, 1)  # (N, K, K, 2)
        previous = fine
        xy = _border(fine)  # (N, M, 2) normalised (x, y)
        px = torch.stack([(xy[..., 0] + 1) * w / 2 - 0.5, (xy[..., 1] + 1) * h / 2 - 0.5], -1)
        found.append(px.numpy())
    return found


def _sample_design(name: str, run: Path, x: torch.Tensor) -> figures.Sampled | None:
    """Load a run's model and pass the sampled images through its transformers."""
    from stnlab import models

    return sample_design(name, models.load(run), x)


@torch.no_grad()
def sample_design(name: str, model: torch.nn.Module, x: torch.Tensor) -> figures.Sampled | None:
    """Each transformer's output, grid outline and the prediction for images x (N, C, H, W).

    ``None`` for a model without transformers (``cnn``).
    """
    model.eval()
    if not len(getattr(model, "transformers", [])):
        return None
    stages = model.transform(x)
    outputs = [warped.float().mean(1).numpy() for warped, _ in stages]  # (N, H', W') each
    titles = [
        ("output" if len(stages) == 1 else f"stage {k + 1}")
        + ("" if warped.shape[1] == 1 else f"\n(mean of {warped.shape[1]} maps)")
        for k, (warped, _) in enumerate(stages)
    ]
    lines = outlines(model, [theta for _, theta in stages], x.shape[2:])
    predictions = model(x).argmax(1).numpy()
    return figures.Sampled(name, outputs, lines, predictions, titles)


def _data_path(out: Path, meta: dict[str, Any]) -> Path | None:
    for p in (meta.get("data_path"), out / "data.npz"):
        if p and Path(p).is_file():
            return Path(p)
    return None


def _encode(fig, path: Path) -> str:
    """Save ``fig`` as PNG at ``path``; return the bytes as base64 for embedding."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    data = buf.getvalue()
    path.write_bytes(data)
    return base64.b64encode(data).decode("ascii")


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
    stats = results.summarize(rows)
    names = list(dict.fromkeys(r["model"] for r in rows))
    best = results.best_per_budget(stats)
    body, bold = [], set()
    for i, b in enumerate(sorted({r["epochs"] for r in rows})):
        cells = [str(b)]
        for j, m in enumerate(names):
            cells.append(results.format_stats(stats[(m, b)]) if (m, b) in stats else "–")
            if best.get(b) == m:
                bold.add((i, j + 1))
        body.append([*cells, best.get(b, "–")])
    return _table(["epochs", *names, "best"], body, bold)


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
    """Collects the report's HTML parts and saves each figure beside it."""

    def __init__(self, fig_dir: Path):
        self.fig_dir, self.parts, self.saved = fig_dir, [], []

    def add(self, name: str, fig, caption: str) -> None:
        data = _encode(fig, self.fig_dir / f"{name}.png")
        self.saved.append(self.fig_dir / f"{name}.png")
        self.parts.append(_figure(data, name, caption))

    def html(self, text: str) -> None:
        self.parts.append(text)


def _sampled_section(page: _Page, runs: dict[str, list[Path]], data, samples: int) -> None:
    page.html("<h2>Sampled STN results</h2>")
    if data is None:
        page.html("<p>The data file is missing, so no images can be shown.</p>")
        return
    rng = np.random.default_rng(0)
    index = np.sort(
        rng.choice(len(data.y_test), size=min(samples, len(data.y_test)), replace=False)
    )
    x = data.x_test[index]
    designs = []
    for name, paths in runs.items():
        try:
            found = _sample_design(name, paths[0], x)
        except (OSError, ValueError) as exc:  # e.g. weights of an older version of the model
            page.html(f"<p>Could not load {html.escape(name)}: {html.escape(str(exc))}</p>")
            continue
        if found is not None:
            designs.append(found)
    if not designs:
        page.html("<p>No design in this experiment has a spatial transformer to show.</p>")
        return
    images, labels = x[:, 0].numpy(), data.y_test[index].numpy()
    page.add(
        "stn_samples",
        figures.sampled(images, labels, designs),
        f"{len(index)} fixed test images (rows). For each design with transformers "
        "(first seed's final model): the input with the outline of each transformer's "
        "sampling grid (solid: first; dashed: second, mapped back to the image), then "
        "what each transformer produced; a transformer on feature maps is shown as the "
        "mean over channels. The number is the design's prediction.",
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
        y, yhat = p["labels"][None].repeat(len(p["predictions"]), 0), p["predictions"]
        matrices[m] = np.bincount((y * k + yhat).ravel(), minlength=k * k).reshape(k, k)
        per_run = [
            (yhat[r][labels == c] != c).mean() if (labels == c).any() else np.nan
            for r in range(len(yhat))
            for c in range(k)
        ]
        errors[m] = 100 * np.nanmean(np.array(per_run).reshape(len(yhat), k), axis=0)
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


def write_report(out: str | os.PathLike, samples: int = SAMPLES) -> Path:
    """Write DIR/figures/*.png and DIR/report.html for the experiment in ``out``.

    Raises:
        ReportError: ``out`` has no results.csv, or its runs' files are missing.
    """
    out = Path(out)
    if not (out / "results.csv").is_file():
        raise ReportError(f"{out} has no results.csv (run `stnlab experiment --out {out}` first)")
    rows = results.read_results(out / "results.csv")
    if not rows:
        raise ReportError(f"{out / 'results.csv'} has no rows: no run has finished")
    meta_path = out / "experiment.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    runs = {m: [out / "runs" / r for r in names] for m, names in final_runs(rows).items()}
    missing = [str(p) for ps in runs.values() for p in ps if not (p / "predictions.npz").is_file()]
    if missing:
        raise ReportError(f"run(s) without predictions.npz: {', '.join(missing)}")
    data_path = _data_path(out, meta)
    data = None
    if data_path is not None:
        from stnlab.data import load

        data = load(data_path)
    (out / "figures").mkdir(exist_ok=True)
    for name in FIGURES:  # a figure this report cannot make must not survive from an older one
        (out / "figures" / f"{name}.png").unlink(missing_ok=True)
    page = _Page(out / "figures")

    page.html("<h2>Comparison of network results</h2>")
    page.add(
        "comparison",
        _comparison(rows),
        "Test accuracy of each design after each epoch budget: the line is the mean over "
        "runs (seeds), the band spans the worst to the best run. Right: the same against "
        "the mean training time per run.",
    )
    page.html(
        "<p>Test accuracy (%): mean ± standard deviation over runs (min–max); the best "
        "mean at each budget is bold.</p>" + _summary_table(rows)
    )
    _sampled_section(page, runs, data, samples)
    _hardest_section(page, {m: _predictions(ps) for m, ps in runs.items()}, data)
    page.html("<h2>Training curves</h2>")
    page.add(
        "curves",
        figures.curves({m: _history(ps) for m, ps in runs.items()}),
        "Training loss per epoch (log scale when it spans a factor of 10) and validation "
        "accuracy at each evaluation, for each design's longest runs: mean over runs, "
        "band = min–max.",
    )
    path = out / "report.html"
    path.write_text(_html(out, meta, rows, page.parts))
    return path


def _html(out: Path, meta: dict[str, Any], rows, parts: list[str]) -> str:
    config = meta.get("config", {})
    name = config.get("name", out.name)
    n_runs = len({r["run"] for r in rows})
    how = (
        "budget reuse (one run per model and seed, read at every budget)"
        if meta.get("reuse")
        else "separate runs per budget"
    )
    data = config.get("data", {})
    data_text = data.get("path") or (
        f"{data.get('variant', '?')} Cluttered MNIST from {data.get('source', '?')} digits, "
        + "/".join(map(str, data.get("sizes", [])))
    )
    designs = ", ".join(dict.fromkeys(r["model"] for r in rows))
    when = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    header = (
        f"<h1>{html.escape(name)}: Spatial Transformer Networks on Cluttered MNIST</h1>"
        f'<p class="meta">{n_runs} runs of {html.escape(designs)}; '
        f"{html.escape(how)}. Data: {html.escape(str(data_text))}. Made {when}. "
        'Files: <a href="summary.md">summary.md</a>, <a href="results.csv">results.csv</a>, '
        '<a href="figures/">figures/</a>.</p>'
    )
    stats = results.summarize(rows)
    top = max(r["epochs"] for r in rows)
    ranked = sorted((s.mean, m) for (m, b), s in stats.items() if b == top)[::-1]
    ranking = " &gt; ".join(f"<b>{html.escape(m)}</b> {100 * acc:.2f}%" for acc, m in ranked)
    header += f'<p class="lead">After {top} epochs (mean test accuracy): {ranking}</p>'
    config_text = html.escape(json.dumps(config, indent=2)) if config else "(no experiment.json)"
    footer = f"<h2>Configuration</h2><pre><code>{config_text}</code></pre>"
    body = header + "".join(parts) + footer
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(name)} report</title><style>{_CSS}</style></head>"
        f"<body><main>{body}</main></body></html>\n"
    )
