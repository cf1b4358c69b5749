"""Verified downloads into a cache: the MNIST IDX archives and the published data sets.

A file is trusted only if its SHA-256 matches a checksum known in advance; a name
with no known checksum is refused rather than downloaded unchecked. Downloads stream
into a temporary file beside the target and are renamed into place only after the
size and checksum match, so a killed or broken transfer never leaves a file that a
later run would trust. :func:`fetch_verified` is the one implementation; :func:`fetch`
(MNIST mirrors) and :mod:`stnlab.data.published` build their URLs and call it.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

from tqdm.auto import tqdm

from stnlab.config.errors import DataError
from stnlab.runs.atomic import atomic_write

MIRRORS: list[str] = [
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
]

# The four archives' published SHA-256 sums (the same in torchvision-derived and
# TensorFlow-mirror tooling); sizes are 9,912,422 / 28,881 / 1,648,877 / 4,542 bytes.
SHA256: dict[str, str] = {
    "train-images-idx3-ubyte.gz": (
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"
    ),
    "train-labels-idx1-ubyte.gz": (
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"
    ),
    "t10k-images-idx3-ubyte.gz": (
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"
    ),
    "t10k-labels-idx1-ubyte.gz": (
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"
    ),
}

_CHUNK = 1 << 16
_MNIST_HINT = (
    " (offline? put the four MNIST IDX files in a directory and pass it with"
    " --source-dir, or data.source_dir in an experiment config)"
)


def cache_root() -> Path:
    """``$STNLAB_CACHE``, else ``$XDG_CACHE_HOME/stnlab``, else ``~/.cache/stnlab``."""
    if os.environ.get("STNLAB_CACHE"):
        return Path(os.environ["STNLAB_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "stnlab"


def default_cache_dir() -> Path:
    """Where downloaded MNIST archives are kept: ``cache_root() / "mnist"``."""
    return cache_root() / "mnist"


def sha256_of(path: str | os.PathLike) -> str:
    """The hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def is_verified(path: Path, sha256: str, size: int | None = None) -> bool:
    """Whether ``path`` exists with the expected size (when known) and SHA-256."""
    if not path.is_file() or (size is not None and path.stat().st_size != size):
        return False
    return sha256_of(path) == sha256


def _stream(url: str, out, size: int | None, timeout: float) -> str:
    """Copy ``url`` into the open file ``out``; returns the SHA-256 of what was written."""
    digest = hashlib.sha256()
    received = 0
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        header = resp.headers.get("Content-Length")
        length = int(header) if header is not None else size
        if size is not None and length != size:
            raise DataError(f"server announces {length} bytes, expected {size}")
        name = url.rsplit("/", 1)[-1]
        with tqdm(
            total=length, unit="B", unit_scale=True, desc=name, leave=False, disable=None
        ) as bar:
            for chunk in iter(lambda: resp.read(_CHUNK), b""):
                digest.update(chunk)
                out.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
    if length is not None and received != length:
        raise DataError(f"transfer broken: got {received} of {length} bytes")
    return digest.hexdigest()


def _download(url: str, target: Path, sha256: str, size: int | None, timeout: float) -> None:
    """Download ``url`` to ``target`` atomically, or raise and leave nothing behind."""
    with atomic_write(target) as out:
        got = _stream(url, out, size, timeout)
        if got != sha256:
            raise DataError(f"checksum mismatch: sha256 {got}, expected {sha256}")


def fetch_verified(
    urls: Sequence[str],
    target: str | os.PathLike,
    sha256: str,
    *,
    size: int | None = None,
    timeout: float = 30.0,
    what: str | None = None,
    hint: str = "",
) -> Path:
    """Return ``target`` holding the bytes with ``sha256``, downloading them if it does not yet.

    A cached file that passes the check is used without any request; one that fails it is
    replaced. Each URL is tried in turn; when none works (for example offline) a
    :class:`DataError` names ``what`` (default: the file name), ``hint`` and every failure.

    Example:
        >>> fetch_verified(["https://example.org/a.npz"], "a.npz", "9f86...")  # doctest: +SKIP
        PosixPath('a.npz')
    """
    target = Path(target)
    if is_verified(target, sha256, size):
        return target
    failures = []
    for url in urls:
        try:
            _download(url, target, sha256, size, timeout)
            return target
        except (urllib.error.URLError, http.client.HTTPException, OSError, DataError) as exc:
            reason = getattr(exc, "reason", None) or exc
            failures.append(f"{url}: {reason}")
    stale = f"; the cached {target} fails its checksum" if target.exists() else ""
    name = what or target.name
    raise DataError(f"could not download {name}{hint}: " + "; ".join(failures) + stale)


def fetch(
    name: str,
    cache_dir: str | os.PathLike | None = None,
    *,
    mirrors: Sequence[str] | None = None,
    checksums: Mapping[str, str] | None = None,
    timeout: float = 30.0,
) -> Path:
    """Return the path of a verified copy of the MNIST archive ``name`` in ``cache_dir``.

    Downloads it from the first mirror that works if the cache has no good copy.
    ``mirrors`` and ``checksums`` default to :data:`MIRRORS` and :data:`SHA256`.

    Example:
        >>> fetch("t10k-labels-idx1-ubyte.gz")  # doctest: +SKIP
        PosixPath('/home/me/.cache/stnlab/mnist/t10k-labels-idx1-ubyte.gz')
    """
    mirrors = MIRRORS if mirrors is None else mirrors
    checksums = SHA256 if checksums is None else checksums
    expected = checksums.get(name)
    if expected is None:
        raise DataError(f"{name}: no known SHA-256 checksum, refusing to download it unchecked")
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    urls = [mirror.rstrip("/") + "/" + name for mirror in mirrors]
    return fetch_verified(urls, cache / name, expected, timeout=timeout, hint=_MNIST_HINT)
