"""What a local pool worker process reports about itself; a module of its own, light to
import, because every spawned worker imports it (test_execution.py)."""

from __future__ import annotations

import os

from stnlab.experiment.execution import worker_device


def where(barrier) -> tuple[int, str | None]:
    """(this process's id, its device); waits until as many tasks run, one per process."""
    barrier.wait(timeout=120)
    return os.getpid(), worker_device()
