"""Wall time of one experiment in this process, in a local process pool and on a Dask
LocalCluster (``--cluster local:N``), side by side (goal: the cluster at most 10% over the pool).

Every mode trains the same demo-shaped experiment (3 designs × 5 budgets × 3 seeds by
budget reuse: 9 runs) into a fresh folder, from one data file made first, through
:func:`stnlab.experiment.runner.run_experiment`. Per mode it prints the wall time, the ``--plan``
estimate made just before (:func:`stnlab.experiment.estimate.estimate`), the time spent in training
steps (the runs' ``train_seconds``) and the share of the slots' wall time spent outside
training steps: starting processes or the cluster, importing torch, loading data,
evaluating, checkpointing, and slots idle while the last runs finish.

    python benchmarks/bench_experiment.py                        # demo shape, 2,000 images
    python benchmarks/bench_experiment.py --train 10000 --budgets 5 10 15 20 25  # the demo
    python benchmarks/bench_experiment.py --modes pool cluster --repeats 2
    python benchmarks/bench_experiment.py --device cuda --modes here pool

Figures on a shared machine are noisy: compare the rows of one run (``--repeats`` runs
the modes again in reverse order and prints each mode's median).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from stnlab import experiment
from stnlab.config import presets as ex
from stnlab.experiment import runner
from stnlab.experiment.estimate import estimate
from stnlab.runs.experiment_folder import ExperimentDir

MODES = ("here", "pool", "cluster")


def config_for(mode: str, args: argparse.Namespace, data: Path):
    """The experiment of ``mode``: in this process, ``args.workers`` processes or local:N."""
    pool = {"workers": args.workers}
    if args.device.startswith("cuda"):  # the pool's processes share the GPU: runs_per_gpu
        pool["runs_per_gpu"] = args.workers
    where = {"here": {"workers": 1}, "pool": pool, "cluster": {"cluster": f"local:{args.workers}"}}[
        mode
    ]
    return ex.preset(
        "demo",
        budgets=args.budgets,
        iterations=args.train // args.batch,
        data={"path": str(data)},
        train={"batch_size": args.batch, "device": args.device},
        **where,
    )


def measure(mode: str, args: argparse.Namespace, data: Path, tmp: Path) -> dict[str, float]:
    """One mode: its estimate, wall time, seconds in training steps and parallel slots."""
    config, out = config_for(mode, args, data), tmp / f"{mode}-{time.monotonic_ns()}"
    planned = estimate(config, out).seconds
    t0 = time.perf_counter()
    result = runner.run_experiment(config, out, progress=False, log=lambda s: None)
    wall = time.perf_counter() - t0
    folder = ExperimentDir(out)
    training = sum(folder.run(j.name).summary().train_seconds for j in result.jobs)
    slots = 1 if mode == "here" else args.workers
    return {"wall": wall, "estimate": planned, "training": training, "slots": slots}


def _row(name: str, runs: list[dict[str, float]]) -> str:
    """One line: the figures of ``runs`` (their medians, for several)."""
    m = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    outside = 1 - m["training"] / (m["wall"] * m["slots"])
    return (
        f"{name:<16}{m['slots']:>6.0f}{m['wall']:>9.1f}{m['estimate']:>11.1f}"
        f"{m['training']:>11.1f}{100 * outside:>10.1f}%"
    )


def _cpu() -> str:
    """The processor's name (Linux), else what the platform module says."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return next(ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    p.add_argument("--workers", type=int, default=2, help="pool processes, local:N workers")
    p.add_argument("--train", type=int, default=2000, help="training images (demo: 10,000)")
    p.add_argument("--batch", type=int, default=200)
    p.add_argument("--budgets", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=1)
    args = p.parse_args()
    import torch

    from stnlab.data import make_dataset, save

    print(
        f"{_cpu()}, {os.cpu_count()} CPUs, torch {torch.__version__}, load average "
        f"{os.getloadavg()[0]:.1f} at the start"
    )
    with tempfile.TemporaryDirectory(prefix="bench-experiment-") as tmp:
        data = Path(tmp) / "data.npz"
        save(make_dataset(sizes=(args.train, 500, 500), seed=0, source="embedded"), data)
        c = config_for("here", args, data)
        print(
            f"experiment: {len(experiment.plan(c))} runs of {max(args.budgets)} epochs, "
            f"{args.train} training images of {c.model.size} models, on {args.device}"
        )
        names = {
            "here": "in process",
            "pool": f"pool of {args.workers}",
            "cluster": f"local:{args.workers}",
        }
        print(
            f"{'mode':<16}{'slots':>6}{'wall s':>9}{'estimate s':>11}{'train s':>11}"
            f"{'outside':>11}",
            flush=True,
        )
        order, runs = list(args.modes), {m: [] for m in args.modes}
        for r in range(args.repeats):
            for mode in order if r % 2 == 0 else order[::-1]:
                runs[mode].append(measure(mode, args, data, Path(tmp)))
                print(_row(f"{names[mode]} #{r + 1}", runs[mode][-1:]), flush=True)
        if args.repeats > 1:
            for mode in args.modes:
                print(_row(f"{names[mode]} median", runs[mode]))
    if "pool" in runs and "cluster" in runs:
        pool = statistics.median(r["wall"] for r in runs["pool"])
        cluster = statistics.median(r["wall"] for r in runs["cluster"])
        print(f"cluster / pool wall time: {cluster / pool:.3f} (goal: at most 1.10)")
    print(
        f"load average {os.getloadavg()[0]:.1f} at the end ('outside': the share of the "
        "slots' wall time not spent in training steps)"
    )


if __name__ == "__main__":
    main()
