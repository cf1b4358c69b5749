"""Tests of the per-epoch θ statistics in training: theta records, collapse warnings, the stop."""

from __future__ import annotations

import math

import pytest
import torch

from stnlab import diagnostics, models
from stnlab.cli import main
from stnlab.config import ModelConfig, RunConfig, TrainConfig
from stnlab.config.errors import ConfigError, TransformerCollapsedError
from stnlab.runs.records import Record, ThetaRecord, TrainRecord
from stnlab.runs.run_folder import RunDir
from stnlab.train import monitor
from stnlab.train.loop import train
from stnlab.train.monitor import collapse

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


def _thetas(records: list[Record]) -> list[ThetaRecord]:
    return [r for r in records if isinstance(r, ThetaRecord)]


def _warnings(text: str) -> list[str]:
    return [line for line in text.splitlines() if "looks collapsed" in line]


def test_theta_records_are_the_statistics_of_the_first_validation_images(tiny_data):
    seen: list[Record] = []
    res = train(
        _run("mstn", epochs=1, theta_images=50), tiny_data, progress=False, on_record=[seen.append]
    )
    thetas = _thetas(seen)
    assert [(r.epoch, r.transformer) for r in thetas] == [
        (1, "transformers.0"),
        (1, "transformers.1"),
    ]
    assert {r.step for r in thetas} == {len(tiny_data.y_train) // 200}  # one epoch's steps
    # The last epoch's records are the diagnostics of the final model on x_valid[:50]
    # (to float32 rounding: training runs the model in channels-last memory order).
    expected = diagnostics.summarize_model(res.model, tiny_data.x_valid[:50])
    for r in thetas[-2:]:
        assert r.figures == pytest.approx(expected[r.transformer], rel=1e-5, abs=1e-6)
        assert r.collapse == tuple(collapse(r.figures, "x", r.step))  # () here: healthy


def test_the_statistics_do_not_change_training(tiny_data):
    def losses(n: int) -> list[tuple]:
        seen: list[Record] = []
        train(
            _run("stn", epochs=2, theta_images=n),
            tiny_data,
            progress=False,
            on_record=[seen.append],
        )
        return [(type(r), r.loss) for r in seen if not isinstance(r, ThetaRecord)]

    without = losses(0)
    assert losses(200) == without and len(without) == 4  # 2 train + valid/test at the end


def test_a_five_times_zoom_out_warns_exactly_once(zoomed_out, tiny_data, tmp_path, capsys):
    seen: list[Record] = []
    train(_run(zoomed_out), tiny_data, tmp_path, progress=False, on_record=[seen.append])
    thetas = _thetas(seen)
    assert [r.collapse for r in thetas] == [("zoomed_out",)] * 2  # collapsed every epoch...
    assert thetas[0].figures["area_ratio_median"] == pytest.approx(ZOOM**2, rel=0.01)
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
    assert res.summary.epochs == 2 and run.is_finished()
    assert [r.epoch for r in _thetas(run.records())] == [1, 2]
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
    seen: list[Record] = []
    train(_run("stn", epochs=1, theta_images=0), tiny_data, progress=False, on_record=[seen.append])
    assert _thetas(seen) == []
    with pytest.raises(ConfigError, match="stop_on_collapse needs the θ statistics"):
        TrainConfig(theta_images=0, stop_on_collapse=True)
    fails_with(["train", "--theta-images", "-1"], "--theta-images must be 0 or positive")


def test_warnings_skip_what_earlier_records_warned():
    lines: list[str] = []
    zoomed = {
        "area_ratio_median": 9.0,
        "outside_fraction_median": 0.9,
        "identity_distance_px_p90": 9.0,
    }
    earlier = [ThetaRecord(1, "transformers.0", zoomed, ("zoomed_out",))]
    warn = monitor.CollapseWarnings("stn", earlier, lines.append)
    warn(ThetaRecord(2, "transformers.0", zoomed))
    warn(ThetaRecord(2, "transformers.1", zoomed))
    warn(TrainRecord(2, loss=1.0, accuracy=0.5, lr=1e-3, seconds=1.0))
    assert len(lines) == 1 and "stn transformers.1 looks collapsed (zoomed out)" in lines[0]


def test_frozen_is_judged_by_optimizer_steps_not_epochs():
    """Epoch 3 of a run with 10 batches an epoch is 30 steps: too early to call a transformer
    that has not moved frozen; the same record after FROZEN_FROM_STEP steps is."""
    lines: list[str] = []
    warn = monitor.CollapseWarnings("stn", write=lines.append)
    still = {
        "area_ratio_median": 0.49,
        "outside_fraction_median": 0.0,
        "start_distance_px_p90": 0.1,
    }
    warn(ThetaRecord(3, "transformers.0", still, step=30))
    warn(ThetaRecord(4, "transformers.0", still))  # an older record without steps: never frozen
    assert lines == []
    warn(ThetaRecord(15, "transformers.0", still, step=monitor.FROZEN_FROM_STEP))
    assert len(lines) == 1 and "frozen at its initial warp" in lines[0]
    assert f"after {monitor.FROZEN_FROM_STEP} steps" in lines[0]


# ----------------------------------------------------------------------------- the collapse rules


def summary_of(a: list[list[float]], n: int = 5) -> dict[str, float]:
    theta = torch.tensor(a, dtype=torch.float64).reshape(1, 6).expand(n, 6)
    return diagnostics.summarize(diagnostics.measure(theta, 40, 40))


def test_five_times_zoom_out_is_one_zoomed_out_warning():
    found = collapse(summary_of([[5, 0, 0], [0, 5, 0]]), "stn transformers.0", step=200)
    assert list(found) == ["zoomed_out"]  # its off-image points are part of the same warning
    text = found["zoomed_out"]
    assert "\n" not in text
    for part in ("stn transformers.0", "zoomed out", "area ratio 25 > 4", "96% of it padding"):
        assert part in text
    for remedy in ("--loc-lr", "identity", "normalis", "padding"):
        assert remedy in text


def test_zoom_limits_are_strict_and_named():
    just = math.sqrt(monitor.AREA_RATIO_MAX)
    assert collapse(summary_of([[just * 0.99, 0, 0], [0, just * 0.99, 0]]), "t") == {}
    assert "zoomed_out" in collapse(summary_of([[just * 1.01, 0, 0], [0, just * 1.01, 0]]), "t")
    tiny = math.sqrt(monitor.AREA_RATIO_MIN)
    assert collapse(summary_of([[tiny * 1.01, 0, 0], [0, tiny * 1.01, 0]]), "t") == {}
    found = collapse(summary_of([[tiny * 0.99, 0, 0], [0, tiny * 0.99, 0]]), "t")
    assert list(found) == ["zoomed_in"] and "< 0.02" in found["zoomed_in"]


def test_sliding_off_the_image_is_off_image():
    found = collapse(summary_of([[1, 0, 1.6], [0, 1, 0]]), "mstn transformers.1")
    assert list(found) == ["off_image"]
    assert "80% of the sampling points off the image (> 75%)" in found["off_image"]
    assert collapse(summary_of([[1, 0, 1.4], [0, 1, 0]]), "t") == {}  # 70%: not enough


def test_frozen_at_the_identity_only_after_the_first_steps():
    identity = summary_of([[1, 0, 0], [0, 1, 0]])
    assert collapse(identity, "t") == {}
    assert collapse(identity, "t", step=monitor.FROZEN_FROM_STEP - 1) == {}
    found = collapse(identity, "stn transformers.0", step=monitor.FROZEN_FROM_STEP)
    assert list(found) == ["frozen"]
    assert "higher --loc-lr" in found["frozen"]
    moving = summary_of([[0.9, 0.05, 0.1], [0, 0.9, 0.05]])
    assert collapse(moving, "t", step=500) == {}


def test_a_transformer_that_never_leaves_its_initial_zoom_is_frozen():
    model = models.create("stn", size="small")  # starts at a centred zoom, not the identity
    st = model.transformers[0]
    assert st.init_zoom != 1
    (summary,) = diagnostics.summarize_model(model, torch.rand(4, 1, 40, 40)).values()
    assert summary["start_distance_px_p90"] < 1e-5 < 1 < summary["identity_distance_px_p90"]
    found = collapse(summary, "stn transformers.0", step=monitor.FROZEN_FROM_STEP)
    assert list(found) == ["frozen"] and "frozen at its initial warp" in found["frozen"]
    without_start = {k: v for k, v in summary.items() if not k.startswith("start_")}
    assert collapse(without_start, "t", step=monitor.FROZEN_FROM_STEP) == {}  # older records
