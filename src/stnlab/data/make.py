"""``make_dataset``: source pools + a named variant + a seed -> a ``ClutteredMNIST``."""

from __future__ import annotations

import os

import numpy as np

from stnlab.config import DEFAULT_SIZES
from stnlab.data.cluttered import get_variant, make_cluttered
from stnlab.data.dataset import SPLITS, ClutteredMNIST
from stnlab.data.errors import DataError
from stnlab.data.sources import load_pools


def make_dataset(
    variant: str = "40x40",
    source: str = "embedded",
    seed: int = 0,
    sizes: tuple[int, int, int] = DEFAULT_SIZES,
    source_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    **overrides,
) -> ClutteredMNIST:
    """Generate a data set; each split is drawn from its own disjoint pool of source digits.

    ``overrides`` replace fields of the named :class:`~stnlab.data.cluttered.Variant`
    (e.g. ``placement="uniform"``, ``patches=8``). ``source_dir``/``cache_dir`` apply
    to ``source="mnist"``.

    Example:
        >>> ds = make_dataset("60x60", sizes=(20, 5, 5), seed=1, patches=8)
        >>> ds.image_size
        (60, 60)
    """
    if len(sizes) != 3 or any(int(s) < 0 for s in sizes):
        raise DataError(f"sizes must be 3 non-negative counts (train, valid, test), got {sizes}")
    v = get_variant(variant, **overrides)
    pools = load_pools(source, source_dir, cache_dir)
    seeds = np.random.SeedSequence(seed).spawn(len(SPLITS))  # independent stream per split
    arrays = {
        name: make_cluttered(getattr(pools, name), int(n), v, s)
        for name, n, s in zip(SPLITS, sizes, seeds, strict=True)
    }
    return ClutteredMNIST.from_numpy(arrays)
