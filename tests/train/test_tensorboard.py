"""Tests of --tensorboard: the event files, read back with TensorBoard's own reader."""

from __future__ import annotations

import sys

import pytest

from stnlab.cli import main
from stnlab.config import ModelConfig, RunConfig, TrainConfig
from stnlab.runs.records import EvalRecord, ThetaRecord, TrainRecord
from stnlab.runs.run_folder import RunDir
from stnlab.train.loop import train

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import (
    EventAccumulator,
)


def _events(folder) -> EventAccumulator:
    found = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0})
    return found.Reload()


def _series(acc: EventAccumulator, tag: str) -> list[tuple[int, float]]:
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def test_event_files_hold_every_record_and_the_transformer_outputs(tiny_data, tmp_path):
    train_config = TrainConfig(epochs=2, batch_size=200, eval_every=1, tensorboard="auto")
    config = RunConfig(ModelConfig("mstn", size="small"), train_config)
    train(config, tiny_data, tmp_path, progress=False)
    acc = _events(tmp_path / "tensorboard")
    records = RunDir(tmp_path).records()
    trains = [r for r in records if isinstance(r, TrainRecord)]
    assert _series(acc, "loss/train") == [(r.epoch, pytest.approx(r.loss)) for r in trains]
    assert _series(acc, "lr") == [(1, pytest.approx(1e-3)), (2, pytest.approx(1e-3))]
    tests = [r for r in records if isinstance(r, EvalRecord) and r.split == "test"]
    assert _series(acc, "accuracy/test") == [(r.epoch, pytest.approx(r.accuracy)) for r in tests]
    for r in (r for r in records if isinstance(r, ThetaRecord)):
        for key in ("area_ratio_median", "outside_fraction_p90", "rotation_deg_median"):
            tag = f"theta {r.transformer}/{key}"
            assert (r.epoch, pytest.approx(r.figures[key])) in _series(acc, tag)
    images = acc.Tags()["images"]
    assert sorted(images) == [
        "transformers/input",
        "transformers/output 1",
        "transformers/output 2",
    ]
    assert [e.step for e in acc.Images("transformers/output 2")] == [1, 2]  # first and last


def test_tensorboard_flag_from_the_command_line(data_file, tmp_path):
    base = [
        "train",
        "--data",
        str(data_file),
        "--model",
        "cnn",
        "--size",
        "small",
        "--epochs",
        "1",
        "--quiet",
    ]
    assert main([*base, "--out", str(tmp_path / "a"), "--tensorboard", str(tmp_path / "tb")]) == 0
    assert _series(_events(tmp_path / "tb" / "a"), "loss/train")[0][0] == 1  # DIR/RUN_NAME
    assert main([*base, "--out", str(tmp_path / "b"), "--tensorboard"]) == 0
    assert _events(tmp_path / "b" / "tensorboard").Tags()["scalars"]  # the run folder's


def test_experiment_runs_log_to_their_folders(tmp_path):
    config = tmp_path / "one.toml"
    config.write_text(
        'preset = "smoke"\nmodels = ["stn"]\nseeds = [0]\nbudgets = [1]\n[train]\nthreads = 1\n'
    )
    argv = [
        "experiment",
        "--config",
        str(config),
        "--out",
        str(tmp_path / "x"),
        "--quiet",
        "--no-report",
        "--tensorboard",
    ]
    assert main(argv) == 0
    acc = _events(tmp_path / "x" / "runs" / "stn-s0" / "tensorboard")
    tags = acc.Tags()["scalars"]
    assert "theta transformers.0/area_ratio_median" in tags
    assert "theta transformers.0/step" not in tags  # the x axis, not a figure


def test_missing_package_is_a_one_line_error(fails_with, data_file, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    argv = [
        "train",
        "--data",
        str(data_file),
        "--model",
        "cnn",
        "--epochs",
        "1",
        "--out",
        str(tmp_path),
        "--tensorboard",
    ]
    fails_with(
        argv, "--tensorboard needs the tensorboard package: pip install 'stnlab[tensorboard]'"
    )
