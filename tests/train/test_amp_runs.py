"""Tests of a run's precision through :func:`stnlab.train.train`: auto trains as the forced
precision it resolves to, the run folder records it, and a resume keeps it (exactly)."""

from __future__ import annotations

import pytest
import torch
from conftest import records_without_times, weights_equal

from stnlab.config import ConfigError, ModelConfig, RunConfig, TrainConfig
from stnlab.runs.records import Record, TrainRecord
from stnlab.runs.run_folder import Checkpoint, RunDir
from stnlab.train import devices, train


def run_config(model: str = "cnn", **train_fields) -> RunConfig:
    """A quick run on one thread; a checkpoint after every epoch."""
    fields = {"epochs": 2, "threads": 1, "device": "cpu", "checkpoint_every": 0, **train_fields}
    return RunConfig(ModelConfig(model, size="tf-example"), TrainConfig(**fields))


@pytest.fixture
def amx(monkeypatch):
    """``amx(True)``: this CPU has AMX from now on; ``amx(False)``: it has none."""
    return lambda has: monkeypatch.setattr(devices, "cpu_has_amx", lambda: has)


def _losses(run: RunConfig, data, amx_here: bool, amx) -> list[float]:
    amx(amx_here)
    seen: list[Record] = []
    train(run, data, progress=False, on_record=[seen.append])
    return [r.loss for r in seen if isinstance(r, TrainRecord)]


@pytest.mark.parametrize("has_amx", [True, False])
def test_auto_trains_exactly_as_the_precision_it_chooses(tiny_data, amx, has_amx):
    auto = _losses(run_config(epochs=1), tiny_data, has_amx, amx)
    forced = _losses(run_config(epochs=1, amp=has_amx), tiny_data, not has_amx, amx)
    other = _losses(run_config(epochs=1, amp=not has_amx), tiny_data, has_amx, amx)
    assert auto == forced and auto != other


@pytest.mark.parametrize(("has_amx", "name"), [(True, "bfloat16"), (False, "float32")])
def test_the_run_folder_records_the_precision_and_log_names_it(
    tiny_data, tmp_path, amx, has_amx, name
):
    amx(has_amx)
    said: list[str] = []
    train(run_config(epochs=1), tiny_data, tmp_path, progress=False, log=said.append)
    assert len(said) == 1 and said[0].startswith(f"precision: {name} (auto: ")
    assert said[0] == devices.MixedPrecision.of(TrainConfig(), torch.device("cpu")).describe()
    out = RunDir(tmp_path)
    assert out.precision() == name and out.config()["precision"] == name
    assert out.run_config().train.amp is has_amx  # resolved, as the device is
    assert RunDir(tmp_path).load_checkpoint().config["train"]["amp"] is has_amx


def _cut_after_epoch_2(run: RunConfig, data, path, monkeypatch) -> RunDir:
    """Train ``run`` in ``path`` until its checkpoint after epoch 2, then die."""
    real_save = RunDir.save_checkpoint

    def save_then_die(self, ck: Checkpoint):
        real_save(self, ck)
        if ck.epoch == 2:
            raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(RunDir, "save_checkpoint", save_then_die)
        with pytest.raises(KeyboardInterrupt):
            train(run, data, path, progress=False)
    return RunDir(path)


def test_a_bfloat16_run_killed_and_resumed_ends_as_an_uninterrupted_one(
    tiny_data, tmp_path, monkeypatch, amx, capsys
):
    """Started with AMX (auto: bfloat16), resumed on a CPU without it (auto: float32): the
    run goes on in bfloat16 and ends with exactly the weights of an uninterrupted one."""
    amx(False)
    ref = train(run_config("stn", epochs=3, amp=True), tiny_data, tmp_path / "ref", progress=False)
    amx(True)
    cut = _cut_after_epoch_2(run_config("stn", epochs=3), tiny_data, tmp_path / "cut", monkeypatch)
    assert cut.precision() == "bfloat16"
    amx(False)
    with pytest.raises(ConfigError, match=r"trained in bfloat16, and train\.amp false"):
        train(run_config("stn", epochs=3, amp=False), tiny_data, cut.path, resume=True)
    capsys.readouterr()
    res = train(run_config("stn", epochs=3), tiny_data, cut.path, resume=True, progress=False)
    assert weights_equal(res.model.state_dict(), ref.model.state_dict())
    assert records_without_times(cut) == records_without_times(RunDir(tmp_path / "ref"))
    assert cut.precision() == "bfloat16" and cut.run_config().train.amp is True
    # Nothing asked for the line (log=None), but keeping bfloat16 costs speed here: a warning.
    err = capsys.readouterr().err
    assert f"warning: {cut.path}: precision: bfloat16 (recorded by the run; a new run " in err
    assert "would train in float32, faster: this CPU has no native bfloat16)" in err


def test_a_float32_run_resumed_where_auto_chooses_bfloat16_stays_float32(
    tiny_data, tmp_path, monkeypatch, amx, capsys
):
    amx(False)
    ref = train(run_config("cnn", epochs=3), tiny_data, tmp_path / "ref", progress=False)
    cut = _cut_after_epoch_2(run_config("cnn", epochs=3), tiny_data, tmp_path / "cut", monkeypatch)
    amx(True)
    said: list[str] = []
    res = train(run_config("cnn", epochs=3), tiny_data, cut.path, resume=True, log=said.append)
    assert weights_equal(res.model.state_dict(), ref.model.state_dict())
    assert cut.precision() == "float32"
    assert said == [
        "precision: float32 (recorded by the run; a new run here would train in bfloat16, "
        "faster: this CPU has AMX, native bfloat16 matrix units)"
    ]
    assert "warning" not in capsys.readouterr().err  # said once, through log


def test_a_run_folder_of_an_older_release_says_its_precision_from_amp(tmp_path):
    for amp, name in (("true", "bfloat16"), ("false", "float32"), ("null", "float32")):
        folder = RunDir(tmp_path / amp)
        folder.path.mkdir()
        folder.file("config.json").write_text(f'{{"train": {{"amp": {amp}}}}}')
        assert folder.precision() == name
