"""Saving in the published layout and strict loading of both layouts."""

import numpy as np
import pytest
import torch

from stnlab.data import SPLITS, ClutteredMNIST, DataError, load, make_dataset, save


@pytest.fixture(scope="module")
def data_tiny():
    return make_dataset(sizes=(40, 10, 10), seed=0)


def _published(n=(6, 3, 3), side=40, prefix="X", shape=None):
    """Arrays in a file layout: images (N, side*side) unless ``shape`` says otherwise."""
    rng = np.random.default_rng(0)
    out = {}
    for name, k in zip(SPLITS, n, strict=True):
        x = rng.random((k, side * side), dtype=np.float32)
        out[f"{prefix}_{name}"] = x.reshape(k, *shape) if shape else x
        out[f"y_{name}"] = (np.arange(k) % 10).astype(np.int32).reshape(k, 1)
    return out


def _write(tmp_path, arrays, name="d.npz"):
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


def test_save_matches_published_layout(tmp_path, data_tiny):
    path = save(data_tiny, tmp_path / "c.npz")
    with np.load(path) as f:
        assert sorted(f.files) == sorted(
            ["X_train", "y_train", "X_valid", "y_valid", "X_test", "y_test"]
        )
        assert f["X_train"].shape == (40, 1600) and f["X_train"].dtype == np.float32
        assert f["y_valid"].shape == (10, 1) and f["y_valid"].dtype == np.int32
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.npz"]  # no temporary left


def test_round_trip_is_identical(tmp_path, data_tiny):
    back = load(save(data_tiny, tmp_path / "c.npz"))
    assert back.image_size == (40, 40)
    for name in SPLITS:
        for a, b in zip(data_tiny.split(name), back.split(name), strict=True):
            assert a.dtype == b.dtype and torch.equal(a, b)
    assert back.x_train.dtype == torch.float32 and back.y_train.dtype == torch.int64


@pytest.mark.parametrize("shape", [None, (1, 60, 60), (60, 60)])
def test_loads_60x60_layout(tmp_path, shape):
    arrays = _published(side=60, prefix="x", shape=shape)
    ds = load(_write(tmp_path, arrays))
    assert ds.image_size == (60, 60) and ds.x_test.shape == (3, 1, 60, 60)
    np.testing.assert_array_equal(
        ds.x_train.numpy().reshape(6, -1), arrays["x_train"].reshape(6, -1)
    )


def test_loads_one_hot_labels_of_60x60_files(tmp_path):
    arrays = _published(side=60, prefix="x")
    for name in SPLITS:
        y = arrays[f"y_{name}"].reshape(-1)
        arrays[f"y_{name}"] = np.eye(10, dtype=np.float32)[y]  # (N, 10)
    ds = load(_write(tmp_path, arrays))
    assert ds.y_train.tolist() == [0, 1, 2, 3, 4, 5] and ds.y_test.tolist() == [0, 1, 2]


def test_loads_float_and_flat_labels(tmp_path):
    arrays = _published()
    arrays["y_train"] = arrays["y_train"].reshape(-1).astype(np.float64)
    assert load(_write(tmp_path, arrays)).y_train.tolist() == [0, 1, 2, 3, 4, 5]


def _broken(key, value):
    arrays = _published()
    if value is None:
        del arrays[key]
    else:
        arrays[key] = value(arrays[key])
    return arrays


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        (_broken("X_valid", None), r"missing key 'X_valid'"),
        (_broken("y_test", None), r"missing key 'y_test'"),
        (
            _broken("X_train", lambda x: x[:, :1599]),
            r"X_train: shape \(6, 1599\) is not a batch of square",
        ),
        (
            _broken("X_train", lambda x: x.reshape(6, 1, 32, 50)),
            r"X_train: shape .* not a batch of square",
        ),
        (_broken("y_train", lambda y: y + 5), r"y_train: labels outside 0-9"),
        (_broken("y_valid", lambda y: y - 1), r"y_valid: labels outside 0-9"),
        (_broken("y_train", lambda y: y[:5]), r"y_train: shape \(5, 1\) does not match 6 images"),
        (_broken("y_train", lambda y: y + 0.5), r"y_train: labels are not whole numbers"),
        (
            _broken("y_train", lambda y: np.ones((6, 10))),
            r"y_train: \(N, 10\) labels are not one-hot",
        ),
        (_broken("y_train", lambda y: np.ones((6, 3))), r"y_train: shape \(6, 3\) does not match"),
        (_broken("X_test", lambda x: np.where(x > 0.5, np.nan, x)), r"X_test: contains NaN"),
        (_broken("X_test", lambda x: x * 2), r"X_test: values outside \[0, 1\]"),
        (_broken("X_test", lambda x: x - 1), r"X_test: values outside \[0, 1\]"),
        (_broken("X_train", lambda x: x.astype(str)), r"X_train: images must be numeric"),
        (
            _broken("X_valid", lambda x: x.reshape(3, 1, 40, 40)[:, :, :32, :32]),
            r"different image sizes",
        ),
    ],
)
def test_bad_files(tmp_path, arrays, message):
    path = _write(tmp_path, arrays)
    with pytest.raises(DataError, match=message) as info:
        load(path)
    assert str(path) in str(info.value)


def test_pickled_objects_refused(tmp_path):
    arrays = _published()
    arrays["y_train"] = np.array([object()] * 6, dtype=object)
    path = _write(tmp_path, arrays)
    with pytest.raises(DataError, match=r"'y_train' cannot be read safely"):
        load(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "no such file"), (b"not a zip", "not a readable .npz"), ("npy", "single array")],
)
def test_unreadable_files(tmp_path, content, message):
    path = tmp_path / "f.npz"
    if content == "npy":
        with open(path, "wb") as f:
            np.save(f, np.zeros(3))
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(DataError, match=message):
        load(path)


def test_unknown_layout(tmp_path):
    path = _write(tmp_path, {"images": np.zeros((2, 4))})
    with pytest.raises(DataError, match=r"neither X_train .* nor x_train"):
        load(path)


def test_dataclass_checks_its_tensors():
    x, y = torch.zeros(2, 1, 8, 8), torch.zeros(2, dtype=torch.int64)
    ClutteredMNIST(x, y, x, y, x, y)
    with pytest.raises(DataError, match="y_valid must be int64"):
        ClutteredMNIST(x, y, x, y.int(), x, y)
    with pytest.raises(DataError, match="x_test must be float32"):
        ClutteredMNIST(x, y, x, y, x[:, 0], y)
