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
import torch

from stnlab import cli
from stnlab.checkpoint import load_checkpoint, load_weights
from stnlab.data import make_dataset, save

FAST = ["--model", "cnn", "--size", "tf-example", "--threads", "1", "--quiet"]


@pytest.fixture(scope="module")
def data_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "tiny.npz"
    save(make_dataset(sizes=(400, 100, 100), seed=0), path)
    return path


def fails_with(capsys, argv: list[str], message: str) -> None:
    """The command exits 2 with one line on stderr that contains ``message``."""
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert message in err, err


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
    ],
)
def test_train_bad_arguments_are_one_line_errors(capsys, tmp_path, data_file, extra, message):
    argv = ["train", "--data", str(data_file), "--out", str(tmp_path / "r"), *extra]
    fails_with(capsys, argv, message)
    assert not (tmp_path / "r").exists()


def test_train_missing_or_bad_data_file(capsys, tmp_path):
    fails_with(capsys, ["train", "--data", str(tmp_path / "none.npz")], "no data file")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    fails_with(capsys, ["train", "--data", str(bad), "--out", str(tmp_path / "r")], "bad.npz")


def test_train_then_evaluate(capsys, tmp_path, data_file):
    out = tmp_path / "run"
    assert cli.main(["train", "--data", str(data_file), "--epochs", "2", "--out", str(out),
                     "--eval-every", "1", *FAST[:-1]]) == 0  # fmt: skip
    printed = capsys.readouterr()
    assert "cnn:" in printed.err and "acc=" in printed.err  # the progress bar
    summary = json.loads((out / "summary.json").read_text())
    assert printed.out.strip().endswith(f"-> {out}")
    assert f"test {summary['test_accuracy']:.2%}" in printed.out
    assert summary["model"] == "cnn" and summary["epochs"] == 2
    config = json.loads((out / "config.json").read_text())
    assert config["data"]["path"] == str(data_file.resolve())
    assert config["eval_epochs"] == [1, 2] and config["device"] == "cpu"

    fails_with(capsys, ["train", "--data", str(data_file), "--out", str(out), *FAST], "--resume")

    assert cli.main(["evaluate", str(out), "--data", str(data_file), "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["accuracy"] == summary["test_accuracy"] and figures["n"] == 100
    assert cli.main(["evaluate", str(out), "--data", str(data_file), "--split", "valid"]) == 0
    text = capsys.readouterr().out
    assert f"accuracy {summary['valid_accuracy']:.2%}" in text and "per class" in text


def test_evaluate_errors(capsys, tmp_path, data_file):
    fails_with(capsys, ["evaluate", str(tmp_path / "none"), "--data", str(data_file)], "no run")
    fails_with(capsys, ["evaluate", str(tmp_path), "--data", str(tmp_path / "x.npz")], "no data")
    out = tmp_path / "run"
    assert cli.main(["train", "--data", str(data_file), "--epochs", "1", "--out", str(out),
                     *FAST]) == 0  # fmt: skip
    other = tmp_path / "60.npz"
    save(make_dataset("60x60", sizes=(4, 4, 4)), other)
    fails_with(capsys, ["evaluate", str(out), "--data", str(other)], "the model takes (1, 40, 40)")


def _train_cmd(data: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "stnlab", "train", "--data", str(data), "--out", str(out),
            "--model", "stn", "--size", "tf-example", "--epochs", "5", "--eval-every", "2",
            "--threads", "1", "--quiet", *extra]  # fmt: skip


def test_resume_after_sigkill_matches_an_uninterrupted_run(tmp_path):
    data = tmp_path / "d.npz"
    save(make_dataset(sizes=(1200, 100, 100), seed=1), data)  # 6 iterations per epoch
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    uninterrupted = subprocess.Popen(_train_cmd(data, ref), env=env)

    victim = subprocess.Popen(_train_cmd(data, cut), env=env)
    metrics, deadline = cut / "metrics.jsonl", time.monotonic() + 120
    while time.monotonic() < deadline and victim.poll() is None:
        lines = metrics.read_text().splitlines() if metrics.exists() else []
        if any(json.loads(s)["epoch"] >= 2 for s in lines if s.endswith("}")):
            break
        time.sleep(0.005)
    victim.send_signal(signal.SIGKILL)
    assert victim.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (cut / "summary.json").exists()
    epoch = load_checkpoint(cut / "checkpoint.pt")["epoch"]  # a whole checkpoint, never half
    assert 1 <= epoch < 5

    resumed = subprocess.run(_train_cmd(data, cut, "--resume"), env=env, capture_output=True)
    assert resumed.returncode == 0, resumed.stderr.decode()
    assert uninterrupted.wait() == 0
    a, b = load_weights(ref / "final.safetensors"), load_weights(cut / "final.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    def metric_lines(run: Path) -> list[dict]:
        rows = [json.loads(s) for s in (run / "metrics.jsonl").read_text().splitlines()]
        return [{k: v for k, v in r.items() if "seconds" not in k} for r in rows]

    assert metric_lines(cut) == metric_lines(ref)
    sa, sb = (json.loads((r / "summary.json").read_text()) for r in (ref, cut))
    assert (sa["valid_accuracy"], sa["test_accuracy"]) == (
        sb["valid_accuracy"],
        sb["test_accuracy"],
    )
