"""The data set of a config: source pools + a named variant + a seed -> a ``ClutteredMNIST``,
or the file the config names."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import numpy as np

from stnlab.config import DEFAULT_SIZES, DataConfig
from stnlab.config.errors import DataError
from stnlab.data.cluttered import get_variant, make_cluttered
from stnlab.data.dataset import SPLITS, ClutteredMNIST
from stnlab.data.io import load
from stnlab.data.published import fetch_published, get_published, is_fetched, published_path
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


def file_of(config: DataConfig) -> str | None:
    """The file a data config names: its ``path``, or its published set, fetched if need be;
    ``None`` when the data is generated."""
    if config.path is not None or not config.published:
        return config.path
    return str(fetch_published(config.published, config.cache_dir))


def dataset_of(config: DataConfig, **variant: Any) -> ClutteredMNIST:
    """The data set a config names: loaded from its file (:func:`file_of`), or else generated
    (``variant`` replaces fields of the named variant)."""
    if (file := file_of(config)) is not None:
        return load(file)
    return make_dataset(
        config.variant,
        config.source,
        config.seed,
        config.sizes,
        config.source_dir,
        cache_dir=config.cache_dir,
        **variant,
    )


def train_size(config: DataConfig) -> int | None:
    """The training images a data config gives; None for a published set not fetched yet."""
    if config.path is None and not config.published:
        return config.sizes[0]
    if config.path is None and not is_fetched(config.published, config.cache_dir):
        return None
    file = Path(config.path or published_path(config.published, config.cache_dir))
    return _train_size_of(str(file.resolve()), file.stat().st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _train_size_of(path: str, mtime: int) -> int:
    """Training images in the file at ``path`` (read once per version of the file)."""
    return len(load(path).y_train)


def describe(config: DataConfig) -> str:
    """One line naming the data of a config, for plans and summaries."""
    if config.path is not None:
        return f"the file {config.path}"
    if config.published:
        entry = get_published(config.published)
        return f"the published set {entry.name} ({entry.filename}): {entry.description}"
    sizes = "/".join(map(str, config.sizes))
    return f"{config.variant} Cluttered MNIST from {config.source} digits, {sizes} train/valid/test"
