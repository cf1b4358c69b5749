"""Tests of stnlab.sampling: the fast sampler against the literal sampling equation."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import assert_sample_gradients_match_reference, grid_off_integers, random_grid

from stnlab import sample, sample_reference
from stnlab.sampling import KERNELS, PADDINGS

PAIRS = list(itertools.product(KERNELS, PADDINGS))
SAMPLERS = [sample, sample_reference]


def pixel_centre_grid(n: int, h: int, w: int, dtype=torch.float64):
    """Source coordinates exactly on the pixel centres of an (h, w) image, (N, h, w, 2)."""
    ys = (2 * torch.arange(h, dtype=dtype) + 1) / h - 1
    xs = (2 * torch.arange(w, dtype=dtype) + 1) / w - 1
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([xx, yy], dim=-1).expand(n, h, w, 2).clone()


def loop_bilinear(U: torch.Tensor, grid: torch.Tensor, padding: str) -> torch.Tensor:
    """Bilinear sampling written as plain Python loops over output pixels and taps."""
    n, c, h, w = U.shape
    ho, wo = grid.shape[1:3]
    V = torch.zeros(n, c, ho, wo, dtype=U.dtype)
    for b, i, j in itertools.product(range(n), range(ho), range(wo)):
        x = ((float(grid[b, i, j, 0]) + 1) * w - 1) / 2  # pixel units
        y = ((float(grid[b, i, j, 1]) + 1) * h - 1) / 2
        if padding == "border":  # clamp the point into the image first
            x, y = min(max(x, 0.0), w - 1.0), min(max(y, 0.0), h - 1.0)
        x0, y0 = math.floor(x), math.floor(y)
        for m, q in itertools.product((x0, x0 + 1), (y0, y0 + 1)):
            weight = (1 - abs(x - m)) * (1 - abs(y - q))
            if 0 <= m < w and 0 <= q < h:  # zeros: taps outside the image add nothing
                V[b, :, i, j] += weight * U[b, :, q, m]
    return V


# --------------------------------------------------------------------------- smoke / shapes


@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize(("kernel", "padding"), PAIRS)
def test_output_shape(sampler, kernel, padding):
    U = torch.rand(2, 3, 6, 7)
    grid = random_grid(2, 4, 5, dtype=torch.float32)
    V = sampler(U, grid, kernel, padding)
    assert V.shape == (2, 3, 4, 5)
    assert torch.isfinite(V).all()


# --------------------------------------------------------------------------- reference equivalence


@pytest.mark.parametrize(("kernel", "padding"), PAIRS)
def test_sample_matches_reference_on_random_grid(kernel, padding):
    torch.manual_seed(0)
    U = torch.randn(2, 3, 5, 6, dtype=torch.float64)
    grid = random_grid(2, 7, 8)
    expected = sample_reference(U, grid, kernel, padding)
    torch.testing.assert_close(sample(U, grid, kernel, padding), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize(("kernel", "padding"), PAIRS)
def test_sample_matches_reference_on_pixel_centres(kernel, padding):
    torch.manual_seed(1)
    U = torch.randn(2, 2, 5, 6, dtype=torch.float64)
    grid = pixel_centre_grid(2, 5, 6)
    V_ref = sample_reference(U, grid, kernel, padding)
    torch.testing.assert_close(sample(U, grid, kernel, padding), V_ref, rtol=0, atol=1e-12)
    # On the pixel centres every kernel interpolates: the output is the input.
    torch.testing.assert_close(V_ref, U, rtol=0, atol=1e-12)


@pytest.mark.parametrize(("kernel", "padding"), PAIRS)
def test_sample_gradients_match_reference(kernel, padding):
    torch.manual_seed(2)
    U = torch.randn(2, 3, 5, 6, dtype=torch.float64, requires_grad=True)
    grid = grid_off_integers(2, (4, 7), (5, 6)).requires_grad_()
    upstream = torch.randn(2, 3, 4, 7, dtype=torch.float64)
    assert_sample_gradients_match_reference(U, grid, upstream, kernel, padding)


@pytest.mark.parametrize("padding", ["zeros", "border"])
def test_reference_matches_hand_written_loop(padding):
    torch.manual_seed(3)
    U = torch.randn(1, 2, 3, 4, dtype=torch.float64)
    grid = random_grid(1, 4, 5, low=-1.4, high=1.4)
    grid[0, 0, 0] = torch.tensor([-1.0 + 1 / 4, -1.0 + 1 / 3])  # pixel (0, 0)'s centre
    expected = loop_bilinear(U, grid, padding)
    assert expected.abs().max() > 0.1  # the loop is not trivially zero
    torch.testing.assert_close(
        sample_reference(U, grid, "bilinear", padding), expected, rtol=0, atol=1e-12
    )


def test_reference_matches_grid_sample_in_float32():
    torch.manual_seed(4)
    U = torch.rand(2, 3, 6, 6)
    grid = random_grid(2, 5, 5, dtype=torch.float32)
    expected = F.grid_sample(U, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    torch.testing.assert_close(sample_reference(U, grid), expected, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- gradcheck


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("kernel", ["bilinear", "bicubic"])
def test_sample_gradcheck(kernel, padding):
    torch.manual_seed(5)
    U = torch.randn(1, 2, 4, 5, dtype=torch.float64, requires_grad=True)
    grid = grid_off_integers(1, (3, 3), (4, 5), reach=1).requires_grad_()
    assert torch.autograd.gradcheck(lambda u, g: sample(u, g, kernel, padding), (U, grid))


@pytest.mark.parametrize("kernel", ["bilinear", "bicubic"])
def test_sample_reference_gradcheck(kernel):
    torch.manual_seed(6)
    U = torch.randn(1, 1, 3, 4, dtype=torch.float64, requires_grad=True)
    grid = grid_off_integers(1, (2, 3), (3, 4), reach=1).requires_grad_()
    assert torch.autograd.gradcheck(lambda u, g: sample_reference(u, g, kernel), (U, grid))


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_bad_input(sampler):
    U = torch.rand(2, 1, 5, 5)
    grid = random_grid(2, 3, 3, dtype=torch.float32)
    with pytest.raises(
        ValueError, match=r"U must have shape \(N, C, H, W\) or \(N, C, D, H, W\), got \(1, 5, 5\)"
    ):
        sampler(U[0], grid)
    with pytest.raises(ValueError, match=r"grid must have shape \(N=2, H', W', 2\)"):
        sampler(U, grid[:1])
    with pytest.raises(ValueError, match=r"grid must have shape \(N=2, H', W', 2\)"):
        sampler(U, torch.rand(2, 3, 3, 3))
    with pytest.raises(ValueError, match=r"grid must have shape .*got \(2, 9, 2\)"):
        sampler(U, grid.reshape(2, 9, 2))
    with pytest.raises(ValueError, match="must match U"):
        sampler(U, grid.double())
    with pytest.raises(
        ValueError, match="unknown kernel 'area'; known: bilinear, nearest, bicubic"
    ):
        sampler(U, grid, kernel="area")
    with pytest.raises(
        ValueError, match="unknown padding 'wrap'; known: zeros, border, reflection"
    ):
        sampler(U, grid, padding="wrap")


# --------------------------------------------------------------------------- invariants


@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_and_device_preserved(sampler, dtype):
    U = torch.rand(2, 3, 5, 5, dtype=dtype)
    V = sampler(U, random_grid(2, 4, 4, dtype=dtype))
    assert V.dtype == dtype
    assert V.device == U.device


@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize(("kernel", "padding"), PAIRS)
def test_inputs_not_modified(sampler, kernel, padding):
    U = torch.randn(2, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    grid = random_grid(2, 3, 4).requires_grad_()
    U_before, grid_before = U.detach().clone(), grid.detach().clone()
    sampler(U, grid, kernel, padding).square().sum().backward()
    assert torch.equal(U.detach(), U_before)
    assert torch.equal(grid.detach(), grid_before)


@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("kernel", KERNELS)
def test_batched_equals_per_sample(sampler, kernel):
    torch.manual_seed(7)
    U = torch.randn(3, 2, 6, 5, dtype=torch.float64)
    grid = random_grid(3, 4, 4)
    batched = sampler(U, grid, kernel)
    single = torch.cat([sampler(U[i : i + 1], grid[i : i + 1], kernel) for i in range(3)])
    torch.testing.assert_close(batched, single, rtol=0, atol=1e-12)


def test_points_far_outside_read_padding():
    U = torch.rand(1, 1, 4, 4, dtype=torch.float64)
    far = torch.full((1, 1, 2, 2), 5.0, dtype=torch.float64)  # x = y = 5: far right/bottom
    for sampler in SAMPLERS:
        assert torch.count_nonzero(sampler(U, far, "bilinear", "zeros")) == 0
        border = sampler(U, far, "bilinear", "border")
        torch.testing.assert_close(border, U[..., -1:, -1:].expand(1, 1, 1, 2))
