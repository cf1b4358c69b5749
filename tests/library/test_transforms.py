"""Tests of stnlab.transforms: every family's grid generator, identity and composition."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import MATRIX_FAMILIES, assert_batched_equals_per_sample, perturbed_identity

from stnlab import sample
from stnlab import transforms as T


def centres(size) -> torch.Tensor:
    """Normalised (x, y) of every pixel centre, (H, W, 2)."""
    h, w = T.as_size(size)
    return T.target_grid((h, w), dtype=torch.float64)[:, :2].reshape(h, w, 2)


def smooth_image(size: int) -> torch.Tensor:
    """A smooth float64 test pattern sampled at pixel centres, (1, 1, size, size)."""
    xy = centres(size)
    x, y = xy[..., 0], xy[..., 1]
    return (torch.sin(1.5 * x + 0.5) * torch.cos(1.2 * y) + 0.3 * x)[None, None]


# --------------------------------------------------------------------------- registry


def test_names():
    assert T.names() == ["affine", "attention", "projective", "tps"]
    for name in T.names():
        assert T.get(name).name == name


def test_get_unknown_name_lists_known_ones():
    with pytest.raises(ValueError, match="unknown transform 'nope'; known: affine, attention, "):
        T.get("nope")


def test_get_passes_kwargs_and_instances_through():
    tps = T.get("tps", grid_size=3)
    assert tps.num_params == 18
    assert T.get(tps) is tps
    with pytest.raises(ValueError, match="grid_size must be at least 2"):
        T.get("tps", grid_size=1)


# --------------------------------------------------------------------------- shapes and bad input


@pytest.mark.parametrize("out_size", [5, (4, 7), (9, 3)])
def test_grid_shape_and_dtype(family, out_size):
    h, w = T.as_size(out_size)
    for dtype in (torch.float32, torch.float64):
        theta = family.identity(3, dtype=dtype)
        assert theta.shape == (3, family.num_params)
        assert theta.dtype == dtype
        grid = family.grid(theta, out_size)
        assert grid.shape == (3, h, w, 2)
        assert grid.dtype == dtype
        assert grid.device == theta.device


def test_wrong_parameter_shape(family):
    k = family.num_params
    with pytest.raises(
        ValueError, match=rf"expects parameters of shape \(N, {k}\), got \(2, {k + 1}\)"
    ):
        family.grid(torch.zeros(2, k + 1), 4)
    with pytest.raises(ValueError, match=rf"\(N, {k}\), got \({k},\)"):
        family.grid(torch.zeros(k), 4)
    with pytest.raises(TypeError, match="floating point"):
        family.grid(torch.zeros(2, k, dtype=torch.long), 4)
    with pytest.raises(ValueError, match="size must be a positive int"):
        family.grid(family.identity(1), 0)


# --------------------------------------------------------------------------- identity


@pytest.mark.parametrize("out_size", [6, (5, 8)])
def test_identity_grid_is_pixel_centres(family, out_size):
    grid = family.grid(family.identity(2, dtype=torch.float64), out_size)
    expected = centres(out_size).expand(2, -1, -1, -1)
    torch.testing.assert_close(grid, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("scale", [0.5, 0.7, 1.25])
def test_zoom_grid_is_scaled_pixel_centres(family, scale):
    grid = family.grid(family.zoom(scale, 2, dtype=torch.float64), (5, 8))
    expected = scale * centres((5, 8)).expand(2, -1, -1, -1)  # source = scale × target
    torch.testing.assert_close(grid, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_identity_reproduces_input(family, dtype):
    torch.manual_seed(0)
    U = torch.rand(2, 3, 7, 9, dtype=dtype)
    V = sample(U, family.grid(family.identity(2, dtype=dtype), (7, 9)))
    atol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(V, U, rtol=0, atol=atol)


def test_identity_to_other_size_only_resamples(family):
    U = torch.rand(2, 1, 8, 8)
    V = sample(U, family.grid(family.identity(2), (4, 6)))
    assert V.shape == (2, 1, 4, 6)


# --------------------------------------------------------------------------- gradcheck


def test_grid_gradcheck(family):
    torch.manual_seed(1)
    theta = perturbed_identity(family, 2).requires_grad_()
    assert torch.autograd.gradcheck(lambda p: family.grid(p, (3, 4)), (theta,))


# --------------------------------------------------------------------------- affine


def test_affine_grid_matches_torch_affine_grid():
    torch.manual_seed(2)
    theta = torch.randn(3, 6, dtype=torch.float64)
    grid = T.get("affine").grid(theta, (5, 7))
    expected = F.affine_grid(theta.reshape(3, 2, 3), [3, 1, 5, 7], align_corners=False)
    torch.testing.assert_close(grid, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("shift", [1, -1, 2])
def test_integer_translation_shifts_exactly(shift):
    torch.manual_seed(3)
    h, w = 5, 7
    U = torch.rand(2, 3, h, w, dtype=torch.float64)
    affine = T.get("affine")
    # x_s = x_t + 2·shift/W: output column j reads input column j + shift.
    theta_x = torch.tensor([[1, 0, 2 * shift / w, 0, 1, 0]], dtype=torch.float64).expand(2, 6)
    V = sample(U, affine.grid(theta_x, (h, w)))
    inside = slice(max(0, -shift), w - max(0, shift))
    torch.testing.assert_close(
        V[..., inside], U[..., inside.start + shift : inside.stop + shift], rtol=0, atol=1e-12
    )
    outside = [j for j in range(w) if not 0 <= j + shift < w]
    torch.testing.assert_close(  # zero padding
        V[..., outside], torch.zeros_like(V[..., outside]), rtol=0, atol=1e-12
    )
    # Same along y: output row i reads input row i + shift.
    theta_y = torch.tensor([[1, 0, 0, 0, 1, 2 * shift / h]], dtype=torch.float64).expand(2, 6)
    V = sample(U, affine.grid(theta_y, (h, w)))
    inside = slice(max(0, -shift), h - max(0, shift))
    torch.testing.assert_close(
        V[..., inside, :], U[..., inside.start + shift : inside.stop + shift, :], rtol=0, atol=1e-12
    )


@pytest.mark.parametrize("size", [4, 5])
def test_quarter_turn_equals_rot90(size):
    torch.manual_seed(4)
    U = torch.rand(2, 3, size, size, dtype=torch.float64)
    theta = T.rotation(torch.tensor(math.pi / 2, dtype=torch.float64)).expand(2, 6)
    assert theta.dtype == torch.float64
    V = sample(U, T.get("affine").grid(theta, size))
    # With θ mapping output to input and y pointing down, +90° is torch.rot90's k=1.
    torch.testing.assert_close(V, torch.rot90(U, k=1, dims=(-2, -1)), rtol=0, atol=1e-12)
    half = T.rotation(torch.tensor(math.pi, dtype=torch.float64)).expand(2, 6)
    V = sample(U, T.get("affine").grid(half, size))
    torch.testing.assert_close(V, torch.flip(U, dims=(-2, -1)), rtol=0, atol=1e-12)


def test_rotation_parameters():
    theta = T.rotation([0.0, math.pi / 6], scale=2.0)
    assert theta.shape == (2, 6)
    assert theta.dtype == torch.get_default_dtype()
    c, s = 2 * math.cos(math.pi / 6), 2 * math.sin(math.pi / 6)
    torch.testing.assert_close(theta[1], torch.tensor([c, -s, 0, s, c, 0]))
    torch.testing.assert_close(theta[0], T.get("affine").identity(1)[0] * 2)


# --------------------------------------------------------------------------- other families


def test_attention_is_an_affine_special_case():
    torch.manual_seed(5)
    attention, affine = T.get("attention"), T.get("affine")
    torch.testing.assert_close(
        attention.identity(2, dtype=torch.float64),
        torch.tensor([[1.0, 0.0, 0.0]] * 2, dtype=torch.float64),
    )
    s, tx, ty = torch.rand(3, 3, dtype=torch.float64).unbind(1)
    zero = torch.zeros_like(s)
    theta_affine = torch.stack([s, zero, tx, zero, s, ty], dim=1)
    torch.testing.assert_close(
        attention.grid(torch.stack([s, tx, ty], dim=1), (4, 6)),
        affine.grid(theta_affine, (4, 6)),
        rtol=0,
        atol=1e-12,
    )


def test_projective_without_perspective_is_affine():
    torch.manual_seed(6)
    top = torch.randn(3, 6, dtype=torch.float64)
    theta = torch.cat([top, torch.zeros(3, 2, dtype=torch.float64)], dim=1)
    torch.testing.assert_close(
        T.get("projective").grid(theta, (5, 4)),
        T.get("affine").grid(top, (5, 4)),
        rtol=0,
        atol=1e-12,
    )


def test_projective_divides_by_the_third_coordinate():
    theta = torch.tensor([[1.0, 0, 0, 0, 1, 0, 0.3, -0.2]], dtype=torch.float64)
    grid = T.get("projective").grid(theta, (3, 5))
    xy = centres((3, 5))
    z = 1 + 0.3 * xy[..., 0] - 0.2 * xy[..., 1]
    torch.testing.assert_close(grid[0], xy / z[..., None], rtol=0, atol=1e-12)


@pytest.mark.parametrize("grid_size", [3, 4])
def test_tps_reproduces_affine_maps(grid_size):
    torch.manual_seed(7)
    tps = T.get("tps", grid_size=grid_size)
    theta = torch.eye(2, 3, dtype=torch.float64).reshape(1, 6) + 0.2 * torch.randn(
        2, 6, dtype=torch.float64
    )
    a = theta.reshape(2, 2, 3)
    rest = tps.identity(1, dtype=torch.float64).reshape(1, -1, 2)  # (1, K, 2)
    moved = rest @ a[:, :, :2].transpose(1, 2) + a[:, None, :, 2]  # (2, K, 2)
    torch.testing.assert_close(
        tps.grid(moved.reshape(2, -1), (6, 5)),
        T.get("affine").grid(theta, (6, 5)),
        rtol=0,
        atol=1e-10,
    )


def test_tps_interpolates_its_control_points():
    # With span 0.8 the 3×3 control points sit on pixel centres 0, 2, 4 of a 5×5 grid.
    torch.manual_seed(8)
    tps = T.ThinPlateSpline(grid_size=3, span=0.8)
    theta = perturbed_identity(tps, 2, scale=0.3)
    grid = tps.grid(theta, 5)
    at_controls = grid[:, ::2, ::2].reshape(2, -1)  # (N, 18), row-major like θ
    torch.testing.assert_close(at_controls, theta, rtol=0, atol=1e-10)
    assert (grid - centres(5)).abs().max() > 0.05  # and it is not the identity


def test_map_points_at_pixel_centres_is_the_grid(family):
    torch.manual_seed(12)
    theta = perturbed_identity(family, 2, 0.2)
    mapped = family.map_points(theta, centres((4, 6)).reshape(-1, 2))  # (N, P, 2)
    torch.testing.assert_close(
        mapped.reshape(2, 4, 6, 2), family.grid(theta, (4, 6)), rtol=0, atol=1e-12
    )


def test_map_points_sends_tps_control_points_to_theta():
    tps = T.get("tps", grid_size=3)  # span 1: the outer controls lie beyond the pixel centres
    theta = perturbed_identity(tps, 2, scale=0.3)
    targets = torch.tensor([[x, y] for y in (-1.0, 0.0, 1.0) for x in (-1.0, 0.0, 1.0)])
    mapped = tps.map_points(theta, targets)  # float32 points, float64 θ: θ's dtype wins
    assert mapped.dtype == torch.float64
    torch.testing.assert_close(mapped.reshape(2, -1), theta, rtol=0, atol=1e-10)
    moved = theta.clone().requires_grad_()
    tps.map_points(moved, targets[:1]).sum().backward()  # a gradient flows to θ
    assert moved.grad.abs().sum() > 0


def test_map_points_rejects_points_of_the_wrong_shape():
    with pytest.raises(ValueError, match=r"points must have shape \(P, 2\), got \(2, 3\)"):
        T.get("affine").map_points(T.get("affine").identity(1), torch.zeros(2, 3))


# --------------------------------------------------------------------------- composition


@pytest.mark.parametrize("name", MATRIX_FAMILIES)
def test_compose_applies_update_first(name):
    torch.manual_seed(9)
    family = T.get(name)
    p, u = perturbed_identity(family, 2, 0.2), perturbed_identity(family, 2, 0.2)
    composed = family.grid(family.compose(p, u), (4, 5))
    # Push u's source points through p by hand: target -> u -> p -> source.
    points = family.grid(u, (4, 5))  # (N, H', W', 2)
    homogeneous = torch.cat([points, torch.ones_like(points[..., :1])], dim=-1)
    mapped = torch.einsum("nij,nhwj->nhwi", family.matrix(p), homogeneous)
    expected = mapped[..., :2] / mapped[..., 2:]
    torch.testing.assert_close(composed, expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(family.compose(p, family.identity(2, dtype=torch.float64)), p)


def test_compose_matches_warping_twice():
    affine = T.get("affine")
    p = T.rotation(torch.tensor(0.4, dtype=torch.float64), scale=0.8)  # zoom in and turn
    u = torch.tensor([[1.0, 0.1, 0.2, 0.0, 0.9, -0.1]], dtype=torch.float64)
    U = smooth_image(32)
    twice = sample(sample(U, affine.grid(p, 32)), affine.grid(u, 32))
    once = sample(U, affine.grid(affine.compose(p, u), 32))
    wrong_order = sample(U, affine.grid(affine.compose(u, p), 32))
    interior = (..., slice(8, -8), slice(8, -8))  # away from the zero padding
    torch.testing.assert_close(twice[interior], once[interior], rtol=0, atol=5e-3)
    error = (twice[interior] - once[interior]).abs().max()
    assert (twice[interior] - wrong_order[interior]).abs().max() > 5 * error


# --------------------------------------------------------------------------- invariants


def test_batched_equals_per_sample(family):
    torch.manual_seed(11)
    theta = perturbed_identity(family, 3, 0.1)
    assert_batched_equals_per_sample(lambda p: family.grid(p, (4, 6)), theta)


def test_parameters_not_modified(family):
    theta = perturbed_identity(family, 2).requires_grad_()
    before = theta.detach().clone()
    family.grid(theta, 5).square().sum().backward()
    assert torch.equal(theta.detach(), before)
