"""The Cluttered / distorted MNIST generator: a pure function of (digits, variant, seed).

Every variant is the same three steps, each vectorised over canvases:

1. clutter: ``patches`` random ``patch_size`` crops of *other* source digits written at
   uniform positions (a later patch overwrites an earlier one);
2. digit: the source digit, either copied at an integer offset (``distortion="none"``)
   or warped onto the canvas (``affine``, ``projective``, ``elastic``; see :mod:`.warp`);
3. the digit is *added* to the clutter and the sum clipped to [0, 1].

All random numbers are drawn up front from one ``numpy.random.Generator``, so the
output depends only on the inputs and the seed, not on chunking or threads.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

import stnlab.data.warp as warp
from stnlab.config import PLACEMENTS
from stnlab.config import VARIANTS as _VARIANTS
from stnlab.config.errors import DataError
from stnlab.data.sources import Digits

DISTORTIONS = ("none", "affine", "projective", "elastic")
DIGIT = warp.DIGIT
_CHUNK = 2048  # canvases rendered at a time; bounds the size of index arrays


@dataclass(frozen=True)
class Variant:
    """The parameters of one kind of canvas; see :data:`VARIANTS` for the named ones.

    ``placement`` applies to undistorted digits: ``published`` reproduces the 40×40
    set's quirk (x uniform in 0..S-29, y uniform in 0..S-1 clamped to S-28, so ~70% of
    digits touch the bottom edge at S=40), ``uniform`` draws both in 0..S-28, ``center``
    centres. Warped digits are centred and moved by up to ``shift`` pixels instead.
    ``rotation`` is the largest |angle| in degrees, ``corner_std`` the projective corner
    noise (fraction of the digit's half-side, scaled with the digit), ``corner_px`` more
    projective corner noise in canvas pixels, after the scaling (the STN paper's),
    ``elastic_std`` the elastic control-point displacement in pixels.
    """

    canvas: int = 40
    patches: int = 5
    patch_size: int = 5
    placement: str = "published"
    distortion: str = "none"
    rotation: float = 0.0
    scale: tuple[float, float] = (1.0, 1.0)
    shift: float = 0.0
    corner_std: float = 0.0
    corner_px: float = 0.0
    elastic_std: float = 0.0

    def __post_init__(self) -> None:
        if self.placement not in PLACEMENTS:
            raise DataError(f"placement {self.placement!r} not one of {', '.join(PLACEMENTS)}")
        if self.distortion not in DISTORTIONS:
            raise DataError(f"distortion {self.distortion!r} not one of {', '.join(DISTORTIONS)}")
        if self.distortion == "none" and self.canvas < DIGIT:
            raise DataError(f"canvas {self.canvas} is smaller than a {DIGIT}x{DIGIT} digit")
        if self.canvas < 1 or self.patches < 0:
            raise DataError("canvas must be positive and patches non-negative")
        if self.patches and not 1 <= self.patch_size <= min(DIGIT, self.canvas):
            raise DataError(f"patch_size must be in 1..{min(DIGIT, self.canvas)}")
        lo, hi = self.scale
        if not 0 < lo <= hi:
            raise DataError(f"scale range {self.scale} must satisfy 0 < low <= high")


# The named layouts (their parameters are plain data in stnlab.config).
VARIANTS: dict[str, Variant] = {name: Variant(**fields) for name, fields in _VARIANTS.items()}


def get_variant(name: str, **overrides) -> Variant:
    """The named variant with some fields replaced, e.g. ``get_variant("60x60", patches=8)``."""
    if name not in VARIANTS:
        raise DataError(f"unknown variant {name!r}; choose from {', '.join(VARIANTS)}")
    try:
        return replace(VARIANTS[name], **overrides)
    except TypeError as exc:
        raise DataError(f"bad variant override: {exc}") from None


def _choose_digits(rng: np.random.Generator, m: int, n: int) -> np.ndarray:
    """``n`` pool indices as back-to-back permutations, so each digit is used equally often."""
    if n == 0:
        return np.zeros(0, np.int64)
    rounds = -(-n // m)
    return np.concatenate([rng.permutation(m) for _ in range(rounds)])[:n]


def _offsets(rng: np.random.Generator, n: int, v: Variant) -> np.ndarray:
    """Top-left (y, x) offsets (N, 2) of an undistorted digit."""
    room = v.canvas - DIGIT
    if v.placement == "center":
        return np.full((n, 2), room // 2)
    if v.placement == "uniform":
        return rng.integers(0, room + 1, size=(n, 2))
    x = rng.integers(0, max(room, 1), size=n)  # 0..room-1: the published set never uses room
    y = np.minimum(rng.integers(0, v.canvas, size=n), room)
    return np.stack([y, x], axis=1)


def _sample(rng: np.random.Generator, m: int, n: int, v: Variant) -> dict[str, np.ndarray]:
    """Every random choice for ``n`` canvases from a pool of ``m`` digits, in a fixed order."""
    p = {"which": _choose_digits(rng, m, n)}
    if v.patches:
        if m < 2:
            raise DataError("clutter needs at least 2 source digits (patches come from others)")
        other = rng.integers(1, m, size=(n, v.patches))
        p["clutter"] = (p["which"][:, None] + other) % m  # (N, P), never the digit itself
        p["crop"] = rng.integers(0, DIGIT - v.patch_size + 1, size=(n, v.patches, 2))
        p["at"] = rng.integers(0, v.canvas - v.patch_size + 1, size=(n, v.patches, 2))
    if v.distortion == "none":
        p["offset"] = _offsets(rng, n, v)
        return p
    p["angle"] = np.deg2rad(rng.uniform(-v.rotation, v.rotation, size=n))
    p["scale"] = rng.uniform(*v.scale, size=n)
    p["shift"] = rng.uniform(-v.shift, v.shift, size=(n, 2))
    if v.distortion == "projective":
        p["corners"] = rng.normal(0.0, v.corner_std, size=(n, 4, 2))
        if v.corner_px:  # drawn only when set, so the variants without it keep their draws
            p["jitter"] = rng.normal(0.0, v.corner_px, size=(n, 4, 2))
    if v.distortion == "elastic":
        p["control"] = rng.normal(0.0, v.elastic_std, size=(n, 2, 4, 4))
    return p


def _blocks(y: np.ndarray, x: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column index arrays (N, size, size) of square blocks at top-left (y, x)."""
    r = np.arange(size)
    return y[:, None, None] + r[None, :, None], x[:, None, None] + r[None, None, :]


def _clutter(canvas: np.ndarray, images: np.ndarray, p: dict, v: Variant) -> None:
    """Write the clutter patches into ``canvas`` (N, S, S), one patch slot at a time."""
    n = np.arange(len(canvas))[:, None, None]
    for k in range(v.patches):
        rows, cols = _blocks(p["crop"][:, k, 0], p["crop"][:, k, 1], v.patch_size)
        patch = images[p["clutter"][:, k, None, None], rows, cols]  # (N, p, p) uint8
        rows, cols = _blocks(p["at"][:, k, 0], p["at"][:, k, 1], v.patch_size)
        canvas[n, rows, cols] = patch.astype(np.float32) / 255


def _digit_layer(images: np.ndarray, p: dict, v: Variant) -> np.ndarray:
    """The (possibly warped) digits alone on an empty canvas, float32 (N, S, S)."""
    digits = images[p["which"]]  # (N, 28, 28) uint8
    if v.distortion == "none":
        layer = np.zeros((len(digits), v.canvas, v.canvas), np.float32)
        rows, cols = _blocks(p["offset"][:, 0], p["offset"][:, 1], DIGIT)
        layer[np.arange(len(digits))[:, None, None], rows, cols] = digits.astype(np.float32) / 255
        return layer
    if v.distortion == "projective":
        unit = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=np.float64)
        corners = (unit + p["corners"]) * (DIGIT / 2) * p["scale"][:, None, None]
        corners = corners + p["shift"][:, None, :]  # (N, 4, 2) canvas pixels from centre
        if "jitter" in p:
            corners = corners + p["jitter"]
        grid = warp.grid_from_homography(warp.homographies(corners, v.canvas), v.canvas)
    else:
        theta = warp.affine_thetas(p["angle"], p["scale"], p["shift"], v.canvas)
        grid = warp.affine_grid(theta, v.canvas)
    if v.distortion == "elastic":
        grid = grid + warp.smooth_field(p["control"], v.canvas)
    return warp.sample_digits(digits, grid)


def _render(images: np.ndarray, p: dict, v: Variant) -> np.ndarray:
    """Canvases float32 (N, S, S) from drawn parameters ``p``."""
    canvas = np.zeros((len(p["which"]), v.canvas, v.canvas), np.float32)
    _clutter(canvas, images, p, v)
    canvas += _digit_layer(images, p, v)
    return np.clip(canvas, 0.0, 1.0, out=canvas)


def make_cluttered(
    digits: Digits, n: int, variant: Variant | str = "40x40", seed: int | np.random.SeedSequence = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Make ``n`` canvases from a pool of source digits.

    Returns images float32 (N, S, S) in [0, 1] and labels int64 (N,). The same
    inputs and seed give byte-identical output.

    Example:
        >>> from stnlab.data.sources import load_pools
        >>> x, y = make_cluttered(load_pools().train, 8, "40x40", seed=0)
        >>> x.shape, y.shape
        ((8, 40, 40), (8,))
    """
    v = get_variant(variant) if isinstance(variant, str) else variant
    if n < 0 or (n and len(digits) == 0):
        raise DataError(f"cannot make {n} canvases from {len(digits)} source digits")
    p = _sample(np.random.default_rng(seed), len(digits), n, v)
    out = np.empty((n, v.canvas, v.canvas), np.float32)
    for start in range(0, n, _CHUNK):
        part = {key: val[start : start + _CHUNK] for key, val in p.items()}
        out[start : start + _CHUNK] = _render(digits.images, part, v)
    return out, digits.labels[p["which"]].astype(np.int64)
