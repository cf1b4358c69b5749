"""Helpers shared by the test files: tiny data, run folders made through RunDir, CLI checks."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from stnlab import cli, models
from stnlab.config import RunConfig
from stnlab.data import make_dataset, save
from stnlab.runs.run_folder import RunDir

SMALL = {"size": "small", "in_size": 24}  # keeps every model's forward pass fast


@pytest.fixture(scope="session")
def tiny_data():
    """400/100/100 canvases of the default 40x40 set."""
    return make_dataset(sizes=(400, 100, 100), seed=0)


@pytest.fixture(scope="session")
def data_file(tmp_path_factory, tiny_data) -> Path:
    """``tiny_data`` saved as an .npz file."""
    path = tmp_path_factory.mktemp("data") / "tiny.npz"
    save(tiny_data, path)
    return path


@pytest.fixture
def fails_with(capsys):
    """``fails_with(argv, message)``: the command exits 2 with one line on stderr holding
    ``message``; returns that line."""

    def check(argv: list[str], message: str) -> str:
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err, err
        assert message in err, err
        return err

    return check


def weights_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def perturb(model: torch.nn.Module, std: float = 0.05, seed: int = 1) -> torch.nn.Module:
    """Give the regressors non-zero weights: at init they are zero, so θ is the identity
    for every input and the localization nets get exactly zero gradient."""
    torch.manual_seed(seed)
    for st in model.transformers:
        torch.nn.init.normal_(st.regressor.weight, std=std)
    return model


def saved_run(folder: Path, model: models.Model) -> Path:
    """A run folder holding ``model``'s config and final weights, as training leaves them."""
    run = RunDir(folder)
    run.path.mkdir(parents=True, exist_ok=True)
    run.write_config(RunConfig(model=model.config))
    run.save_weights(model)
    return folder


def records_without_times(run: RunDir) -> list[dict]:
    """metrics.jsonl's records without wall-clock fields, which differ between runs."""
    return [{k: v for k, v in r.items() if "seconds" not in k} for r in run.records()]


@pytest.fixture(scope="session")
def dask_cli(tmp_path_factory):
    """A ``dask scheduler`` and two ``dask worker`` processes on 127.0.0.1, started once for
    every test that needs them (tests/dask_cli.py)."""
    pytest.importorskip("distributed")
    if not Path(sys.executable).with_name("dask").is_file():
        pytest.skip("no dask command beside this Python")
    from dask_cli import dask_cli as start

    with start(tmp_path_factory.mktemp("dask-cli")) as cluster:
        yield cluster
