"""Time to generate Cluttered MNIST: the default 12,000-canvas 40x40 set and the other variants.

Prints one row per variant: canvases, the median seconds to generate them from the
embedded source pools (pools loaded once, outside the timing), canvases per second,
and the time of a whole ``make_dataset`` call (sources included) for the default.
No assertions on time.

    python benchmarks/bench_data.py --repeats 3
"""

from __future__ import annotations

import argparse

import torch
from timing import time_s

from stnlab.data import VARIANTS, load_pools, make_cluttered, make_dataset, sources
from stnlab.data.make import DEFAULT_SIZES


def main() -> None:
    """Parse arguments and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n", type=int, default=sum(DEFAULT_SIZES), help="canvases per variant")
    args = parser.parse_args()

    pools = load_pools("embedded")
    print(f"# torch {torch.__version__}, {torch.get_num_threads()} threads, embedded source")
    print(f"{'variant':<11} {'canvases':>9} {'seconds':>8} {'canvases/s':>11}")
    for name in VARIANTS:
        sec = time_s(lambda name=name: make_cluttered(pools.train, args.n, name, 0), args.repeats)
        print(f"{name:<11} {args.n:>9} {sec:>8.3f} {args.n / sec:>11.0f}")

    def cold_make() -> None:
        sources._read_embedded.cache_clear()  # include parsing the embedded CSV
        make_dataset("40x40", "embedded", seed=0)

    sec = time_s(cold_make, args.repeats)
    total = sum(DEFAULT_SIZES)
    print(
        f"make_dataset('40x40') {total} canvases (10000/1000/1000, sources included): {sec:.3f} s"
    )


if __name__ == "__main__":
    main()
