"""Save and strictly load Cluttered MNIST ``.npz`` files (published 40×40 and 60×60 layouts).

Published 40×40 layout: ``X_train`` (N, H·W) float32 in [0, 1] and ``y_train`` (N, 1)
int32, likewise ``_valid`` and ``_test``. The 60×60 layout some references use has
``x_train``, ``y_train``, ... with images (N, H·W) or (N, 1, H, W) and labels often
one-hot (N, 10) (``mnist_cluttered_60x60_6distortions.npz``). Every problem is a
:class:`DataError` naming the file, the key and what is wrong.
"""

from __future__ import annotations

import math
import os
import zipfile
from pathlib import Path

import numpy as np

from stnlab.config.errors import DataError
from stnlab.data.dataset import SPLITS, ClutteredMNIST
from stnlab.runs.atomic import atomic_write

# Image key prefix of each layout (labels are y_* in both).
LAYOUTS = {"40x40": "X", "60x60": "x"}


def save(ds: ClutteredMNIST, path: str | os.PathLike) -> Path:
    """Write ``ds`` in the published 40×40 layout (compressed), atomically.

    Example:
        >>> save(make_dataset(sizes=(20, 5, 5)), "tiny.npz")  # doctest: +SKIP
    """
    path = Path(path)
    arrays = {}
    for name in SPLITS:
        x, y = ds.split(name)
        arrays[f"X_{name}"] = x.reshape(len(x), -1).numpy().astype(np.float32)  # (N, H·W)
        arrays[f"y_{name}"] = y.reshape(-1, 1).numpy().astype(np.int32)  # (N, 1)
    with atomic_write(path) as f:
        np.savez_compressed(f, **arrays)
    return path


def _images(arr: np.ndarray, where: str) -> np.ndarray:
    """Check and reshape images to (N, H, W) float32 in [0, 1]."""
    if arr.dtype.kind not in "fiub":
        raise DataError(f"{where}: images must be numeric, got dtype {arr.dtype}")
    if arr.ndim == 2 and arr.shape[1] > 0 and math.isqrt(arr.shape[1]) ** 2 == arr.shape[1]:
        side = math.isqrt(arr.shape[1])
        arr = arr.reshape(len(arr), side, side)  # (N, H, W)
    elif arr.ndim == 4 and arr.shape[1] == 1 and arr.shape[2] == arr.shape[3] > 0:
        arr = arr[:, 0]
    elif not (arr.ndim == 3 and arr.shape[1] == arr.shape[2] > 0):
        raise DataError(
            f"{where}: shape {arr.shape} is not a batch of square images "
            "(expected (N, S*S), (N, S, S) or (N, 1, S, S))"
        )
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        raise DataError(f"{where}: contains NaN or infinite values")
    if arr.size and (arr.min() < 0 or arr.max() > 1):
        raise DataError(f"{where}: values outside [0, 1] (min {arr.min():g}, max {arr.max():g})")
    return arr


def _from_one_hot(arr: np.ndarray, where: str) -> np.ndarray:
    """Class indices (N,) of one-hot rows (N, 10), as the 60×60 files store labels."""
    if not (np.isin(arr, (0, 1)).all() and (arr.sum(1) == 1).all()):
        raise DataError(f"{where}: (N, 10) labels are not one-hot rows")
    return arr.argmax(1)


def _labels(arr: np.ndarray, n: int, where: str) -> np.ndarray:
    """Check labels: (N,), (N, 1) whole numbers 0–9 or (N, 10) one-hot; returns int64 (N,)."""
    if arr.dtype.kind not in "fiub":
        raise DataError(f"{where}: labels must be numeric, got dtype {arr.dtype}")
    if arr.shape not in ((n,), (n, 1), (n, 10)):
        raise DataError(
            f"{where}: shape {arr.shape} does not match {n} images "
            f"(expected ({n}, 1), ({n},) or one-hot ({n}, 10))"
        )
    arr = _from_one_hot(arr, where) if arr.shape == (n, 10) else arr.reshape(-1)
    if arr.dtype.kind == "f" and not (np.isfinite(arr).all() and (arr == np.round(arr)).all()):
        raise DataError(f"{where}: labels are not whole numbers")
    if arr.size and (arr.min() < 0 or arr.max() > 9):
        raise DataError(f"{where}: labels outside 0-9 (min {arr.min():g}, max {arr.max():g})")
    return arr.astype(np.int64)


def _read(npz, key: str, path: Path) -> np.ndarray:
    """One array of the archive, with missing keys and pickles turned into DataError."""
    if key not in npz.files:
        raise DataError(f"{path}: missing key {key!r} (found {', '.join(npz.files) or 'none'})")
    try:
        return npz[key]
    except ValueError as exc:  # object arrays need pickle, which is refused
        raise DataError(f"{path}: key {key!r} cannot be read safely ({exc})") from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: key {key!r} is corrupt ({exc})") from None


def _open(path: Path):
    """``np.load`` without pickles, as an archive of named arrays."""
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        npz = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: not a readable .npz file ({exc})") from None
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise DataError(f"{path}: holds a single array, not an .npz archive of splits")
    return npz


def detect_layout(keys: list[str]) -> str:
    """``"40x40"`` for ``X_train``-style keys, ``"60x60"`` for ``x_train``-style ones."""
    for layout, prefix in LAYOUTS.items():
        if f"{prefix}_train" in keys:
            return layout
    raise DataError(f"neither X_train (40x40 layout) nor x_train (60x60 layout) among {keys}")


def load(path: str | os.PathLike) -> ClutteredMNIST:
    """Load a Cluttered MNIST ``.npz`` of either layout, checking every key.

    Example:
        >>> ds = load("mnist_cluttered_40.npz")  # doctest: +SKIP
        >>> ds.x_train.shape  # doctest: +SKIP
        torch.Size([10000, 1, 40, 40])
    """
    path = Path(path)
    with _open(path) as npz:
        try:
            prefix = LAYOUTS[detect_layout(list(npz.files))]
        except DataError as exc:
            raise DataError(f"{path}: {exc}") from None
        arrays, sides = {}, set()
        for name in SPLITS:
            xkey, ykey = f"{prefix}_{name}", f"y_{name}"
            x = _images(_read(npz, xkey, path), f"{path}: {xkey}")
            y = _labels(_read(npz, ykey, path), len(x), f"{path}: {ykey}")
            arrays[name] = (x, y)
            sides.add(x.shape[1])
    if len(sides) != 1:
        raise DataError(f"{path}: splits have different image sizes {sorted(sides)}")
    return ClutteredMNIST.from_numpy(arrays)
