"""Tests of stnlab.config.presets and stnlab.experiment (planning, smoke runs)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from stnlab import experiment
from stnlab.cli import main
from stnlab.config import presets as ex
from stnlab.config.errors import ConfigError
from stnlab.data import file_of
from stnlab.experiment import runner
from stnlab.report.html import FIGURES, write_report
from stnlab.runs.experiment_folder import RESULT_COLUMNS, ExperimentDir

ROOT = Path(__file__).resolve().parents[2]


def _run(config, out, **kwargs):
    lines: list[str] = []
    result = runner.run_experiment(config, out, progress=False, log=lines.append, **kwargs)
    return result, "\n".join(lines)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """The smoke preset, run once for this module: (folder, result, log)."""
    out = tmp_path_factory.mktemp("smoke")
    result, log = _run(ex.preset("smoke"), out)
    write_report(out)
    return out, result, log


# ----------------------------------------------------------------------------- configs


def test_seed_preset_is_the_protocol():
    c = ex.preset("seed")
    assert c.models == ("cnn", "stn", "mstn")
    assert c.budgets == (100, 200, 300, 400, 500) and len(c.seeds) == 3
    assert c.train.batch_size == 200 and c.iterations == 50 and c.data.sizes[0] == 10_000
    assert c.train.schedule == "constant" and experiment.reuses_budgets(c)
    jobs = experiment.plan(c)
    assert len(jobs) == 9 and {j.epochs for j in jobs} == {500}
    assert all(j.budgets == c.budgets for j in jobs)


def test_demo_preset_has_the_same_shape_on_embedded_data():
    seed, demo = ex.preset("seed"), ex.preset("demo")
    assert demo.models == seed.models and len(demo.seeds) == len(seed.seeds)
    assert len(demo.budgets) == len(seed.budgets) and max(demo.budgets) < max(seed.budgets)
    assert demo.data.source == "embedded" and demo.iterations == 50


def test_schedule_tied_to_total_epochs_trains_every_budget_separately():
    c = ex.preset("seed", train={"schedule": "cosine"})
    jobs = experiment.plan(c)
    assert not experiment.reuses_budgets(c) and len(jobs) == 3 * 5 * 3
    assert {(j.epochs, j.budgets) for j in jobs} == {(b, (b,)) for b in c.budgets}
    assert len({j.name for j in jobs}) == len(jobs)
    assert "Separate runs" in experiment.describe_plan(c) and "cosine" in experiment.describe_plan(
        c
    )
    assert "Budget reuse" in experiment.describe_plan(ex.preset("seed"))


def test_example_config_mirrors_the_seed_preset():
    assert ex.load_config(ROOT / "examples" / "seed.toml").to_dict() == ex.preset("seed").to_dict()


def test_results_config_is_the_seed_study_on_generated_full_mnist():
    c = ex.load_config(ROOT / "examples" / "full_mnist.toml")
    seed = ex.preset("seed")
    assert file_of(c.data) is None and (c.data.source, c.data.seed) == ("mnist", 0)
    assert (c.train, c.model, c.models, c.seeds) == (
        seed.train,
        seed.model,
        seed.models,
        seed.seeds,
    )
    assert c.budgets == (10, 20, 30)


def test_config_file_can_start_from_a_preset(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('preset = "smoke"\nbudgets = [3]\n[train]\nlr = 0.01\n')
    c = ex.load_config(path)
    assert c.name == "mine" and c.budgets == (3,) and c.train.lr == 0.01
    assert c.data.sizes == ex.preset("smoke").data.sizes


@pytest.mark.parametrize(
    "text, message",
    [
        ('models = ["cnn", "resnet"]', "unknown model 'resnet'"),
        ("budgets = [100, 0]", "budgets must be positive"),
        ("budgets = [-5]", "budgets must be positive"),
        ('[data]\npath = "nowhere.npz"', "does not exist"),
        ("seeds = []", "at least one seed"),
        ("budget = [1]", "unknown key 'budget'"),
        ('[train]\nschedule = "linear"', "train.schedule: unknown schedule 'linear'"),
        ('[train]\nlr = "fast"', "train.lr must be a number, got 'fast'"),
        ("[train]\nepochs = 3", "train.epochs is set by budgets"),
        ('[model]\nname = "stn"', "model.name is set by models"),
        ("[model.widths]\nhidden = 0", "model.widths.hidden must be positive"),
        ("[train]\niterations = 7", "train.iterations is set by iterations"),
        ('[grid]\n"model.sise" = ["small"]', "unknown axis 'model.sise'; did you mean model.size?"),
        ('[grid]\n"model.size" = ["small", "huge"]', "model.size: unknown size 'huge'"),
        ('[grid]\n"train.seed" = [1, 2]', "train.seed is set by seeds"),
        ('[grid]\n"train.lr" = [0.1, -1]', "train.lr must be positive"),
        ('[grid]\n"model.size" = []', "grid.model.size must be a non-empty list"),
        ("budgets = [", "mine.toml"),
    ],
)
def test_bad_configs_are_rejected_before_training(tmp_path, capsys, text, message):
    path = tmp_path / "mine.toml"
    path.write_text('preset = "smoke"\n' + text + "\n")
    with pytest.raises(ConfigError, match=re.escape(message)):
        experiment.plan(ex.load_config(path))  # model names are known to the plan, not the file
    out = tmp_path / "out"
    assert main(["experiment", "--config", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()  # nothing made, nothing trained


def test_bad_preset_and_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="unknown preset"):
        ex.preset("huge")
    with pytest.raises(ConfigError, match="does not exist"):
        ex.load_config(tmp_path / "none.toml")


def test_dry_run_prints_the_runs(capsys):
    assert main(["experiment", "--preset", "smoke", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "Budget reuse" in out and "runs/stn-s1" in out


# ----------------------------------------------------------------------------- end to end


def test_smoke_end_to_end(smoke):
    out, result, log = smoke
    config = ex.preset("smoke")
    assert result.reuse and "Budget reuse" in log
    assert result.trained == [j.name for j in experiment.plan(config)] and not result.skipped
    folder = ExperimentDir(out)
    rows = folder.results()
    assert list(rows[0]) == [*RESULT_COLUMNS, "run"]
    assert [r["run"] for r in rows] == [r["run"] for r in result.rows]
    assert [r["test_accuracy"] for r in rows] == [r["test_accuracy"] for r in result.rows]
    combos = {(r["model"], r["epochs"], r["seed"]) for r in rows}
    expected = {(m, b, s) for m in config.models for b in config.budgets for s in config.seeds}
    assert len(rows) == len(expected) and combos == expected
    assert all(0 <= r["test_accuracy"] <= 1 and r["train_seconds"] > 0 for r in rows)
    summary = folder.summary_file().read_text()
    assert "| epochs | cnn | stn | mstn | best |" in summary
    assert all(f"| {b} |" in summary for b in config.budgets) and "±" in summary
    for job in result.jobs:  # every run in its own folder, as `stnlab train` leaves it
        run = folder.run(job.name)
        assert run.is_finished() and run.run_config().model.name == job.model
        evaluated = run.predictions().epochs.tolist()  # per-sample predictions at each
        assert set(config.budgets) <= set(evaluated)  # budget, for significance tests


def test_smoke_report_has_every_figure(smoke):
    out, _, _ = smoke
    page = ExperimentDir(out).file("report.html").read_text()
    images = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    shown = [n for n in FIGURES if n not in ("grid", "paper")]  # no axes, no paper designs
    assert len(images) == len(shown) and all(len(i) > 5_000 for i in images)
    assert not (out / "figures" / "grid.png").exists() and "Across the grid" not in page
    for name in shown:  # the θ figures of "What the transformers learned" included
        assert (out / "figures" / f"{name}.png").stat().st_size > 5_000
    assert "What the transformers learned" in page
    assert 'src="http' not in page and "<script" not in page  # self-contained


def test_budget_reuse_gives_the_same_numbers_as_separate_runs(smoke, tmp_path):
    _, result, _ = smoke
    # Budget 2 is the reuse run itself; one seed keeps the test short.
    config = ex.preset("smoke", reuse=False, budgets=[1], seeds=[0])
    separate, log = _run(config, tmp_path)
    assert not separate.reuse and "Separate runs" in log
    assert {j.name for j in separate.jobs} == {
        f"{m}-e1-s{s}" for m in config.models for s in config.seeds
    }
    reused = {(r["model"], r["seed"]): r for r in result.rows if r["epochs"] == 1}
    assert len(separate.rows) == len(config.models) * len(config.seeds)
    for row in separate.rows:
        twin = reused[(row["model"], row["seed"])]
        assert row["valid_accuracy"] == twin["valid_accuracy"], row["run"]
        assert row["test_accuracy"] == twin["test_accuracy"], row["run"]


def test_resume_skips_finished_runs(smoke, tmp_path):
    src, first, _ = smoke
    out = tmp_path / "resumed"
    shutil.copytree(src, out)
    folder = ExperimentDir(out)
    shutil.rmtree(folder.run("stn-s1").path)  # killed before this run finished...
    folder.run("cnn-s0").file("summary.json").unlink()  # ...and this one while finishing
    for name in ("results.csv", "summary.md"):
        folder.file(name).unlink()
    weights = [p for p in (out / "runs").glob("*/final.safetensors") if "cnn-s0" not in str(p)]
    kept = {p: p.stat().st_mtime_ns for p in weights}
    result, log = _run(ex.preset("smoke"), out)
    assert sorted(result.trained) == ["cnn-s0", "stn-s1"]
    assert "4 finished runs skipped" in log
    assert {p: p.stat().st_mtime_ns for p in kept} == kept  # untouched
    strip = [{k: v for k, v in r.items() if k != "train_seconds"} for r in first.rows]
    assert [{k: v for k, v in r.items() if k != "train_seconds"} for r in result.rows] == strip
    again, log = _run(ex.preset("smoke"), out)
    assert again.trained == [] and "6 finished runs skipped" in log


def test_changed_config_in_the_same_folder_is_refused(smoke, tmp_path):
    src, _, _ = smoke
    out = tmp_path / "changed"
    shutil.copytree(src, out)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(ConfigError, match=r"holds a run of another config \(train.lr: 0.002"):
        runner.run_experiment(ex.preset("smoke", train={"lr": 0.01}), out, log=lambda s: None)
    with pytest.raises(ConfigError, match="other data"):
        runner.run_experiment(ex.preset("smoke", data={"seed": 5}), out, log=lambda s: None)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    # What does not decide a result may change: the runs are reused as they are.
    again, log = _run(ex.preset("smoke", train={"threads": 1, "eval_every": 2}), out)
    assert again.trained == [] and "6 finished runs skipped" in log


def test_parallel_workers_report_their_epochs(tmp_path, capsys):
    config = ex.preset("smoke", models=["cnn"], budgets=[1, 2])
    lines: list[str] = []
    result = runner.run_experiment(config, tmp_path, workers=2, log=lines.append)
    assert "in 2 worker processes" in "\n".join(lines)
    assert sorted(result.trained) == ["cnn-s0", "cnn-s1"] and len(result.rows) == 4
    bar = capsys.readouterr().err  # the overall bar moves with the workers' train records
    assert "all runs" in bar and "4/4" in bar


def test_bad_worker_count_names_the_flag(fails_with, tmp_path):
    argv = ["experiment", "--preset", "smoke", "--out", str(tmp_path / "x"), "--workers", "0"]
    fails_with(argv, "--workers must be positive, got 0")
    assert not (tmp_path / "x").exists()


def test_config_file_reads_mnist_from_a_source_dir_beside_it(tmp_path):
    import numpy as np

    from stnlab.data import load
    from stnlab.data.idx import write_idx

    mnist = tmp_path / "mnist"
    mnist.mkdir()
    rng = np.random.default_rng(0)
    for split, n in (("train", 300), ("t10k", 200)):
        digits = (rng.random((n, 28, 28)) * 255).astype(np.uint8)
        write_idx(mnist / f"{split}-images-idx3-ubyte", digits)
        write_idx(mnist / f"{split}-labels-idx1-ubyte", (np.arange(n) % 10).astype(np.uint8))
    config = tmp_path / "exp.toml"
    config.write_text(
        'models = ["cnn"]\nbudgets = [1]\nseeds = [0]\n'
        "[train]\nbatch_size = 50\n"
        '[data]\nsource = "mnist"\nsource_dir = "mnist"\nsizes = [100, 20, 20]\n'
    )
    cfg = ex.load_config(config)
    assert cfg.data.source_dir == str(mnist)
    path = runner.prepare_data(cfg, tmp_path / "out", log=lambda _: None)
    assert path.is_file() and load(path).x_train.shape == (100, 1, 40, 40)


def test_an_experiment_on_other_than_40x40_images_resumes(tmp_path):
    # the runs' image size comes from the data: the plan, made before, must not differ on it
    config = ex.preset("smoke", models=["cnn"], seeds=[0], budgets=[1], data={"variant": "60x60"})
    first, _ = _run(config, tmp_path)
    assert first.trained == ["cnn-s0"]
    assert ExperimentDir(tmp_path).run("cnn-s0").run_config().model.in_size == 60
    again, _ = _run(config, tmp_path)
    assert again.trained == [] and again.skipped == ["cnn-s0"]
