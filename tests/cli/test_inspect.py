"""Tests of ``stnlab inspect``: the θ statistics of a trained run's transformers on a data file."""

from __future__ import annotations

import json
import math

import pytest
from conftest import fixed_theta, saved_run

from stnlab import cli, models


def _run(tmp_path, name: str, theta: list[float] | None = None):
    """A run folder of a small ``name`` whose transformers predict ``theta`` for every image."""
    model = models.create(name, size="small")
    return str(saved_run(tmp_path / name, fixed_theta(model, theta) if theta else model))


def test_inspect_prints_each_transformers_statistics(tmp_path, data_file, capsys):
    c, s = math.cos(math.radians(20)), math.sin(math.radians(20))
    run = _run(tmp_path, "mstn", [0.5 * c, -0.5 * s, 0.1, 0.5 * s, 0.5 * c, 0.0])
    assert cli.main(["inspect", run, "--data", str(data_file)]) == 0
    out = capsys.readouterr().out
    assert "θ on 100 test images" in out
    assert "mstn transformers.0 (affine, 40x40 -> 40x40)" in out
    assert "mstn transformers.1 (affine, 20x20 -> 20x20)" in out
    rows = {
        line.split("  ")[1].strip(): line.split()[-3:]
        for line in out.splitlines()
        if line.startswith("  ") and line.split()[-1][-1].isdigit()
    }
    assert rows["area ratio"] == ["0.25"] * 3  # 0.5² of the input, for every image
    assert rows["rotation (degrees)"] == ["20"] * 3
    assert rows["shift x (px)"] == ["1"] * 3  # the last section: 0.1 of 10 cells (20x20 maps)
    assert out.count("no sign of collapse") == 2


def test_inspect_json_matches_the_printed_table(tmp_path, data_file, capsys):
    run = _run(tmp_path, "stn", [0.8, 0.0, -0.2, 0.0, 0.6, 0.1])
    assert cli.main(["inspect", run, "--data", str(data_file), "--split", "valid", "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["split"] == "valid" and found["n"] == 100
    summary = found["transformers"]["transformers.0"]
    assert summary["area_ratio_median"] == pytest.approx(0.8 * 0.6)
    assert summary["scale_x_p10"] == pytest.approx(0.8) and summary["scale_y_p90"] == pytest.approx(
        0.6
    )
    assert summary["shift_x_px_median"] == pytest.approx(-4) and summary[
        "shift_y_px_median"
    ] == pytest.approx(2)


def test_inspect_names_a_collapsed_transformer(tmp_path, data_file, capsys):
    run = _run(tmp_path, "stn", [5.0, 0, 0, 0, 5.0, 0])  # a 5× zoom-out
    assert cli.main(["inspect", run, "--data", str(data_file)]) == 0
    (line,) = [x for x in capsys.readouterr().out.splitlines() if "warning" in x]
    assert "stn transformers.0 looks collapsed (zoomed out): median area ratio 25 > 4" in line


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("no-run", "no run directory"),
        ("no-data", "no data file 'missing.npz'"),
        ("cnn", "model 'cnn' has no spatial transformer to inspect"),
        ("wrong-size", "has images (1, 40, 40), but the model takes (1, 24, 24)"),
    ],
)
def test_inspect_errors_are_one_line(tmp_path, data_file, fails_with, case, message):
    if case == "no-run":
        run = str(tmp_path / "missing")
    elif case == "wrong-size":
        run = str(saved_run(tmp_path / "small", models.create("stn", size="small", in_size=24)))
    else:
        run = _run(tmp_path, "cnn" if case == "cnn" else "stn")
    data = "missing.npz" if case == "no-data" else str(data_file)
    fails_with(["inspect", run, "--data", data], message)
