"""SIGTERM (``kill``, a batch system's time limit) stops ``stnlab experiment`` as Ctrl-C does:
its worker processes end at once, the exit status says so, and the folder resumes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from stnlab.runs.experiment_folder import ExperimentDir

psutil = pytest.importorskip("psutil")  # comes with the cluster extra (dask)

CONFIG = """
preset = "smoke"
name = "sigterm"
models = ["cnn", "stn"]
seeds = [0]
budgets = [150]
workers = 2
[train]
threads = 1
checkpoint_every = 0
"""


def _started(folder: ExperimentDir, names: list[str]) -> bool:
    """Every run has finished at least one epoch (so each worker is deep in training)."""
    runs = [folder.run(n) for n in names]
    return all(r.file("metrics.jsonl").exists() and r.records() for r in runs)


@pytest.mark.slow
def test_sigterm_ends_the_pool_workers_and_leaves_a_folder_that_resumes(tmp_path):
    (tmp_path / "e.toml").write_text(CONFIG)
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "stnlab",
        "experiment",
        "--config",
        str(tmp_path / "e.toml"),
        "--out",
        str(out),
        "--no-report",
        "--quiet",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    folder, deadline = ExperimentDir(out), time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if (out / "runs").is_dir() and _started(folder, ["cnn-s0", "stn-s0"]):
            break
        time.sleep(0.05)
    children = psutil.Process(proc.pid).children(recursive=True)
    assert len(children) >= 2, "the worker processes were not found"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    assert "stnlab experiment: terminated (SIGTERM)" in proc.stderr.read()
    _, alive = psutil.wait_procs(children, timeout=15)
    assert alive == [], f"still training after SIGTERM: {alive}"
    assert not folder.run("stn-s0").is_finished()

    # Resuming needs the runs to finish: 150 epochs of tiny data are quick in a fresh call.
    resumed = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert {r["run"] for r in folder.results()} == {"cnn-s0", "stn-s0"}
