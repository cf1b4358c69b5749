"""``stnlab experiment``'s report of failed runs: in the order of their names, not of when they
failed (on a cluster or a pool that order changes from one command to the next)."""

from __future__ import annotations

from stnlab import cli
from stnlab.experiment import execution
from stnlab.runs import ExperimentDir
from stnlab.runs.run_folder import RunDir


def test_failed_runs_are_named_in_order_whatever_order_they_failed_in(
    tmp_path, data_file, monkeypatch, capsys
):
    config = tmp_path / "fails.toml"
    config.write_text(
        'name = "fails"\nmodels = ["cnn", "stn"]\nseeds = [0, 1]\nbudgets = [1]\n'
        f'[data]\npath = "{data_file}"\n[model]\nsize = "small"\n'
        "[train]\nbatch_size = 100\nthreads = 1\n"
    )
    train_here = execution.train_here

    def stn_runs_fail_last_first(tasks, data_path, reporter, progress):
        train_here([t for t in tasks if t.name.startswith("cnn")], data_path, reporter, progress)
        for t in reversed([t for t in tasks if t.name.startswith("stn")]):
            RunDir(t.out_dir).start_metrics()  # diverged in its first epoch
            reporter.failed(t.name, FloatingPointError("θ is not finite"))

    monkeypatch.setattr(execution, "train_here", stn_runs_fail_last_first)
    out = tmp_path / "out"
    argv = ["experiment", "--config", str(config), "--out", str(out), "--quiet", "--no-report"]
    assert cli.main(argv) == 1
    captured = capsys.readouterr()
    assert "failed stn-s1" in captured.out.split("failed stn-s0")[0]  # as they happened
    assert "2 runs failed (stn-s0, stn-s1)" in captured.err
    summary = ExperimentDir(out).summary_file().read_text()
    assert summary.index("Run stn-s0 failed") < summary.index("Run stn-s1 failed")


def test_an_experiment_whose_every_run_failed_before_training_says_so(
    tmp_path, data_file, monkeypatch, capsys
):
    config = tmp_path / "none.toml"
    config.write_text(
        'name = "none"\nmodels = ["cnn"]\nseeds = [0, 1]\nbudgets = [1]\n'
        f'[data]\npath = "{data_file}"\n[model]\nsize = "small"\n[train]\nbatch_size = 100\n'
    )

    def every_run_lost(tasks, data_path, reporter, progress):
        for t in tasks:  # no folder, no metrics.jsonl: as a job the cluster dropped
            reporter.failed(t.name, RuntimeError("worker lost"))

    monkeypatch.setattr(execution, "train_here", every_run_lost)
    out = tmp_path / "out"
    assert cli.main(["experiment", "--config", str(config), "--out", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "2 runs failed (cnn-s0, cnn-s1)" in err and "Traceback (most recent" not in err
    summary = ExperimentDir(out).summary_file().read_text()
    assert "No run has finished yet." in summary and "Run cnn-s1 failed" in summary
    assert ExperimentDir(out).results() == []
