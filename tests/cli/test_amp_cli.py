"""Tests of ``--amp``/``--no-amp`` and ``train.amp = "auto"`` on the command line: the flags,
the precision line that ``stnlab train`` and ``stnlab experiment`` start with, and the
``precision`` column of results.csv."""

from __future__ import annotations

import pytest

from stnlab import cli
from stnlab.cli.app import build_parser
from stnlab.cli.flags import given
from stnlab.config import TrainConfig
from stnlab.runs import ExperimentDir
from stnlab.runs.run_folder import RunDir
from stnlab.train import devices

FAST = ["--model", "cnn", "--size", "small", "--threads", "1", "--batch-size", "100"]
AMX = "precision: bfloat16 (auto: this CPU has AMX, native bfloat16 matrix units)"
NO_AMX = "precision: float32 (auto: this CPU has no native bfloat16)"


@pytest.mark.parametrize(("flags", "amp"), [([], "auto"), (["--amp"], True), (["--no-amp"], False)])
def test_amp_flags_force_it_and_auto_is_the_default(flags, amp):
    args = build_parser().parse_args(["train", *flags])
    assert TrainConfig(**given(args, TrainConfig)).amp == amp


def test_amp_help_says_auto_is_the_default(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    help_text = " ".join(TrainConfig.__dataclass_fields__["amp"].metadata["help"].split())
    assert f"--amp, --no-amp {help_text} (default: auto)" in text


@pytest.mark.parametrize(("has_amx", "line"), [(True, AMX), (False, NO_AMX)])
def test_train_starts_with_the_precision_and_records_it(
    capsys, monkeypatch, tmp_path, data_file, has_amx, line
):
    monkeypatch.setattr(devices, "cpu_has_amx", lambda: has_amx)
    out = tmp_path / "run"
    argv = ["train", "--data", str(data_file), "--epochs", "1", "--out", str(out), *FAST]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == line and len(printed) == 2  # then the summary line
    assert RunDir(out).precision() == line.split()[1]


def test_quiet_train_prints_no_precision(capsys, tmp_path, data_file):
    argv = ["train", "--data", str(data_file), "--epochs", "1", "--out", str(tmp_path / "r")]
    assert cli.main([*argv, *FAST, "--quiet"]) == 0
    assert capsys.readouterr().out == ""


def test_experiment_starts_with_the_precision_and_results_have_it(
    capsys, monkeypatch, tmp_path, data_file
):
    monkeypatch.setattr(devices, "cpu_has_amx", lambda: True)
    config = tmp_path / "amx.toml"
    config.write_text(
        'name = "amx"\nmodels = ["cnn", "stn"]\nseeds = [0]\nbudgets = [1]\n'
        f'[data]\npath = "{data_file}"\n[model]\nsize = "small"\n'
        "[train]\nbatch_size = 100\nthreads = 1\n"
    )
    out = tmp_path / "out"
    argv = ["experiment", "--config", str(config), "--out", str(out), "--quiet", "--no-report"]
    assert cli.main(argv) == 0
    assert capsys.readouterr().out.splitlines()[0] == AMX
    rows = ExperimentDir(out).results()
    assert [r["model"] for r in rows] == ["cnn", "stn"]
    assert [r["precision"] for r in rows] == ["bfloat16", "bfloat16"]
