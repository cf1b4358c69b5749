"""Published data sets against a loopback server: good file, bad checksum, cut transfer, cache."""

import dataclasses
import hashlib
import io

import loopback
import numpy as np
import pytest

from stnlab.cli import main
from stnlab.data import DataError, describe, file_of, load, published
from stnlab.data.published import PUBLISHED, fetch_published, published_path

NAME = "cluttered-40x40"
FILE = PUBLISHED[NAME].filename
REAL = PUBLISHED[NAME]


def _published_layout(sizes=(20, 5, 5), side=40) -> bytes:
    """An .npz in the published 40x40 layout: X_* (N, side²) float32 in [0, 1], y_* (N, 1)."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in zip(("train", "valid", "test"), sizes, strict=True):
        arrays[f"X_{split}"] = rng.random((n, side * side), dtype=np.float32)
        arrays[f"y_{split}"] = (np.arange(n) % 10).astype(np.uint8).reshape(n, 1)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


PAYLOAD = _published_layout()


@pytest.fixture
def server(monkeypatch):
    """A loopback server holding PAYLOAD; the registry entry points at ``/KIND/FILE`` on it."""
    with loopback.serve({FILE: PAYLOAD}) as (url, handler):

        def point_at(*kinds: str) -> None:
            urls = tuple(f"{url}/{kind}/{FILE}" for kind in kinds)
            sha = hashlib.sha256(PAYLOAD).hexdigest()
            entry = dataclasses.replace(REAL, urls=urls, size=len(PAYLOAD), sha256=sha)
            monkeypatch.setitem(PUBLISHED, NAME, entry)

        point_at("good")
        yield point_at, handler


def test_registry_holds_the_published_file():
    assert FILE == "mnist_sequence1_sample_5distortions5x5.npz"
    assert REAL.urls[0].startswith("https://github.com/daviddao/spatial-transformer-tensorflow/")
    assert REAL.size == 3_842_026 and len(REAL.sha256) == 64 and int(REAL.sha256, 16) >= 0


def test_default_place_follows_stnlab_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("STNLAB_CACHE", str(tmp_path))
    assert published_path(NAME) == tmp_path / "published" / FILE
    assert published_path(NAME, tmp_path / "c") == tmp_path / "c" / FILE


def test_good_file_is_fetched_checked_and_loads(tmp_path, server):
    path = fetch_published(NAME, tmp_path)
    assert path == published_path(NAME, tmp_path) and path.read_bytes() == PAYLOAD
    ds = load(path)  # the strict loader reads the published layout
    assert (len(ds.x_train), len(ds.x_valid), len(ds.x_test)) == (20, 5, 5)
    assert ds.image_size == (40, 40)
    assert sorted(p.name for p in tmp_path.iterdir()) == [FILE]


def test_cache_hit_sends_no_second_request(tmp_path, server, capsys):
    _, handler = server
    argv = ["data", "fetch", NAME, "--cache-dir", str(tmp_path)]
    assert main(argv) == 0 and main(argv) == 0
    assert len(handler.hits) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == lines[1]
    assert lines[0] == f"{NAME}: {tmp_path / FILE}, 40x40 images, train/valid/test 20/5/5"


def test_wrong_checksum_leaves_nothing(tmp_path, server):
    point_at, _ = server
    point_at("bad")
    with pytest.raises(DataError, match="checksum mismatch"):
        fetch_published(NAME, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_transfer_cut_midway_leaves_nothing(tmp_path, server):
    point_at, _ = server
    point_at("broken")
    with pytest.raises(DataError, match=r"could not download cluttered-40x40"):
        fetch_published(NAME, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_next_url_is_tried_after_a_failure(tmp_path, server):
    point_at, handler = server
    point_at("broken", "bad", "good")
    assert fetch_published(NAME, tmp_path).read_bytes() == PAYLOAD
    assert [h.split("/")[1] for h in handler.hits] == ["broken", "bad", "good"]


def test_size_announced_unlike_the_registry_is_refused(tmp_path, server, monkeypatch):
    monkeypatch.setitem(
        PUBLISHED, NAME, dataclasses.replace(PUBLISHED[NAME], size=len(PAYLOAD) + 1)
    )
    with pytest.raises(DataError, match=rf"announces {len(PAYLOAD)} bytes, expected"):
        fetch_published(NAME, tmp_path)


def test_corrupt_cached_file_is_fetched_again(tmp_path, server):
    (tmp_path / FILE).write_bytes(PAYLOAD[:-1] + b"x")  # right size, wrong bytes
    assert fetch_published(NAME, tmp_path).read_bytes() == PAYLOAD


def test_corrupt_cached_file_is_reported_when_it_cannot_be_replaced(tmp_path, server):
    point_at, _ = server
    point_at("bad")
    (tmp_path / FILE).write_bytes(b"half a file")
    with pytest.raises(DataError, match=r"the cached .* fails its checksum$"):
        fetch_published(NAME, tmp_path)
    assert (tmp_path / FILE).read_bytes() == b"half a file"  # left for the user to look at


def test_offline_is_one_line_naming_url_and_place(tmp_path, monkeypatch, capsys):
    url = f"{loopback.dead_url()}/{FILE}"
    monkeypatch.setitem(PUBLISHED, NAME, dataclasses.replace(REAL, urls=(url,)))
    assert main(["data", "fetch", NAME, "--cache-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("stnlab data: error: could not download")
    assert f"download {url} by hand and save it as {tmp_path / FILE}" in err


@pytest.mark.parametrize("argv", [["data", "fetch"], ["data", "fetch", "--list"]])
def test_list_names_the_sets(tmp_path, capsys, argv):
    assert main([*argv, "--cache-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out == f"{NAME}: {REAL.description}; 3.8 MB, not fetched\n"


def test_list_says_where_a_fetched_set_is(tmp_path, server, capsys):
    fetch_published(NAME, tmp_path)
    assert main(["data", "fetch", "--list", "--cache-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.endswith(f", cached at {tmp_path / FILE}\n")


def test_unknown_name_is_a_one_line_error(capsys):
    assert main(["data", "fetch", "cluttered-99x99"]) == 2
    err = capsys.readouterr().err
    assert "unknown published data set 'cluttered-99x99'; choose from cluttered-40x40" in err


def test_is_fetched_checks_the_bytes(tmp_path, server):
    assert not published.is_fetched(NAME, tmp_path)
    (tmp_path / FILE).write_bytes(b"\0" * len(PAYLOAD))
    assert not published.is_fetched(NAME, tmp_path)
    fetch_published(NAME, tmp_path)
    assert published.is_fetched(NAME, tmp_path)


def test_seed_preset_runs_on_the_published_file(capsys):
    assert main(["experiment", "--preset", "seed", "--dry-run"]) == 0
    data_line = capsys.readouterr().out.splitlines()[1]
    assert data_line == f"data: the published set {NAME} ({FILE}): {REAL.description}"


def test_generating_from_full_mnist_is_one_key_away(tmp_path):
    from stnlab.config.presets import from_dict

    config = from_dict({"preset": "seed", "data": {"published": ""}})
    assert file_of(config.data) is None  # nothing fetched: generated from the full MNIST
    assert describe(config.data).startswith("40x40 Cluttered MNIST from mnist digits")


def test_unknown_published_name_is_a_one_line_error_before_training(tmp_path, capsys):
    assert main(["train", "--published", "x", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err == "stnlab train: error: unknown published data set 'x'; choose from " + NAME + "\n"
    assert not (tmp_path / "run").exists()


def test_experiment_trains_on_the_fetched_file_without_copying_it(tmp_path, server):
    from stnlab.config import presets as experiment
    from stnlab.experiment import runner

    _, handler = server
    cache = tmp_path / "cache"
    config = experiment.preset(
        "smoke",
        models=["cnn"],
        budgets=[1],
        seeds=[0],
        data=dict(published=NAME, cache_dir=str(cache)),
        train=dict(batch_size=10),
    )
    lines = []
    result = runner.run_experiment(config, tmp_path / "exp", progress=False, log=lines.append)
    assert result.trained == ["cnn-s0"] and len(handler.hits) == 1
    assert not (tmp_path / "exp" / "data.npz").exists()  # the cached file is used in place
    assert f"Data: the published set {NAME}" in (tmp_path / "exp" / "summary.md").read_text()
    runner.run_experiment(config, tmp_path / "exp", progress=False, log=lines.append)
    assert len(handler.hits) == 1  # a second run reads the cache
