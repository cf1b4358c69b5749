"""GPU placement rules, checked without a GPU."""

from __future__ import annotations

import threading
from collections import Counter

import pytest

from stnlab.experiment.placement import (
    SlotPool,
    device_for_slot,
    gpu_workers,
    local_devices,
    slot_devices,
)


@pytest.mark.parametrize("gpus", [1, 2, 3, 8])
@pytest.mark.parametrize("runs_per_gpu", [1, 2, 4])
def test_slots_spread_over_every_gpu_before_doubling_up(gpus, runs_per_gpu):
    devices = slot_devices(gpus, runs_per_gpu)
    assert len(devices) == gpus * runs_per_gpu
    assert Counter(devices) == {f"cuda:{g}": runs_per_gpu for g in range(gpus)}
    # Any first k slots use k distinct GPUs while k <= gpus: few jobs still spread out.
    for k in range(1, gpus + 1):
        assert len(set(devices[:k])) == k


def test_device_for_slot_is_round_robin():
    assert [device_for_slot(s, 3) for s in range(7)] == [
        "cuda:0",
        "cuda:1",
        "cuda:2",
        "cuda:0",
        "cuda:1",
        "cuda:2",
        "cuda:0",
    ]


@pytest.mark.parametrize(
    ("jobs", "gpus", "runs_per_gpu", "workers"),
    [(9, 2, 1, 2), (9, 2, 3, 6), (4, 2, 3, 4), (1, 4, 2, 1), (0, 2, 2, 1), (30, 1, 4, 4)],
)
def test_gpu_workers_is_slots_capped_by_jobs(jobs, gpus, runs_per_gpu, workers):
    assert gpu_workers(jobs, gpus, runs_per_gpu) == workers


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: slot_devices(0), "number of GPUs"),
        (lambda: slot_devices(2, 0), "runs per GPU"),
        (lambda: gpu_workers(3, 2, -1), "runs per GPU"),
        (lambda: gpu_workers(3, 2, True), "runs per GPU"),
        (lambda: device_for_slot(-1, 2), "non-negative"),
    ],
)
def test_bad_counts_are_refused(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_slot_pool_hands_out_the_lowest_free_slot():
    pool = SlotPool()
    assert [pool.acquire() for _ in range(3)] == [0, 1, 2]
    pool.release(1)
    assert pool.acquire() == 1
    pool.release(0)
    with pool.slot() as slot:
        assert slot == 0
    assert pool.acquire() == 0  # released by the with block
    assert pool.acquire() == 3


def test_slot_pool_gives_concurrent_holders_distinct_slots():
    pool, held, barrier = SlotPool(), [], threading.Barrier(8)

    def hold():
        with pool.slot() as slot:
            held.append(slot)
            barrier.wait(timeout=10)  # all eight hold a slot at once

    threads = [threading.Thread(target=hold) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(held) == list(range(8))
    assert pool.acquire() == 0


@pytest.mark.parametrize(
    ("device", "gpus", "runs_per_gpu", "jobs", "workers", "devices"),
    [
        ("cpu", 0, 1, 9, 2, ["cpu", "cpu"]),  # --workers processes, runs_per_gpu ignored
        ("cpu", 0, 4, 9, 1, ["cpu"]),  # one: in this process
        ("cpu", 0, 1, 1, 4, ["cpu"]),  # never more processes than runs
        ("cuda", 2, 1, 9, 1, ["cuda:0", "cuda:1"]),  # every GPU, whatever --workers says
        ("cuda", 2, 2, 3, 1, ["cuda:0", "cuda:1", "cuda:0"]),
        ("cuda", 1, 3, 9, 2, ["cuda:0"] * 3),
        ("cuda:1", 4, 2, 9, 1, ["cuda:1", "cuda:1"]),  # a named GPU takes runs_per_gpu runs
        ("cuda:0", 2, 1, 9, 3, ["cuda:0"]),
    ],
)
def test_local_devices_one_per_worker_process(device, gpus, runs_per_gpu, jobs, workers, devices):
    assert local_devices(device, gpus, runs_per_gpu, jobs, workers) == devices
