"""A thin-plate spline made visible: the sampled-STN figure, ``predict --show`` and
``inspect --show`` draw its control points (sources on the input, targets on the output)
and its warped grid, checked against positions computed here from θ."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import fixed_theta, saved_run
from PIL import Image

from stnlab import cli, models
from stnlab.predict import picture
from stnlab.report import figures
from stnlab.report.introspect import sample_design

K = 4  # the models' TPS: a 4×4 grid of control points spanning [-1, 1]
REST = [(x, y) for y in np.linspace(-1, 1, K) for x in np.linspace(-1, 1, K)]  # row-major


def _pixels(points, size: int) -> np.ndarray:
    """Normalised (x, y) points as pixel (x, y) of a size×size image (align_corners=False)."""
    return (np.asarray(points) + 1) * size / 2 - 0.5


def _affine_sources(a: np.ndarray, t: np.ndarray) -> np.ndarray:
    """The rest positions moved by the affine map p -> a p + t, (K², 2)."""
    return np.asarray(REST) @ a.T + t


def _tps_model(name: str, sources: np.ndarray, size: int = 24) -> models.Model:
    """A small ``name`` with TPS transformers whose θ is ``sources`` (K², 2) for every image."""
    model = models.create(name, size="small", in_size=size, transform="tps")
    return fixed_theta(model, sources.reshape(-1).tolist())


def _artist(ax, gid: str):
    (found,) = [a for a in [*ax.lines, *ax.collections] if a.get_gid() == gid]
    return found


def _gids(fig) -> set[str]:
    return {a.get_gid() for ax in fig.axes for a in [*ax.lines, *ax.collections] if a.get_gid()}


A = np.array([[0.6, 0.1], [-0.05, 0.5]])  # zoom in, a little shear
T0 = np.array([0.2, -0.1])  # and look right of the centre, up


def test_predict_picture_draws_the_control_points_where_theta_puts_them():
    sources = _affine_sources(A, T0)
    sources[5] += (0.15, 0.1)  # one inner point moved off the affine map: a real bend
    fig = picture(_tps_model("stn", sources), torch.rand(2, 1, 24, 24), ["a", "b"])
    row = fig.axes[:2]  # the first image: input + grid, output
    drawn = _artist(row[0], "control-source-0").get_offsets()
    np.testing.assert_allclose(drawn, _pixels(sources, 24), atol=1e-4)
    target = _artist(row[1], "control-target-0").get_offsets()
    np.testing.assert_allclose(target, _pixels(REST, 24), atol=1e-5)  # the 4×4 rest grid
    assert len(drawn) == len(target) == K * K
    # The warped grid: a line through each row and each column of control points, each
    # passing within a pixel of every source point of its row (or column).
    lines = [_artist(row[0], f"lattice-0-{j}").get_xydata() for j in range(2 * K)]
    for j, line in enumerate(lines):
        on_it = [k for k in range(K * K) if (k // K if j < K else k % K) == j % K]
        for k in on_it:
            assert np.min(np.linalg.norm(line - _pixels(sources[k], 24), axis=1)) < 1.0
    assert not any(a.get_gid() == "lattice-0-8" for a in row[0].lines)  # 2k lines, no more


def test_the_warped_grid_of_an_affine_tps_is_that_affine_map():
    # A TPS reproduces affine maps exactly, so every point of its drawn grid is a p + t.
    fig = picture(_tps_model("stn", _affine_sources(A, T0)), torch.rand(1, 1, 24, 24))
    ax = fig.axes[0]
    along = np.linspace(-1 + 1 / 24, 1 - 1 / 24, 48)  # the outermost pixel centres
    for j, y in enumerate(np.linspace(-1, 1, K)):  # the row lines come first
        expected = np.stack([along, np.full_like(along, y)], 1) @ A.T + T0
        got = _artist(ax, f"lattice-0-{j}").get_xydata()
        np.testing.assert_allclose(got, _pixels(expected, 24), atol=1e-3)


def test_an_affine_transformer_has_no_control_points_or_warped_grid():
    model = models.create("stn", size="small", in_size=24)
    fig = picture(model, torch.rand(1, 1, 24, 24))
    assert _gids(fig) == {"outline-0"}  # the sampling box, as before
    assert "control points" not in fig._suptitle.get_text()


def test_the_report_figure_draws_both_stages_of_a_tps_mstn():
    # Both transformers zoom in 2×. Stage 2 warps stage 1's 20×20 feature maps, so its
    # control points are drawn through stage 1, back on the 40×40 image: a 4× zoom there.
    model = _tps_model("mstn", 0.5 * np.asarray(REST), size=40)
    x, labels = torch.rand(3, 1, 40, 40), np.array([1, 2, 3])
    design = sample_design("mstn", model, x)
    fig = figures.sampled(x.mean(1).numpy(), labels, [design])
    ax_input, ax_stage1, ax_stage2 = fig.axes[:3]
    for stage, zoom in ((0, 0.5), (1, 0.25)):
        drawn = _artist(ax_input, f"control-source-{stage}").get_offsets()
        np.testing.assert_allclose(drawn, _pixels(zoom * np.asarray(REST), 40), atol=1e-3)
    np.testing.assert_allclose(
        _artist(ax_stage1, "control-target-0").get_offsets(), _pixels(REST, 40), atol=1e-5
    )
    np.testing.assert_allclose(  # stage 2's output is 20×20: its own pixels
        _artist(ax_stage2, "control-target-1").get_offsets(), _pixels(REST, 20), atol=1e-5
    )
    assert "TPS control points" in fig._suptitle.get_text()
    assert {f"lattice-{s}-{j}" for s in (0, 1) for j in range(2 * K)} <= _gids(fig)


def _first_point_colour(png) -> int:
    """Pixels of the colour of control point 0 (rainbow's first: violet) in a PNG."""
    rgb = np.asarray(Image.open(png).convert("RGB"), dtype=np.int16)
    violet = np.array([128, 0, 255])
    return int((np.abs(rgb - violet).max(-1) < 40).sum())


@pytest.mark.parametrize("transform", ["tps", "affine"])
def test_inspect_show_draws_a_tps_run(tmp_path, data_file, capsys, transform):
    model = models.create("stn", size="small", transform=transform)
    if transform == "tps":
        fixed_theta(model, _affine_sources(A, T0).reshape(-1).tolist())
    run = saved_run(tmp_path / transform, model)
    shown = tmp_path / "inspect.png"
    argv = ["inspect", str(run), "--data", str(data_file), "--show", str(shown), "--samples", "2"]
    assert cli.main([*argv, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["picture"] == str(shown)
    two = Image.open(shown).size
    violet = _first_point_colour(shown)
    assert violet > 5 if transform == "tps" else violet == 0  # control points, or none
    assert cli.main([*argv[:-1], "3"]) == 0
    out = capsys.readouterr().out
    assert f"what the transformers did to the first 3 test images: {shown}" in out
    assert Image.open(shown).size[1] > two[1] * 1.3  # a row per image


def test_inspect_show_refuses_no_samples(tmp_path, data_file, fails_with):
    run = saved_run(tmp_path / "stn", models.create("stn", size="small"))
    fails_with(
        ["inspect", str(run), "--data", str(data_file), "--show", "x.png", "--samples", "0"],
        "--samples must be positive, got 0",
    )
