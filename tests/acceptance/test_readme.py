"""The README is a short landing page whose links resolve, the Python examples of the README
and of the documentation run as written, and its experiment files are valid configs."""

from __future__ import annotations

import re
import textwrap
import tomllib
from pathlib import Path

import pytest
from backbone_libraries import why_not

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
MAX_README_LINES = 200
# Pages whose Python blocks are shown, not run (and why).
NOT_RUN = {"development.md": "quotes models.py's own `stn`; registering it again is an error"}
# Pages whose Python blocks need an optional extra: they run where it loads.
NEEDS = {"guide/backbones.md": "timm"}

PYTHON_BLOCK = re.compile(r"^([ \t]*)```python\n(.*?)^\1```", flags=re.S | re.M)  # indented too
TOML_BLOCK = re.compile(r"^```toml\n(.*?)^```", flags=re.S | re.M)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _run_blocks(path: Path) -> dict:
    """Run a page's Python blocks in order, in one namespace, as a reader would."""
    namespace: dict = {}
    for _, block in PYTHON_BLOCK.findall(path.read_text()):
        exec(compile(textwrap.dedent(block), str(path), "exec"), namespace)
    return namespace


def test_readme_python_examples_run():
    assert len(PYTHON_BLOCK.findall(README.read_text())) >= 2
    namespace = _run_blocks(README)
    assert tuple(namespace["y"].shape) == (8, 1, 20, 20)
    assert tuple(namespace["theta"].shape) == (8, 6)
    assert tuple(namespace["grid"].shape) == (8, 20, 20, 2)
    assert (namespace["v"] - namespace["v_ref"]).abs().max() < 1e-5


def test_readme_is_a_landing_page():
    lines = README.read_text().splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines"
    for heading in ("## Quick start", "## The layer", "## The study", "## Results"):
        assert heading in lines
    assert "make demo" in README.read_text() and "make test" in README.read_text()


def test_readme_relative_links_resolve():
    targets = [t for t in LINK.findall(README.read_text()) if "://" not in t]
    assert any(t.startswith("docs/") for t in targets)
    for target in targets:
        path = target.split("#", 1)[0]
        assert (ROOT / path).is_file(), f"README.md links to {target}, which does not exist"


@pytest.mark.parametrize(
    "page",
    sorted(
        str(p.relative_to(DOCS))
        for p in DOCS.rglob("*.md")
        if PYTHON_BLOCK.search(p.read_text()) and str(p.relative_to(DOCS)) not in NOT_RUN
    ),
)
def test_docs_python_examples_run(page):
    if page in NEEDS and (reason := why_not(NEEDS[page])) is not None:
        pytest.skip(reason)
    _run_blocks(DOCS / page)


def test_docs_experiment_files_are_valid_configs():
    from stnlab.config.presets import from_dict

    blocks = [
        (page, block)
        for page in sorted(DOCS.rglob("*.md"))
        for block in TOML_BLOCK.findall(page.read_text())
    ]
    assert blocks
    for page, block in blocks:
        from_dict(tomllib.loads(block), name=page.stem)  # a bad key or value raises ConfigError


@pytest.mark.parametrize("folder", sorted(p.name for p in (DOCS / "results").iterdir()))
def test_committed_results_are_those_of_their_experiment_file(folder):
    """Each docs/results/NAME/ is a valid experiment file and, once measured, the result rows
    of exactly its runs: a file edited after its run can't quietly disagree with its numbers."""
    from stnlab.config.presets import load_config
    from stnlab.experiment import plan
    from stnlab.runs import ExperimentDir

    path = DOCS / "results" / folder
    config = load_config(path / "experiment.toml")
    if not (path / "results.csv").is_file():
        pytest.skip(f"{folder} is not measured yet")
    rows = ExperimentDir(path).results()
    assert {r["run"] for r in rows} == {job.name for job in plan(config)}
    measured = {(r["model"], r["epochs"], r["seed"]) for r in rows}
    assert measured == {
        (m, b, s) for m in config.models for b in config.budgets for s in config.seeds
    }
    assert list(rows[0])[: len(config.grid)] == list(config.grid)
