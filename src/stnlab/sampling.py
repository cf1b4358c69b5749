"""Samplers: read the input U at a grid of source coordinates to make the output V.

:func:`sample` is the fast path (PyTorch's fused ``grid_sample``); :func:`sample_reference`
is the paper's sampling equation written out literally, kept to check the fast path:

    V_i^c = Σ_n Σ_m U_nm^c k(x_i^s − m) k(y_i^s − n)                        (images)
    V_i^c = Σ_l Σ_n Σ_m U_lnm^c k(x_i^s − m) k(y_i^s − n) k(z_i^s − l)      (volumes)

where (x_i^s, y_i^s[, z_i^s]) are output point i's source coordinates in *pixel* units
and the sum runs over every input pixel (n, m) or voxel (l, n, m). Both take images
(N, C, H, W) with grids (N, H', W', 2) and volumes (N, C, D, H, W) with grids
(N, D', H', W', 3), in stnlab's normalised convention (see :mod:`stnlab`); on volumes
``"bilinear"`` is trilinear (``grid_sample``'s name) and bicubic does not exist. Both are
differentiable w.r.t. U and the grid, and compute in their inputs' dtype, autocast or not
(see :mod:`stnlab.precision`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from stnlab.precision import autocast_off

__all__ = ["KERNELS", "KERNELS_3D", "PADDINGS", "check_options", "sample", "sample_reference"]

KERNELS = ("bilinear", "nearest", "bicubic")
KERNELS_3D = ("bilinear", "nearest")  # grid_sample has no bicubic for volumes
PADDINGS = ("zeros", "border", "reflection")
_OUT_AXES = {2: "H', W'", 3: "D', H', W'"}
_CHUNK = 2**24  # values in the reference's (N, C, I, ...) intermediate, per chunk of points


def check_options(kernel: str, padding: str, dims: int = 2) -> None:
    """Raise a clear error for a kernel or padding that sampling in ``dims`` D lacks."""
    if kernel not in KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}; known: {', '.join(KERNELS)}")
    if padding not in PADDINGS:
        raise ValueError(f"unknown padding {padding!r}; known: {', '.join(PADDINGS)}")
    if dims == 3 and kernel not in KERNELS_3D:
        raise ValueError(
            f"kernel {kernel!r} is for images only; volumes take: {', '.join(KERNELS_3D)}"
        )


def _check(U: Tensor, grid: Tensor, kernel: str, padding: str) -> None:
    """Raise a clear error for inputs that ``grid_sample`` would reject obscurely."""
    dims = U.ndim - 2
    check_options(kernel, padding, dims)
    if dims not in (2, 3):
        raise ValueError(f"U must have shape (N, C, H, W) or (N, C, D, H, W), got {tuple(U.shape)}")
    if grid.ndim != U.ndim or grid.shape[-1] != dims or grid.shape[0] != U.shape[0]:
        raise ValueError(
            f"grid must have shape (N={U.shape[0]}, {_OUT_AXES[dims]}, {dims}), "
            f"got {tuple(grid.shape)}"
        )
    if grid.dtype != U.dtype or grid.device != U.device:
        raise ValueError(f"grid ({grid.dtype}, {grid.device}) must match U ({U.dtype}, {U.device})")


def sample(U: Tensor, grid: Tensor, kernel: str = "bilinear", padding: str = "zeros") -> Tensor:
    """Sample U (N, C, H, W) at grid (N, H', W', 2) -> V (N, C, H', W'); likewise in 3D.

    Args:
        U: input images or feature maps, or volumes (N, C, D, H, W).
        grid: source coordinates, normalised (x, y) in [-1, 1], align_corners=False, or
            (x, y, z) for volumes, (N, D', H', W', 3).
        kernel: ``"bilinear"`` (trilinear on volumes), ``"nearest"`` or ``"bicubic"`` (2D).
        padding: value outside the input: ``"zeros"``, ``"border"`` or ``"reflection"``.

    Example:
        >>> from stnlab import transforms
        >>> U = torch.rand(2, 3, 8, 8)
        >>> g = transforms.get("affine").grid(transforms.get("affine").identity(2), 8)
        >>> torch.allclose(sample(U, g), U, atol=1e-6)
        True
    """
    _check(U, grid, kernel, padding)
    with autocast_off(U.device):
        return F.grid_sample(U, grid, mode=kernel, padding_mode=padding, align_corners=False)


def _kernel_weights(d: Tensor, kernel: str) -> Tensor:
    """The 1-D sampling kernel k(d) at distances d (in pixels)."""
    a = d.abs()
    if kernel == "bilinear":
        return (1 - a).clamp(min=0)
    if kernel == "nearest":
        # δ(⌊d + 0.5⌉): the pixel whose centre is nearest (ties have measure zero).
        return (a < 0.5).to(d.dtype)
    # Keys' cubic convolution with a = -0.75, the kernel PyTorch's bicubic uses.
    c = -0.75
    near = ((c + 2) * a - (c + 3)) * a * a + 1
    far = ((c * a - 5 * c) * a + 8 * c) * a - 4 * c
    return torch.where(a <= 1, near, torch.where(a < 2, far, torch.zeros_like(a)))


def _pad_index(index: Tensor, size: int, padding: str) -> tuple[Tensor, Tensor]:
    """Map virtual pixel indices to real ones; also return which ones count (zeros)."""
    if padding == "zeros":
        inside = (index >= 0) & (index < size)
        return index.clamp(0, size - 1), inside
    if padding == "border":
        return index.clamp(0, size - 1), torch.ones_like(index, dtype=torch.bool)
    # Reflection about the outer pixel edges (-0.5 and size - 0.5), repeated.
    r = index.remainder(2 * size)
    return torch.where(r >= size, 2 * size - 1 - r, r), torch.ones_like(index, dtype=torch.bool)


def _axis_weights(coord: Tensor, size: int, kernel: str, padding: str) -> Tensor:
    """k(coord − m) for every real pixel m, folding padding taps in: (N, I, size)."""
    pixels = ((coord + 1) * size - 1) / 2  # normalised -> pixel units, (N, I)
    lo = int(torch.floor(pixels.detach().min()).item()) - 2
    hi = int(torch.ceil(pixels.detach().max()).item()) + 3
    lo, hi = min(lo, 0), max(hi, size)
    virtual = torch.arange(lo, hi, device=coord.device)  # (M,)
    k = _kernel_weights(pixels[..., None] - virtual.to(coord.dtype), kernel)  # (N, I, M)
    real, counts = _pad_index(virtual, size, padding)
    k = k * counts.to(coord.dtype)
    out = k.new_zeros(*k.shape[:-1], size)  # (N, I, size)
    return out.index_add(-1, real, k)


def sample_reference(
    U: Tensor, grid: Tensor, kernel: str = "bilinear", padding: str = "zeros"
) -> Tensor:
    """The literal sampling equation, V = Σ U k(x_s − m) k(y_s − n) [k(z_s − l)]; slow.

    Covers every kernel with ``padding="zeros"`` (the paper's "zero outside the
    image"); for ``border`` and ``reflection`` each kernel tap outside the image
    reads the pixel that the padding rule names, as ``grid_sample`` does.
    Same signature and output as :func:`sample`.
    """
    _check(U, grid, kernel, padding)
    n, c, *size = U.shape  # size: (H, W) or (D, H, W), slowest axis first
    dims = len(size)
    points = grid.reshape(n, -1, dims)  # (N, I, dims): x, y[, z]
    axes = "dhw"[-dims:]
    equation = f"nc{axes}," + ",".join(f"ni{a}" for a in axes) + "->nci"
    # Output points go in chunks so the (N, C, I, ...) intermediate stays near _CHUNK values.
    step = max(1, _CHUNK // (n * c * math.prod(size[1:])))
    chunks = []
    for part in points.split(step, dim=1):  # (N, I_k, dims)
        # Axis j of U (slowest first) is read by coordinate dims-1-j: z, y, x.
        weights = [
            _axis_weights(part[..., dims - 1 - j], s, kernel, padding) for j, s in enumerate(size)
        ]  # each (N, I_k, size_j)
        chunks.append(torch.einsum(equation, U, *weights))  # (N, C, I_k)
    return torch.cat(chunks, dim=2).reshape(n, c, *grid.shape[1:-1])
