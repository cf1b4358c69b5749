"""Tests of stnlab.diagnostics: what θ does to the input, checked against literal references."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from conftest import MATRIX_FAMILIES, perturb
from torch import nn

from stnlab import SpatialTransformer, models, sample
from stnlab import diagnostics as D
from stnlab import transforms as T


def affine_in(family: T.Transform, a: list[list[float]]) -> torch.Tensor:
    """θ (1, P) of ``family`` for the affine map a = [[a11, a12, t1], [a21, a22, t2]], float64."""
    a = torch.tensor(a, dtype=torch.float64)
    if family.name == "tps":  # move the control points' rest positions through a
        rest = family.identity(1, dtype=torch.float64).reshape(-1, 2)  # (K, 2)
        return (rest @ a[:, :2].T + a[:, 2]).reshape(1, -1)
    matrix = torch.cat([a, a.new_tensor([[0.0, 0.0, 1.0]])])[None]  # (1, 3, 3)
    theta = family.from_matrix(matrix)
    torch.testing.assert_close(family.matrix(theta), matrix)  # a is in the family
    return theta


def general_affine(family: T.Transform) -> list[list[float]]:
    """A skewed affine map, or a scale and shift for attention (which has nothing else)."""
    if family.name == "attention":
        return [[0.7, 0, 0.1], [0, 0.7, -0.05]]
    return [[0.7, 0.3, 0.1], [-0.2, 0.9, -0.05]]


def random_theta(name: str, n: int, seed: int, spread: float = 0.2) -> torch.Tensor:
    """Random float64 θ of a matrix family around the identity."""
    g = torch.Generator().manual_seed(seed)
    family = T.get(name)
    theta = family.identity(n, dtype=torch.float64)
    noise = torch.randn(theta.shape, generator=g, dtype=torch.float64)
    if name == "projective":
        noise[:, 6:] *= 0.3  # a mild perspective that keeps the horizon off the image
    return theta + spread * noise


def pixel_of(coord: float, size: int) -> float:
    """Normalised coordinate -> pixel (centres at integers), written out for the tests."""
    return ((coord + 1) * size - 1) / 2


# --------------------------------------------------------------------------- area and padding


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_identity_samples_the_whole_image_and_nothing_outside(family, dtype):
    theta = family.identity(3, dtype=dtype)
    area = D.area_ratio(theta, (6, 8), family)
    assert area.dtype == dtype and area.shape == (3,)
    if family.name in MATRIX_FAMILIES:
        assert torch.equal(area, torch.ones(3, dtype=dtype))  # exactly 1
    else:  # 1 up to the rounding of the TPS grid
        atol = 1e-12 if dtype == torch.float64 else 1e-6
        torch.testing.assert_close(area, torch.ones(3, dtype=dtype), rtol=0, atol=atol)
    assert torch.equal(D.outside_fraction(theta, (6, 8), family), torch.zeros(3, dtype=dtype))
    torch.testing.assert_close(D.centre_shift(theta, 40, family), torch.zeros(3, 2, dtype=dtype))
    assert D.identity_distance(theta, 40, (6, 8), family).max() < 1e-5


def test_two_times_zoom_in_samples_a_quarter(family):
    theta = affine_in(family, [[0.5, 0, 0], [0, 0.5, 0]])
    torch.testing.assert_close(D.area_ratio(theta, 40, family), torch.tensor([0.25]).double())
    assert D.outside_fraction(theta, 40, family).item() == 0


@pytest.mark.parametrize("out_size", [40, (8, 12)])
def test_two_times_zoom_out_samples_four_images_mostly_padding(family, out_size):
    theta = affine_in(family, [[2, 0, 0], [0, 2, 0]])
    torch.testing.assert_close(D.area_ratio(theta, out_size, family), torch.tensor([4.0]).double())
    assert D.outside_fraction(theta, out_size, family).item() == 0.75


def test_area_ratio_of_a_general_affine_map_is_its_determinant(family):
    a = general_affine(family)
    expected = abs(a[0][0] * a[1][1] - a[0][1] * a[1][0])
    area = D.area_ratio(affine_in(family, a), (9, 7), family)
    torch.testing.assert_close(
        area, torch.tensor([expected], dtype=torch.float64), rtol=0, atol=1e-12
    )


def test_projective_area_is_the_quadrilateral_of_the_mapped_corners():
    theta = torch.tensor([[0.9, 0.1, 0.05, -0.1, 0.8, 0.0, 0.2, -0.1]], dtype=torch.float64)
    h = torch.cat([theta, theta.new_ones(1, 1)], 1).reshape(3, 3).numpy()
    corners = []
    for x, y in [(-1, -1), (1, -1), (1, 1), (-1, 1)]:  # around the output square
        u, v, w = h @ np.array([x, y, 1.0])
        corners.append((u / w, v / w))
    shoelace = sum(
        x0 * y1 - x1 * y0
        for (x0, y0), (x1, y1) in zip(corners, corners[1:] + corners[:1], strict=True)
    )
    area = D.area_ratio(theta, 10, "projective")
    assert area.item() == pytest.approx(abs(shoelace) / 2 / 4, abs=1e-12)


def test_projective_area_beyond_the_horizon_is_infinite():
    theta = torch.tensor([[1.0, 0, 0, 0, 1, 0, 1.5, 0]])  # w = 1 + 1.5 x is negative at x = -1
    assert math.isinf(D.area_ratio(theta, 8, "projective").item())


def test_outside_fraction_counts_pixel_centres_literally():
    theta = torch.tensor([[0.8, 0.2, 0.6, -0.1, 1.1, -0.3]], dtype=torch.float64)
    h, w = 7, 9
    outside = 0
    for r in range(h):
        for c in range(w):
            x, y = (2 * c + 1) / w - 1, (2 * r + 1) / h - 1
            xs, ys = 0.8 * x + 0.2 * y + 0.6, -0.1 * x + 1.1 * y - 0.3
            outside += abs(xs) > 1 or abs(ys) > 1
    assert D.outside_fraction(theta, (h, w)).item() == pytest.approx(outside / (h * w))


def test_a_point_on_the_edge_is_inside():
    # Output width 4: pixel centres at x = ±0.25, ±0.75; shifted by 0.25 the last is at 1.0.
    on_edge = torch.tensor([[1.0, 0, 0.25, 0, 1, 0]], dtype=torch.float64)
    assert D.outside_fraction(on_edge, (1, 4)).item() == 0
    past_edge = torch.tensor([[1.0, 0, 0.5, 0, 1, 0]], dtype=torch.float64)
    assert D.outside_fraction(past_edge, (1, 4)).item() == 0.25


def test_area_gradcheck(family):
    theta = affine_in(family, general_affine(family)).requires_grad_()
    assert torch.autograd.gradcheck(lambda p: D.area_ratio(p, (4, 5), family), (theta,))


def test_batched_equals_per_sample(family):
    torch.manual_seed(0)
    theta = family.identity(3, dtype=torch.float64)
    theta = theta + 0.1 * torch.randn_like(theta)
    batched = D.measure(theta, 12, (6, 7), family)
    for i in range(3):
        single = D.measure(theta[i : i + 1], 12, (6, 7), family)
        for key, values in batched.items():
            torch.testing.assert_close(values[i : i + 1], single[key], rtol=0, atol=1e-12)


# --------------------------------------------------------------------------- centre shift


@pytest.mark.parametrize(("dx", "dy"), [(3, 0), (0, -2), (-5, 4)])
def test_whole_pixel_translation_is_that_shift_in_pixels(family, dx, dy):
    h, w = 20, 40
    theta = affine_in(family, [[1, 0, 2 * dx / w], [0, 1, 2 * dy / h]])
    shift = D.centre_shift(theta, (h, w), family)
    torch.testing.assert_close(shift, torch.tensor([[dx, dy]]).double(), rtol=0, atol=1e-12)
    # The content really moves by that shift: output pixel (r, c) shows input (r + dy, c + dx).
    U = torch.rand(1, 1, h, w, dtype=torch.float64)
    V = sample(U, family.grid(theta, (h, w)))
    rows, cols = slice(max(0, -dy), h - max(0, dy)), slice(max(0, -dx), w - max(0, dx))
    moved = U[..., rows.start + dy : rows.stop + dy, cols.start + dx : cols.stop + dx]
    torch.testing.assert_close(V[..., rows, cols], moved, rtol=0, atol=1e-10)


def test_centre_shift_uses_the_input_size_not_the_output_size():
    theta = torch.tensor([[0.5, 0, 0.25, 0, 0.5, -0.5]])
    st = SpatialTransformer(1, (40, 60), out_size=10)
    shift = D.centre_shift(theta, st.in_size)
    torch.testing.assert_close(shift, torch.tensor([[0.25 * 30, -0.5 * 20]]))


# --------------------------------------------------------------------------- decomposition


def literal_affine(sx, sy, rot, shear, tx, ty) -> np.ndarray:
    """[[A | t]] with A = R(rot) · [[1, shear], [0, 1]] · diag(sx, sy), written out."""
    r = np.array([[math.cos(rot), -math.sin(rot)], [math.sin(rot), math.cos(rot)]])
    a = r @ np.array([[1.0, shear], [0.0, 1.0]]) @ np.diag([sx, sy])
    return np.concatenate([a, [[tx], [ty]]], axis=1)


PARTS = [
    (1.0, 1.0, 0.0, 0.0, 0.0, 0.0),
    (0.5, 0.7, 0.4, 0.0, 0.1, -0.2),
    (1.2, 0.8, -2.5, 0.3, -0.3, 0.0),
    (0.6, 0.6, 3.0, -0.45, 0.0, 0.4),
    (0.9, -0.8, 1.0, 0.2, 0.0, 0.0),  # a mirror: negative scale_y
]


@pytest.mark.parametrize("parts", PARTS)
def test_decompose_recovers_scale_rotation_shear_and_translation(parts):
    theta = torch.from_numpy(literal_affine(*parts).reshape(1, 6))
    d = D.decompose(theta)
    found = [d.scale_x, d.scale_y, d.rotation, d.shear, *d.translation.unbind(1)]
    torch.testing.assert_close(
        torch.cat(found), torch.tensor(parts, dtype=torch.float64), rtol=0, atol=1e-12
    )
    torch.testing.assert_close(d.affine_theta(), theta, rtol=0, atol=1e-12)
    as_projective = torch.cat([theta, theta.new_zeros(1, 2)], 1)
    torch.testing.assert_close(D.decompose(as_projective, "projective").rotation, d.rotation)


def test_decompose_matches_stnlab_rotation_and_rot90():
    d = D.decompose(T.rotation(torch.tensor([0.3, -1.2], dtype=torch.float64), scale=0.7))
    torch.testing.assert_close(d.rotation, torch.tensor([0.3, -1.2]).double())
    torch.testing.assert_close(d.scale_x, torch.full((2,), 0.7).double())
    torch.testing.assert_close(d.shear, torch.zeros(2).double(), rtol=0, atol=1e-12)
    # A quarter turn of the grid shows the input as torch.rot90(k=1), as the docstring says.
    U = torch.rand(1, 1, 6, 6, dtype=torch.float64)
    one, zero = torch.ones(1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)
    quarter = D.Decomposition(one, one, math.pi / 2 * one, zero, torch.zeros(1, 2).double())
    V = sample(U, T.get("affine").grid(quarter.affine_theta(), 6))
    torch.testing.assert_close(V, torch.rot90(U, 1, (-2, -1)), rtol=0, atol=1e-12)


def test_decompose_attention():
    d = D.decompose(torch.tensor([[0.4, 0.1, -0.2]]), "attention")
    torch.testing.assert_close(torch.cat([d.scale_x, d.scale_y]), torch.tensor([0.4, 0.4]))
    assert d.rotation.item() == 0 and d.shear.item() == 0
    torch.testing.assert_close(d.translation, torch.tensor([[0.1, -0.2]]))


def test_projective_decomposes_its_jacobian_at_the_centre():
    theta = torch.tensor([[0.9, 0.2, 0.1, -0.1, 0.8, -0.2, 0.3, -0.2]], dtype=torch.float64)
    h = np.append(theta.numpy()[0], 1.0).reshape(3, 3)

    def warp(x, y):  # the homography, written out
        u, v, w = h @ np.array([x, y, 1.0])
        return np.array([u / w, v / w])

    eps = 1e-6
    jacobian = np.stack(
        [(warp(eps, 0) - warp(-eps, 0)) / (2 * eps), (warp(0, eps) - warp(0, -eps)) / (2 * eps)],
        axis=1,
    )
    d = D.decompose(theta, "projective")
    expected = np.concatenate([jacobian, warp(0, 0)[:, None]], axis=1).reshape(1, 6)
    torch.testing.assert_close(d.affine_theta(), torch.from_numpy(expected), rtol=0, atol=1e-8)


# --------------------------------------------------------------------------- inversion


@pytest.mark.parametrize("name", MATRIX_FAMILIES)
def test_invert_composed_with_theta_is_the_identity(name):
    family = T.get(name)
    theta = random_theta(name, 5, seed=1)
    inverse = D.invert(theta, name)
    identity = family.identity(5, dtype=torch.float64)
    torch.testing.assert_close(family.compose(inverse, theta), identity, rtol=0, atol=1e-6)
    torch.testing.assert_close(family.compose(theta, inverse), identity, rtol=0, atol=1e-6)
    # and literally: the inverse's grid undoes θ's grid point by point
    points = family.grid(theta, (5, 6))  # (N, 5, 6, 2) source points of θ
    m = family.matrix(inverse)
    back = torch.einsum(
        "nij,nhwj->nhwi", m, torch.cat([points, torch.ones_like(points[..., :1])], -1)
    )
    expected = T.target_grid((5, 6), dtype=torch.float64)[:, :2].reshape(5, 6, 2)
    torch.testing.assert_close(back[..., :2] / back[..., 2:], expected.expand(5, -1, -1, -1))


def test_invert_rejects_singular_theta_and_tps():
    with pytest.raises(ValueError, match="θ 1 is singular"):
        D.invert(torch.tensor([[1.0, 0, 0, 0, 1, 0], [1, 2, 0, 2, 4, 0]]))
    with pytest.raises(ValueError, match=r"invert needs a matrix family .*tps has no 3×3 matrix"):
        D.invert(T.get("tps").identity(1), "tps")


# --------------------------------------------------------------------------- pixel matrices


@pytest.mark.parametrize("name", MATRIX_FAMILIES)
def test_to_pixels_agrees_with_a_literal_per_pixel_mapping(name):
    family = T.get(name)
    theta = random_theta(name, 2, seed=2)
    (h_in, w_in), (h_out, w_out) = (9, 13), (5, 7)
    P = D.to_pixels(theta, (h_in, w_in), (h_out, w_out), name).numpy()  # (2, 3, 3)
    grid = family.grid(theta, (h_out, w_out)).numpy()  # where stnlab samples, normalised
    for n in range(2):
        for r in range(h_out):
            for c in range(w_out):
                xs, ys = grid[n, r, c]
                expected = (pixel_of(xs, w_in), pixel_of(ys, h_in))
                u, v, w = P[n] @ np.array([c, r, 1.0])
                assert (u / w, v / w) == pytest.approx(expected, abs=1e-10)
    back = D.from_pixels(torch.from_numpy(P), (h_in, w_in), (h_out, w_out), name)
    torch.testing.assert_close(back, theta, rtol=0, atol=1e-12)


def test_to_pixels_of_a_centred_zoom():
    theta = torch.tensor([[0.5, 0.0, 0.0, 0.0, 0.5, 0.0]], dtype=torch.float64)
    # a 2× zoom from 40×40 to 20×20 reads the middle 20×20 pixels, one for one
    expected = torch.tensor([[[1.0, 0, 10], [0, 1, 10], [0, 0, 1]]], dtype=torch.float64)
    torch.testing.assert_close(D.to_pixels(theta, 40, 20), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", ["affine", "projective"])
def test_pixel_matrix_warp_by_hand_equals_stnlab_sample(name):
    """An independent nearest-neighbour warp by P (a loop over pixels) equals stnlab's."""
    theta = random_theta(name, 3, seed=3, spread=0.15)
    (h_in, w_in), (h_out, w_out) = (11, 9), (8, 10)
    U = torch.rand(3, 1, h_in, w_in, dtype=torch.float64)
    P = D.to_pixels(theta, (h_in, w_in), (h_out, w_out), name).numpy()
    V = np.zeros((3, h_out, w_out))
    for n in range(3):
        for r in range(h_out):
            for c in range(w_out):
                u, v, w = P[n] @ np.array([c, r, 1.0])
                x, y = u / w, v / w
                assert min(abs(x % 1 - 0.5), abs(y % 1 - 0.5)) > 1e-6  # no rounding ties
                col, row = round(x), round(y)
                if 0 <= row < h_in and 0 <= col < w_in:  # zero padding outside
                    V[n, r, c] = U[n, 0, row, col]
    grid = T.get(name).grid(theta, (h_out, w_out))
    expected = sample(U, grid, kernel="nearest")[:, 0].numpy()
    np.testing.assert_array_equal(V, expected)


def test_hand_made_pixel_translation_shifts_exactly():
    P = torch.tensor([[[1.0, 0.0, 3.0], [0.0, 1.0, -2.0]]], dtype=torch.float64)  # (1, 2, 3)
    theta = D.from_pixels(P, 12, 12)
    U = torch.rand(1, 2, 12, 12, dtype=torch.float64)
    V = sample(U, T.get("affine").grid(theta, 12))
    torch.testing.assert_close(V[..., 2:, :9], U[..., :10, 3:], rtol=0, atol=1e-12)
    torch.testing.assert_close(D.centre_shift(theta, 12), torch.tensor([[3.0, -2.0]]).double())


def test_from_pixels_rejects_matrices_outside_the_family():
    rotation = D.to_pixels(T.rotation(torch.tensor(0.3, dtype=torch.float64)), 10, 10)
    with pytest.raises(ValueError, match="pixel matrix 0 is not a attention warp"):
        D.from_pixels(rotation, 10, 10, "attention")
    perspective = torch.eye(3, dtype=torch.float64)[None].clone()
    perspective[0, 2, 0] = 0.01
    with pytest.raises(ValueError, match="not a affine warp"):
        D.from_pixels(perspective, 10, 10)
    assert D.from_pixels(perspective, 10, 10, "projective").shape == (1, 8)
    with pytest.raises(ValueError, match=r"pixel matrices must be \(N, 3, 3\) or \(N, 2, 3\)"):
        D.from_pixels(torch.eye(3), 10, 10)
    with pytest.raises(ValueError, match="from_pixels needs a matrix family"):
        D.from_pixels(torch.eye(3)[None], 10, 10, "tps")


@pytest.mark.parametrize("name", ["affine", "projective"])
def test_opencv_warp_with_inverse_map_matches(name):
    cv2 = pytest.importorskip("cv2")
    theta = random_theta(name, 1, seed=4, spread=0.1)
    yy, xx = np.mgrid[0:24, 0:32]
    img = (np.sin(xx / 4.0) * np.cos(yy / 5.0) + 1) / 2  # smooth: OpenCV's fixed point is coarse
    P = D.to_pixels(theta, (24, 32), (16, 20), name).numpy()[0]
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    if name == "affine":
        theirs = cv2.warpAffine(img, P[:2], (20, 16), flags=flags, borderValue=0)
    else:
        theirs = cv2.warpPerspective(img, P, (20, 16), flags=flags, borderValue=0)
    ours = sample(torch.from_numpy(img)[None, None], T.get(name).grid(theta, (16, 20)))
    np.testing.assert_allclose(theirs, ours[0, 0].numpy(), atol=0.03)


@pytest.mark.parametrize("name", ["affine", "projective"])
def test_kornia_warp_with_the_inverse_matrix_matches(name):
    kornia = pytest.importorskip("kornia")
    theta = random_theta(name, 2, seed=5, spread=0.1)
    U = torch.rand(2, 1, 24, 32, dtype=torch.float64)
    inverse = torch.linalg.inv(D.to_pixels(theta, (24, 32), (16, 20), name))  # source -> output
    warp = kornia.geometry.transform
    if name == "affine":
        theirs = warp.warp_affine(U, inverse[:, :2], (16, 20), align_corners=True)
    else:
        theirs = warp.warp_perspective(U, inverse, (16, 20), align_corners=True)
    ours = sample(U, T.get(name).grid(theta, (16, 20)))
    torch.testing.assert_close(theirs, ours, rtol=0, atol=1e-10)


# --------------------------------------------------------------------------- summaries


def test_summarize_gives_nearest_rank_quantiles_as_floats():
    values = torch.tensor([5.0, 1, 9, 3, 7, 0, 2, 8, 4, 10, 6])  # 0..10, shuffled
    summary = D.summarize({"area_ratio": values, "shear": -values})
    ordered = sorted(values.tolist())  # N = 11: ranks 1, 5 and 9 are exact
    assert summary == {
        "area_ratio_p10": ordered[1],
        "area_ratio_median": ordered[5],
        "area_ratio_p90": ordered[9],
        "shear_p10": -ordered[9],
        "shear_median": -ordered[5],
        "shear_p90": -ordered[1],
    }
    assert all(type(v) is float for v in summary.values())
    assert json.loads(json.dumps(summary)) == summary


def test_summarize_keeps_an_infinite_area():
    summary = D.summarize({"area_ratio": torch.tensor([1.0, math.inf, math.inf])})
    assert summary["area_ratio_median"] == math.inf


def test_measure_keys(family):
    keys = set(D.measure(family.identity(2), 10, 8, family))
    base = {"area_ratio", "outside_fraction", "shift_x_px", "shift_y_px", "identity_distance_px"}
    parts = {"scale_x", "scale_y", "rotation_deg", "shear"}
    assert keys == (base | parts if family.name in MATRIX_FAMILIES else base)


def test_summarize_model_reads_every_transformer():
    torch.manual_seed(6)
    model = models.create("mstn", size="small").train()
    x = torch.rand(4, 1, 40, 40)
    perturb(model, 0.01, seed=None)  # an input-dependent θ, not the identity
    found = D.summarize_model(model, x)
    assert model.training  # mode restored
    assert list(found) == ["transformers.0", "transformers.1"]
    model.eval()
    with torch.no_grad():
        stages = model.transform(x)
    for (_, theta), st, summary in zip(stages, model.transformers, found.values(), strict=True):
        start = D.initial_theta(st)
        assert summary == D.summarize(
            D.measure(theta, st.in_size, st.out_size, st.transform, start=start)
        )
    assert D.summarize_model(models.create("cnn", size="small"), x) == {}


def test_summarize_model_measures_half_precision_theta_in_float32():
    net = SpatialTransformer(1, 16, out_size=24).to(torch.bfloat16)
    with torch.no_grad():
        net.regressor.bias.copy_(torch.tensor([0.9, 0.1, 0.13, -0.05, 1.1, 0.07]))
    found = D.summarize_model(net, torch.rand(2, 1, 16, 16, dtype=torch.bfloat16))
    theta = net.regressor.bias.detach()[None].float()  # what the bfloat16 net predicts
    assert found[""] == D.summarize(D.measure(theta, 16, 24, start=D.initial_theta(net)))


def test_summarize_model_of_a_users_own_network():
    net = nn.Sequential(SpatialTransformer(1, 16, out_size=8), nn.Flatten(), nn.LazyLinear(3))
    found = D.summarize_model(net, torch.rand(2, 1, 16, 16))
    assert list(found) == ["0"]
    assert found["0"]["area_ratio_median"] == 1.0  # starts at the identity
    assert found["0"]["outside_fraction_p90"] == 0.0


# --------------------------------------------------------------------------- bad input


def test_bad_theta_gives_clear_errors(family):
    k = family.num_params
    with pytest.raises(ValueError, match=rf"θ must have shape \(N, {k}\), got \(2, {k + 1}\)"):
        D.area_ratio(torch.zeros(2, k + 1), 8, family)
    with pytest.raises(TypeError, match="floating point"):
        D.outside_fraction(torch.zeros(2, k, dtype=torch.long), 8, family)
    if family.name == "tps":
        with pytest.raises(ValueError, match="at least 2×2"):
            D.area_ratio(family.identity(1), (1, 5), family)
        with pytest.raises(ValueError, match="decompose needs a matrix family"):
            D.decompose(family.identity(1), family)
        with pytest.raises(ValueError, match="to_pixels needs a matrix family"):
            D.to_pixels(family.identity(1), 8, 8, family)


def test_inputs_are_not_modified(family):
    theta = family.identity(2, dtype=torch.float64) + 0.05
    before = theta.clone()
    D.measure(theta, 10, 10, family)
    if family.name in MATRIX_FAMILIES:
        D.invert(theta, family)
        D.to_pixels(theta, 10, 10, family)
    assert torch.equal(theta, before)


# ----------------------------------------------------------------- distance from the start


def test_start_distance_matches_a_per_pixel_sum(family):
    """RMS pixel distance between the grids of θ and of a start θ, against a literal loop."""
    a = [[0.9, 0.1, 0.2], [-0.05, 1.1, -0.1]]
    if family.name == "attention":  # isotropic scale and translation only
        a = [[0.9, 0.0, 0.2], [0.0, 0.9, -0.1]]
    theta = affine_in(family, a)
    start = family.zoom(0.7, 1, dtype=torch.float64)[0]
    (out_h, out_w), (in_h, in_w) = (3, 4), (20, 30)
    total = 0.0
    for i in range(out_h):
        for j in range(out_w):
            x, y = (2 * j + 1) / out_w - 1, (2 * i + 1) / out_h - 1  # pixel centre, normalised
            dx = a[0][0] * x + a[0][1] * y + a[0][2] - 0.7 * x
            dy = a[1][0] * x + a[1][1] * y + a[1][2] - 0.7 * y
            total += (dx * in_w / 2) ** 2 + (dy * in_h / 2) ** 2
    expected = math.sqrt(total / (out_h * out_w))
    found = D.start_distance(theta, start, (in_h, in_w), (out_h, out_w), family)
    assert found.item() == pytest.approx(expected, rel=1e-9)
    identity = family.identity(1, dtype=torch.float64)[0]
    torch.testing.assert_close(  # the TPS grid of its identity is exact to rounding only
        D.start_distance(theta, identity, 40, (6, 8), family),
        D.identity_distance(theta, 40, (6, 8), family),
    )
