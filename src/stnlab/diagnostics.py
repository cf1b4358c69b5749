"""What a transformer's θ does to its input: sampled area, padding, shift, parts, pixel matrices.

Every function takes a batch θ (N, P) of one family (``transform``: a name from
:func:`stnlab.transforms.names` or a :class:`~stnlab.transforms.Transform`) and works in
stnlab's coordinate convention (see :mod:`stnlab`): θ maps *output* coordinates to *input*
coordinates, normalised to [-1, 1] with ``align_corners=False``.

Pixel convention (``to_pixels``, ``from_pixels`` and every ``_px`` figure): a point is
(x, y) = (column, row) with pixel *centres* at integers, (0, 0) the centre of the top-left
pixel, x to the right, y down. A pixel matrix P (3×3, homogeneous) maps an output pixel
(x_t, y_t, 1) to the input pixel it reads, the same direction as θ. OpenCV and kornia
(``align_corners=True``) use the same pixel centres but take the *source → destination*
matrix, P⁻¹; so ``cv2.warpAffine(img, P[:2], (W', H'), flags=cv2.INTER_LINEAR |
cv2.WARP_INVERSE_MAP)`` (or ``warpPerspective`` with P) and
``kornia.geometry.transform.warp_affine(U, P.inverse()[:, :2], (H', W'), align_corners=True)``
reproduce ``stnlab.sample`` at θ.

Decomposition (matrix families): the linear part A = R(rotation) · [[1, shear], [0, 1]] ·
diag(scale_x, scale_y), with R(φ) = [[cos φ, -sin φ], [sin φ, cos φ]] as in
:func:`stnlab.transforms.rotation`. Scales are relative to the input: scale 0.5 samples a
region half the image's width, i.e. zooms in 2×. With y pointing down, a positive rotation
turns the sampling grid clockwise on screen, so the output shows the input turned
counterclockwise (π/2 gives ``torch.rot90(U, 1, (-2, -1))``). A mirror has scale_y < 0.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from stnlab import transforms as T
from stnlab.transformer import SpatialTransformer

__all__ = [
    "QUANTILES",
    "Decomposition",
    "area_ratio",
    "centre_shift",
    "decompose",
    "find_transformers",
    "from_pixels",
    "identity_distance",
    "initial_theta",
    "invert",
    "matrix_families",
    "measure",
    "measure_model",
    "outline",
    "outside_fraction",
    "start_distance",
    "summarize",
    "summarize_model",
    "to_pixel_points",
    "to_pixels",
]

QUANTILES = {"p10": 0.1, "median": 0.5, "p90": 0.9}  # the summary: median and 10–90% spread


@dataclass(frozen=True)
class Decomposition:
    """An affine map as A = R(rotation) · [[1, shear], [0, 1]] · diag(scale_x, scale_y) + t.

    Every field has one value per sample, (N,), and ``translation`` is (N, 2), normalised.
    """

    scale_x: Tensor
    scale_y: Tensor
    rotation: Tensor  # radians
    shear: Tensor
    translation: Tensor

    def affine_theta(self) -> Tensor:
        """The affine θ (N, 6) of these parts (the inverse of :func:`decompose`)."""
        c, s = torch.cos(self.rotation), torch.sin(self.rotation)
        r = torch.stack([c, -s, s, c], -1).reshape(-1, 2, 2)
        zero = torch.zeros_like(self.shear)
        sheared = [self.scale_x, self.shear * self.scale_y, zero, self.scale_y]
        a = r @ torch.stack(sheared, -1).reshape(-1, 2, 2)  # (N, 2, 2)
        return torch.cat([a, self.translation[:, :, None]], dim=2).reshape(-1, 6)


# ----------------------------------------------------------------------------- helpers


@functools.cache
def matrix_families() -> tuple[str, ...]:
    """Names of the families whose members are 3×3 matrices (decompose, invert, pixels)."""
    return tuple(name for name in T.names() if hasattr(T.get(name), "matrix"))


def _family(transform: str | T.Transform, theta: Tensor) -> T.Transform:
    """The family, after checking that θ is a floating (N, num_params) batch of it."""
    family = T.get(transform)
    if theta.ndim != 2 or theta.shape[1] != family.num_params:
        raise ValueError(
            f"{family.name} θ must have shape (N, {family.num_params}), got {tuple(theta.shape)}"
        )
    if not theta.is_floating_point():
        raise TypeError(f"{family.name} θ must be floating point, got {theta.dtype}")
    return family


def _matrix_family(transform: str | T.Transform, what: str) -> T.Transform:
    """The family, if its members are 3×3 matrices; else a ValueError naming ``what``."""
    family = T.get(transform)
    if not hasattr(family, "matrix"):
        raise ValueError(
            f"{what} needs a matrix family ({', '.join(matrix_families())}); "
            f"{family.name} has no 3×3 matrix"
        )
    return family


def _matrix(family: T.Transform, theta: Tensor) -> Tensor:
    """The (N, 3, 3) matrix of θ scaled to m33 = 1 (already so for stnlab's families)."""
    m = family.matrix(theta)
    if m.shape[1:] != (3, 3):
        raise ValueError(f"{family.name} is not a 2D family; stnlab.diagnostics covers 2D warps")
    return m / m[:, 2:, 2:]


def _polygon_area(points: Tensor) -> Tensor:
    """Area enclosed by closed polygons (N, M, 2) (shoelace formula; folds cancel), (N,)."""
    x, y = points.unbind(-1)  # (N, M) each
    cross = x * y.roll(-1, dims=1) - x.roll(-1, dims=1) * y
    return cross.sum(1).abs() / 2


def outline(grid: Tensor) -> Tensor:
    """The border of sampling grids (N, H', W', 2), walked around once: (N, 2H' + 2W' - 4, 2)."""
    top, right = grid[:, 0, :-1], grid[:, :-1, -1]
    bottom, left = grid[:, -1, 1:].flip(1), grid[:, 1:, 0].flip(1)
    return torch.cat([top, right, bottom, left], dim=1)


def _half_size(size: T.Size, like: Tensor) -> Tensor:
    """(W/2, H/2): normalised -> pixels from the centre, as a tensor like ``like``."""
    h, w = T.as_size(size)
    return like.new_tensor([w / 2, h / 2])


# ----------------------------------------------------------------------------- per-sample figures


def area_ratio(theta: Tensor, out_size: T.Size, transform: str | T.Transform = "affine") -> Tensor:
    """Area of the sampled input region over the input image's area, (N,).

    1 is the identity, 0.25 a 2× zoom-in, 4 a 2× zoom-out. Matrix families: exactly the
    area of the output square [-1, 1]² mapped through θ (|det A| for affine and attention;
    for projective the quadrilateral of the four mapped corners, ``inf`` when the horizon
    line crosses the output, which then samples an unbounded region); ``out_size`` is not
    used. TPS: the area enclosed by the outline of the sampling grid at ``out_size`` (its
    outer pixel centres, as the report draws it) over the identity's, exact when the TPS is
    affine; folds inside the outline are not counted.
    """
    family = _family(transform, theta)
    if hasattr(family, "matrix"):
        corners = theta.new_tensor([[-1, -1, 1], [1, -1, 1], [1, 1, 1], [-1, 1, 1]])
        mapped = corners @ _matrix(family, theta).transpose(1, 2)  # (N, 4, 3)
        w = mapped[..., 2:]
        area = _polygon_area(mapped[..., :2] / w) / 4
        return torch.where((w > 0).all(1).squeeze(-1), area, torch.full_like(area, torch.inf))
    h, w = T.as_size(out_size)
    if min(h, w) < 2:
        raise ValueError(f"{family.name} area needs an output of at least 2×2, got {(h, w)}")
    reference = T.target_grid((h, w), theta.device, theta.dtype)[:, :2].reshape(1, h, w, 2)
    return _polygon_area(outline(family.grid(theta, (h, w)))) / _polygon_area(outline(reference))


def outside_fraction(
    theta: Tensor, out_size: T.Size, transform: str | T.Transform = "affine"
) -> Tensor:
    """Fraction of the output's pixel centres that sample outside the input image, (N,).

    Those points read padding; a point exactly on the image's edge counts as inside.
    """
    grid = _family(transform, theta).grid(theta, out_size)  # (N, H', W', 2)
    outside = (grid.abs() > 1).any(-1)  # (N, H', W')
    return outside.flatten(1).to(theta.dtype).mean(1)


def centre_shift(theta: Tensor, in_size: T.Size, transform: str | T.Transform = "affine") -> Tensor:
    """Where the output's centre samples the input, in input pixels from its centre, (N, 2).

    (dx, dy): dx > 0 means the transformer looks right of the input's centre, dy > 0 below.
    """
    centre = _family(transform, theta).grid(theta, 1).reshape(-1, 2)  # the one pixel at (0, 0)
    return centre * _half_size(in_size, theta)


def _grid_distance(grid: Tensor, still: Tensor, in_size: T.Size) -> Tensor:
    """RMS distance in input pixels between grids (N, P, 2) and a reference grid (P, 2)."""
    moved = (grid - still) * _half_size(in_size, grid)
    return moved.square().sum(-1).mean(1).sqrt()


def identity_distance(
    theta: Tensor, in_size: T.Size, out_size: T.Size, transform: str | T.Transform = "affine"
) -> Tensor:
    """Root-mean-square distance of the sampling grid from the identity's, in input pixels, (N,)."""
    h, w = T.as_size(out_size)
    grid = _family(transform, theta).grid(theta, (h, w)).reshape(-1, h * w, 2)  # (N, H'W', 2)
    still = T.target_grid((h, w), theta.device, theta.dtype)[:, :2]  # (H'W', 2)
    return _grid_distance(grid, still, in_size)


def start_distance(
    theta: Tensor,
    start: Tensor,
    in_size: T.Size,
    out_size: T.Size,
    transform: str | T.Transform = "affine",
) -> Tensor:
    """RMS distance of each sampling grid from that of one θ ``start`` (P,), e.g. the
    transformer's initial warp (:func:`initial_theta`), in input pixels, (N,)."""
    h, w = T.as_size(out_size)
    family = _family(transform, theta)
    grid = family.grid(theta, (h, w)).reshape(-1, h * w, 2)  # (N, H'W', 2)
    still = family.grid(start.to(theta)[None], (h, w)).reshape(h * w, 2)  # (H'W', 2)
    return _grid_distance(grid, still, in_size)


def initial_theta(transformer: SpatialTransformer) -> Tensor:
    """The θ (P,) a transformer predicts for every input after :meth:`reset_theta`."""
    device = transformer.regressor.bias.device
    return transformer.transform.zoom(transformer.init_zoom, 1, device)[0]


def decompose(theta: Tensor, transform: str | T.Transform = "affine") -> Decomposition:
    """Scale, rotation, shear and translation of matrix-family θ (see the module docstring).

    A projective θ is decomposed by its affine approximation at the output's centre
    (its Jacobian there, A - t vᵀ for H = [[A, t], [vᵀ, 1]]), so the translation is still
    where the centre goes. Degenerate maps (a zero first column) give NaN.
    """
    family = _family(_matrix_family(transform, "decompose"), theta)
    m = _matrix(family, theta)
    t, v = m[:, :2, 2], m[:, 2, :2]  # (N, 2) each
    a = m[:, :2, :2] - t[:, :, None] * v[:, None, :]  # (N, 2, 2)
    scale_x = torch.hypot(a[:, 0, 0], a[:, 1, 0])
    rotation = torch.atan2(a[:, 1, 0], a[:, 0, 0])
    c, s = torch.cos(rotation), torch.sin(rotation)
    det = a[:, 0, 0] * a[:, 1, 1] - a[:, 0, 1] * a[:, 1, 0]
    scale_y = det / scale_x  # Rᵀ A = [[scale_x, shear·scale_y], [0, scale_y]]
    shear = (c * a[:, 0, 1] + s * a[:, 1, 1]) / scale_y
    return Decomposition(scale_x, scale_y, rotation, shear, t)


def invert(theta: Tensor, transform: str | T.Transform = "affine") -> Tensor:
    """θ of the inverse warp (input -> output coordinates), same family, (N, P).

    ``family.compose(invert(θ), θ)`` is the identity. Raises ``ValueError`` for a
    singular θ (zero area) and for TPS, whose inverse is not a TPS.
    """
    family = _family(_matrix_family(transform, "invert"), theta)
    inverse, info = torch.linalg.inv_ex(_matrix(family, theta))
    if (info != 0).any():
        raise ValueError(f"θ {int(info.nonzero()[0, 0])} is singular (zero area): no inverse")
    return family.from_matrix(inverse)


# ----------------------------------------------------------------------------- pixel matrices


def _to_normalised(size: T.Size, like: Tensor) -> Tensor:
    """Pixel (x, y, 1) -> normalised (x, y, 1) for an image of ``size``, (3, 3)."""
    h, w = T.as_size(size)
    return like.new_tensor([[2 / w, 0, 1 / w - 1], [0, 2 / h, 1 / h - 1], [0, 0, 1]])


def _to_pixel(size: T.Size, like: Tensor) -> Tensor:
    """Normalised (x, y, 1) -> pixel (x, y, 1), the inverse of :func:`_to_normalised`."""
    h, w = T.as_size(size)
    return like.new_tensor([[w / 2, 0, (w - 1) / 2], [0, h / 2, (h - 1) / 2], [0, 0, 1]])


def to_pixel_points(points: Tensor, size: T.Size) -> Tensor:
    """Normalised points (..., 2) as pixel (x, y) of an image of ``size``, same shape.

    The pixel convention of the module docstring: pixel centres at integers, (0, 0) the
    centre of the top-left pixel; the image's edges are at -0.5 and W - 0.5.
    """
    m = _to_pixel(size, points)
    return points * m.diagonal()[:2] + m[:2, 2]


def to_pixels(
    theta: Tensor, in_size: T.Size, out_size: T.Size, transform: str | T.Transform = "affine"
) -> Tensor:
    """The warp of θ as pixel matrices P (N, 3, 3): output pixel -> input pixel.

    See the module docstring for the pixel convention and for use with OpenCV and kornia.

    Example:
        >>> theta = torch.tensor([[0.5, 0.0, 0.0, 0.0, 0.5, 0.0]])  # 2× zoom on the centre
        >>> to_pixels(theta, in_size=40, out_size=20)[0].tolist()
        [[1.0, 0.0, 10.0], [0.0, 1.0, 10.0], [0.0, 0.0, 1.0]]
    """
    family = _family(_matrix_family(transform, "to_pixels"), theta)
    return _to_pixel(in_size, theta) @ _matrix(family, theta) @ _to_normalised(out_size, theta)


def from_pixels(
    matrix: Tensor, in_size: T.Size, out_size: T.Size, transform: str | T.Transform = "affine"
) -> Tensor:
    """θ (N, P) of pixel matrices (N, 3, 3) or (N, 2, 3) (output pixel -> input pixel).

    The inverse of :func:`to_pixels`. Raises ``ValueError`` when a matrix is not a member
    of the family (e.g. a rotation for ``attention``, a perspective for ``affine``).
    """
    family = _matrix_family(transform, "from_pixels")
    if matrix.ndim != 3 or matrix.shape[1:] not in ((3, 3), (2, 3)):
        raise ValueError(
            f"pixel matrices must be (N, 3, 3) or (N, 2, 3), got {tuple(matrix.shape)}"
        )
    if matrix.shape[1] == 2:
        bottom = matrix.new_tensor([0.0, 0.0, 1.0]).expand(len(matrix), 1, 3)
        matrix = torch.cat([matrix, bottom], dim=1)  # (N, 3, 3)
    m = _to_normalised(in_size, matrix) @ matrix @ _to_pixel(out_size, matrix)
    m = m / m[:, 2:, 2:]
    theta = family.from_matrix(m)
    error = (family.matrix(theta) - m).abs().amax((1, 2))
    bad = error > torch.finfo(m.dtype).eps ** 0.5 * (1 + m.abs().amax((1, 2)))
    if bad.any():
        raise ValueError(f"pixel matrix {int(bad.nonzero()[0, 0])} is not a {family.name} warp")
    return theta


# ----------------------------------------------------------------------------- summaries


def measure(
    theta: Tensor,
    in_size: T.Size,
    out_size: T.Size,
    transform: str | T.Transform = "affine",
    start: Tensor | None = None,
) -> dict[str, Tensor]:
    """Every per-sample figure of a batch θ, each (N,): the rows behind :func:`summarize`.

    Keys: ``area_ratio``, ``outside_fraction``, ``shift_x_px``, ``shift_y_px`` (the centre
    shift), ``identity_distance_px``, with a ``start`` θ (P,) ``start_distance_px``
    (:func:`start_distance`), and for matrix families ``scale_x``, ``scale_y``,
    ``rotation_deg`` and ``shear``. Pixels are the input's (feature-map cells for a
    transformer between layers).
    """
    family = _family(transform, theta)
    shift = centre_shift(theta, in_size, family)
    out = {
        "area_ratio": area_ratio(theta, out_size, family),
        "outside_fraction": outside_fraction(theta, out_size, family),
        "shift_x_px": shift[:, 0],
        "shift_y_px": shift[:, 1],
        "identity_distance_px": identity_distance(theta, in_size, out_size, family),
    }
    if start is not None:
        out["start_distance_px"] = start_distance(theta, start, in_size, out_size, family)
    if hasattr(family, "matrix"):
        parts = decompose(theta, family)
        out["scale_x"], out["scale_y"] = parts.scale_x, parts.scale_y
        out["rotation_deg"], out["shear"] = torch.rad2deg(parts.rotation), parts.shear
    return out


def summarize(measures: Mapping[str, Tensor]) -> dict[str, float]:
    """Median and 10–90% spread of each figure of :func:`measure`, as plain floats.

    Keys are ``{figure}_{p10,median,p90}`` (e.g. ``area_ratio_median``), ready for
    ``metrics.jsonl``. Quantiles are nearest-rank, so an infinite area stays infinite.
    """
    names = list(measures)
    values = torch.stack([measures[k].detach().double() for k in names])  # (F, N)
    q = values.new_tensor(list(QUANTILES.values()))
    table = torch.quantile(values, q, dim=1, interpolation="nearest").T.tolist()  # (F, 3)
    return {
        f"{k}_{stat}": v
        for k, row in zip(names, table, strict=True)
        for stat, v in zip(QUANTILES, row, strict=True)
    }


def find_transformers(model: nn.Module) -> dict[str, SpatialTransformer]:
    """Every :class:`~stnlab.SpatialTransformer` of a model, by module name."""
    return {n: m for n, m in model.named_modules() if isinstance(m, SpatialTransformer)}


@torch.no_grad()
def _thetas(model: nn.Module, x: Tensor) -> dict[str, Tensor]:
    """Each transformer's θ for images x, from one forward pass in eval mode (mode restored)."""
    found = find_transformers(model)
    for st in found.values():
        st.last_theta = None  # a transformer the forward pass skips must not report stale θ
    was_training = model.training
    model.eval()
    try:
        model(x)
    finally:
        model.train(was_training)
    return {name: _full(st.last_theta) for name, st in found.items() if st.last_theta is not None}


def _measure_transformer(st: SpatialTransformer, theta: Tensor) -> dict[str, Tensor]:
    """:func:`measure` of a transformer's θ, with its distance from the initial warp."""
    return measure(theta, st.in_size, st.out_size, st.transform, start=initial_theta(st))


def measure_model(model: nn.Module, x: Tensor, batch_size: int = 1000) -> dict[str, dict]:
    """:func:`measure` for every transformer of a model on images x, per sample: {name: {figure:
    (N,)}}, in batches of ``batch_size`` images (eval mode; the model's mode is restored)."""
    found: dict[str, dict[str, list[Tensor]]] = {}
    transformers = find_transformers(model)
    for start in range(0, len(x), batch_size):
        for name, theta in _thetas(model, x[start : start + batch_size]).items():
            figures = _measure_transformer(transformers[name], theta)
            for key, values in figures.items():
                found.setdefault(name, {}).setdefault(key, []).append(values)
    return {name: {k: torch.cat(v) for k, v in figs.items()} for name, figs in found.items()}


def summarize_model(model: nn.Module, x: Tensor) -> dict[str, dict[str, float]]:
    """:func:`summarize` for every :class:`~stnlab.SpatialTransformer` in a model, on images x.

    Runs the model once in eval mode (its mode is restored) and reads each transformer's
    ``last_theta``; keys are the transformers' module names (e.g. ``transformers.0``).
    """
    found = find_transformers(model)
    return {
        name: summarize(_measure_transformer(found[name], theta))
        for name, theta in _thetas(model, x).items()
    }


def _full(theta: Tensor) -> Tensor:
    """θ in at least float32: half-precision θ (autocast) is too coarse for the statistics."""
    return theta.to(torch.promote_types(theta.dtype, torch.float32))
