"""Tests of stnlab.experiment.execution: the reporter every way of training feeds, failures reported
once while the other runs go on, and the local pool's device per worker process.

The Dask way is tested end to end in test_experiment_cluster.py.
"""

from __future__ import annotations

import json
from multiprocessing import get_context
from pathlib import Path

import pytest
from conftest import SMALL
from pool_probe import where

from stnlab.config import ModelConfig, RunConfig, TrainConfig
from stnlab.config.errors import TrainingDivergedError
from stnlab.experiment.execution import (
    Failure,
    Reporter,
    Task,
    _plain,
    start_pool,
    train_here,
    train_in_pool,
    worker_device,
)
from stnlab.runs.records import EvalRecord, ThetaRecord, TrainRecord
from stnlab.runs.run_folder import RunDir


def _run(model: str = "cnn", epochs: int = 2, **train) -> RunConfig:
    return RunConfig(
        ModelConfig(name=model, **SMALL),
        TrainConfig(epochs=epochs, batch_size=100, threads=1, **train),
    )


class _Log:
    """The reporter's ``on_done`` and ``log``: what it was told, in order."""

    def __init__(self):
        self.lines: list[str] = []
        self.done: dict[str, dict] = {}

    def on_done(self, name: str, summary: dict) -> None:
        self.done[name] = summary
        self.lines.append(f"done {name}")


# ----------------------------------------------------------------------------- the reporter


def test_bar_counts_each_runs_highest_epoch_once(tmp_path):
    tasks = [Task("a", _run(epochs=4), tmp_path / "a", done=1), Task("b", _run(epochs=4), tmp_path)]
    log = _Log()
    reporter = Reporter(tasks, log.on_done, log.lines.append, bar=True)
    assert (reporter.bar.total, reporter.bar.n) == (8, 1)  # a resumes after epoch 1
    # a's worker is lost after epoch 3; its retry resumes from epoch 1's checkpoint.
    for name, epoch in [("a", 2), ("b", 1), ("a", 3), ("a", 2), ("a", 3), ("b", 2), ("a", 4)]:
        reporter.record(name, TrainRecord(epoch, 1.0, 0.5, 1e-3, 1.0))
        reporter.record(name, EvalRecord(epoch, "valid", 0.5, 1.0, 1.0))
    assert reporter.bar.n == 4 + 2
    reporter.close()


def test_records_cross_dask_as_plain_data_and_are_parsed_back(tmp_path):
    msgpack = pytest.importorskip("msgpack")
    made = [
        TrainRecord(1, 2.25, 0.125, 1e-3, 4.5),
        EvalRecord(1, "test", 0.5, 1.5, 4.5),
        ThetaRecord(1, "transformers.0", {"area_ratio_median": 0.49}, ("frozen",), step=50),
    ]
    moved = []
    reporter = Reporter([Task("a", _run(), tmp_path)], _Log().on_done, print, bar=False)
    reporter.record = lambda name, record: moved.append(record)
    for record in made:
        plain = _plain(record)  # what Worker.log_event carries: JSON types only
        assert json.loads(json.dumps(plain)) == plain and plain["event"] == record.EVENT
        # Dask's comms use msgpack, which hands the lists back as tuples.
        reporter.event("a", msgpack.unpackb(msgpack.packb(plain), use_list=False))
    assert moved == made


def test_failures_are_kept_once_each_with_a_traceback_only_for_bugs(tmp_path):
    log = _Log()
    reporter = Reporter(
        [Task(n, _run(), tmp_path) for n in "abc"], log.on_done, log.lines.append, bar=False
    )
    reporter.failed("a", TrainingDivergedError("training diverged: the loss became nan"), "tb")
    reporter.failed("b", FloatingPointError("non-finite θ\nmore"), "tb")
    reporter.failed("c", KeyError("oops"), "Traceback ...")
    assert log.lines == [
        "failed a: training diverged: the loss became nan",  # a UserError: its message
        "failed b: FloatingPointError: non-finite θ",  # numeric: its type and first line
        "failed c: KeyError: 'oops'",
    ]
    assert [f.traceback for f in reporter.failures] == [None, None, "Traceback ..."]
    assert Failure.of("d", RuntimeError(), None).message == "RuntimeError"


# ----------------------------------------------------------------------------- in process, pool


def _tasks(tmp_path: Path) -> list[Task]:
    """A run that fails by itself (its θ becomes NaN at once) between two that train."""
    return [
        Task("cnn-a", _run(), tmp_path / "cnn-a"),
        Task("stn-bad", _run("stn", loc_lr=float("inf")), tmp_path / "stn-bad"),
        Task("cnn-b", _run(seed=1), tmp_path / "cnn-b"),
    ]


def _check(log: _Log, reporter: Reporter, tmp_path: Path) -> None:
    assert sorted(log.done) == ["cnn-a", "cnn-b"]
    assert [f.name for f in reporter.failures] == ["stn-bad"]
    assert [line for line in log.lines if line.startswith("failed ")] == [
        f"failed stn-bad: {reporter.failures[0].message}"
    ]
    assert "non-finite θ" in reporter.failures[0].message
    for name in ("cnn-a", "cnn-b"):
        assert RunDir(tmp_path / name).summary() == log.done[name]


def test_in_process_a_failed_run_is_reported_and_the_others_train(data_file, tmp_path):
    log, tasks = _Log(), _tasks(tmp_path)
    reporter = Reporter(tasks, log.on_done, log.lines.append, bar=False)
    train_here(tasks, data_file, reporter, progress=False)
    _check(log, reporter, tmp_path)
    assert log.lines[0] == "[1/3] cnn-a: 2 epochs"


def test_pool_a_failed_run_is_reported_and_the_others_train(data_file, tmp_path):
    log, tasks = _Log(), _tasks(tmp_path)
    reporter = Reporter(tasks, log.on_done, log.lines.append, bar=True)
    train_in_pool(tasks, data_file, ["cpu", "cpu"], reporter)
    _check(log, reporter, tmp_path)
    assert reporter.epochs == {"cnn-a": 2, "stn-bad": 0, "cnn-b": 2}  # from the workers' records
    reporter.close()


def test_each_pool_worker_takes_its_own_device():
    devices = ["slot-a", "slot-b", "slot-c"]
    with get_context("spawn").Manager() as manager, start_pool(devices, manager) as pool:
        barrier = manager.Barrier(len(devices))
        seen = dict(pool.map(where, [barrier] * len(devices)))  # pid -> device
    assert len(seen) == 3 and sorted(seen.values()) == devices
    assert worker_device() is None  # outside the pool
