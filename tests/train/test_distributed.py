"""Data-parallel training: two CPU processes (gloo, loopback) under torchrun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from conftest import weights_equal

from stnlab import models
from stnlab.config import RunConfig
from stnlab.data import load, make_dataset, save
from stnlab.runs.atomic import TEMPORARY
from stnlab.runs.records import TrainRecord
from stnlab.runs.run_folder import RunDir
from stnlab.train.loop import train

pytestmark = pytest.mark.slow

# No dropout: both set-ups draw the same batches.
RUN = {
    "model": {"name": "cnn", "size": "tf-example", "widths": {"dropout": 0.0}},
    "train": {"epochs": 3, "threads": 1, "amp": False},  # float32 as the in-process run
    "data": {},
}

# Each rank trains, then saves the weights it ended with (rank 0 also writes the run).
RANK_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    from stnlab.config import RunConfig
    from stnlab.data import load
    from stnlab.runs.run_folder import RunDir
    from stnlab.train.loop import train

    data_path, out, run = sys.argv[1], sys.argv[2], RunConfig.from_dict(json.loads(sys.argv[3]))
    rank = int(os.environ["RANK"])
    res = train(run, load(data_path), out_dir=out if rank == 0 else None, progress=False)
    RunDir(f"{out}-rank{rank}").save_weights(res.model)
    """
)


def torchrun(*args: str) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        *args,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def ddp_data_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ddp") / "d.npz"
    save(make_dataset(sizes=(800, 200, 200), seed=2), path)
    return path


def _rank_weights(out: Path, rank: int) -> dict:
    """The weights rank ``rank`` ended with, in the model of the run in ``out``."""
    model = models.create(RunDir(out).model_config())
    RunDir(f"{out}-rank{rank}").load_weights(model)
    return model.state_dict()


def test_two_processes_match_one(tmp_path, ddp_data_file):
    out = tmp_path / "ddp"
    script = tmp_path / "rank.py"
    script.write_text(RANK_SCRIPT)
    torchrun(str(script), str(ddp_data_file), str(out), json.dumps(RUN))

    w0, w1 = (_rank_weights(out, r) for r in (0, 1))
    assert weights_equal(w0, w1), "ranks ended with different weights"
    assert weights_equal(w0, models.load(out).state_dict())

    ddp = RunDir(out).summary()
    single = train(RunConfig.from_dict(RUN), load(ddp_data_file), progress=False)
    assert ddp.world_size == 2 and single.summary.world_size == 1
    # The same global batches and averaged gradients: equal up to float summation order.
    assert abs(ddp.test_accuracy - single.summary.test_accuracy) <= 0.02
    assert ddp.test_loss == pytest.approx(single.summary.test_loss, rel=1e-3)
    for k, v in single.model.state_dict().items():
        torch.testing.assert_close(w0[k], v, atol=1e-3, rtol=1e-3)
    records = RunDir(out).records()
    assert sum(isinstance(r, TrainRecord) for r in records) == 3  # rank 0 logs once


def test_torchrun_cli(tmp_path, ddp_data_file):
    out = tmp_path / "run"
    torchrun(
        "-m",
        "stnlab",
        "train",
        "--data",
        str(ddp_data_file),
        "--model",
        "cnn",
        "--size",
        "tf-example",
        "--epochs",
        "2",
        "--threads",
        "1",
        "--out",
        str(out),
    )
    summary = RunDir(out).summary()
    assert summary.world_size == 2 and summary.epochs == 2
    assert not list(out.glob(f".*{TEMPORARY}"))  # no atomic write left a temporary behind
