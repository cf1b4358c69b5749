"""Tests that ``stnlab experiment --plan`` probes speed in the precision the runs will train
in here (``train.amp``, auto by default), and says which."""

from __future__ import annotations

import pytest

from stnlab import experiment
from stnlab.cli import main
from stnlab.config import presets as ex
from stnlab.experiment.estimate import probe
from stnlab.train import devices
from stnlab.train import loop as training


@pytest.fixture
def step_precisions(monkeypatch) -> list[str]:
    """The precision of every training step taken (the real step runs)."""
    seen: list[str] = []
    real = training._step

    def spy(s, net, xb, yb):
        seen.append(s.precision.name)
        return real(s, net, xb, yb)

    monkeypatch.setattr(training, "_step", spy)
    return seen


@pytest.mark.parametrize(
    ("has_amx", "amp", "said"),
    [
        (True, "auto", "bfloat16 (auto: this CPU has AMX, native bfloat16 matrix units)"),
        (False, "auto", "float32 (auto: this CPU has no native bfloat16)"),
        (False, True, "bfloat16 (forced by train.amp = true)"),
    ],
)
def test_the_probe_steps_in_the_precision_of_the_runs(
    monkeypatch, step_precisions, has_amx, amp, said
):
    monkeypatch.setattr(devices, "cpu_has_amx", lambda: has_amx)
    config = ex.preset("smoke", train={"amp": amp})
    run = experiment.run_config(config, experiment.plan(config)[0], "cpu", 1)
    speed = probe(run, (40, 40))
    assert speed.precision == said and speed.train > 0
    assert step_precisions and set(step_precisions) == {said.split()[0]}


def test_plan_names_the_precision_it_measured_in(capsys, monkeypatch, tmp_path, step_precisions):
    monkeypatch.setattr(devices, "cpu_has_amx", lambda: True)
    config = tmp_path / "one.toml"  # one design: bfloat16 is slow on CPUs without AMX
    config.write_text(
        'name = "one"\nmodels = ["cnn"]\nseeds = [0]\nbudgets = [1]\n'
        '[model]\nsize = "small"\n[data]\nsizes = [200, 100, 100]\n'
        "[train]\nbatch_size = 100\nthreads = 1\n"
    )
    assert (
        main(["experiment", "--config", str(config), "--plan", "--out", str(tmp_path / "x")]) == 0
    )
    text = capsys.readouterr().out
    line = "speed measured here on cpu in bfloat16 (auto: this CPU has AMX, native bfloat16 "
    assert line + "matrix units), 1 thread a run" in text
    assert set(step_precisions) == {"bfloat16"}


def test_the_probe_times_its_own_steps_whatever_the_runs_epoch(step_precisions):
    # a run of 40 steps an epoch (the paper's CPU scale): the probe still takes 3 × 2
    config = ex.preset("smoke", iterations=40, data={"sizes": (500, 100, 100)})
    run = experiment.run_config(config, experiment.plan(config)[0], "cpu", 1)
    assert run.train.iterations == 40
    probe(run, (40, 40), steps=2)
    assert len(step_precisions) == 3 * 2
