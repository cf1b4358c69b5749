"""The generator: determinism, placement statistics, clutter provenance, every variant."""

import numpy as np
import pytest

from stnlab.data import (
    VARIANTS,
    DataError,
    Digits,
    get_variant,
    load_pools,
    make_cluttered,
    make_dataset,
    warp,
)


def _flat_pool(m=20, value=None):
    """Digit i: every pixel i + 1 (or ``value``), label i; clutter then shows its source."""
    fill = np.arange(1, m + 1) if value is None else np.full(m, value)
    images = np.broadcast_to(fill[:, None, None], (m, 28, 28)).astype(np.uint8)
    return Digits(images, np.arange(m))


@pytest.fixture(scope="module")
def data_pools():
    return load_pools("embedded")


@pytest.fixture(scope="module")
def data_pool(data_pools):
    return data_pools.train


@pytest.mark.parametrize("name", list(VARIANTS))
def test_variants_shapes_and_range(data_pool, name):
    x, y = make_cluttered(data_pool, 64, name, seed=3)
    side = VARIANTS[name].canvas
    assert x.shape == (64, side, side) and x.dtype == np.float32
    assert y.shape == (64,) and y.dtype == np.int64
    assert np.isfinite(x).all() and x.min() == 0.0 and 0.9 < x.max() <= 1.0
    assert (x.reshape(64, -1).max(1) > 0.5).all()  # every canvas shows a digit


@pytest.mark.parametrize("name", list(VARIANTS))
def test_same_seed_same_bytes(data_pool, name):
    a, ya = make_cluttered(data_pool, 40, name, seed=7)
    b, yb = make_cluttered(data_pool, 40, name, seed=7)
    c, _ = make_cluttered(data_pool, 40, name, seed=8)
    assert a.tobytes() == b.tobytes() and ya.tobytes() == yb.tobytes()
    assert a.tobytes() != c.tobytes()


def test_chunking_does_not_change_output(data_pool, monkeypatch):
    from stnlab.data import cluttered

    a, _ = make_cluttered(data_pool, 50, "40x40", seed=1)
    monkeypatch.setattr(cluttered, "_CHUNK", 7)
    b, _ = make_cluttered(data_pool, 50, "40x40", seed=1)
    assert a.tobytes() == b.tobytes()


def _digit_offsets(placement, n=4000):
    """Top-left corners of a solid digit on clutter-free 40x40 canvases."""
    v = get_variant("40x40", patches=0, placement=placement)
    x, _ = make_cluttered(_flat_pool(4, value=255), n, v, seed=0)
    assert np.allclose(x.sum((1, 2)), 28 * 28)  # always wholly inside
    rows, cols = (x > 0).any(2).argmax(1), (x > 0).any(1).argmax(1)
    return rows, cols


def test_published_placement_sits_on_bottom_edge():
    rows, cols = _digit_offsets("published")
    assert cols.min() == 0 and cols.max() == 11
    assert rows.min() == 0 and rows.max() == 12
    assert 0.66 < np.mean(rows == 12) < 0.74  # 28 of 40 vertical draws clamp to the edge


def test_uniform_placement_removes_the_quirk():
    rows, cols = _digit_offsets("uniform")
    assert rows.max() == 12 and cols.max() == 12
    assert np.mean(rows == 12) < 0.12


def test_clutter_comes_from_other_digits_of_the_pool():
    pool = _flat_pool(20)
    v = get_variant("40x40", placement="center")  # digit occupies rows/cols 6..33
    x, y = make_cluttered(pool, 300, v, seed=2)
    outside = x.copy()
    outside[:, 6:34, 6:34] = 0  # keep clutter away from the digit only
    for canvas, label in zip(np.rint(outside * 255).astype(int), y, strict=True):
        values = set(np.unique(canvas).tolist()) - {0}
        assert values <= set(range(1, 21)) - {label + 1}  # pool digits, never the canvas's own
    assert (outside > 0).any((1, 2)).mean() > 0.9  # clutter is present


def test_class_balance(data_pool):
    _, y = make_cluttered(data_pool, 3000, "40x40", seed=0)
    share = np.bincount(y, minlength=10) / len(y)
    assert np.abs(share - 0.1).max() < 0.01


def test_splits_use_disjoint_source_digits_with_their_labels(data_pools):
    ds = make_dataset(sizes=(300, 100, 100), patches=0, placement="center", seed=4)

    def used(name):  # the digit is copied exactly into the centre of each canvas
        x, y = ds.split(name)
        digits = np.rint(x[:, 0, 6:34, 6:34].numpy() * 255).astype(np.uint8)
        return {(d.tobytes(), int(label)) for d, label in zip(digits, y, strict=True)}

    for name in ("train", "valid", "test"):
        pool = getattr(data_pools, name)
        own = {
            (img.tobytes(), int(label)) for img, label in zip(pool.images, pool.labels, strict=True)
        }
        assert used(name) <= own  # each canvas shows a digit of its own pool, correctly labelled
    assert not {d for d, _ in used("test")} & {d for d, _ in used("train")}


def test_make_dataset_deterministic_and_sized():
    a = make_dataset("60x60", sizes=(30, 10, 10), seed=5, patches=6)
    b = make_dataset("60x60", sizes=(30, 10, 10), seed=5, patches=6)
    assert a.image_size == (60, 60) and a.x_train.shape == (30, 1, 60, 60)
    for name in ("train", "valid", "test"):
        assert a.split(name)[0].numpy().tobytes() == b.split(name)[0].numpy().tobytes()


def test_affine_warp_identity_and_integer_shift():
    digit = np.random.default_rng(0).integers(0, 256, (1, 28, 28), dtype=np.uint8)
    one, zero = np.ones(1), np.zeros(1)
    same = warp.sample_digits(
        digit, warp.affine_grid(warp.affine_thetas(zero, one, np.zeros((1, 2)), 28), 28)
    )
    np.testing.assert_allclose(same[0], digit[0] / 255, atol=1e-5)
    theta = warp.affine_thetas(zero, one, np.array([[3.0, -2.0]]), 42)  # shift (x, y) pixels
    moved = warp.sample_digits(digit, warp.affine_grid(theta, 42))[0]
    np.testing.assert_allclose(moved[5:33, 10:38], digit[0] / 255, atol=1e-5)
    assert moved.sum() == pytest.approx(digit.sum() / 255, rel=1e-5)


def test_homography_of_unperturbed_corners_is_identity():
    corners = np.array([[[-14, -14], [14, -14], [14, 14], [-14, 14]]], dtype=float)
    np.testing.assert_allclose(warp.homographies(corners, 28)[0], np.eye(3), atol=1e-12)


def test_undistorted_warps_are_identity():
    pool = Digits(
        np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8), np.arange(5)
    )
    for kind in ("affine", "projective", "elastic"):
        v = get_variant("rotated", distortion=kind, rotation=0.0)
        x, y = make_cluttered(pool, 5, v, seed=0)
        np.testing.assert_allclose(x, pool.images[y] / 255, atol=1e-5, err_msg=kind)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"placement": "left"}, "placement 'left'"),
        ({"distortion": "swirl"}, "distortion 'swirl'"),
        ({"canvas": 20}, "smaller than"),
        ({"patch_size": 30}, "patch_size"),
        ({"scale": (1.2, 0.7)}, "scale range"),
        ({"colour": 1}, "bad variant override"),
    ],
)
def test_bad_variant_parameters(overrides, message):
    with pytest.raises(DataError, match=message):
        get_variant("40x40", **overrides)


def test_empty_split(data_pool):
    x, y = make_cluttered(data_pool, 0, "40x40")
    assert x.shape == (0, 40, 40) and y.shape == (0,)
    assert make_dataset(sizes=(5, 0, 0)).x_valid.shape == (0, 1, 40, 40)


def test_bad_requests():
    with pytest.raises(DataError, match="unknown variant"):
        get_variant("80x80")
    with pytest.raises(DataError, match="at least 2 source digits"):
        make_cluttered(_flat_pool(1), 3, "40x40")
