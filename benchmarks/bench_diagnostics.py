"""Cost of the per-epoch θ statistics, as a percentage of one training epoch (goal: < 2%).

The statistics are what training will compute after each epoch:
:func:`stnlab.diagnostics.summarize_model` on a fixed batch of 200 validation images (the
model's forward pass, which runs the localization nets, then every transformer's figures
and their summary) and :func:`stnlab.train.monitor.collapse`. The epoch is 50 training steps
of batch 200 on the default 40×40 data (10,000 images), written with the public API
(Adam, cross-entropy). Both are timed side by side in one run.

    python benchmarks/bench_diagnostics.py
    python benchmarks/bench_diagnostics.py --models stn mstn icstn --clock cpu

Figures on a shared machine are noisy: compare the columns of one run; ``--clock cpu``
counts this process's CPU time only.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from stnlab import diagnostics, models
from stnlab.data import make_dataset
from stnlab.train import monitor


def train_epoch(model, opt, x, y, steps: int, batch: int) -> None:
    """One epoch of plain training steps on random batches of (x, y)."""
    model.train()
    order = torch.randperm(len(x))
    for i in range(steps):
        idx = order[i * batch : (i + 1) * batch]
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def per_epoch_statistics(model, x_fixed, name: str, epoch: int) -> dict:
    """What training will log and check after each epoch."""
    found = diagnostics.summarize_model(model, x_fixed)
    for key, summary in found.items():
        monitor.collapse(summary, f"{name} {key}", epoch)
    return found


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["stn", "mstn"])
    p.add_argument("--size", default="default")
    p.add_argument("--steps", type=int, default=50, help="training steps per epoch")
    p.add_argument("--batch", type=int, default=200)
    p.add_argument("--epochs", type=int, default=2, help="epochs timed (the median counts)")
    p.add_argument("--repeats", type=int, default=20, help="timings of the statistics")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    ds = make_dataset(sizes=(args.steps * args.batch, 200, 0))
    x_fixed = ds.x_valid[:200]
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.clock} clock; "
        f"epoch = {args.steps} steps of batch {args.batch} on {ds.image_size}"
    )
    print(f"{'model':<7}{'epoch s':>9}{'statistics ms':>15}{'share':>8}")
    for name in args.models:
        torch.manual_seed(0)
        model = models.create(name, size=args.size)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        epochs = []
        for _ in range(args.epochs):
            t0 = clock()
            train_epoch(model, opt, ds.x_train, ds.y_train, args.steps, args.batch)
            epochs.append(clock() - t0)
        per_epoch_statistics(model, x_fixed, name, 1)  # warm-up
        stats = []
        for _ in range(args.repeats):
            t0 = clock()
            per_epoch_statistics(model, x_fixed, name, 1)
            stats.append(clock() - t0)
        epoch, stat = statistics.median(epochs), statistics.median(stats)
        print(f"{name:<7}{epoch:>9.2f}{1000 * stat:>15.1f}{100 * stat / epoch:>7.2f}%", flush=True)


if __name__ == "__main__":
    main()
