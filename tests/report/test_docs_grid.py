"""The docs hook's grid marker over one grid split into several result folders."""

import importlib.util
from pathlib import Path

import pytest

from stnlab.report import results
from stnlab.runs import ExperimentDir

HOOK = Path(__file__).resolve().parents[2] / "docs" / "hooks" / "results_tables.py"


@pytest.fixture(scope="module")
def hook():
    spec = importlib.util.spec_from_file_location("results_tables", HOOK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write(root: Path, name: str, sizes: list[str], epochs: int = 50) -> None:
    """grid.csv of an experiment over ``model.size`` with cnn and stn in each cell: the stn
    makes half the cnn's errors."""
    rows = []
    for i, size in enumerate(sizes):
        e = 0.03 + 0.01 * i
        rows.append({"model.size": size, "model": "cnn", "epochs": epochs, "error": e})
        rows[-1].update(error_low=e - 0.005)
        rows[-1].update(error_high=e + 0.005, ratio=None, ratio_low=None, ratio_high=None)
        rows.append({**rows[-1], "model": "stn", "error": e / 2, "error_low": e / 2 - 0.004})
        rows[-1].update(error_high=e / 2 + 0.004, ratio=0.5, ratio_low=0.4, ratio_high=0.6)
    (root / name).mkdir()
    ExperimentDir(root / name).write_grid(rows)


def test_parts_joined_by_plus_read_as_one_grid(hook, tmp_path):
    _write(tmp_path, "a", ["small", "default"])
    _write(tmp_path, "b", ["residual"])
    grid = results.grid_from_rows(hook.grid_rows("a+b", tmp_path))
    assert list(grid.errors) == [("small",), ("default",), ("residual",)]
    assert grid.ratios[("residual",)]["stn"].value == pytest.approx(0.5)
    assert grid.errors[("default",)]["cnn"].value == pytest.approx(0.04)
    assert hook.grid_rows("a", tmp_path) == hook.grid_rows("a+b", tmp_path)[:4]


def test_parts_of_different_budgets_or_a_missing_part_are_refused(hook, tmp_path):
    _write(tmp_path, "a", ["small"])
    _write(tmp_path, "c", ["large"], epochs=100)
    with pytest.raises(ValueError, match="differ in their axes or last budget"):
        hook.grid_rows("a+c", tmp_path)
    with pytest.raises(ValueError, match=r"docs/results/d/grid\.csv is missing"):
        hook.grid_rows("a+d", tmp_path)
