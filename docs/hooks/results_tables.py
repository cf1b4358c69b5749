"""MkDocs hook: the results pages' tables and figures, built from the committed result files.

Each experiment the docs report keeps its small files in ``docs/results/NAME/``
(``experiment.toml``, ``results.csv``, ``summary.md`` and, with a grid, ``grid.csv``; the
report's pictures of trained models, which no result file can redraw, as PNGs), and a page
asks for what it shows with a marker, so every number lives in those files alone:

    <!-- results:table NAME -->          test accuracy per budget and design (per cell)
    <!-- results:figure NAME -->         accuracy against epochs and training time
    <!-- results:grid NAME -->           the designs across the grid: figure and table
                                         (NAME+NAME2: one grid split into several files)
    <!-- results:paper NAME -->          ours beside the STN paper's: figure and table
    <!-- results:ranking NAME -->        summary.md's sentence on the ranking
    <!-- results:section NAME TITLE -->  summary.md's section "## TITLE", as it is
    <!-- results:image NAME FILE.png -->  a picture kept with the result files
"""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

from stnlab.config.presets import load_config
from stnlab.report import figures, grid_figures, paper, results
from stnlab.runs import ExperimentDir
from stnlab.runs.experiment_folder import axes_of

RESULTS = Path(__file__).resolve().parents[1] / "results"
MARK = re.compile(
    r"<!-- results:(table|figure|grid|paper|ranking|section|image) (\S+)(?: (.+?))? -->"
)


def on_page_markdown(markdown: str, page, config, files) -> str:
    return MARK.sub(lambda m: _render(m.group(1), m.group(2), m.group(3)), markdown)


def _render(kind: str, name: str, title: str | None) -> str:
    if kind == "grid":
        grid = results.grid_from_rows(grid_rows(name))
        header, body = results.grid_table(grid)
        image = _image(grid_figures.grid_figure(grid), f"{name}: the designs across the grid")
        return image + "\n\n" + _markdown_table(header, body)
    folder = ExperimentDir(RESULTS / name)
    if not folder.file("results.csv").is_file():
        raise ValueError(f"docs/results/{name}/results.csv is missing (marker results:{kind})")
    if kind == "image":
        return _png(RESULTS / name / (title or ""), f"{name}: {title}")
    rows = folder.results()
    if kind == "table":
        return _tables(rows)
    if kind == "figure":
        fig = figures.comparison(*results.accuracy_series(rows))
        return _image(fig, f"{name}: test accuracy against epochs and training time")
    if kind == "paper":
        config = load_config(folder.file("experiment.toml")).to_dict()
        beside = paper.beside_paper(results.grid_from_rows(folder.grid_rows()), config)
        header, body = paper.paper_table(beside)
        image = _image(paper.paper_figure(beside), f"{name}: our errors against the paper's")
        return image + "\n\n" + _markdown_table(header, body)
    summary = folder.summary_file().read_text()
    if kind == "ranking":
        return next(line for line in summary.splitlines() if line.startswith("After "))
    return _section(summary, title or "", name)


def grid_rows(names: str, root: Path = RESULTS) -> list[dict]:
    """grid.csv's rows of one experiment, or of several joined by "+": one grid split into
    files that each fit a working session, which must share their axes and last budget."""
    parts = []
    for name in names.split("+"):
        folder = ExperimentDir(root / name)
        if not folder.file("grid.csv").is_file():
            raise ValueError(f"docs/results/{name}/grid.csv is missing (marker results:grid)")
        parts.append(folder.grid_rows())
    if len({(tuple(axes_of(rows)), rows[0]["epochs"]) for rows in parts}) > 1:
        raise ValueError(f"results:grid {names}: the parts differ in their axes or last budget")
    return [row for rows in parts for row in rows]


def _tables(rows: list[dict]) -> str:
    """The accuracy table of :func:`results.summary_table`, one per cell of a grid."""
    parts = []
    for cell, cell_rows in results.grid_cells(rows).items():
        header, body, bold = results.summary_table(cell_rows)
        shown = [
            [f"**{c}**" if (i, j) in bold else c for j, c in enumerate(cells)]
            for i, cells in enumerate(body)
        ]
        axes = axes_of(rows)
        if cell:
            parts.append(", ".join(f"`{a}` = {v}" for a, v in zip(axes, cell, strict=True)))
        parts.append(_markdown_table(header, shown))
    return results.summary_caption(rows) + "\n\n" + "\n\n".join(parts)


def _markdown_table(header: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(cells) + " |" for cells in body])


def _section(summary: str, title: str, name: str) -> str:
    """The lines of summary.md under ``## title``, up to the next heading of that level."""
    lines = summary.splitlines()
    heads = [i for i, line in enumerate(lines) if line.strip("# ") == title]
    if not heads:
        raise ValueError(f"docs/results/{name}/summary.md has no section {title!r}")
    level = len(lines[heads[0]]) - len(lines[heads[0]].lstrip("#"))
    out = []
    for line in lines[heads[0] + 1 :]:
        if line.startswith("#") and len(line) - len(line.lstrip("#")) <= level:
            break
        out.append(line)
    return "\n".join(out).strip()


def _image(fig, alt: str) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    return _inline(buf.getvalue(), alt)


def _png(path: Path, alt: str) -> str:
    """A committed picture, inlined (docs/results/ itself is not part of the site)."""
    if path.suffix != ".png" or not path.is_file():
        raise ValueError(f"docs/results/{path.parent.name}/{path.name} is not a PNG file")
    return _inline(path.read_bytes(), alt)


def _inline(png: bytes, alt: str) -> str:
    return f'<img alt="{alt}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'
