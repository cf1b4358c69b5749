"""Download path against a loopback HTTP server: good file, bad checksum, broken transfer."""

import gzip
import hashlib

import loopback
import numpy as np
import pytest

from stnlab.data import DataError, download, load_pools
from stnlab.data.idx import encode_idx

NAME = "t10k-labels-idx1-ubyte.gz"
PAYLOAD = encode_idx(np.arange(200, dtype=np.uint8) % 10) * 3  # any bytes will do


@pytest.fixture
def data_server():
    """A loopback server; yields its base URL and the handler class (files, hits)."""
    with loopback.serve({NAME: PAYLOAD}) as served:
        yield served


CHECKSUMS = {NAME: hashlib.sha256(PAYLOAD).hexdigest()}


def _fetch(cache, *mirrors):
    return download.fetch(NAME, cache, mirrors=mirrors, checksums=CHECKSUMS, timeout=5)


def test_good_file_downloaded_then_cached(tmp_path, data_server):
    url, handler = data_server
    path = _fetch(tmp_path, f"{url}/good/")
    assert path == tmp_path / NAME and path.read_bytes() == PAYLOAD
    assert _fetch(tmp_path, f"{url}/good/") == path
    assert len(handler.hits) == 1  # the second call trusted the verified cache
    assert sorted(p.name for p in tmp_path.iterdir()) == [NAME]


def test_bad_checksum_leaves_nothing(tmp_path, data_server):
    url, _ = data_server
    with pytest.raises(DataError, match="checksum mismatch"):
        _fetch(tmp_path, f"{url}/bad/")
    assert list(tmp_path.iterdir()) == []


def test_broken_transfer_leaves_nothing(tmp_path, data_server):
    url, _ = data_server
    with pytest.raises(
        DataError, match=r"could not download.*broken/.*(transfer broken|IncompleteRead)"
    ):
        _fetch(tmp_path, f"{url}/broken/")
    assert list(tmp_path.iterdir()) == []


def test_falls_back_to_next_mirror(tmp_path, data_server):
    url, handler = data_server
    path = _fetch(tmp_path, f"{url}/broken/", f"{url}/bad/", f"{url}/good/")
    assert path.read_bytes() == PAYLOAD
    assert [h.split("/")[1] for h in handler.hits] == ["broken", "bad", "good"]


def test_corrupt_cached_file_is_replaced(tmp_path, data_server):
    url, _ = data_server
    (tmp_path / NAME).write_bytes(b"half a file")
    assert _fetch(tmp_path, f"{url}/good/").read_bytes() == PAYLOAD


def test_offline_gives_clear_error(tmp_path):
    with pytest.raises(DataError, match=r"could not download .*offline\?.*source_dir"):
        _fetch(tmp_path, loopback.dead_url() + "/")


def test_unknown_checksum_is_refused(tmp_path, data_server):
    url, handler = data_server
    with pytest.raises(DataError, match="no known SHA-256"):
        download.fetch("other.gz", tmp_path, mirrors=[f"{url}/good/"], checksums=CHECKSUMS)
    assert handler.hits == []


def test_published_checksums_cover_the_four_files():
    assert len(download.SHA256) == 4
    assert all(len(h) == 64 and int(h, 16) >= 0 for h in download.SHA256.values())


def test_mnist_source_downloads_through_mirrors(tmp_path, data_server, monkeypatch):
    url, handler = data_server
    rng = np.random.default_rng(0)
    sizes = {"train": 60, "t10k": 12}
    for prefix, n in sizes.items():
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        handler.files[f"{prefix}-images-idx3-ubyte.gz"] = gzip.compress(encode_idx(images))
        handler.files[f"{prefix}-labels-idx1-ubyte.gz"] = gzip.compress(encode_idx(labels))
    sums = {name: hashlib.sha256(data).hexdigest() for name, data in handler.files.items()}
    monkeypatch.setattr(download, "MIRRORS", [f"{url}/broken/", f"{url}/good/"])
    monkeypatch.setattr(download, "SHA256", sums)
    pools = load_pools("mnist", cache_dir=tmp_path)
    assert (len(pools.train), len(pools.valid), len(pools.test)) == (50, 10, 12)
