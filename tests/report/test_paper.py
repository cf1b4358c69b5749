"""Our errors beside the STN paper's: the table's lookups, and a smoke-sized paper grid whose
summary.md and report show the paper's column."""

from __future__ import annotations

import math

import pytest

from stnlab.config import presets as ex
from stnlab.experiment import runner
from stnlab.report import paper
from stnlab.report.html import write_report
from stnlab.report.results import GridEstimates
from stnlab.report.significance import Estimate


def test_the_paper_table_is_looked_up_by_design_column_and_family():
    assert paper.paper_error("fcn", "rotated", "affine") == pytest.approx(0.021)
    assert paper.paper_error("fcn", "rotated", "tps") == pytest.approx(0.021)  # no transformer
    assert paper.paper_error("st-cnn", "rts", "projective") == pytest.approx(0.006)
    assert paper.paper_error("st-fcn", "elastic", "tps") == pytest.approx(0.024)
    assert paper.paper_error("paper-cnn", "60x60-stn", "affine") == pytest.approx(0.035)
    assert paper.paper_error("st-cnn", "60x60-stn", "affine") == pytest.approx(0.017)
    assert paper.paper_error("st-cnn", "60x60-stn", "tps") is None  # the paper: affine only
    assert paper.paper_error("stn", "rotated", "affine") is None  # not the paper's design
    assert paper.paper_error("st-cnn", "40x40", "affine") is None  # not the paper's data


def test_beside_takes_the_cell_from_the_axes_or_the_config():
    grid = GridEstimates(
        ["model.transform"],
        5,
        ["paper-cnn", "st-cnn"],
        {
            ("affine",): {
                "paper-cnn": Estimate(0.02, 0.01, 0.03),
                "st-cnn": Estimate(0.01, 0.005, 0.015),
            },
            ("tps",): {"st-cnn": Estimate(0.004, 0.002, 0.006)},
        },
        {("affine",): {}, ("tps",): {}},
    )
    rows = paper.beside_paper(grid, {"data": {"variant": "rotated"}})
    assert [(r.column, r.design) for r in rows] == [
        ("R", "paper-cnn"),
        ("R affine", "st-cnn"),
        ("R tps", "st-cnn"),
    ]
    # 1.2% in [1, 3]; 0.7% in [0.5, 1.5]; 0.7% not in [0.2, 0.6]
    assert [r.inside for r in rows] == [True, True, False]
    assert math.isclose(rows[0].ratio, 0.02 / 0.012)


@pytest.fixture(scope="module")
def paper_grid(tmp_path_factory):
    """The paper's Table 1 shape at a smoke's size: R, two families, two designs, one seed."""
    config = ex.preset(
        "paper-distorted-cpu",
        models=["paper-cnn", "st-cnn"],
        seeds=[0],
        budgets=[1],
        iterations=2,
        workers=1,
        grid={"data.variant": ["rotated"], "model.transform": ["affine", "tps"]},
        data={"source": "embedded", "sizes": (256, 100, 100)},
        train={"batch_size": 128, "threads": 1, "eval_every": 1},
    )
    out = tmp_path_factory.mktemp("paper")
    runner.run_experiment(config, out, progress=False, log=lambda s: None)
    write_report(out, samples=4)
    return out


def test_summary_puts_the_paper_beside_ours(paper_grid):
    text = (paper_grid / "summary.md").read_text()
    section = text.split("## Beside the paper")[1]
    assert "| R | paper-cnn |" in section and "| 1.2 |" in section
    assert "| R affine | st-cnn |" in section and "| 0.7 |" in section
    assert "| R tps | st-cnn |" in section
    assert "these runs: 1 epochs of 2 steps of 128 images" in section


def test_report_draws_ours_against_the_paper(paper_grid):
    page = (paper_grid / "report.html").read_text()
    assert "Beside the paper" in page and "inside?" in page
    assert (paper_grid / "figures" / "paper.png").stat().st_size > 5_000
