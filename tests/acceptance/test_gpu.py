"""The study on GPUs (skipped without CUDA): the smoke preset on ``cuda``, in this process and
packed ``--runs-per-gpu`` to a GPU by the local pool
(:func:`stnlab.experiment.placement.local_devices`
says which GPU each worker process takes; those rules are tested without a GPU)."""

from __future__ import annotations

import math

import pytest
import torch

from stnlab import experiment
from stnlab.cli import main
from stnlab.config import presets as ex
from stnlab.runs.experiment_folder import ExperimentDir

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def _check_results(out, devices: set[str]) -> None:
    """Every run of the smoke preset finished on one of ``devices``, with sane numbers."""
    folder, jobs = ExperimentDir(out), experiment.plan(ex.preset("smoke"))
    rows = folder.results()
    assert {r["run"] for r in rows} == {j.name for j in jobs}
    assert all(0 <= r["test_accuracy"] <= 1 and math.isfinite(r["train_seconds"]) for r in rows)
    assert {folder.run(j.name).summary().device for j in jobs} <= devices


def test_smoke_preset_on_cuda(capsys, tmp_path):
    out = tmp_path / "cuda"
    argv = ["experiment", "--preset", "smoke", "--device", "cuda", "--workers", "1"]
    assert main([*argv, "--out", str(out), "--no-report", "--quiet"]) == 0
    assert "training 6 runs in sequence on cuda" in capsys.readouterr().out
    _check_results(out, {"cuda:0"})  # the run records the GPU it took


def test_runs_per_gpu_packs_worker_processes_on_every_gpu(capsys, tmp_path):
    gpus, out = torch.cuda.device_count(), tmp_path / "packed"
    argv = ["experiment", "--preset", "smoke", "--device", "cuda", "--runs-per-gpu", "2"]
    assert main([*argv, "--out", str(out), "--no-report", "--quiet"]) == 0
    n = min(6, 2 * gpus)
    assert f"training 6 runs in {n} worker processes on cuda:0" in capsys.readouterr().out
    _check_results(out, {f"cuda:{g}" for g in range(gpus)})
