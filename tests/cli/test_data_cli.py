"""``stnlab data make|info|show`` on tiny generated data."""

import pytest

from stnlab.cli import main


@pytest.fixture
def data_npz(tmp_path):
    path = tmp_path / "tiny.npz"
    argv = ["data", "make", "--sizes", "30", "10", "10", "--seed", "3", "--out", str(path)]
    assert main(argv) == 0
    return path


def test_make_and_info(data_npz, capsys):
    assert main(["data", "info", str(data_npz)]) == 0
    out = capsys.readouterr().out
    assert "images 40x40" in out and "train n=30" in out and "(10, 1, 40, 40)" in out
    assert "classes [" in out


def test_make_is_deterministic(data_npz, tmp_path):
    from stnlab.data import load

    again = tmp_path / "again.npz"
    main(["data", "make", "--sizes", "30", "10", "10", "--seed", "3", "--out", str(again)])
    assert load(again).x_train.equal(load(data_npz).x_train)


def test_make_variant_overrides(tmp_path):
    out = tmp_path / "v.npz"
    argv = ["data", "make", "--variant", "60x60", "--patches", "8", "--placement", "center"]
    assert main([*argv, "--sizes", "4", "2", "2", "--out", str(out)]) == 0
    from stnlab.data import load

    assert load(out).image_size == (60, 60)


def test_show_writes_png(data_npz, tmp_path, capsys):
    out = tmp_path / "grid.png"
    assert (
        main(["data", "show", str(data_npz), "--out", str(out), "--rows", "2", "--cols", "3"]) == 0
    )
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "6 train samples" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["data", "info", "missing.npz"], "missing.npz: no such file"),
        (["data", "make", "--variant", "80x80", "--out", "x.npz"], "unknown variant '80x80'"),
        (["data", "make", "--patch-size", "40", "--out", "x.npz"], "patch_size"),
    ],
)
def test_errors_are_one_line(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
