"""``stnlab experiment --cluster``: the study on Dask gives the in-process results.

On a LocalCluster (``local:2``) and on ``dask scheduler`` / ``dask worker`` processes
started as a cluster user starts them (conftest.py's ``dask_cli``), with run folders sent
back or written in place, through a worker killed mid-run, a run that fails by itself
and an interrupt. On CPU with one thread per run, training is deterministic, so every
result must equal the undisturbed in-process run's, epoch by epoch.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from conftest import same_results
from dask_cli import free_port, kill_worker_running

from stnlab import experiment
from stnlab.cli import main
from stnlab.config import presets as ex
from stnlab.experiment import execution, placement, runner
from stnlab.experiment.cluster import INSTALL_HINT
from stnlab.runs.experiment_folder import ExperimentDir
from stnlab.runs.records import Record, TrainRecord

# cnn and stn, 2 seeds, runs of 8 epochs (long enough to lose a worker in the middle),
# a checkpoint after every epoch, one thread per run as on the Dask workers.
LONGER = """
preset = "smoke"
name = "longer"
models = ["cnn", "stn"]
budgets = [2, 8]
[train]
threads = 1
checkpoint_every = 0
"""
VICTIM = "stn-s0"  # started first (longest first) and killed at its second epoch


def _write(folder: Path, text: str) -> Path:
    path = folder / "config.toml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def longer(tmp_path_factory):
    """The LONGER experiment's config file and its undisturbed in-process result folder."""
    folder = tmp_path_factory.mktemp("longer")
    path = _write(folder, LONGER)
    out = folder / "in-process"
    runner.run_experiment(ex.load_config(path), out, progress=False, log=lambda s: None)
    return path, out


def _experiment(capsys, *argv: str, quiet: bool = True) -> tuple[int, str, str]:
    """``stnlab experiment ARGV --no-report [--quiet]``: (exit status, stdout, stderr)."""
    status = main(["experiment", *argv, "--no-report", *(["--quiet"] if quiet else [])])
    out, err = capsys.readouterr()
    return status, out, err


def _watch(monkeypatch, act=None) -> dict[str, list[int]]:
    """The epochs of the ``train`` records each run reported (every attempt's), as the
    reporter gets them; ``act(name, epoch)`` is called on each before it is counted."""
    seen: dict[str, list[int]] = {}
    record = execution.Reporter.record

    def spy(self, name: str, rec: Record) -> None:
        if isinstance(rec, TrainRecord):
            if act is not None:
                act(name, rec.epoch)
            seen.setdefault(name, []).append(rec.epoch)
        record(self, name, rec)

    monkeypatch.setattr(execution.Reporter, "record", spy)
    return seen


def _lost_line(text: str, name: str) -> str:
    """The one line saying that the worker running ``name`` was lost, and what became of it."""
    lines = [line for line in text.splitlines() if line.startswith("lost the worker running")]
    assert len(lines) == 1, text
    assert lines[0].startswith(f"lost the worker running {name} (tcp://127.0.0.1:")
    return lines[0]


def _kill_at(client, name: str, epoch: int, killed: list[int]):
    """An ``act`` that SIGKILLs the worker process training ``name`` when it reports ``epoch``."""

    def act(job: str, at: int) -> None:
        if job == name and at == epoch and not killed:
            killed.append(kill_worker_running(client, name))

    return act


# ----------------------------------------------------------------------------- errors, --plan


def test_missing_dask_is_one_line_and_writes_nothing(monkeypatch, fails_with, tmp_path):
    monkeypatch.setitem(sys.modules, "distributed", None)  # `import distributed` fails
    out = tmp_path / "x"
    for extra in ([], ["--plan"]):
        argv = ["experiment", "--preset", "smoke", "--cluster", "local:2", "--out", str(out)]
        fails_with([*argv, *extra], INSTALL_HINT)
    assert not out.exists()


def test_unreachable_scheduler_fails_before_the_data_is_made(fails_with, tmp_path):
    """No scheduler at the address: one line naming it and what to check, before the data
    file (or anything else) is written, and before --plan measures anything."""
    pytest.importorskip("distributed")
    address = f"tcp://127.0.0.1:{free_port()}"  # nothing listens there
    out = tmp_path / "x"
    for extra in ([], ["--plan"]):
        argv = ["experiment", "--preset", "smoke", "--cluster", address, "--out", str(out)]
        err = fails_with([*argv, *extra], f"cannot reach the Dask scheduler at {address}")
        assert "check that `dask scheduler` runs there" in err
    assert not ExperimentDir(out).data_file.exists() and not out.exists()


def test_device_given_with_a_cluster_reaches_the_runs():
    pytest.importorskip("distributed")
    config = ex.preset("smoke", cluster="tcp://127.0.0.1:1", train={"device": "cpu"})
    where = placement.place(config, 6)
    assert where.cluster == "tcp://127.0.0.1:1" and where.device == "cpu"
    assert placement.place(ex.preset("smoke", cluster="local:2"), 6).device == "auto"


def test_plan_counts_the_slots_of_the_cluster(dask_cli, capsys, tmp_path):
    dask_cli.ready()
    out = tmp_path / "planned"
    status, text, _ = _experiment(
        capsys, "--preset", "smoke", "--cluster", dask_cli.address, "--out", str(out), "--plan"
    )
    assert status == 0 and not out.exists()
    assert f"the Dask cluster {dask_cli.address}: 2 worker threads" in text
    assert "total: 2,400 training images, 2,400 of them left to train" in text  # 6 × 2 × 200


# ----------------------------------------------------------------------------- a LocalCluster


def test_smoke_on_a_local_cluster_gives_the_in_process_results(capsys, tmp_path):
    pytest.importorskip("distributed")
    here = tmp_path / "in-process"
    runner.run_experiment(
        ex.preset("smoke", train={"threads": 1}), here, progress=False, log=lambda s: None
    )
    out, environ = tmp_path / "local2", dict(os.environ)
    status, text, err = _experiment(
        capsys, "--preset", "smoke", "--cluster", "local:2", "--out", str(out), quiet=False
    )
    assert status == 0, err
    assert "all runs" in err and "12/12" in err  # one bar, moved by the workers' epochs
    assert "training 6 runs on the Dask cluster local:2" in text
    assert "2 worker threads now, runs on cpu, run folders written in place" in text
    assert sorted(
        line.split()[1] for line in text.splitlines() if line.startswith("done ")
    ) == sorted(j.name for j in experiment.plan(ex.preset("smoke")))
    same_results(out, here)
    assert not list(out.glob(".stnlab-cluster-*"))  # the token file is removed
    assert dict(os.environ) == environ  # the nanny's worker variables do not stay here


# ---------------------------------------------------------------------------- dask scheduler/worker


def test_not_shared_run_folders_come_back_and_a_lost_worker_costs_nothing(
    dask_cli, longer, capsys, monkeypatch, tmp_path
):
    """--shared-fs no: runs train in the workers' own folders and come back as files; the
    killed worker's run starts over elsewhere and ends with the undisturbed numbers."""
    client, (config, expected), killed = dask_cli.ready(), longer, []
    seen = _watch(monkeypatch, _kill_at(client, VICTIM, 2, killed))
    out = tmp_path / "not-shared"
    argv = ["--config", str(config), "--cluster", dask_cli.address, "--shared-fs", "no"]
    status, text, err = _experiment(capsys, *argv, "--out", str(out))
    assert status == 0, err
    assert "run folders sent back" in text and killed
    assert seen[VICTIM].count(1) == 2  # without a shared folder the run started over
    line = _lost_line(text, VICTIM)
    assert "; restarted it on tcp://127.0.0.1:" in line and "from epoch 0" in line
    assert all(epochs.count(1) == 1 for name, epochs in seen.items() if name != VICTIM)
    same_results(out, expected)


def test_shared_folder_is_detected_and_a_lost_worker_resumes_its_run(
    dask_cli, longer, capsys, monkeypatch, tmp_path
):
    client, (config, expected), killed = dask_cli.ready(), longer, []
    seen = _watch(monkeypatch, _kill_at(client, VICTIM, 2, killed))
    out = tmp_path / "shared"
    status, text, err = _experiment(
        capsys, "--config", str(config), "--cluster", dask_cli.address, "--out", str(out)
    )
    assert status == 0, err
    assert "run folders written in place" in text and killed
    # The run went on from its checkpoint of epoch 1 or later, not from the start.
    assert seen[VICTIM].count(1) == 1 and set(seen[VICTIM]) == set(range(1, 9))
    # ... and said so, naming the epoch it went on after: the epochs reported are the lost
    # attempt's 1..k, then the new one's after..8, with after <= k.
    line = _lost_line(text, VICTIM)
    assert "; resumed it on tcp://127.0.0.1:" in line and "from its checkpoint after" in line
    after, epochs = int(line.rsplit(" ", 1)[1]), seen[VICTIM]
    lost = epochs[: len(epochs) - (8 - after)]
    assert 1 <= after <= len(lost) and lost == list(range(1, len(lost) + 1))
    assert epochs[len(lost) :] == list(range(after + 1, 9))
    same_results(out, expected)


def test_a_run_that_fails_by_itself_is_reported_once(dask_cli, capsys, tmp_path):
    """A localization learning rate the stn cannot train with (its θ becomes NaN): both stn
    runs fail, once each, without traceback; the cnn runs finish; the exit status is 1."""
    dask_cli.ready()
    config = _write(tmp_path, 'preset = "smoke"\nmodels = ["stn", "cnn"]\n[train]\nloc_lr = inf\n')
    out = tmp_path / "failing"
    status, text, err = _experiment(
        capsys, "--config", str(config), "--cluster", dask_cli.address, "--out", str(out)
    )
    assert status == 1
    failed = [line for line in text.splitlines() if line.startswith("failed ")]
    assert sorted(line.split(":")[0] for line in failed) == ["failed stn-s0", "failed stn-s1"]
    assert all("non-finite θ" in line for line in failed) and "Traceback" not in err
    assert "2 runs failed (stn-s0, stn-s1)" in err and err.count("\n") == 1
    assert "2 runs trained, 0 skipped, 2 failed" in text
    folder = ExperimentDir(out)
    assert {r["run"] for r in folder.results()} == {"cnn-s0", "cnn-s1"}
    assert "Run stn-s0 failed: FloatingPointError" in folder.summary_file().read_text()


def test_interrupt_leaves_a_folder_that_resumes(dask_cli, longer, capsys, monkeypatch, tmp_path):
    """Ctrl-C cancels every run; the same command again resumes each from its checkpoint
    and ends with the undisturbed numbers."""
    dask_cli.ready()
    config, expected = longer

    def interrupt(name: str, epoch: int) -> None:
        if name == VICTIM and epoch == 3:
            raise KeyboardInterrupt

    _watch(monkeypatch, interrupt)
    out = tmp_path / "interrupted"
    argv = ["--config", str(config), "--cluster", dask_cli.address, "--out", str(out)]
    status, _, err = _experiment(capsys, *argv)
    assert status == 130 and "interrupted" in err
    folder = ExperimentDir(out)
    assert not folder.file("results.csv").exists()
    assert folder.run(VICTIM).load_checkpoint().epoch >= 2
    monkeypatch.undo()
    seen = _watch(monkeypatch)
    status, _, err = _experiment(capsys, *argv)
    assert status == 0, err
    assert 1 not in seen[VICTIM]  # resumed, not started over
    same_results(out, expected)
