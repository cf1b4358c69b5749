"""Published data sets by name: where each is downloaded from, its size and SHA-256.

The registry :data:`PUBLISHED` is the one place that knows these files; downloads go
through :func:`stnlab.data.download.fetch_verified` (checked, atomic, cached). A fetched
file is a plain ``.npz`` that :func:`stnlab.data.load` reads, so :func:`published_path`
can stand wherever a data path is accepted.

Example:
    >>> from stnlab.data.published import fetch_published
    >>> from stnlab.data import load
    >>> ds = load(fetch_published("cluttered-40x40"))  # doctest: +SKIP
    >>> len(ds.x_train), len(ds.x_valid), len(ds.x_test)  # doctest: +SKIP
    (10000, 1000, 1000)
"""

from __future__ import annotations

import os
import urllib.parse
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from stnlab.config.errors import DataError
from stnlab.data.download import cache_root, fetch_verified, is_verified

__all__ = [
    "PUBLISHED",
    "PublishedSet",
    "default_published_dir",
    "fetch_published",
    "get_published",
    "is_fetched",
    "published_path",
]


@dataclass(frozen=True)
class PublishedSet:
    """One published file: tried at ``urls`` in order, trusted only with this size and SHA-256."""

    name: str
    urls: tuple[str, ...]
    size: int  # bytes
    sha256: str
    description: str

    @property
    def filename(self) -> str:
        """The file name the first URL gives it, kept in the cache."""
        return PurePosixPath(urllib.parse.urlsplit(self.urls[0]).path).name


PUBLISHED: dict[str, PublishedSet] = {
    s.name: s
    for s in (
        PublishedSet(
            name="cluttered-40x40",
            urls=(
                "https://github.com/daviddao/spatial-transformer-tensorflow/raw/master/"
                "data/mnist_sequence1_sample_5distortions5x5.npz",
            ),
            size=3_842_026,
            sha256="951f81b297226e1ed81a96a544ee14cbf50a5523b4f3cd45f0e99d9565425e3b",
            description=(
                "the STN study's 40x40 Cluttered MNIST (one digit, 5 clutter patches of 5x5), "
                "train/valid/test 10,000/1,000/1,000"
            ),
        ),
    )
}


def default_published_dir() -> Path:
    """Where published sets are kept by default: ``cache_root() / "published"``."""
    return cache_root() / "published"


def get_published(name: str) -> PublishedSet:
    """The registry entry ``name``, or a :class:`DataError` listing the known names."""
    try:
        return PUBLISHED[name]
    except KeyError:
        known = ", ".join(PUBLISHED)
        raise DataError(f"unknown published data set {name!r}; choose from {known}") from None


def published_path(name: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """Where the file of ``name`` is kept in ``cache_dir`` (no download, no check)."""
    base = Path(cache_dir) if cache_dir is not None else default_published_dir()
    return base / get_published(name).filename


def fetch_published(
    name: str, cache_dir: str | os.PathLike | None = None, *, timeout: float = 30.0
) -> Path:
    """Return :func:`published_path` holding a verified copy of ``name``, downloading it if needed.

    Offline (or when every URL fails) raises a one-line :class:`DataError` naming the URL
    and the path where a copy downloaded by hand will be found.

    Example:
        >>> fetch_published("cluttered-40x40")  # doctest: +SKIP
        PosixPath('/home/me/.cache/stnlab/published/mnist_sequence1_sample_5distortions5x5.npz')
    """
    entry = get_published(name)
    target = published_path(name, cache_dir)
    hint = f" (offline? download {entry.urls[0]} by hand and save it as {target})"
    return fetch_verified(
        entry.urls, target, entry.sha256, size=entry.size, timeout=timeout, what=name, hint=hint
    )


def is_fetched(name: str, cache_dir: str | os.PathLike | None = None) -> bool:
    """Whether a verified copy of ``name`` is already in ``cache_dir`` (reads and hashes it)."""
    entry = get_published(name)
    return is_verified(published_path(name, cache_dir), entry.sha256, entry.size)
