"""IDX reader/writer: round trips for every type code, strict header checks."""

import gzip
import struct

import numpy as np
import pytest

from stnlab.data import DataError, read_idx, write_idx
from stnlab.data.idx import decode_idx, encode_idx


@pytest.mark.parametrize("dtype", ["uint8", "int8", "int16", "int32", "float32", "float64"])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_round_trip(tmp_path, dtype, suffix):
    arr = (np.arange(2 * 3 * 4) - 5).astype(dtype).reshape(2, 3, 4)
    path = write_idx(tmp_path / f"a.idx{suffix}", arr)
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.dtype.isnative
    np.testing.assert_array_equal(back, arr)


def test_mnist_header_layout():
    data = encode_idx(np.zeros((2, 28, 28), np.uint8))
    assert data[:4] == b"\x00\x00\x08\x03"
    assert struct.unpack(">3I", data[4:16]) == (2, 28, 28)
    assert len(data) == 16 + 2 * 28 * 28


def test_big_endian_values():
    data = encode_idx(np.array([1, 256], np.int32))
    assert data[8:] == b"\x00\x00\x00\x01\x00\x00\x01\x00"
    np.testing.assert_array_equal(decode_idx(data), [1, 256])


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x00\x00", "only 2 bytes"),
        (b"\x01\x00\x08\x01" + struct.pack(">I", 1) + b"\x00", "magic"),
        (b"\x00\x00\x07\x01" + struct.pack(">I", 1) + b"\x00", "type code 0x07"),
        (b"\x00\x00\x08\x00", "0 dimensions"),
        (b"\x00\x00\x08\x02" + struct.pack(">I", 1), "header truncated"),
        (b"\x00\x00\x08\x01" + struct.pack(">I", 3) + b"\x00\x00", "needs 3 data bytes"),
        (b"\x00\x00\x08\x01" + struct.pack(">I", 1) + b"\x00\x00", "file has 2"),
    ],
)
def test_bad_headers(tmp_path, data, message):
    path = tmp_path / "bad-idx"
    path.write_bytes(data)
    with pytest.raises(DataError, match=message) as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_missing_and_corrupt_gzip(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_idx(tmp_path / "nothing.idx")
    bad = tmp_path / "bad.idx.gz"
    bad.write_bytes(gzip.compress(encode_idx(np.zeros(10, np.uint8)))[:-6])
    with pytest.raises(DataError, match="cannot read"):
        read_idx(bad)


def test_unsupported_dtype():
    with pytest.raises(DataError, match="cannot store dtype"):
        encode_idx(np.zeros(3, np.uint16))
