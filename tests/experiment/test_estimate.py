"""Tests of stnlab.experiment.estimate: ``stnlab experiment --plan`` (runs, training images, a
measured speed per design, an estimated wall time, a note when the machine was busy) and the
schedule arithmetic behind it."""

from __future__ import annotations

import itertools
import os
import re
import shutil

import pytest

from stnlab import experiment
from stnlab.cli import main
from stnlab.config import presets as ex
from stnlab.experiment import runner
from stnlab.experiment.estimate import Speed, busy_note, describe_cost, makespan, probe


def _optimum(seconds: list[float], slots: int) -> float:
    """The best wall time of any assignment of the jobs to the slots (brute force)."""
    best = float("inf")
    for assign in itertools.product(range(slots), repeat=len(seconds)):
        loads = [0.0] * slots
        for s, slot in zip(seconds, assign, strict=True):
            loads[slot] += s
        best = min(best, max(loads))
    return best


@pytest.mark.parametrize(
    ("seconds", "slots"),
    [
        ([5.0], 3),
        ([3, 3, 2, 2, 2], 2),
        ([7, 1, 1, 1, 1, 1, 1, 1], 2),
        ([4, 4, 4, 3, 3], 3),
        ([9, 8, 2, 2, 2, 1], 2),
        ([1] * 7, 3),
    ],
)
def test_makespan_is_the_longest_first_schedule(seconds, slots):
    got, best = makespan(seconds, slots), _optimum(seconds, slots)
    # Longest-first is within 4/3 of the optimum (Graham's bound) and never better.
    assert best <= got <= best * 4 / 3 + 1e-9
    assert makespan(seconds, 1) == sum(seconds)
    assert makespan(seconds, len(seconds)) == max(seconds)


def test_probe_measures_positive_speeds():
    run = experiment.run_config(
        ex.preset("smoke"), experiment.plan(ex.preset("smoke"))[0], "cpu", 1
    )
    speed = probe(run, (40, 40))
    assert isinstance(speed, Speed) and speed.train > 0 and speed.evaluate > 0


def _rows(text: str) -> dict[str, tuple[int, int, str]]:
    """The per-run lines of the plan: name -> (epochs, training images, estimate)."""
    found = re.findall(r"^  runs/(\S+)\s+(\d+)\s+([\d,]+)\s+(.+)$", text, flags=re.M)
    return {name: (int(e), int(i.replace(",", "")), est) for name, e, i, est in found}


def test_plan_lists_the_runs_images_and_an_estimate(capsys, tmp_path):
    out = tmp_path / "x"
    assert main(["experiment", "--preset", "smoke", "--plan", "--out", str(out)]) == 0
    text, err = capsys.readouterr()
    assert not out.exists()  # trains and writes nothing
    assert "warning" not in err  # the probe's few steps are not watched for a collapse
    config = ex.preset("smoke")
    per_epoch = config.data.sizes[0] // config.train.batch_size * config.train.batch_size
    rows = _rows(text)
    assert rows.keys() == {j.name for j in experiment.plan(config)}
    assert all(images == epochs * per_epoch for epochs, images, _ in rows.values())
    total = sum(images for _, images, _ in rows.values())
    assert f"total: {total:,} training images, {total:,} of them left to train" in text
    assert re.search(r"^estimated wall time: \d+ s, training 6 runs in sequence on cpu", text, re.M)
    for model in config.models:
        assert re.search(rf"^  {model}\s+[\d,]+ \| [\d,]+$", text, re.M)


def test_plan_of_a_cluster_counts_its_workers_without_starting_it(capsys, tmp_path):
    argv = ["experiment", "--preset", "smoke", "--plan", "--cluster", "local:3"]
    assert main([*argv, "--out", str(tmp_path / "x")]) == 0
    assert "the Dask cluster local:3: 3 worker threads" in capsys.readouterr().out


def test_plan_counts_only_what_is_left(capsys, tmp_path):
    config = ex.preset("smoke", models=["cnn"], train={"threads": 1})
    out = tmp_path / "half"
    runner.run_experiment(config, out, progress=False, log=lambda s: None)
    shutil.rmtree(out / "runs" / "cnn-s1")  # never started
    text = describe_cost(config, out)
    rows = _rows(text)
    assert rows["cnn-s0"][2] == "finished" and rows["cnn-s1"][2] != "finished"
    assert "total: 800 training images, 400 of them left to train" in text


def test_plan_of_a_published_set_downloads_nothing(tmp_path):
    cache = tmp_path / "cache"
    config = ex.preset(
        "seed", models=["cnn"], seeds=[0], budgets=[1], data={"cache_dir": str(cache)}
    )
    text = describe_cost(config, tmp_path / "x")
    assert "to be downloaded into" in text and str(cache) in text
    assert "total: 10,000 training images" in text  # taken from data.sizes
    assert not cache.exists()


@pytest.mark.parametrize(
    ("load", "cpus", "busy"),
    [(None, 2, False), (0.0, 2, False), (1.0, 2, False), (1.1, 2, True), (7.5, 16, False)],
)
def test_busy_note_warns_above_half_the_cpus(load, cpus, busy):
    note = busy_note(load, cpus)
    assert (note is not None) == busy
    if busy:
        assert f"load average {load:.1f} on {cpus} CPUs" in note


@pytest.mark.parametrize(("load", "noted"), [(0.1, False), (64.0, True)])
def test_plan_says_when_the_machine_was_busy(capsys, tmp_path, monkeypatch, load, noted):
    monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load))
    argv = ["experiment", "--preset", "smoke", "--plan", "--out", str(tmp_path / "x")]
    assert main(argv) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("note: this machine was busy") == noted
    assert ("estimated wall time" in last) != noted


@pytest.mark.parametrize(
    ("devices", "ratio"),
    [
        (("cuda:0",) * 3, 3.0),  # 6 equal runs: 2 rounds of 3 at once, or 6 one at a time
        (("cuda:0", "cuda:1") * 2, 1.5),  # 2 rounds of 4, or 3 on each GPU one at a time
        (("cpu", "cpu"), None),  # processes on a CPU share no GPU: one figure
    ],
)
def test_plan_of_runs_sharing_a_gpu_gives_a_range(monkeypatch, tmp_path, devices, ratio):
    # The probe is replaced (no GPU here), so that every run takes the same time: the
    # schedule of the slots, not the probe, is what is tested.
    from stnlab.experiment import estimate as est
    from stnlab.experiment.placement import Placement

    monkeypatch.setattr(est, "place", lambda config, jobs: Placement(None, devices, 1))
    monkeypatch.setattr(est, "probe", lambda run, shape: Speed(100.0, 1000.0, "float32"))
    cost = est.estimate(ex.preset("smoke"), tmp_path / "x")
    text = "\n".join(cost.lines)
    if ratio is None:
        assert cost.shared_gpu_seconds is None and est.SHARED_GPU_NOTE not in text
        assert re.search(r"^estimated wall time: [^,]+ s, ", text, re.M)
        return
    assert cost.shared_gpu_seconds == pytest.approx(cost.seconds * ratio)
    low, high = est.duration(cost.seconds), est.duration(cost.shared_gpu_seconds)
    assert f"estimated wall time: {low} to {high}, " in text
    assert est.SHARED_GPU_NOTE in text
