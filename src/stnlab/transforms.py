"""Grid generators: transformation parameters θ -> sampling grid of source coordinates.

Every family maps the regular grid of *output* (target) coordinates through T_θ to
*input* (source) coordinates, in stnlab's convention: normalised (x, y) in [-1, 1],
``align_corners=False`` (see :mod:`stnlab`). A grid has shape (N, H', W', 2) with
``grid[..., 0] = x_s`` and ``grid[..., 1] = y_s``, ready for :func:`stnlab.sample`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor

Size = int | tuple[int, int]

__all__ = [
    "Affine",
    "Attention",
    "Projective",
    "ThinPlateSpline",
    "Transform",
    "get",
    "names",
    "rotation",
    "target_grid",
]


def as_size(size: Size) -> tuple[int, int]:
    """Normalise an int or (H, W) pair to a checked (H, W) tuple."""
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    if int(h) != h or int(w) != w or h < 1 or w < 1:
        raise ValueError(f"size must be a positive int or (H, W) pair, got {size!r}")
    return int(h), int(w)


def pixel_centres(n: int, device=None, dtype=None) -> Tensor:
    """Normalised centres of n pixels along one axis (align_corners=False)."""
    return (2 * torch.arange(n, device=device, dtype=dtype) + 1) / n - 1


def target_grid(out_size: Size, device=None, dtype=None) -> Tensor:
    """Homogeneous target coordinates (x_t, y_t, 1) of every output pixel, (H'·W', 3)."""
    h, w = as_size(out_size)
    ys = pixel_centres(h, device, dtype)
    xs = pixel_centres(w, device, dtype)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")  # (H', W') each
    return torch.stack([xx, yy, torch.ones_like(xx)], dim=-1).reshape(h * w, 3)


class Transform(ABC):
    """A family of spatial transformations with a fixed number of parameters."""

    name: str = ""
    num_params: int = 0

    @abstractmethod
    def identity(self, batch_size: int = 1, device=None, dtype=None) -> Tensor:
        """Parameters of the identity transform, (N, num_params)."""

    @abstractmethod
    def grid(self, params: Tensor, out_size: Size) -> Tensor:
        """Source coordinates of every output pixel, (N, H', W', 2)."""

    def _check(self, params: Tensor) -> Tensor:
        """Reject parameters of the wrong shape with a message naming the expected one."""
        if params.ndim != 2 or params.shape[1] != self.num_params:
            raise ValueError(
                f"{self.name} transform expects parameters of shape (N, {self.num_params}), "
                f"got {tuple(params.shape)}"
            )
        if not params.is_floating_point():
            raise TypeError(f"{self.name} parameters must be floating point, got {params.dtype}")
        return params

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_params={self.num_params})"


class _MatrixTransform(Transform):
    """A family whose members are 3×3 homogeneous matrices (closed under composition)."""

    @abstractmethod
    def matrix(self, params: Tensor) -> Tensor:
        """The 3×3 homogeneous matrix of each parameter vector, (N, 3, 3)."""

    @abstractmethod
    def from_matrix(self, matrix: Tensor) -> Tensor:
        """Parameters of a (N, 3, 3) matrix of this family, (N, num_params)."""

    def compose(self, params: Tensor, update: Tensor) -> Tensor:
        """Parameters of ``params ∘ update``: target -> update -> params -> source.

        This is the inverse-compositional step of IC-STN: an update estimated on an
        image already warped by ``params`` is folded into one warp of the original.
        """
        return self.from_matrix(self.matrix(self._check(params)) @ self.matrix(self._check(update)))

    def identity(self, batch_size: int = 1, device=None, dtype=None) -> Tensor:
        eye = torch.eye(3, device=device, dtype=dtype or torch.get_default_dtype())
        return self.from_matrix(eye.expand(batch_size, 3, 3))

    def grid(self, params: Tensor, out_size: Size) -> Tensor:
        h, w = as_size(out_size)
        m = self.matrix(self._check(params))  # (N, 3, 3)
        base = target_grid((h, w), params.device, params.dtype)  # (H'W', 3)
        points = base @ m.transpose(1, 2)  # (N, H'W', 3)
        xy = self._dehomogenise(points)  # (N, H'W', 2)
        return xy.reshape(-1, h, w, 2)  # (N, H', W', 2)

    def _dehomogenise(self, points: Tensor) -> Tensor:
        return points[..., :2]


class Affine(_MatrixTransform):
    """The paper's affine warp: (x_s, y_s)ᵀ = A_θ (x_t, y_t, 1)ᵀ, θ = A_θ row-major (6)."""

    name = "affine"
    num_params = 6

    def matrix(self, params: Tensor) -> Tensor:
        bottom = params.new_tensor([0.0, 0.0, 1.0]).expand(params.shape[0], 1, 3)
        return torch.cat([params.reshape(-1, 2, 3), bottom], dim=1)  # (N, 3, 3)

    def from_matrix(self, matrix: Tensor) -> Tensor:
        return matrix[:, :2, :].reshape(-1, 6)


class Attention(_MatrixTransform):
    """Crop-and-zoom: isotropic scale s and translation, θ = (s, t_x, t_y)."""

    name = "attention"
    num_params = 3

    def matrix(self, params: Tensor) -> Tensor:
        s, tx, ty = params.unbind(dim=1)
        zero, one = torch.zeros_like(s), torch.ones_like(s)
        rows = [s, zero, tx, zero, s, ty, zero, zero, one]
        return torch.stack(rows, dim=1).reshape(-1, 3, 3)

    def from_matrix(self, matrix: Tensor) -> Tensor:
        return torch.stack([matrix[:, 0, 0], matrix[:, 0, 2], matrix[:, 1, 2]], dim=1)


class Projective(_MatrixTransform):
    """A homography with h33 = 1, θ = (h11, h12, h13, h21, h22, h23, h31, h32)."""

    name = "projective"
    num_params = 8
    eps = 1e-6

    def matrix(self, params: Tensor) -> Tensor:
        one = params.new_ones(params.shape[0], 1)
        return torch.cat([params, one], dim=1).reshape(-1, 3, 3)

    def from_matrix(self, matrix: Tensor) -> Tensor:
        m = matrix / matrix[:, 2:3, 2:3]
        return m.reshape(-1, 9)[:, :8]

    def _dehomogenise(self, points: Tensor) -> Tensor:
        # Keep the sign of the denominator but bound it away from 0 so points near
        # the horizon line go far away instead of producing inf/NaN.
        z = points[..., 2:]
        z = torch.where(z >= 0, z.clamp(min=self.eps), z.clamp(max=-self.eps))
        return points[..., :2] / z


class ThinPlateSpline(Transform):
    """Thin-plate spline through a k×k grid of control points.

    θ holds the *source* positions of the control points, interleaved
    (x_1, y_1, ..., x_K, y_K), K = k². The control points rest on a regular grid in
    target space spanning ``[-span, span]``, so θ = rest positions is the identity.
    """

    name = "tps"

    def __init__(self, grid_size: int = 4, span: float = 1.0, reg: float = 0.0):
        if grid_size < 2:
            raise ValueError(f"tps grid_size must be at least 2, got {grid_size}")
        self.grid_size, self.span, self.reg = grid_size, span, reg
        self.num_params = 2 * grid_size * grid_size
        axis = torch.linspace(-span, span, grid_size, dtype=torch.float64)
        yy, xx = torch.meshgrid(axis, axis, indexing="ij")
        self.controls = torch.stack([xx, yy], dim=-1).reshape(-1, 2)  # (K, 2), float64
        self._inverse = torch.linalg.inv(self._system())  # (K+3, K+3), float64
        self._cache: dict[tuple, Tensor] = {}

    @staticmethod
    def _radial(d2: Tensor) -> Tensor:
        """The TPS kernel U(r) = r² log r², written on squared distances (U(0) = 0)."""
        return torch.where(d2 > 0, d2 * torch.log(d2.clamp(min=1e-30)), torch.zeros_like(d2))

    def _system(self) -> Tensor:
        """The TPS interpolation matrix L = [[K + λI, P], [Pᵀ, 0]] of the control points."""
        c, k = self.controls, self.controls.shape[0]
        kernel = self._radial(torch.cdist(c, c) ** 2) + self.reg * torch.eye(k, dtype=c.dtype)
        p = torch.cat([torch.ones(k, 1, dtype=c.dtype), c], dim=1)  # (K, 3)
        top = torch.cat([kernel, p], dim=1)
        bottom = torch.cat([p.T, torch.zeros(3, 3, dtype=c.dtype)], dim=1)
        return torch.cat([top, bottom], dim=0)  # (K+3, K+3)

    def _weights(self, out_size: tuple[int, int], device, dtype) -> Tensor:
        """Linear map from control-point sources to grid sources, (H'·W', K); cached."""
        key = (out_size, str(device), dtype)
        if key not in self._cache:
            base = target_grid(out_size, dtype=torch.float64)[:, :2]  # (H'W', 2)
            d2 = torch.cdist(base, self.controls) ** 2  # (H'W', K)
            ones = torch.ones(base.shape[0], 1, dtype=torch.float64)
            features = torch.cat([self._radial(d2), ones, base], dim=1)  # (H'W', K+3)
            weights = features @ self._inverse[:, : self.controls.shape[0]]  # (H'W', K)
            self._cache[key] = weights.to(device=device, dtype=dtype)
        return self._cache[key]

    def identity(self, batch_size: int = 1, device=None, dtype=None) -> Tensor:
        rest = self.controls.to(device=device, dtype=dtype or torch.get_default_dtype())
        return rest.reshape(1, -1).expand(batch_size, -1).clone()

    def grid(self, params: Tensor, out_size: Size) -> Tensor:
        h, w = as_size(out_size)
        sources = self._check(params).reshape(-1, self.num_params // 2, 2)  # (N, K, 2)
        weights = self._weights((h, w), params.device, params.dtype)  # (H'W', K)
        return (weights @ sources).reshape(-1, h, w, 2)  # (N, H', W', 2)

    def __repr__(self) -> str:
        return f"ThinPlateSpline(grid_size={self.grid_size}, span={self.span})"


_FAMILIES: dict[str, type[Transform]] = {
    "affine": Affine,
    "attention": Attention,
    "projective": Projective,
    "tps": ThinPlateSpline,
}


def names() -> list[str]:
    """Names of the known transformation families."""
    return sorted(_FAMILIES)


def get(name: str | Transform, **kwargs) -> Transform:
    """The transformation family called ``name`` (kwargs go to its constructor).

    Example:
        >>> get("tps", grid_size=3).num_params
        18
    """
    if isinstance(name, Transform):
        return name
    if name not in _FAMILIES:
        raise ValueError(f"unknown transform {name!r}; known: {', '.join(names())}")
    return _FAMILIES[name](**kwargs)


def rotation(angle: Tensor | float, scale: float = 1.0) -> Tensor:
    """Affine parameters of a rotation by ``angle`` radians about the centre, (N, 6)."""
    if isinstance(angle, Tensor) and angle.is_floating_point():
        a = angle.reshape(-1)  # keep the caller's dtype and device
    else:
        a = torch.as_tensor(angle, dtype=torch.get_default_dtype()).reshape(-1)
    c, s, z = torch.cos(a) * scale, torch.sin(a) * scale, torch.zeros_like(a)
    return torch.stack([c, -s, z, s, c, z], dim=1)
