"""Tests of stnlab.transforms in 3D: the affine, attention and projective families on volumes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import assert_batched_equals_per_sample, perturbed_identity

from stnlab import sample
from stnlab import transforms as T

FAMILIES_3D = ["affine", "attention", "projective"]


@pytest.fixture(params=FAMILIES_3D)
def family(request) -> T.Transform:
    """Each 3D family in turn (in place of conftest's 2D ``family``)."""
    return T.get(request.param, dims=3)


def voxel_centres(d: int, h: int, w: int) -> torch.Tensor:
    """(x, y, z) of every voxel centre written out per voxel (r, n, m), (D, H, W, 3)."""
    out = torch.empty(d, h, w, 3, dtype=torch.float64)
    for r in range(d):
        for n in range(h):
            for m in range(w):
                out[r, n, m] = torch.tensor(
                    [(2 * m + 1) / w - 1, (2 * n + 1) / h - 1, (2 * r + 1) / d - 1],
                    dtype=torch.float64,
                )
    return out


def affine_3d(matrix: list[list[float]], n: int = 1) -> torch.Tensor:
    """Affine parameters (N, 12) of a 3×4 matrix."""
    return torch.tensor(matrix, dtype=torch.float64).reshape(1, 12).expand(n, 12)


# --------------------------------------------------------------------------- registry


def test_names_and_parameter_counts():
    assert T.names(dims=3) == FAMILIES_3D
    assert T.names(dims=2) == T.names()
    counts = {name: T.get(name, dims=3).num_params for name in FAMILIES_3D}
    assert counts == {"affine": 12, "attention": 4, "projective": 15}
    assert all(T.get(name, dims=3).dims == 3 for name in FAMILIES_3D)


def test_tps_has_no_3d_form():
    with pytest.raises(ValueError, match=r"the tps transform exists in 2D only, got dims=3"):
        T.get("tps", dims=3)
    with pytest.raises(ValueError, match=r"affine transform exists in 2D or 3D only, got dims=4"):
        T.get("affine", dims=4)


def test_get_checks_the_dims_of_an_instance():
    affine3 = T.get("affine", dims=3)
    assert T.get(affine3) is affine3
    assert T.get(affine3, dims=3) is affine3
    with pytest.raises(ValueError, match="expected a 2D transform, got Affine"):
        T.get(affine3, dims=2)


# --------------------------------------------------------------------------- shapes and bad input


@pytest.mark.parametrize("out_size", [3, (2, 4, 5)])
def test_grid_shape_and_dtype(family, out_size):
    size = T.as_size(out_size, 3)
    for dtype in (torch.float32, torch.float64):
        theta = family.identity(2, dtype=dtype)
        assert theta.shape == (2, family.num_params)
        grid = family.grid(theta, out_size)
        assert grid.shape == (2, *size, 3)
        assert grid.dtype == dtype


def test_wrong_parameter_shape_and_size(family):
    k = family.num_params
    with pytest.raises(ValueError, match=rf"expects parameters of shape \(N, {k}\), got \(2, 6\)"):
        family.grid(torch.zeros(2, 6), 4)  # 2D parameters
    with pytest.raises(ValueError, match=r"positive int or \(D, H, W\) tuple, got \(4, 4\)"):
        family.grid(family.identity(1), (4, 4))


# --------------------------------------------------------------------------- identity


def test_identity_grid_is_voxel_centres(family):
    grid = family.grid(family.identity(2, dtype=torch.float64), (3, 4, 5))
    expected = voxel_centres(3, 4, 5).expand(2, -1, -1, -1, -1)
    torch.testing.assert_close(grid, expected, rtol=0, atol=1e-12)


def test_identity_reproduces_input(family):
    torch.manual_seed(0)
    U = torch.rand(2, 3, 4, 5, 6, dtype=torch.float64)
    V = sample(U, family.grid(family.identity(2, dtype=torch.float64), (4, 5, 6)))
    torch.testing.assert_close(V, U, rtol=0, atol=1e-12)


# --------------------------------------------------------------------------- gradcheck


def test_grid_gradcheck(family):
    torch.manual_seed(1)
    theta = perturbed_identity(family, 2).requires_grad_()
    assert torch.autograd.gradcheck(lambda p: family.grid(p, (2, 3, 4)), (theta,))


# --------------------------------------------------------------------------- affine


def test_affine_grid_matches_torch_affine_grid():
    torch.manual_seed(2)
    theta = torch.randn(3, 12, dtype=torch.float64)
    grid = T.get("affine", dims=3).grid(theta, (3, 5, 4))
    expected = F.affine_grid(theta.reshape(3, 3, 4), [3, 1, 3, 5, 4], align_corners=False)
    torch.testing.assert_close(grid, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("shift", [1, -1])
@pytest.mark.parametrize("axis", [0, 1, 2])  # the coordinate: x, y, z
def test_one_voxel_shift_is_exact(axis, shift):
    torch.manual_seed(3)
    size = (4, 5, 6)  # (D, H, W)
    U = torch.rand(2, 2, *size, dtype=torch.float64)
    dim = 4 - axis  # x reads the last tensor axis (W), y the one before, z the depth
    matrix = [[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 0]]
    matrix[axis][3] = 2 * shift / U.shape[dim]  # one voxel in normalised units
    V = sample(U, T.get("affine", dims=3).grid(affine_3d(matrix, 2), size))
    # Output voxel j along the axis reads input voxel j + shift; the rest reads zeros.
    n = U.shape[dim]
    inside = torch.arange(max(0, -shift), n - max(0, shift))
    torch.testing.assert_close(
        V.index_select(dim, inside), U.index_select(dim, inside + shift), rtol=0, atol=1e-12
    )
    edge = torch.tensor([n - 1 if shift > 0 else 0])
    assert torch.count_nonzero(V.index_select(dim, edge)) == 0


# Quarter turns in each coordinate plane: p_s = -q_t, q_s = p_t. Written out as the
# matrix, then the tensor dimensions that torch.rot90 turns (k=1 from dim q to dim p).
QUARTER_TURNS = {
    "xy": ([[0, -1.0, 0, 0], [1.0, 0, 0, 0], [0, 0, 1.0, 0]], (-2, -1)),
    "yz": ([[1.0, 0, 0, 0], [0, 0, -1.0, 0], [0, 1.0, 0, 0]], (-3, -2)),
    "xz": ([[0, 0, -1.0, 0], [0, 1.0, 0, 0], [1.0, 0, 0, 0]], (-3, -1)),
}


@pytest.mark.parametrize("plane", QUARTER_TURNS)
@pytest.mark.parametrize("side", [4, 5])
def test_quarter_turn_equals_rot90(plane, side):
    torch.manual_seed(4)
    U = torch.rand(2, 3, side, side, side, dtype=torch.float64)
    matrix, dims = QUARTER_TURNS[plane]
    V = sample(U, T.get("affine", dims=3).grid(affine_3d(matrix, 2), side))
    torch.testing.assert_close(V, torch.rot90(U, k=1, dims=dims), rtol=0, atol=1e-12)
    assert not torch.allclose(V, U)


# --------------------------------------------------------------------------- other families


def test_attention_is_an_affine_special_case():
    torch.manual_seed(5)
    s, tx, ty, tz = torch.rand(3, 4, dtype=torch.float64).unbind(1)
    z = torch.zeros_like(s)
    theta_affine = torch.stack([s, z, z, tx, z, s, z, ty, z, z, s, tz], dim=1)
    torch.testing.assert_close(
        T.get("attention", dims=3).grid(torch.stack([s, tx, ty, tz], dim=1), (3, 4, 2)),
        T.get("affine", dims=3).grid(theta_affine, (3, 4, 2)),
        rtol=0,
        atol=1e-12,
    )
    assert T.get("attention", dims=3).identity(1).tolist() == [[1.0, 0.0, 0.0, 0.0]]


def test_projective_without_perspective_is_affine():
    torch.manual_seed(6)
    top = torch.randn(2, 12, dtype=torch.float64)
    theta = torch.cat([top, torch.zeros(2, 3, dtype=torch.float64)], dim=1)
    torch.testing.assert_close(
        T.get("projective", dims=3).grid(theta, (3, 4, 5)),
        T.get("affine", dims=3).grid(top, (3, 4, 5)),
        rtol=0,
        atol=1e-12,
    )


def test_projective_divides_by_the_fourth_coordinate():
    theta = torch.zeros(1, 15, dtype=torch.float64)
    theta[0, [0, 5, 10]] = 1.0
    theta[0, 12:] = torch.tensor([0.3, -0.2, 0.1], dtype=torch.float64)
    grid = T.get("projective", dims=3).grid(theta, (2, 3, 4))
    xyz = voxel_centres(2, 3, 4)
    w = 1 + 0.3 * xyz[..., 0] - 0.2 * xyz[..., 1] + 0.1 * xyz[..., 2]
    torch.testing.assert_close(grid[0], xyz / w[..., None], rtol=0, atol=1e-12)


# --------------------------------------------------------------------------- composition


def test_compose_applies_update_first(family):
    torch.manual_seed(9)
    p, u = perturbed_identity(family, 2, 0.2), perturbed_identity(family, 2, 0.2)
    composed = family.grid(family.compose(p, u), (2, 3, 4))
    points = family.grid(u, (2, 3, 4))  # (N, D', H', W', 3)
    homogeneous = torch.cat([points, torch.ones_like(points[..., :1])], dim=-1)
    mapped = torch.einsum("nij,ndhwj->ndhwi", family.matrix(p), homogeneous)
    expected = mapped[..., :3] / mapped[..., 3:]
    torch.testing.assert_close(composed, expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(family.compose(p, family.identity(2, dtype=torch.float64)), p)


# --------------------------------------------------------------------------- invariants


def test_batched_equals_per_sample(family):
    torch.manual_seed(11)
    theta = perturbed_identity(family, 3, 0.1)
    assert_batched_equals_per_sample(lambda p: family.grid(p, (2, 3, 4)), theta)


def test_parameters_not_modified(family):
    theta = perturbed_identity(family, 2).requires_grad_()
    before = theta.detach().clone()
    family.grid(theta, 3).square().sum().backward()
    assert torch.equal(theta.detach(), before)
