"""Time of one significance interval (``accuracy_difference`` of stnlab.report.significance)
per test-set size.

Prints one row per (test images, runs per design): the median seconds of a 4,000-resample
interval, the number of distinct correctness patterns it resamples, and the time of a
literal bootstrap that gathers resampled image indices, measured side by side. Synthetic
predictions at about 97% accuracy. No assertions on time.

    python benchmarks/bench_significance.py --repeats 5
"""

from __future__ import annotations

import argparse

import numpy as np
from timing import time_s

from stnlab.report.significance import _column_patterns, accuracy_difference


def literal(a: np.ndarray, b: np.ndarray, resamples: int, seed: int = 0) -> np.ndarray:
    """The same bootstrap written out: draw image indices, then runs, per resample."""
    rng = np.random.default_rng(seed)
    n, out = a.shape[1], np.empty(resamples)
    for k in range(resamples):
        images = rng.integers(n, size=n)
        ra, rb = rng.integers(len(a), size=len(a)), rng.integers(len(b), size=len(b))
        out[k] = a[np.ix_(ra, images)].mean() - b[np.ix_(rb, images)].mean()
    return np.quantile(out, [0.025, 0.975])


def main() -> None:
    """Parse arguments and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--resamples", type=int, default=4000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"{'images':>7} {'runs':>5} {'patterns':>9} {'interval s':>11} {'literal s':>10} ratio")
    for n, runs in [(1000, 1), (1000, 3), (10_000, 3), (10_000, 10)]:
        u = rng.random(n)  # shared difficulty pairs the designs
        a, b = (
            np.where(rng.random((runs, n)) < 0.8, u, rng.random((runs, n))) < p
            for p in (0.975, 0.965)
        )
        k = len(_column_patterns(np.concatenate([a, b]).T)[1])
        fast = time_s(
            lambda a=a, b=b: accuracy_difference(a, b, resamples=args.resamples), args.repeats
        )
        slow = time_s(lambda a=a, b=b: literal(a, b, args.resamples), 1)
        print(f"{n:>7} {runs:>5} {k:>9} {fast:>11.4f} {slow:>10.3f} {slow / fast:>5.0f}x")


if __name__ == "__main__":
    main()
