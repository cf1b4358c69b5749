"""Evaluation speed: images per second of :func:`stnlab.train.evaluate` by batch size.

Evaluates 4,000 random 40×40 images with each design × size, the model in channels-last
order as training leaves it, at each ``--batches`` size, and prints the best of a few
passes. The default batch for the device (``stnlab.config.EVAL_BATCH``) is marked ``*``.
On a CPU, a batch whose activations stay in cache beats a big one; a GPU wants big ones.

    python benchmarks/bench_eval.py                                 # 1 thread, wall clock
    python benchmarks/bench_eval.py --clock cpu --sizes default large residual
    python benchmarks/bench_eval.py --device cuda --batches 200 1000 4000

Figures on a shared machine are noisy: compare columns of one run, not runs; with
``--clock cpu`` the rate counts this process's CPU time only.
"""

from __future__ import annotations

import argparse
import itertools
import time

import torch

from stnlab import models
from stnlab.train.evaluation import eval_batch, evaluate

IMAGES = 4000


def measure(model: torch.nn.Module, x, y, batch: int, args) -> float:
    """Images per second through ``evaluate`` at ``batch``, the best of ``args.repeats``."""
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    sync = torch.cuda.synchronize if x.device.type == "cuda" else lambda: None
    evaluate(model, x[:batch], y[:batch], batch_size=batch)  # warm-up at this shape
    best = 0.0
    for _ in range(args.repeats):
        sync()
        t0 = clock()
        evaluate(model, x, y, batch_size=batch)
        sync()
        best = max(best, len(x) / (clock() - t0))
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["cnn", "stn", "mstn"])
    p.add_argument("--sizes", nargs="+", default=["default", "tf-example", "large", "residual"])
    p.add_argument("--batches", nargs="+", type=int, default=[100, 200, 500, 1000])
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    default = eval_batch(device)
    where = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    print(
        f"torch {torch.__version__} on {where}, {torch.get_num_threads()} threads, "
        f"{IMAGES:,} images, images per {args.clock} second (* default batch)"
    )
    marks = [f"{b:>10}{'*' if b == default else ' '}" for b in args.batches]
    print(f"{'model':<6}{'size':<12}" + "".join(marks))
    g = torch.Generator().manual_seed(0)
    x = torch.rand(IMAGES, 1, 40, 40, generator=g).to(device)
    y = torch.randint(0, 10, (IMAGES,), generator=g).to(device)
    for size, name in itertools.product(args.sizes, args.models):
        model = models.create(name, size=size).to(device, memory_format=torch.channels_last)
        rates = [measure(model, x, y, b, args) for b in args.batches]
        print(f"{name:<6}{size:<12}" + "".join(f"{r:>10,.0f} " for r in rates), flush=True)


if __name__ == "__main__":
    main()
