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

from stnlab.checkpoint import load_weights
from stnlab.data import load, make_dataset, save
from stnlab.training import TrainConfig, train

MODEL = {"size": "tf-example", "dropout": 0.0}  # no dropout: both set-ups draw the same batches

# Each rank trains, then saves the weights it ended with (rank 0 also writes the run).
RANK_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    from safetensors.torch import save_file
    from stnlab.data import load
    from stnlab.training import TrainConfig, train

    data_path, out, kwargs = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    rank = int(os.environ["RANK"])
    res = train(TrainConfig(**kwargs), load(data_path), out_dir=out if rank == 0 else None,
                progress=False)
    save_file(res.model.state_dict(), f"{out}-rank{rank}.safetensors")
    """
)


def torchrun(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           *args]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def data_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ddp") / "d.npz"
    save(make_dataset(sizes=(800, 200, 200), seed=2), path)
    return path


def test_two_processes_match_one(tmp_path, data_file):
    kwargs = {"model": "cnn", "model_kwargs": MODEL, "epochs": 3, "threads": 1}
    out = tmp_path / "ddp"
    script = tmp_path / "rank.py"
    script.write_text(RANK_SCRIPT)
    torchrun(str(script), str(data_file), str(out), json.dumps(kwargs))

    w0 = load_weights(f"{out}-rank0.safetensors")
    w1 = load_weights(f"{out}-rank1.safetensors")
    assert all(torch.equal(w0[k], w1[k]) for k in w0), "ranks ended with different weights"
    assert all(torch.equal(w0[k], v) for k, v in load_weights(out / "final.safetensors").items())

    ddp = json.loads((out / "summary.json").read_text())
    single = train(TrainConfig(**kwargs), load(data_file), progress=False)
    assert ddp["world_size"] == 2 and single.summary["world_size"] == 1
    # The same global batches and averaged gradients: equal up to float summation order.
    assert abs(ddp["test_accuracy"] - single.summary["test_accuracy"]) <= 0.02
    assert ddp["test_loss"] == pytest.approx(single.summary["test_loss"], rel=1e-3)
    for k, v in single.model.state_dict().items():
        torch.testing.assert_close(w0[k], v, atol=1e-3, rtol=1e-3)
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(s)["event"] for s in lines].count("train") == 3  # rank 0 logs once


def test_torchrun_cli(tmp_path, data_file):
    out = tmp_path / "run"
    torchrun("-m", "stnlab", "train", "--data", str(data_file), "--model", "cnn", "--size",
             "tf-example", "--epochs", "2", "--threads", "1", "--out", str(out))  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["epochs"] == 2
    assert not list(tmp_path.glob("run*/.*.tmp"))
