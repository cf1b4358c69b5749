"""Tests of ``stnlab train`` / ``stnlab evaluate``: one-line errors, outputs, kill and resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import records_without_times, weights_equal

from stnlab import cli, models
from stnlab.data import make_dataset, save
from stnlab.runs.run_folder import RunDir

FAST = ["--model", "cnn", "--size", "tf-example", "--threads", "1", "--quiet"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--model", "nope"], "unknown model 'nope'"),
        (["--epochs", "0"], "epochs must be positive"),
        (["--epochs", "-3"], "epochs must be positive"),
        (["--size", "huge"], "unknown size 'huge'"),
        (["--transform", "warp"], "unknown transform 'warp'"),
        (["--schedule", "linear"], "unknown schedule"),
        (["--eval-every", "-1"], "--eval-every"),
        (["--lr", "-1"], "--lr must be positive, got -1"),
        (["--model", "icstn", "--transform", "tps"], "icstn composes warps"),
        (["--variant", "60x60"], "--data is a saved data set; leave out --variant"),
    ],
)
def test_train_bad_arguments_are_one_line_errors(fails_with, tmp_path, data_file, extra, message):
    argv = ["train", "--data", str(data_file), "--out", str(tmp_path / "r"), *extra]
    fails_with(argv, message)
    assert not (tmp_path / "r").exists()


def test_train_missing_or_bad_data_file(fails_with, tmp_path):
    fails_with(["train", "--data", str(tmp_path / "none.npz")], "no data file")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    fails_with(["train", "--data", str(bad), "--out", str(tmp_path / "r")], "bad.npz")


def test_help_comes_from_the_config_fields(capsys):
    from dataclasses import fields

    from stnlab.config import TrainConfig

    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for f in fields(TrainConfig):
        if f.metadata["cli"]:
            assert " ".join(f.metadata["help"].split()) in text, f.name
    assert "--amp, --no-amp" in text and "default: off" in text


def test_train_with_amp_on_cpu(capsys, tmp_path, data_file):
    out = tmp_path / "run"
    argv = ["train", "--data", str(data_file), "--epochs", "1", "--out", str(out), "--amp"]
    assert cli.main([*argv, *FAST, "--model", "stn"]) == 0  # the last --model wins
    assert RunDir(out).run_config().train.amp is True
    assert RunDir(out).summary().model == "stn"


def test_train_then_evaluate(capsys, fails_with, tmp_path, data_file):
    out = tmp_path / "run"
    assert (
        cli.main(
            [
                "train",
                "--data",
                str(data_file),
                "--epochs",
                "2",
                "--out",
                str(out),
                "--eval-every",
                "1",
                *FAST[:-1],
            ]
        )
        == 0
    )
    printed = capsys.readouterr()
    assert "cnn:" in printed.err and "acc=" in printed.err  # the progress bar
    summary = RunDir(out).summary()
    assert printed.out.strip().endswith(f"-> {out}")
    assert f"test {summary.test_accuracy:.2%}" in printed.out
    assert summary.model == "cnn" and summary.epochs == 2
    config = RunDir(out).run_config()
    assert config.data.path == str(data_file.resolve())
    assert config.train.eval_epochs() == (1, 2) and config.train.device == "cpu"

    fails_with(["train", "--data", str(data_file), "--out", str(out), *FAST], "--resume")

    assert cli.main(["evaluate", str(out), "--data", str(data_file), "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["accuracy"] == summary.test_accuracy and figures["n"] == 100
    argv = ["evaluate", str(out), "--data", str(data_file), "--json", "--batch-size", "7"]
    assert cli.main(argv) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == summary.test_accuracy
    assert cli.main(["evaluate", str(out), "--data", str(data_file), "--split", "valid"]) == 0
    text = capsys.readouterr().out
    assert f"accuracy {summary.valid_accuracy:.2%}" in text and "per class" in text


def test_evaluate_errors(fails_with, tmp_path, data_file):
    fails_with(["evaluate", str(tmp_path / "none"), "--data", str(data_file)], "no run")
    out = tmp_path / "run"
    assert (
        cli.main(["train", "--data", str(data_file), "--epochs", "1", "--out", str(out), *FAST])
        == 0
    )
    fails_with(["evaluate", str(out), "--data", str(tmp_path / "x.npz")], "no data file")
    other = tmp_path / "60.npz"
    save(make_dataset("60x60", sizes=(4, 4, 4)), other)
    fails_with(["evaluate", str(out), "--data", str(other)], "the model takes (1, 40, 40)")
    zero = ["--batch-size", "0"]
    fails_with(["evaluate", str(out), "--data", str(data_file), *zero], "got 0")
    fails_with(["inspect", str(out), "--data", str(data_file), *zero], "got 0")


def _train_cmd(data: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "stnlab",
        "train",
        "--data",
        str(data),
        "--out",
        str(out),
        "--model",
        "stn",
        "--size",
        "tf-example",
        "--epochs",
        "5",
        "--eval-every",
        "2",
        "--threads",
        "1",
        "--checkpoint-every",
        "0",
        "--quiet",
        *extra,
    ]


@pytest.mark.slow
def test_resume_after_sigkill_matches_an_uninterrupted_run(tmp_path):
    data = tmp_path / "d.npz"
    save(make_dataset(sizes=(1200, 100, 100), seed=1), data)  # 6 iterations per epoch
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    uninterrupted = subprocess.Popen(_train_cmd(data, ref), env=env)

    victim = subprocess.Popen(_train_cmd(data, cut), env=env)
    run, deadline = RunDir(cut), time.monotonic() + 120
    while time.monotonic() < deadline and victim.poll() is None:
        if run.file("metrics.jsonl").exists() and any(r.epoch >= 2 for r in run.records()):
            break
        time.sleep(0.005)
    victim.send_signal(signal.SIGKILL)
    assert victim.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    assert not run.is_finished()
    epoch = run.load_checkpoint().epoch  # a whole checkpoint, never half
    assert 1 <= epoch < 5

    resumed = subprocess.run(_train_cmd(data, cut, "--resume"), env=env, capture_output=True)
    assert resumed.returncode == 0, resumed.stderr.decode()
    assert uninterrupted.wait() == 0
    assert weights_equal(models.load(ref).state_dict(), models.load(cut).state_dict())
    assert records_without_times(run) == records_without_times(RunDir(ref))
    sa, sb = RunDir(ref).summary(), run.summary()
    assert (sa.valid_accuracy, sa.test_accuracy) == (sb.valid_accuracy, sb.test_accuracy)
