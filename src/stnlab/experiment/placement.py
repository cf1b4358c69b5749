"""Placing training runs on GPUs: which device each worker slot trains on.

A *slot* is one run at a time: a worker process of the local pool, or one unit of a
Dask worker's ``GPU`` resource. Slot ``i`` trains on ``cuda:(i % k)`` for ``k`` GPUs, so
the first ``k`` slots spread over every GPU before any GPU takes a second run, and
``runs_per_gpu`` runs share each GPU (these small models leave a large GPU mostly idle).
The slot rules are pure Python, tested without a GPU; :func:`place` applies them to an
experiment (resolving ``auto`` imports torch).

Example:
    >>> slot_devices(2, runs_per_gpu=2)
    ['cuda:0', 'cuda:1', 'cuda:0', 'cuda:1']
    >>> gpu_workers(jobs=3, gpus=2, runs_per_gpu=2)
    3
    >>> local_devices("cuda", gpus=2, runs_per_gpu=2, jobs=9, workers=1)
    ['cuda:0', 'cuda:1', 'cuda:0', 'cuda:1']
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from stnlab.config import ExperimentConfig
from stnlab.train import resolve_device

__all__ = [
    "Placement",
    "SlotPool",
    "cpu_count",
    "device_for_slot",
    "gpu_workers",
    "local_devices",
    "place",
    "slot_devices",
]


def _check_positive(value: int, what: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{what} must be a positive integer, got {value!r}")


def device_for_slot(slot: int, gpus: int) -> str:
    """The device of worker slot ``slot`` (0-based) when ``gpus`` GPUs are visible: round-robin."""
    _check_positive(gpus, "the number of GPUs")
    if not isinstance(slot, int) or slot < 0:
        raise ValueError(f"a slot is a non-negative integer, got {slot!r}")
    return f"cuda:{slot % gpus}"


def slot_devices(gpus: int, runs_per_gpu: int = 1) -> list[str]:
    """The device of every slot of a machine with ``gpus`` GPUs, ``runs_per_gpu`` runs on each."""
    _check_positive(gpus, "the number of GPUs")
    _check_positive(runs_per_gpu, "runs per GPU")
    return [device_for_slot(i, gpus) for i in range(gpus * runs_per_gpu)]


def gpu_workers(jobs: int, gpus: int, runs_per_gpu: int = 1) -> int:
    """How many worker processes the local pool starts: one per slot, no more than the jobs."""
    _check_positive(gpus, "the number of GPUs")
    _check_positive(runs_per_gpu, "runs per GPU")
    return max(1, min(jobs, gpus * runs_per_gpu))


def local_devices(device: str, gpus: int, runs_per_gpu: int, jobs: int, workers: int) -> list[str]:
    """The device of each worker process of the local pool (one entry: train in this process).

    ``device`` is resolved already (``cpu``, ``cuda`` or ``cuda:N``): plain ``cuda`` spreads
    the runs over all ``gpus``, ``runs_per_gpu`` on each; ``cuda:N`` puts ``runs_per_gpu``
    on that GPU; ``cpu`` gives ``workers`` processes. Never more processes than ``jobs``.
    """
    _check_positive(runs_per_gpu, "runs per GPU")
    _check_positive(workers, "the number of workers")
    if device == "cuda":
        return slot_devices(gpus, runs_per_gpu)[: gpu_workers(jobs, gpus, runs_per_gpu)]
    n = runs_per_gpu if device.startswith("cuda") else workers
    return [device] * max(1, min(jobs, n))


class SlotPool:
    """Hands out the lowest free slot number to concurrent runs in one process (thread-safe).

    A Dask worker with ``--resources GPU=K --nthreads K`` runs up to K GPU jobs at once in
    one process; each takes a slot for its run, so that they spread over the visible GPUs.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._taken: set[int] = set()

    def acquire(self) -> int:
        """Take the lowest slot number not in use."""
        with self._lock:
            slot = next(i for i in range(len(self._taken) + 1) if i not in self._taken)
            self._taken.add(slot)
            return slot

    def release(self, slot: int) -> None:
        """Give a slot back."""
        with self._lock:
            self._taken.discard(slot)

    @contextmanager
    def slot(self) -> Iterator[int]:
        """A slot for the duration of a ``with`` block."""
        slot = self.acquire()
        try:
            yield slot
        finally:
            self.release(slot)


def cpu_count() -> int:
    """CPUs this process may use (respects affinity masks, unlike ``os.cpu_count``)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


@dataclass(frozen=True)
class Placement:
    """Where the runs train: on ``cluster`` (``devices`` holds the configured device; ``auto``:
    the workers' resources decide), or in one local process per entry of ``devices`` (a
    single entry: in this process), each with ``threads`` CPU threads (None: torch's)."""

    cluster: str | None
    devices: tuple[str, ...]
    threads: int | None

    @property
    def device(self) -> str:
        return self.devices[0]

    def describe(self, runs: int) -> str:
        """``training 9 runs in 2 worker processes on cpu, 1 thread each``."""
        if self.cluster is not None:
            return f"training {runs} runs on the Dask cluster {self.cluster}"
        n, each = len(self.devices), f"{self.threads} thread{'s' * (self.threads > 1)} each"
        if n == 1:
            return f"training {runs} runs in sequence on {self.device}, {each}"
        on = ", ".join(dict.fromkeys(self.devices))
        per = f" ({n // len(set(self.devices))} runs per GPU)" if "cuda" in self.device else ""
        return f"training {runs} runs in {n} worker processes on {on}{per}, {each}"


def place(config: ExperimentConfig, jobs: int) -> Placement:
    """Where ``jobs`` runs of ``config`` would train (resolves ``auto``, except on a cluster,
    whose workers decide it)."""
    if config.cluster is not None:
        return Placement(config.cluster, (config.train.device,), config.train.threads)
    device = resolve_device(config.train.device)
    gpus = torch.cuda.device_count() if device.startswith("cuda") else 0
    devices = local_devices(device, gpus, config.runs_per_gpu, jobs, config.workers)
    threads = config.train.threads or cpu_count() // len(devices) or 1
    return Placement(None, tuple(devices), threads)
