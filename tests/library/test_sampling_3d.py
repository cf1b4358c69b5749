"""Tests of stnlab.sampling on volumes: the fast sampler against the literal 3D equation."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import assert_sample_gradients_match_reference, grid_off_integers, random_grid

from stnlab import sample, sample_reference, sampling
from stnlab.sampling import KERNELS_3D, PADDINGS

PAIRS = list(itertools.product(KERNELS_3D, PADDINGS))
SAMPLERS = [sample, sample_reference]


def loop_trilinear(U: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Trilinear sampling with zero padding, as plain Python loops over points and taps."""
    n, c, d, h, w = U.shape
    V = torch.zeros(n, c, *grid.shape[1:4], dtype=U.dtype)
    for b, i, j, k in itertools.product(range(n), *map(range, grid.shape[1:4])):
        x, y, z = (float(grid[b, i, j, k, a]) for a in range(3))
        x, y, z = ((x + 1) * w - 1) / 2, ((y + 1) * h - 1) / 2, ((z + 1) * d - 1) / 2
        taps = [(math.floor(t), math.floor(t) + 1) for t in (x, y, z)]
        for m, q, r in itertools.product(*taps):  # column, row, slice
            weight = (1 - abs(x - m)) * (1 - abs(y - q)) * (1 - abs(z - r))
            if 0 <= m < w and 0 <= q < h and 0 <= r < d:
                V[b, :, i, j, k] += weight * U[b, :, r, q, m]
    return V


# --------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize(("kernel", "padding"), PAIRS)
def test_output_shape(sampler, kernel, padding):
    U = torch.rand(2, 3, 4, 5, 6)
    V = sampler(U, random_grid(2, 3, 2, 4, dtype=torch.float32), kernel, padding)
    assert V.shape == (2, 3, 3, 2, 4)
    assert torch.isfinite(V).all()


# --------------------------------------------------------------------------- reference equivalence


@pytest.mark.parametrize(("kernel", "padding"), PAIRS)
def test_sample_matches_reference_on_random_grid(kernel, padding):
    torch.manual_seed(0)
    U = torch.randn(2, 3, 4, 5, 6, dtype=torch.float64)
    grid = random_grid(2, 3, 4, 5)
    expected = sample_reference(U, grid, kernel, padding)
    torch.testing.assert_close(sample(U, grid, kernel, padding), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize(("kernel", "padding"), PAIRS)
def test_sample_gradients_match_reference(kernel, padding):
    torch.manual_seed(2)
    U = torch.randn(2, 2, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    grid = grid_off_integers(2, (2, 3, 4), (3, 4, 5)).requires_grad_()
    upstream = torch.randn(2, 2, 2, 3, 4, dtype=torch.float64)
    assert_sample_gradients_match_reference(U, grid, upstream, kernel, padding)


def test_reference_matches_hand_written_loop():
    torch.manual_seed(3)
    U = torch.randn(1, 2, 3, 4, 5, dtype=torch.float64)
    grid = random_grid(1, 2, 3, 3, low=-1.3, high=1.3)
    expected = loop_trilinear(U, grid)
    assert expected.abs().max() > 0.1
    torch.testing.assert_close(sample_reference(U, grid), expected, rtol=0, atol=1e-12)


def test_reference_matches_grid_sample_in_float32():
    torch.manual_seed(4)
    U = torch.rand(2, 3, 5, 6, 4)
    grid = random_grid(2, 3, 4, 5, dtype=torch.float32)
    expected = F.grid_sample(U, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    torch.testing.assert_close(sample_reference(U, grid), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("chunk", [1, 600, 10**6])  # 1, 5 and all 60 points a chunk
def test_reference_in_chunks_equals_grid_sample(monkeypatch, chunk):
    # The reference splits large jobs into chunks of output points; force small ones.
    monkeypatch.setattr(sampling, "_CHUNK", chunk)
    torch.manual_seed(5)
    U = torch.rand(2, 3, 4, 4, 5, dtype=torch.float64)
    grid = random_grid(2, 3, 4, 5)  # 60 points
    expected = F.grid_sample(U, grid, align_corners=False)
    torch.testing.assert_close(sample_reference(U, grid), expected, rtol=0, atol=1e-12)


# --------------------------------------------------------------------------- gradcheck


@pytest.mark.parametrize("padding", PADDINGS)
def test_sample_gradcheck(padding):
    torch.manual_seed(6)
    U = torch.randn(1, 2, 3, 3, 4, dtype=torch.float64, requires_grad=True)
    grid = grid_off_integers(1, (2, 2, 2), (3, 3, 4), reach=1).requires_grad_()
    assert torch.autograd.gradcheck(lambda u, g: sample(u, g, "bilinear", padding), (U, grid))


def test_sample_reference_gradcheck():
    torch.manual_seed(7)
    U = torch.randn(1, 1, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    grid = grid_off_integers(1, (2, 2, 1), (2, 3, 3), reach=1).requires_grad_()
    assert torch.autograd.gradcheck(sample_reference, (U, grid))


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_bad_input(sampler):
    U = torch.rand(2, 1, 4, 4, 4)
    grid = random_grid(2, 2, 2, 2, dtype=torch.float32)
    with pytest.raises(ValueError, match=r"grid must have shape \(N=2, D', H', W', 3\)"):
        sampler(U, grid[..., :2])
    with pytest.raises(ValueError, match=r"grid must have shape \(N=2, D', H', W', 3\)"):
        sampler(U, grid[:, 0])  # a 2D grid
    with pytest.raises(ValueError, match=r"grid must have shape \(N=2, H', W', 2\), got"):
        sampler(U[:, :, 0], grid)  # a 3D grid for images
    with pytest.raises(ValueError, match="kernel 'bicubic' is for images only; volumes take"):
        sampler(U, grid, kernel="bicubic")
    with pytest.raises(ValueError, match=r"U must have shape .*got \(2, 1, 4, 4, 4, 1\)"):
        sampler(U[..., None], grid)


# --------------------------------------------------------------------------- invariants


@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_preserved(sampler, dtype):
    U = torch.rand(2, 1, 3, 4, 4, dtype=dtype)
    V = sampler(U, random_grid(2, 2, 3, 3, dtype=dtype))
    assert V.dtype == dtype


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_inputs_not_modified(sampler):
    U = torch.randn(2, 2, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    grid = random_grid(2, 2, 3, 3).requires_grad_()
    before = U.detach().clone(), grid.detach().clone()
    sampler(U, grid).square().sum().backward()
    assert torch.equal(U.detach(), before[0])
    assert torch.equal(grid.detach(), before[1])


@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("kernel", KERNELS_3D)
def test_batched_equals_per_sample(sampler, kernel):
    torch.manual_seed(8)
    U = torch.randn(3, 2, 4, 5, 3, dtype=torch.float64)
    grid = random_grid(3, 2, 3, 4)
    batched = sampler(U, grid, kernel)
    single = torch.cat([sampler(U[i : i + 1], grid[i : i + 1], kernel) for i in range(3)])
    torch.testing.assert_close(batched, single, rtol=0, atol=1e-12)


def test_points_far_outside_read_padding():
    U = torch.rand(1, 1, 3, 3, 3, dtype=torch.float64)
    far = torch.full((1, 1, 1, 2, 3), 5.0, dtype=torch.float64)  # beyond every far face
    for sampler in SAMPLERS:
        assert torch.count_nonzero(sampler(U, far, "bilinear", "zeros")) == 0
        border = sampler(U, far, "bilinear", "border")
        torch.testing.assert_close(border, U[..., -1:, -1:, -1:].expand(1, 1, 1, 1, 2))
