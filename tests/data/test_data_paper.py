"""The STN paper's variants against its stated protocol: the drawn parameters' ranges and
moments on thousands of draws (fixed seeds), and what the canvases show of them."""

from __future__ import annotations

import numpy as np
import pytest

from stnlab.data import Digits, get_variant, make_cluttered
from stnlab.data.cluttered import _clutter, _render, _sample

N = 4000


def draws(name: str, n: int = N, m: int = 100, seed: int = 0) -> dict[str, np.ndarray]:
    return _sample(np.random.default_rng(seed), m, n, get_variant(name))


def uniform_moments(x: np.ndarray, lo: float, hi: float) -> None:
    """Within [lo, hi], reaching near both ends, with the mean and variance of U(lo, hi)."""
    width = hi - lo
    assert lo <= x.min() < lo + 0.01 * width and hi - 0.01 * width < x.max() <= hi
    assert abs(x.mean() - (lo + hi) / 2) < 0.02 * width
    assert abs(x.var() / (width**2 / 12) - 1) < 0.05


def test_rotated_is_uniform_in_90_degrees_and_nothing_else():
    p = draws("rotated")
    uniform_moments(np.rad2deg(p["angle"]), -90, 90)
    assert (p["scale"] == 1).all() and (p["shift"] == 0).all()
    assert get_variant("rotated").canvas == 28 and get_variant("rotated").patches == 0


def test_rts_rotates_45_scales_07_to_12_and_moves_in_42():
    p, v = draws("rts"), get_variant("rts")
    uniform_moments(np.rad2deg(p["angle"]), -45, 45)
    uniform_moments(p["scale"], 0.7, 1.2)
    uniform_moments(p["shift"].ravel(), -7, 7)  # the 28-pixel box anywhere in the 42 canvas
    assert v.canvas == 42 and 28 + 2 * v.shift == 42


def test_projective_paper_scales_then_moves_each_corner_by_5_pixels():
    p = draws("projective-paper")
    uniform_moments(p["scale"], 0.75, 1.0)
    jitter = p["jitter"]  # (N, 4, 2) canvas pixels, after the scaling
    assert jitter.shape == (N, 4, 2)
    assert abs(jitter.mean()) < 0.1 and abs(jitter.std() - 5.0) < 0.1
    assert (p["corners"] == 0).all() and (p["angle"] == 0).all()


def test_projective_kept_its_draws():
    # The old variant has no pixel jitter, so its data (and runs on it) are unchanged.
    assert "jitter" not in draws("projective")
    assert abs(draws("projective")["corners"].std() - 0.15) < 0.005


def test_elastic_control_points_are_the_stated_noise():
    p = draws("elastic")
    assert p["control"].shape == (N, 2, 4, 4)
    assert abs(p["control"].std() - 1.5) < 0.03 and abs(p["control"].mean()) < 0.03


@pytest.mark.parametrize("name, count, size", [("60x60-stn", 6, 6), ("60x60-ram", 4, 8)])
def test_cluttered_layouts_have_their_patch_count_and_size(name, count, size):
    v = get_variant(name)
    assert v.canvas == 60 and v.placement == "uniform"
    p = draws(name, n=500, m=30)
    assert p["at"].shape == (500, count, 2) and p["crop"].shape == (500, count, 2)
    assert p["at"].min() == 0 and p["at"].max() == 60 - size
    assert p["crop"].min() == 0 and p["crop"].max() == 28 - size
    assert (p["clutter"] != p["which"][:, None]).all()  # crops of *other* digits
    # On the canvas: white digits give the union of count squares of size × size.
    canvas = np.zeros((500, 60, 60), np.float32)
    _clutter(canvas, np.full((30, 28, 28), 255, np.uint8), p, v)
    expected = np.zeros_like(canvas, dtype=bool)
    for i, k in np.ndindex(500, count):
        y, x = p["at"][i, k]
        expected[i, y : y + size, x : x + size] = True
    assert ((canvas > 0) == expected).all()


def test_60x60_is_still_the_ram_layout():
    assert get_variant("60x60") == get_variant("60x60-ram")


def _blob_pool() -> Digits:
    """One digit: a 3×3 block centred on pixel (row 4, col 14), 9.5 px above the centre."""
    image = np.zeros((1, 28, 28), np.uint8)
    image[0, 3:6, 13:16] = 255
    return Digits(image, np.zeros(1, np.int64))


def _centroid(images: np.ndarray) -> np.ndarray:
    """(x, y) of each image's mass, in pixels from the canvas centre, (N, 2)."""
    side = images.shape[-1]
    c = np.arange(side) + 0.5 - side / 2
    mass = images.sum((1, 2))
    return np.stack([(images.sum(1) * c).sum(1), (images.sum(2) * c).sum(1)], 1) / mass[:, None]


def test_rotated_canvases_show_the_drawn_angle():
    # Recovered from the pixels: the blob turns about the centre by the drawn angle.
    pool, v = _blob_pool(), get_variant("rotated")
    p = _sample(np.random.default_rng(1), 1, 500, v)
    x, y = _centroid(_render(pool.images, p, v)).T
    seen = np.arctan2(y, x) - np.arctan2(-9.5, 0.5)
    error = np.rad2deg(np.angle(np.exp(1j * (seen - p["angle"]))))
    assert np.abs(error).max() < 2.0
    assert np.hypot(x, y) == pytest.approx(np.full(500, np.hypot(9.5, 0.5)), abs=0.3)


def test_rts_canvases_show_the_drawn_scale_and_shift():
    pool, v = _blob_pool(), get_variant("rts")
    p = _sample(np.random.default_rng(2), 1, 500, v)
    centre = _centroid(_render(pool.images, p, v))
    c, s = np.cos(p["angle"]), np.sin(p["angle"])
    blob = np.array([0.5, -9.5])
    expected = (
        p["scale"][:, None] * np.stack([c * blob[0] - s * blob[1], s * blob[0] + c * blob[1]], 1)
        + p["shift"]
    )
    assert np.abs(centre - expected).max() < 0.5


def test_the_paper_variants_make_canvases():
    pool = _blob_pool()
    for name in ("projective-paper", "60x60-stn", "60x60-ram"):
        x, _ = make_cluttered(Digits(np.repeat(pool.images, 3, 0), np.arange(3)), 8, name)
        assert x.shape[1] == get_variant(name).canvas
