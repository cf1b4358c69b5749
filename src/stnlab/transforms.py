"""Grid generators: transformation parameters θ -> sampling grid of source coordinates.

Every family maps the regular grid of *output* (target) coordinates through T_θ to
*input* (source) coordinates, in stnlab's convention (normalised (x, y) in [-1, 1], or
(x, y, z) for volumes, ``align_corners=False``; see :mod:`stnlab`). A grid has shape
(N, H', W', 2), or (N, D', H', W', 3) in 3D, holding (x_s, y_s[, z_s]) in its last axis,
ready for :func:`stnlab.sample`. The matrix families (affine, attention, projective) exist
in 2D and 3D (``dims=3``); the thin-plate spline is 2D only. Grids are computed in θ's
dtype even under autocast (see :mod:`stnlab.precision`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor

from stnlab.precision import autocast_off

Size = int | tuple[int, ...]

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

_AXES = {2: "(H, W)", 3: "(D, H, W)"}  # the names of a size's axes, slowest first


def as_size(size: Size, dims: int = 2) -> tuple[int, ...]:
    """Normalise an int or a tuple of ``dims`` ints ((H, W) or (D, H, W)) to a checked tuple."""
    try:
        axes = (size,) * dims if isinstance(size, int) else tuple(size)
        ok = len(axes) == dims and all(int(a) == a and a >= 1 for a in axes)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"size must be a positive int or {_AXES[dims]} tuple, got {size!r}")
    return tuple(int(a) for a in axes)


def pixel_centres(n: int, device=None, dtype=None) -> Tensor:
    """Normalised centres of n pixels along one axis (align_corners=False)."""
    return (2 * torch.arange(n, device=device, dtype=dtype) + 1) / n - 1


def target_grid(out_size: Size, device=None, dtype=None) -> Tensor:
    """Homogeneous target coordinates of every output pixel or voxel.

    (x_t, y_t, 1) for a 2D size (int or (H', W')): (H'·W', 3); (x_t, y_t, z_t, 1) for a
    (D', H', W') size: (D'·H'·W', 4). Rows run in the output's memory order.
    """
    size = as_size(out_size, 2 if isinstance(out_size, int) else len(out_size))
    axes = [pixel_centres(n, device, dtype) for n in size]  # slowest axis first
    mesh = torch.meshgrid(*axes, indexing="ij")  # each (*size): (z,) y, x
    coords = [*reversed(mesh), torch.ones_like(mesh[0])]  # x, y, (z,) 1
    return torch.stack(coords, dim=-1).reshape(-1, len(size) + 1)


class Transform(ABC):
    """A family of spatial transformations with a fixed number of parameters.

    ``dims`` is 2 (images) or 3 (volumes), where the family has that form (``DIMS``).
    """

    name: str = ""
    num_params: int = 0
    DIMS: tuple[int, ...] = (2,)

    def __init__(self, dims: int = 2):
        if dims not in self.DIMS:
            forms = " or ".join(f"{d}D" for d in self.DIMS)
            raise ValueError(f"the {self.name} transform exists in {forms} only, got dims={dims!r}")
        self.dims = dims

    def identity(self, batch_size: int = 1, device=None, dtype=None) -> Tensor:
        """Parameters of the identity transform, (N, num_params)."""
        return self.zoom(1.0, batch_size, device, dtype)

    @abstractmethod
    def zoom(self, scale: float, batch_size: int = 1, device=None, dtype=None) -> Tensor:
        """Parameters of a centred zoom, (N, num_params): source = ``scale`` × target.

        The output then shows the central ``scale`` part of the input along every axis
        (0.5: a 2× zoom-in on the centre; 1: the identity).
        """

    def grid(self, params: Tensor, out_size: Size) -> Tensor:
        """Source coordinates of every output pixel, (N, H', W', 2) or (N, D', H', W', 3).

        Computed in ``params``' dtype, autocast or not (see :mod:`stnlab.precision`).
        """
        size = as_size(out_size, self.dims)
        with autocast_off(params.device):
            return self._grid(self._check(params), size)

    @abstractmethod
    def _grid(self, params: Tensor, size: tuple[int, ...]) -> Tensor:
        """:meth:`grid` for checked parameters and a checked size."""

    def map_points(self, params: Tensor, points: Tensor) -> Tensor:
        """Source coordinates of any target points: (N, P, d) for θ (N, num_params) and
        normalised target points (P, d), in ``params``' dtype and device.

        :meth:`grid` is this map at the output's pixel centres; this one takes any points
        (a TPS's control points, the lines of a drawn grid).

        Example:
            >>> tps = get("tps", grid_size=2)
            >>> theta = tps.zoom(0.5)  # the control points' sources: half-way to the centre
            >>> tps.map_points(theta, torch.tensor([[1.0, -1.0], [0.5, 0.0]])).tolist()
            [[[0.5, -0.5], [0.25, 0.0]]]
        """
        if points.ndim != 2 or points.shape[1] != self.dims:
            raise ValueError(f"points must have shape (P, {self.dims}), got {tuple(points.shape)}")
        with autocast_off(params.device):
            params = self._check(params)
            return self._map(params, points.to(device=params.device, dtype=params.dtype))

    def _map(self, params: Tensor, points: Tensor) -> Tensor:
        """:meth:`map_points` for checked parameters and points of their dtype."""
        raise NotImplementedError(f"the {self.name} transform does not map points")

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
        return f"{type(self).__name__}(dims={self.dims}, num_params={self.num_params})"


class _MatrixTransform(Transform):
    """A family whose members are (d+1)×(d+1) homogeneous matrices, closed under composition."""

    DIMS = (2, 3)

    def __init__(self, dims: int = 2):
        super().__init__(dims)
        self.num_params = self._count(dims)

    @staticmethod
    @abstractmethod
    def _count(dims: int) -> int:
        """Number of parameters of the family in ``dims`` dimensions."""

    @abstractmethod
    def matrix(self, params: Tensor) -> Tensor:
        """The homogeneous matrix of each parameter vector, (N, d+1, d+1)."""

    @abstractmethod
    def from_matrix(self, matrix: Tensor) -> Tensor:
        """Parameters of (N, d+1, d+1) matrices of this family, (N, num_params)."""

    def compose(self, params: Tensor, update: Tensor) -> Tensor:
        """Parameters of ``params ∘ update``: target -> update -> params -> source.

        This is the inverse-compositional step of IC-STN: an update estimated on an
        image already warped by ``params`` is folded into one warp of the original.
        Computed in the parameters' dtype, autocast or not.
        """
        with autocast_off(params.device):
            product = self.matrix(self._check(params)) @ self.matrix(self._check(update))
            return self.from_matrix(product)

    def zoom(self, scale: float, batch_size: int = 1, device=None, dtype=None) -> Tensor:
        diagonal = torch.tensor(
            [float(scale)] * self.dims + [1.0],
            device=device,
            dtype=dtype or torch.get_default_dtype(),
        )
        return self.from_matrix(torch.diag(diagonal).expand(batch_size, -1, -1))

    def _grid(self, params: Tensor, size: tuple[int, ...]) -> Tensor:
        m = self.matrix(params)  # (N, d+1, d+1)
        base = target_grid(size, params.device, params.dtype)  # (P, d+1), P output points
        points = base @ m.transpose(1, 2)  # (N, P, d+1)
        return self._dehomogenise(points).reshape(-1, *size, self.dims)  # (N, *size, d)

    def _map(self, params: Tensor, points: Tensor) -> Tensor:
        homogeneous = torch.cat([points, points.new_ones(len(points), 1)], dim=1)  # (P, d+1)
        return self._dehomogenise(homogeneous @ self.matrix(params).transpose(1, 2))  # (N, P, d)

    def _dehomogenise(self, points: Tensor) -> Tensor:
        return points[..., : self.dims]

    def _with_last_row(self, top: Tensor) -> Tensor:
        """Complete (N, d, d+1) affine rows with the homogeneous row (0, …, 0, 1)."""
        d = self.dims
        last = top.new_tensor([0.0] * d + [1.0]).expand(top.shape[0], 1, d + 1)
        return torch.cat([top, last], dim=1)  # (N, d+1, d+1)


class Affine(_MatrixTransform):
    """The paper's affine warp: source = A_θ (target, 1)ᵀ, θ = A_θ row-major.

    2D: A_θ is 2×3, 6 parameters; 3D: A_θ is 3×4, 12 parameters.
    """

    name = "affine"

    @staticmethod
    def _count(dims: int) -> int:
        return dims * (dims + 1)

    def matrix(self, params: Tensor) -> Tensor:
        return self._with_last_row(params.reshape(-1, self.dims, self.dims + 1))

    def from_matrix(self, matrix: Tensor) -> Tensor:
        return matrix[:, : self.dims, :].reshape(-1, self.num_params)


class Attention(_MatrixTransform):
    """Crop-and-zoom: isotropic scale s and translation, θ = (s, t_x, t_y[, t_z])."""

    name = "attention"

    @staticmethod
    def _count(dims: int) -> int:
        return dims + 1

    def matrix(self, params: Tensor) -> Tensor:
        d = self.dims
        eye = torch.eye(d, device=params.device, dtype=params.dtype)
        linear = params[:, :1, None] * eye  # (N, d, d), s·I
        return self._with_last_row(torch.cat([linear, params[:, 1:, None]], dim=2))

    def from_matrix(self, matrix: Tensor) -> Tensor:
        d = self.dims
        return torch.cat([matrix[:, 0, :1], matrix[:, :d, d]], dim=1)


class Projective(_MatrixTransform):
    """A homography with its last entry 1, θ = the other entries row-major.

    2D: 3×3, θ = (h11, h12, h13, h21, h22, h23, h31, h32), 8 parameters; 3D: 4×4, 15.
    """

    name = "projective"
    eps = 1e-6

    @staticmethod
    def _count(dims: int) -> int:
        return (dims + 1) ** 2 - 1

    def matrix(self, params: Tensor) -> Tensor:
        one = params.new_ones(params.shape[0], 1)
        return torch.cat([params, one], dim=1).reshape(-1, self.dims + 1, self.dims + 1)

    def from_matrix(self, matrix: Tensor) -> Tensor:
        d = self.dims
        m = matrix / matrix[:, d:, d:]
        return m.reshape(-1, (d + 1) ** 2)[:, : self.num_params]

    def _dehomogenise(self, points: Tensor) -> Tensor:
        # Keep the sign of the denominator but bound it away from 0 so points near
        # the horizon go far away instead of producing inf/NaN.
        w = points[..., self.dims :]
        w = torch.where(w >= 0, w.clamp(min=self.eps), w.clamp(max=-self.eps))
        return points[..., : self.dims] / w


class ThinPlateSpline(Transform):
    """Thin-plate spline through a k×k grid of control points.

    θ holds the *source* positions of the control points, interleaved
    (x_1, y_1, ..., x_K, y_K), K = k². The control points rest on a regular grid in
    target space spanning ``[-span, span]``, so θ = rest positions is the identity.
    """

    name = "tps"

    def __init__(self, grid_size: int = 4, span: float = 1.0, reg: float = 0.0, dims: int = 2):
        super().__init__(dims)
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

    def _point_weights(self, points: Tensor) -> Tensor:
        """Linear map from control-point sources to the sources of target points (P, 2)
        (float64), (P, K)."""
        d2 = torch.cdist(points, self.controls) ** 2  # (P, K)
        ones = torch.ones(points.shape[0], 1, dtype=torch.float64)
        features = torch.cat([self._radial(d2), ones, points], dim=1)  # (P, K+3)
        return features @ self._inverse[:, : self.controls.shape[0]]  # (P, K)

    def _weights(self, out_size: tuple[int, int], device, dtype) -> Tensor:
        """:meth:`_point_weights` at the output's pixel centres, (H'·W', K); cached."""
        key = (out_size, str(device), dtype)
        if key not in self._cache:
            base = target_grid(out_size, dtype=torch.float64)[:, :2]  # (H'W', 2)
            self._cache[key] = self._point_weights(base).to(device=device, dtype=dtype)
        return self._cache[key]

    def _map(self, params: Tensor, points: Tensor) -> Tensor:
        weights = self._point_weights(points.detach().cpu().double()).to(params)  # (P, K)
        return weights @ params.reshape(-1, self.num_params // 2, 2)  # (N, P, 2)

    def zoom(self, scale: float, batch_size: int = 1, device=None, dtype=None) -> Tensor:
        # A TPS reproduces affine maps exactly, so scaled rest positions are an exact zoom.
        rest = self.controls.to(device=device, dtype=dtype or torch.get_default_dtype())
        return (rest * scale).reshape(1, -1).expand(batch_size, -1).clone()

    def _grid(self, params: Tensor, size: tuple[int, ...]) -> Tensor:
        sources = params.reshape(-1, self.num_params // 2, 2)  # (N, K, 2)
        weights = self._weights(size, params.device, params.dtype)  # (H'W', K)
        return (weights @ sources).reshape(-1, *size, 2)  # (N, H', W', 2)

    def __repr__(self) -> str:
        return f"ThinPlateSpline(grid_size={self.grid_size}, span={self.span})"


_FAMILIES: dict[str, type[Transform]] = {
    "affine": Affine,
    "attention": Attention,
    "projective": Projective,
    "tps": ThinPlateSpline,
}


def names(dims: int | None = None) -> list[str]:
    """Names of the known transformation families (those with a ``dims``-D form, if given)."""
    return sorted(n for n, cls in _FAMILIES.items() if dims is None or dims in cls.DIMS)


def get(name: str | Transform, dims: int | None = None, **kwargs) -> Transform:
    """The transformation family called ``name`` in ``dims`` (default 2) dimensions.

    kwargs go to the family's constructor; a :class:`Transform` is returned as is, after
    checking its ``dims`` if given.

    Example:
        >>> get("tps", grid_size=3).num_params
        18
        >>> get("affine", dims=3).num_params
        12
    """
    if isinstance(name, Transform):
        if dims is not None and name.dims != dims:
            raise ValueError(f"expected a {dims}D transform, got {name!r}")
        return name
    if name not in _FAMILIES:
        raise ValueError(f"unknown transform {name!r}; known: {', '.join(names())}")
    return _FAMILIES[name](dims=2 if dims is None else dims, **kwargs)


def rotation(angle: Tensor | float, scale: float = 1.0) -> Tensor:
    """Affine parameters of a rotation by ``angle`` radians about the centre, (N, 6)."""
    if isinstance(angle, Tensor) and angle.is_floating_point():
        a = angle.reshape(-1)  # keep the caller's dtype and device
    else:
        a = torch.as_tensor(angle, dtype=torch.get_default_dtype()).reshape(-1)
    c, s, z = torch.cos(a) * scale, torch.sin(a) * scale, torch.zeros_like(a)
    return torch.stack([c, -s, z, s, c, z], dim=1)
