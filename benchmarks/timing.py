"""Shared by the benchmark scripts (run as ``python benchmarks/bench_x.py``, so importable)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def time_s(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``fn()`` in seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
