"""Batched geometric distortions of 28×28 digits onto a canvas, with stnlab's own grids and sampler.

Coordinates follow stnlab's convention (normalised (x, y) in [-1, 1],
``align_corners=False``): every warp maps *output* canvas coordinates to *input*
digit coordinates. In pixels measured from the image centre, a point of the
canvas is ``x_n * S / 2`` and a point of the digit is ``x_n * 14``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from stnlab import transforms
from stnlab.sampling import sample

DIGIT = 28  # side of a source digit


def affine_thetas(angle: np.ndarray, scale: np.ndarray, shift: np.ndarray, size: int) -> np.ndarray:
    """θ (N, 2, 3) mapping canvas to digit coordinates for rotate-scale-translate.

    The digit is rotated by ``angle`` (radians), scaled by ``scale`` and moved by
    ``shift`` (N, 2) canvas pixels, about the canvas centre: p_in = R(-a) (p_out - t) / s.
    """
    c, s = np.cos(angle) / scale, np.sin(angle) / scale
    A = np.stack([np.stack([c, s], -1), np.stack([-s, c], -1)], -2)  # (N, 2, 2), R(-a) / s
    linear = A * (size / DIGIT)  # canvas-normalised in, digit-normalised out
    offset = -np.einsum("nij,nj->ni", A, shift) / (DIGIT / 2)  # (N, 2)
    return np.concatenate([linear, offset[:, :, None]], axis=2)  # (N, 2, 3)


def homographies(corners: np.ndarray, size: int) -> np.ndarray:
    """Homographies (N, 3, 3) mapping canvas to digit coordinates.

    ``corners`` (N, 4, 2) are where the digit's corners (-1,-1), (1,-1), (1,1), (-1,1)
    land on the canvas, in canvas pixels from its centre. Solved exactly (4-point DLT).
    """
    src = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=np.float64)  # digit corners
    dst = corners / (size / 2)  # (N, 4, 2) canvas-normalised
    n = len(corners)
    x, y = dst[..., 0], dst[..., 1]  # (N, 4) each
    u, v = np.broadcast_to(src[:, 0], (n, 4)), np.broadcast_to(src[:, 1], (n, 4))
    one, zero = np.ones_like(x), np.zeros_like(x)
    rows_u = np.stack([x, y, one, zero, zero, zero, -u * x, -u * y], -1)  # (N, 4, 8)
    rows_v = np.stack([zero, zero, zero, x, y, one, -v * x, -v * y], -1)  # (N, 4, 8)
    M = np.concatenate([rows_u, rows_v], axis=1)  # (N, 8, 8)
    b = np.concatenate([u, v], axis=1)  # (N, 8)
    h = np.linalg.solve(M, b[..., None])[..., 0]  # (N, 8)
    return np.concatenate([h, np.ones((n, 1))], axis=1).reshape(n, 3, 3)


def grid_from_homography(H: np.ndarray, size: int) -> torch.Tensor:
    """Sampling grid (N, S, S, 2), float64, for homographies (N, 3, 3)."""
    projective = transforms.get("projective")
    return projective.grid(projective.from_matrix(torch.from_numpy(H).double()), size)


def smooth_field(control: np.ndarray, size: int) -> torch.Tensor:
    """Displacements (N, S, S, 2), digit-normalised, from control offsets (N, 2, g, g) in pixels."""
    field = F.interpolate(
        torch.from_numpy(control).to(torch.float64),
        size=(size, size),
        mode="bicubic",
        align_corners=True,
    )  # (N, 2, S, S)
    return field.permute(0, 2, 3, 1) / (DIGIT / 2)  # (N, S, S, 2)


def sample_digits(digits: np.ndarray, grid: torch.Tensor) -> np.ndarray:
    """Sample uint8 digits (N, 28, 28) on ``grid`` (N, S, S, 2): float32 (N, S, S) in [0, 1]."""
    x = torch.from_numpy(digits.astype(np.float32) / 255)[:, None]  # (N, 1, 28, 28)
    out = sample(x, grid.to(torch.float32), kernel="bilinear", padding="zeros")
    return out[:, 0].numpy()  # (N, S, S)


def affine_grid(theta: np.ndarray, size: int) -> torch.Tensor:
    """Sampling grid (N, S, S, 2), float64, for affine θ (N, 2, 3)."""
    return transforms.get("affine").grid(torch.from_numpy(theta).double().reshape(-1, 6), size)
