"""Tests of the folder protocols of stnlab.runs: round trips and checks."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import a_summary

from stnlab.config import RunConfig, TrainConfig
from stnlab.config.errors import ConfigError, RunFolderError
from stnlab.runs.atomic import TEMPORARY
from stnlab.runs.experiment_folder import ExperimentDir
from stnlab.runs.records import EvalRecord, TrainRecord
from stnlab.runs.run_folder import METRICS, Checkpoint, Predictions, RunDir

TRAIN = TrainRecord(epoch=1, loss=2.3, accuracy=0.1, lr=1e-3, seconds=1.0)
EVAL = EvalRecord(epoch=1, split="test", accuracy=0.2, loss=2.2, train_seconds=1.0)
SUMMARY = a_summary(test_per_class_accuracy=(0.5, None, 1.0))


@pytest.fixture
def run(tmp_path) -> RunDir:
    run = RunDir(tmp_path / "run")
    run.start_metrics()
    run.append(TRAIN)
    run.append(EVAL)
    return run


def test_records_round_trip_and_a_torn_last_line_is_dropped(run):
    assert run.records() == [TRAIN, EVAL]
    with open(run.file(METRICS), "a") as f:
        f.write('{"event": "train", "ep')  # a crash in the middle of a write
    assert run.records() == [TRAIN, EVAL]
    assert run.evaluations() == {(1, "test"): EVAL}


def test_an_event_of_a_newer_stnlab_is_skipped(run):
    with open(run.file(METRICS), "a") as f:
        f.write('{"event": "warmup", "epoch": 1, "anything": [1, 0]}\n')
    run.append(replace(TRAIN, epoch=2))
    assert run.records() == [TRAIN, EVAL, replace(TRAIN, epoch=2)]


def test_summary_round_trip_and_damage(tmp_path):
    folder = RunDir(tmp_path)
    folder.write_summary(SUMMARY)
    assert folder.summary() == SUMMARY
    values = json.loads(folder.file("summary.json").read_text())
    for key, value, problem in [
        ("test_accuracy", None, "has a bad 'test_accuracy': None"),
        ("epochs", 2.5, "has a bad 'epochs': 2.5"),
        ("test_per_class_accuracy", "x", "has a bad 'test_per_class_accuracy'"),
    ]:
        folder.file("summary.json").write_text(json.dumps({**values, key: value}))
        with pytest.raises(RunFolderError, match=rf"summary\.json {problem}.*resume the run"):
            folder.summary()
    del values["model"]
    folder.file("summary.json").write_text(json.dumps(values))
    with pytest.raises(RunFolderError, match=r"summary\.json has no 'model'"):
        folder.summary()


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("not json", "line 2 is not a JSON record"),
        ('{"epoch": 1}', "line 2 is not a JSON record with an 'event'"),
        (
            '{"event": "train", "epoch": 0, "loss": 1, "accuracy": 1, "lr": 1, "seconds": 1}',
            "line 2 has a bad 'epoch': 0",
        ),
        (
            '{"event": "eval", "epoch": 1, "split": "dev", "loss": 1, "accuracy": 1, '
            '"train_seconds": 1}',
            "line 2 has a bad 'split': 'dev'",
        ),
        (
            '{"event": "train", "epoch": 1, "loss": "nan?", "accuracy": 1, "lr": 1, "seconds": 1}',
            "line 2 has a bad 'loss'",
        ),
        ('{"event": "eval", "epoch": 1, "split": "test"}', "line 2 has no 'accuracy'"),
        ('{"event": "theta", "epoch": 1, "area_ratio_median": 1}', "line 2 has no 'transformer'"),
        (
            '{"event": "theta", "epoch": 1, "transformer": "t", "collapse": "zoomed_out"}',
            "line 2 has a bad 'collapse'",
        ),
        (
            '{"event": "theta", "epoch": 1, "transformer": "t", "area_ratio_median": "big"}',
            "line 2 has a bad 'area_ratio_median'",
        ),
    ],
)
def test_a_bad_line_names_the_file_and_line(run, line, problem):
    text = run.file(METRICS).read_text().splitlines()
    run.file(METRICS).write_text("\n".join([text[0], line, text[1]]) + "\n")
    with pytest.raises(RunFolderError, match=problem) as info:
        run.records()
    assert str(run.file(METRICS)) in str(info.value) and "train it again" in str(info.value)


def test_rewind_drops_the_lines_after_a_checkpoint(run):
    size = run.metrics_bytes()
    run.append(replace(TRAIN, epoch=2))
    run.rewind_metrics(size)
    assert run.records() == [TRAIN, EVAL] and run.metrics_bytes() == size
    with pytest.raises(RunFolderError, match="shorter than the 1000 bytes"):
        run.rewind_metrics(1000)
    run.file(METRICS).unlink()
    with pytest.raises(RunFolderError, match=r"metrics\.jsonl is missing"):
        run.check_metrics(size)


def _checkpoint(run: RunConfig) -> Checkpoint:
    return Checkpoint(
        run.to_dict(),
        3,
        1.5,
        {"w": torch.ones(2)},
        {"state": {}},
        {},
        torch.get_rng_state(),
        {},
        10,
    )


def test_checkpoint_round_trip_and_damage(tmp_path):
    folder = RunDir(tmp_path)
    folder.save_checkpoint(_checkpoint(RunConfig()))
    ck = folder.load_checkpoint()
    assert ck.epoch == 3 and torch.equal(ck.model["w"], torch.ones(2)) and ck.cuda_rng is None
    assert RunConfig.from_dict(ck.config).differences(RunConfig().to_dict()) == []
    data = folder.file("checkpoint.pt").read_bytes()
    folder.file("checkpoint.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(RunFolderError, match=r"checkpoint\.pt cannot be read .*delete it to start"):
        folder.load_checkpoint()
    torch.save({"epoch": 1}, folder.file("checkpoint.pt"))  # another layout
    with pytest.raises(RunFolderError, match="lacks 'config'"):
        folder.load_checkpoint()
    old = {**_checkpoint(RunConfig()).__dict__, "config": {"model": "stn", "lr": 0.001}}
    torch.save(old, folder.file("checkpoint.pt"))  # the flat config of an older stnlab
    with pytest.raises(RunFolderError, match="older stnlab"):
        folder.load_checkpoint()


def test_predictions_round_trip_and_the_older_final_only_layout(tmp_path):
    folder = RunDir(tmp_path)
    labels = np.arange(6) % 3
    p = Predictions(
        labels,
        np.array([1, 4]),
        np.stack([labels, labels[::-1]]),
        np.full((2, 6), 0.5, np.float32),
        np.full((6, 3), 1 / 3),
    )
    folder.write_predictions(p)
    back = folder.predictions()
    np.testing.assert_array_equal(back.at(4)[0], labels[::-1])
    with pytest.raises(KeyError, match="epoch 2 was not evaluated"):
        back.at(2)
    np.savez(
        folder.file("predictions.npz"),
        labels=labels,
        predictions=labels,
        confidence=np.ones(6),
        probabilities=np.ones((6, 3)),
    )
    folder.write_summary(SUMMARY)  # its epochs: 9
    old = folder.predictions()
    assert old.epochs.tolist() == [9] and old.predictions.shape == (1, 6)
    np.savez(
        folder.file("predictions.npz"),
        labels=labels,
        epochs=np.array([1]),
        predictions=np.zeros((1, 5)),
        confidence=np.zeros((1, 5)),
    )
    with pytest.raises(RunFolderError, match="mismatched shapes"):
        folder.predictions()


def test_config_differences_name_the_fields(tmp_path):
    folder = RunDir(tmp_path)
    assert folder.differences(RunConfig()) == []  # nothing saved yet
    folder.write_config(RunConfig(), world_size=1)
    assert folder.differences(RunConfig(train=TrainConfig(seed=3))) == ["train.seed: 0 -> 3"]
    folder.file("config.json").write_text(json.dumps({"model": {"name": "stn"}}))
    with pytest.raises(RunFolderError, match="older stnlab"):
        folder.run_config()
    assert folder.model_config().name == "stn"  # but the model still loads


# ----------------------------------------------------------------------------- experiments

ROW = {
    "model": "cnn",
    "epochs": 2,
    "seed": 0,
    "valid_accuracy": 0.5,
    "test_accuracy": 0.25,
    "train_seconds": 3.0,
    "precision": "float32",
    "run": "cnn-s0",
}


def test_results_round_trip_and_damage(tmp_path):
    folder = ExperimentDir(tmp_path)
    folder.write_results([ROW, {**ROW, "seed": 1, "run": "cnn-s1"}])
    assert folder.results()[0] == ROW
    assert not list(tmp_path.glob(f".*{TEMPORARY}"))
    path = folder.file("results.csv")
    lines = path.read_text().splitlines()
    for bad, problem in [
        ([*lines, "a stray line"], "line 4 does not have the header's 8 columns"),
        ([*lines[:2], "cnn,x,0,0.5,0.25,3.0,float32,cnn-s0"], "line 3: epochs 'x' is not a number"),
        (["model,epochs", *lines[1:]], "does not have the header"),
    ]:
        path.write_text("\n".join(bad) + "\n")
        with pytest.raises(RunFolderError, match=problem):
            folder.results()
    path.write_text("\n".join(lines))  # the last newline lost: cut short
    with pytest.raises(RunFolderError, match="cut short"):
        folder.results()


def test_experiment_record(tmp_path):
    folder = ExperimentDir(tmp_path)
    assert folder.record() is None
    folder.write_record({"data": {"variant": "60x60"}}, True, tmp_path / "data.npz")
    assert folder.record()["data"].variant == "60x60"
    folder.file("experiment.json").write_text('{"config": {}, "reuse": 1, "data_path": ""}')
    with pytest.raises(RunFolderError, match="no 'reuse' of the right kind"):
        folder.record()
    folder.write_record({"data": {"variant": "99x99"}}, True, tmp_path / "data.npz")
    with pytest.raises(RunFolderError, match="bad data config"):
        folder.record()
    assert not isinstance(RunFolderError("x"), ConfigError)  # one family, separate kinds
