"""Tests of the per-epoch θ statistics in training: theta records, collapse warnings, the stop."""

from __future__ import annotations

import pytest
import torch

from stnlab import diagnostics, models
from stnlab.cli import main
from stnlab.config import ModelConfig, RunConfig, TrainConfig
from stnlab.config.errors import ConfigError, TransformerCollapsedError
from stnlab.runs.run_folder import RunDir
from stnlab.train import monitor
from stnlab.train.loop import train

ZOOM = 5.0  # the forced zoom-out: the sampled square is 5× the image's side, 25× its area


@pytest.fixture
def zoomed_out():
    """A registered design: an stn whose transformer starts at a 5× zoom-out (regressor bias)."""

    @models.register("zoomed-out")
    class ZoomedOut(models.STN):
        def __init__(self, config):
            super().__init__(config)
            with torch.no_grad():
                self.transformers[0].regressor.bias.copy_(torch.tensor([ZOOM, 0, 0, 0, ZOOM, 0]))

    yield "zoomed-out"
    models._REGISTRY.pop("zoomed-out")


def _run(model: str, **train_fields) -> RunConfig:
    fields = {"epochs": 2, "batch_size": 200, "eval_every": 0, **train_fields}
    return RunConfig(ModelConfig(model, size="small"), TrainConfig(**fields))


def _thetas(records: list[dict]) -> list[dict]:
    return [r for r in records if r["event"] == monitor.EVENT]


def _warnings(text: str) -> list[str]:
    return [line for line in text.splitlines() if "looks collapsed" in line]


def test_theta_records_are_the_statistics_of_the_first_validation_images(tiny_data):
    seen: list[dict] = []
    res = train(
        _run("mstn", epochs=1, theta_images=50), tiny_data, progress=False, on_record=[seen.append]
    )
    thetas = _thetas(seen)
    assert [(r["epoch"], r["transformer"]) for r in thetas] == [
        (1, "transformers.0"),
        (1, "transformers.1"),
    ]
    assert {r["step"] for r in thetas} == {len(tiny_data.y_train) // 200}  # one epoch's steps
    # The last epoch's records are the diagnostics of the final model on x_valid[:50]
    # (to float32 rounding: training runs the model in channels-last memory order).
    expected = diagnostics.summarize_model(res.model, tiny_data.x_valid[:50])
    for r in thetas[-2:]:
        mine = {k: v for k, v in r.items() if k in expected[r["transformer"]]}
        assert mine == pytest.approx(expected[r["transformer"]], rel=1e-5, abs=1e-6)
        assert r["collapse"] == list(monitor.collapse(r, "x", r["step"]))  # [] here: healthy


def test_the_statistics_do_not_change_training(tiny_data):
    def losses(n: int) -> list[tuple]:
        seen: list[dict] = []
        train(
            _run("stn", epochs=2, theta_images=n),
            tiny_data,
            progress=False,
            on_record=[seen.append],
        )
        return [(r["event"], r["loss"]) for r in seen if r["event"] != monitor.EVENT]

    without = losses(0)
    assert losses(200) == without and len(without) == 4  # 2 train + valid/test at the end


def test_a_five_times_zoom_out_warns_exactly_once(zoomed_out, tiny_data, tmp_path, capsys):
    seen: list[dict] = []
    train(_run(zoomed_out), tiny_data, tmp_path, progress=False, on_record=[seen.append])
    thetas = _thetas(seen)
    assert [r["collapse"] for r in thetas] == [["zoomed_out"]] * 2  # collapsed every epoch...
    assert thetas[0]["area_ratio_median"] == pytest.approx(ZOOM**2, rel=0.01)
    (line,) = _warnings(capsys.readouterr().err)  # ...but warned once
    assert line.startswith("warning: after epoch 1, zoomed-out transformers.0 looks collapsed")
    assert "median area ratio 25 > 4" in line and "--loc-lr" in line


def test_stop_on_collapse_keeps_a_checkpoint_that_resumes(zoomed_out, tiny_data, tmp_path, capsys):
    with pytest.raises(TransformerCollapsedError, match=r"after epoch 1.*checkpoint of epoch 1"):
        train(_run(zoomed_out, stop_on_collapse=True), tiny_data, tmp_path, progress=False)
    run = RunDir(tmp_path)
    assert run.load_checkpoint().epoch == 1 and not run.is_finished()
    assert len(_warnings(capsys.readouterr().err)) == 1
    # The flag decides nothing about the numbers, so the run resumes without it...
    res = train(_run(zoomed_out), tiny_data, tmp_path, resume=True, progress=False)
    assert res.summary["epochs"] == 2 and run.is_finished()
    assert [r["epoch"] for r in _thetas(run.records())] == [1, 2]
    assert _warnings(capsys.readouterr().err) == []  # ...and does not warn again


def test_stop_on_collapse_from_the_command_line(zoomed_out, data_file, tmp_path, capsys):
    argv = [
        "train",
        "--data",
        str(data_file),
        "--model",
        zoomed_out,
        "--size",
        "small",
        "--epochs",
        "2",
        "--theta-images",
        "20",
        "--out",
        str(tmp_path / "run"),
        "--quiet",
    ]
    assert main([*argv, "--stop-on-collapse"]) == 2
    warning, error = capsys.readouterr().err.splitlines()
    assert "zoomed out" in warning
    assert error.startswith("stnlab train: error: stopped after epoch 1")
    assert "zoomed-out transformers.0 (zoomed out) looks collapsed" in error
    assert main([*argv, "--resume"]) == 0


def test_statistics_off_and_bad_settings(tiny_data, fails_with):
    seen: list[dict] = []
    train(_run("stn", epochs=1, theta_images=0), tiny_data, progress=False, on_record=[seen.append])
    assert _thetas(seen) == []
    with pytest.raises(ConfigError, match="stop_on_collapse needs the θ statistics"):
        TrainConfig(theta_images=0, stop_on_collapse=True)
    fails_with(["train", "--theta-images", "-1"], "--theta-images must be 0 or positive")


def test_warnings_skip_what_earlier_records_warned():
    lines: list[str] = []
    earlier = [
        {"event": "theta", "epoch": 1, "transformer": "transformers.0", "collapse": ["zoomed_out"]}
    ]
    warn = monitor.CollapseWarnings("stn", earlier, lines.append)
    zoomed = {
        "area_ratio_median": 9.0,
        "outside_fraction_median": 0.9,
        "identity_distance_px_p90": 9.0,
    }
    warn({"event": "theta", "epoch": 2, "transformer": "transformers.0", **zoomed})
    warn({"event": "theta", "epoch": 2, "transformer": "transformers.1", **zoomed})
    warn({"event": "train", "epoch": 2})
    assert len(lines) == 1 and "stn transformers.1 looks collapsed (zoomed out)" in lines[0]


def test_frozen_is_judged_by_optimizer_steps_not_epochs():
    """Epoch 3 of a run with 10 batches an epoch is 30 steps: too early to call a transformer
    that has not moved frozen; the same record after FROZEN_FROM_STEP steps is."""
    lines: list[str] = []
    warn = monitor.CollapseWarnings("stn", write=lines.append)
    still = {
        "event": "theta",
        "transformer": "transformers.0",
        "area_ratio_median": 0.49,
        "outside_fraction_median": 0.0,
        "start_distance_px_p90": 0.1,
    }
    warn({**still, "epoch": 3, "step": 30})
    warn({**still, "epoch": 4})  # an older record without steps: never called frozen
    assert lines == []
    warn({**still, "epoch": 15, "step": monitor.FROZEN_FROM_STEP})
    assert len(lines) == 1 and "frozen at its initial warp" in lines[0]
    assert f"after {monitor.FROZEN_FROM_STEP} steps" in lines[0]
