"""An experiment's grid: axes over config fields, their product, names, columns, data,
summary, report, --plan, and the same results in sequence, in a pool, on Dask and after
a kill."""

from __future__ import annotations

import csv
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import same_results

from stnlab import experiment
from stnlab.cli import main
from stnlab.config import presets as ex
from stnlab.config.experiment import label_of
from stnlab.data import load
from stnlab.experiment import runner
from stnlab.experiment.planning import axis_names, path_taken
from stnlab.report import results
from stnlab.report.html import write_report
from stnlab.runs.experiment_folder import RESULT_COLUMNS, ExperimentDir

# Two axes of two values: four cells, each with cnn and stn, one seed, read after 1 and 2
# epochs; one thread per run, so every way of running it gives the same numbers.
GRID = """
preset = "smoke"
name = "grid"
models = ["cnn", "stn"]
seeds = [0]
iterations = 2
[train]
threads = 1
[grid]
"model.size" = ["small", "tf-example"]
"data.sizes" = [[200, 100, 100], [300, 100, 100]]
"""
AXES = ["model.size", "data.sizes"]
CELLS = [
    ("small", "200-100-100"),
    ("small", "300-100-100"),
    ("tf-example", "200-100-100"),
    ("tf-example", "300-100-100"),
]


def _config_file(folder: Path) -> Path:
    path = folder / "grid.toml"
    path.write_text(GRID)
    return path


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """The GRID experiment, run once in sequence in this process: (config file, folder)."""
    folder = tmp_path_factory.mktemp("grid")
    path = _config_file(folder)
    out = folder / "in-process"
    runner.run_experiment(ex.load_config(path), out, progress=False, log=lambda s: None)
    write_report(out, samples=4)
    return path, out


# ----------------------------------------------------------------------------- the plan


def test_the_runs_are_the_product_of_the_axes_models_and_seeds():
    config = ex.preset(
        "smoke",
        models=["cnn", "stn"],
        seeds=[0, 1],
        grid={"model.size": ["small", "large"], "train.weight_decay": [0, 1e-3, 1e-2]},
    )
    jobs = experiment.plan(config)
    assert len(jobs) == 2 * 3 * 2 * 2
    assert len({j.name for j in jobs}) == len(jobs)
    assert jobs[0].name == "cnn-s0_size=small_weight_decay=0"
    assert jobs[-1].name == "stn-s1_size=large_weight_decay=0.01"
    for job in jobs:
        run = experiment.run_config(config, job)
        cell = dict(job.cell)
        assert run.model.size == cell["model.size"] and run.model.name == job.model
        assert run.train.weight_decay == cell["train.weight_decay"] and run.train.seed == job.seed
        assert f"size={cell['model.size']}" in job.name


def test_an_epoch_is_the_experiments_iterations_whatever_the_training_set(tmp_path):
    config = ex.load_config(_config_file(tmp_path))
    steps = {
        dict(j.cell)["data.sizes"]: experiment.run_config(config, j).train.iterations
        for j in experiment.plan(config)
    }
    # 200 images at batch 100 are 2 steps already: one pass, as runs without the setting
    assert steps == {(200, 100, 100): None, (300, 100, 100): 2}


def test_axis_values_are_labelled_for_names_and_columns():
    assert [label_of(v) for v in ("small", 5e-4, 3, True, (200, 100, 100))] == [
        "small",
        "0.0005",
        "3",
        "true",
        "200-100-100",
    ]


def test_two_axes_on_one_field_name_keep_their_tables_in_run_names():
    config = ex.preset("smoke", models=["cnn"], seeds=[0], grid={"data.seed": [0, 1]})
    assert [j.name for j in experiment.plan(config)] == ["cnn-s0_seed=0", "cnn-s0_seed=1"]
    assert axis_names(config) == ["seed"]


def test_plan_prints_every_cell_and_its_data(grid, capsys):
    path, _ = grid
    out = path.parent / "planned"
    assert main(["experiment", "--config", str(path), "--out", str(out), "--plan"]) == 0
    text = capsys.readouterr().out
    assert "8 runs" in text and "in every cell of the grid" in text
    assert "200/100/100 train/valid/test" in text and "300/100/100 train/valid/test" in text
    for size, sizes in CELLS:
        assert f"cnn-s0_size={size}_sizes={sizes}" in text
    probed = [line for line in text.splitlines() if line.startswith("  ") and " | " in line]
    assert len(probed) == 4 and "stn (model.size = tf-example, data.sizes = 200-100-100)" in text
    assert not out.exists()


def test_the_plans_setting_names_a_swept_field_by_its_axis_not_its_base_value():
    swept = path_taken(ex.preset("smoke", grid={"model.size": ["large"]}))
    assert "in every cell of the grid (model.size = large)" in swept
    assert "-size models" not in swept
    fixed = path_taken(ex.preset("smoke", grid={"train.lr": [1e-3, 1e-2]}))
    assert "small-size models" in fixed and "lr 0.002" not in fixed


# ----------------------------------------------------------------------------- the results


def test_results_have_a_column_per_axis_and_a_row_per_cell_design_budget(grid):
    _, out = grid
    with open(out / "results.csv", newline="") as f:
        header = next(csv.reader(f))
    assert header == [*AXES, *RESULT_COLUMNS, "run"]
    rows = ExperimentDir(out).results()
    assert len(rows) == len(CELLS) * 2 * 2
    assert sorted({(r["model.size"], r["data.sizes"]) for r in rows}) == sorted(CELLS)
    for r in rows:
        assert r["run"].endswith(f"_size={r['model.size']}_sizes={r['data.sizes']}")
        run = ExperimentDir(out).run(r["run"]).run_config()
        assert run.model.size == r["model.size"]
        assert label_of(run.data.sizes) == r["data.sizes"]


def test_each_distinct_data_set_is_made_once_with_the_same_test_canvases(grid):
    _, out = grid
    files = sorted(p.name for p in out.glob("data*.npz"))
    assert len(files) == 2 and files[-1] == "data.npz"
    small, large = (load(out / name) for name in reversed(files))
    assert len(small.y_train) == 200 and len(large.y_train) == 300
    assert np.array_equal(small.x_test, large.x_test)  # every cell scored on the same images
    assert np.array_equal(small.x_valid, large.x_valid)


def test_summary_compares_the_designs_across_and_within_cells(grid):
    _, out = grid
    text = (out / "summary.md").read_text()
    assert "## Across the grid" in text and "stn / cnn" in text
    for size, sizes in CELLS:
        assert f"| {size} | {sizes} |" in text
        assert f"## model.size = {size}, data.sizes = {sizes}" in text
    assert text.count("### Are the differences real?") == len(CELLS)
    data = next(line for line in text.splitlines() if line.startswith("Data"))
    assert data.startswith("Data, by cell: ") and "200/100/100" in data and "300/100/100" in data


def test_report_draws_the_grid_and_shows_one_cell(grid):
    _, out = grid
    page = (out / "report.html").read_text()
    assert "Across the grid" in page and (out / "figures" / "grid.png").stat().st_size > 5_000
    assert "model.size = tf-example, data.sizes = 300-100-100" in page  # the last cell
    write_report(out, samples=4, cell="model.size=small,data.sizes=200-100-100")
    page = (out / "report.html").read_text()
    assert "<b>model.size = small, data.sizes = 200-100-100</b>" in page


def test_a_finished_grid_is_read_not_trained_again(grid):
    path, out = grid
    result = runner.run_experiment(ex.load_config(path), out, progress=False, log=lambda s: None)
    assert result.trained == [] and len(result.skipped) == 8


# ----------------------------------------------------------------------------- same numbers


def test_a_pool_of_two_workers_gives_the_same_results(grid, tmp_path):
    path, expected = grid
    out = tmp_path / "pool"
    runner.run_experiment(ex.load_config(path), out, workers=2, progress=False, log=print)
    same_results(out, expected)


def test_a_local_dask_cluster_gives_the_same_results(grid, tmp_path, capsys):
    pytest.importorskip("distributed")
    path, expected = grid
    out = tmp_path / "dask"
    argv = ["--config", str(path), "--out", str(out), "--cluster", "local:2", "--quiet"]
    assert main(["experiment", *argv, "--no-report"]) == 0, capsys.readouterr().err
    same_results(out, expected)


def test_a_killed_grid_resumes_to_the_same_results(grid, tmp_path):
    path, expected = grid
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "stnlab", "experiment", "--config", str(path)]
    proc = subprocess.Popen([*cmd, "--out", str(out), "--quiet", "--no-report"])
    first = out / "runs" / "cnn-s0_size=small_sizes=300-100-100" / "summary.json"
    deadline = time.monotonic() + 300
    while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert first.exists() and not (out / "results.csv").exists()  # killed in the middle
    result = runner.run_experiment(ex.load_config(path), out, progress=False, log=print)
    assert "cnn-s0_size=small_sizes=200-100-100" in result.skipped and result.trained
    same_results(out, expected)


def test_grid_csv_holds_the_summarys_numbers(grid):
    _, out = grid
    folder = ExperimentDir(out)
    from_file = results.grid_from_rows(folder.grid_rows())
    again = results.grid_estimates(folder, folder.results())
    assert results.grid_table(from_file) == results.grid_table(again)
    header, body = results.grid_table(from_file)
    text = (out / "summary.md").read_text()
    assert all("| " + " | ".join(cells) + " |" in text for cells in body)
    assert header[-1] == "stn / cnn" and len(body) == len(CELLS)


# ----------------------------------------------------------------------------- shared runs


def test_a_design_without_a_transformer_trains_once_across_the_transformers_axes(tmp_path):
    config = ex.preset(
        "smoke",
        models=["cnn", "stn"],
        seeds=[0],
        iterations=2,
        train={"threads": 1},
        grid={"model.transform": ["affine", "projective"], "model.loc_hidden": [16, 32]},
    )
    out = tmp_path / "shared"
    result = runner.run_experiment(config, out, progress=False, log=lambda s: None)
    assert sorted(result.trained) == sorted(
        ["cnn-s0"]
        + [
            f"stn-s0_transform={t}_loc_hidden={h}"
            for t in ("affine", "projective")
            for h in (16, 32)
        ]
    )
    rows = ExperimentDir(out).results()
    assert len(rows) == 4 * 2 * len(config.budgets)  # every cell has both designs
    cnn = [r for r in rows if r["model"] == "cnn"]
    assert {r["run"] for r in cnn} == {"cnn-s0"}
    assert {(r["model.transform"], r["model.loc_hidden"]) for r in cnn} == {
        (t, h) for t in ("affine", "projective") for h in ("16", "32")
    }
    for budget in config.budgets:  # the one run's numbers in each cell
        assert len({r["test_accuracy"] for r in cnn if r["epochs"] == budget}) == 1
    stn = {r["run"] for r in rows if r["model"] == "stn"}
    assert len(stn) == 4  # the transformer's design trains in every cell
    again = runner.run_experiment(config, out, progress=False, log=lambda s: None)
    assert again.trained == [] and len(again.skipped) == 5
