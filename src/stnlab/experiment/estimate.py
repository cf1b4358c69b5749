"""Knowing an experiment's cost before paying it (``stnlab experiment --plan``).

Prints the runs, the data, the training images and an estimated wall time. The time
comes from a short probe of each design on this machine (a few training steps and one
evaluation pass on random images of the data's shape, with the threads and device each
run would get), spread over the parallel slots: local worker processes, or a cluster's
worker threads. Nothing is trained or written; a partly run folder counts only what is left.

Example:
    >>> makespan([3.0, 3.0, 2.0, 2.0, 2.0], slots=2)
    7.0
    >>> duration(27_000)
    '7 h 30 min'
"""

from __future__ import annotations

import heapq
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace

import torch

from stnlab.config import DataConfig, ExperimentConfig, RunConfig, parse_address
from stnlab.config.experiment import label_of
from stnlab.data import describe, get_variant, load, published_path
from stnlab.experiment import planning
from stnlab.experiment.cluster import CONNECT_CHECK_SECONDS, cluster_threads, open_client
from stnlab.experiment.cluster.jobs import distributed
from stnlab.experiment.placement import cpu_count, place
from stnlab.experiment.runner import survey
from stnlab.runs import ExperimentDir, TrainRecord
from stnlab.train import evaluate, resolve_device, train

__all__ = [
    "PROBE_STEPS",
    "Cost",
    "Speed",
    "busy_note",
    "describe_cost",
    "duration",
    "estimate",
    "makespan",
    "probe",
]

PROBE_STEPS = 2  # training steps per timed epoch of the probe (it times two, after a warm-up)
BUSY_LOAD = 0.5  # a 1-minute load average per CPU above which the probe shares the CPUs
SHARED_GPU_NOTE = (
    "note: runs that share a GPU slow each other down, by how much the probe cannot tell: "
    "the first time assumes each keeps the speed it has alone, the second that sharing "
    "gains nothing over one run at a time on each GPU"
)


@dataclass(frozen=True)
class Speed:
    """Images per second of one design here: through training steps, through evaluation;
    the precision the steps ran in, and why (``float32 (auto: ...)``)."""

    train: float
    evaluate: float
    precision: str = ""


def probe(run: RunConfig, shape: tuple[int, int], steps: int = PROBE_STEPS) -> Speed:
    """Time ``steps`` training steps of ``run`` and an evaluation pass, through
    :func:`stnlab.train.loop.train` itself, on random images of ``shape``.

    Three epochs of ``steps`` steps: the first warms up, the faster of the other two counts
    (the less disturbed by other work on a shared machine); evaluation likewise, the faster
    of two passes (the first allocates for its batch shape). The steps run in the precision
    that the run itself would train in here (``train.amp``, resolved by :func:`train`).
    """
    b, g = run.train.batch_size, torch.Generator().manual_seed(0)
    x = torch.rand(steps * b, 1, *shape, generator=g)  # (steps × B, 1, H, W)
    y = torch.randint(0, 10, (steps * b,), generator=g)
    data = SimpleNamespace(
        x_train=x, y_train=y, x_valid=x[:b], y_valid=y[:b], x_test=x[:b], y_test=y[:b]
    )
    # Timed steps only: no θ statistics, no warnings, no logs.
    quiet = dict(theta_images=0, stop_on_collapse=False, tensorboard=None)
    # An epoch here is one pass over the steps × B images, whatever the run's iterations.
    timing = dict(epochs=3, iterations=None, eval_every=0, eval_at=())
    short = replace(run, train=replace(run.train, **timing, **quiet))
    seconds: list[float] = []
    said: list[str] = []  # train()'s "precision: ..." line
    threads = torch.get_num_threads()
    try:
        timed = [lambda r: isinstance(r, TrainRecord) and seconds.append(r.seconds)]
        res = train(short, data, progress=False, on_record=timed, log=said.append)
        evaluating = min(_timed(lambda: evaluate(res.model, x, y)) for _ in range(2))
    finally:
        torch.set_num_threads(threads)  # train() set the run's
    precision = said[0].removeprefix("precision: ") if said else ""
    return Speed(len(x) / min(seconds[1:]), len(x) / evaluating, precision)


def _timed(fn: Callable[[], object]) -> float:
    """Seconds ``fn()`` takes."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def makespan(seconds: Sequence[float], slots: int) -> float:
    """The wall time of jobs of ``seconds`` each on ``slots`` parallel slots, when they start
    longest first, each on the first slot free."""
    ends = [0.0] * max(1, slots)
    for s in sorted(seconds, reverse=True):
        heapq.heappush(ends, heapq.heappop(ends) + s)
    return max(ends)


def duration(seconds: float) -> str:
    """``45 s``, ``12 min``, ``7 h 30 min``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"


# ----------------------------------------------------------------------------- the plan


def _data(
    config: ExperimentConfig, out: Path, base: DataConfig | None = None
) -> tuple[str, tuple[int, int, int], tuple[int, int]]:
    """The line naming the data, its split sizes and its image size (``base``: the data of
    the experiment whose cell ``config`` is, which decides the file's name)."""
    canvas, file = get_variant(config.data.variant).canvas, config.data.path
    if file is None and config.data.published:  # not downloaded for a plan
        cached = published_path(config.data.published, config.data.cache_dir)
        if not cached.is_file():
            sizes = "/".join(map(str, config.data.sizes))
            return (
                f"{describe(config.data)} (to be downloaded into {cached}; taken as "
                f"{sizes} train/valid/test {canvas}x{canvas})",
                config.data.sizes,
                (canvas, canvas),
            )
        file = str(cached)
    if file is not None:
        ds = load(file)
        sizes = tuple(len(ds.split(s)[1]) for s in ("train", "valid", "test"))
        h, w = ds.image_size
        line = f"the file {file}: {'/'.join(map(str, sizes))} train/valid/test {h}x{w}"
        return line, sizes, (h, w)
    path = ExperimentDir(out).data_file_for(config.data, base or config.data)
    made = "made earlier" if path.is_file() else "to be made at the start"
    if config.data.source == "mnist" and not path.is_file():
        digits = config.data.source_dir or "the download cache (fetched once if missing)"
        made += f", MNIST digits from {digits}"
    return f"{describe(config.data)} ({path}, {made})", config.data.sizes, (canvas, canvas)


def _slots(config: ExperimentConfig, todo: int) -> tuple[int, int, str, int | None, str]:
    """(parallel slots, how many of them share no GPU, what they are, threads each, device to
    probe on)."""
    where = place(config, todo)  # a cluster without Dask is one line here
    if config.cluster is None:
        devices = where.devices
        alone = len(set(devices)) if "cuda" in where.device else len(devices)
        return len(devices), alone, where.describe(todo), where.threads, where.device
    distributed()  # no Dask: one line, before any probe
    kind, n = parse_address(config.cluster)
    if kind != "local":
        with open_client(config.cluster, connect_timeout=CONNECT_CHECK_SECONDS) as client:
            n = cluster_threads(client)
    cuda = config.train.device != "cpu" and resolve_device("auto") == "cuda"
    what = f"the Dask cluster {config.cluster}: {n} worker threads"
    return n, n, what, config.train.threads or 1, "cuda" if cuda else "cpu"


@dataclass(frozen=True)
class Cost:
    """An experiment's cost: the ``--plan`` text, and its estimated wall time in seconds."""

    lines: list[str]
    seconds: float
    shared_gpu_seconds: float | None = None  # if runs that share a GPU gained nothing by it


def describe_cost(config: ExperimentConfig, out: str | os.PathLike) -> str:
    """The ``--plan`` text: runs, data, training images, measured speeds, estimated wall time."""
    return "\n".join(estimate(config, out).lines)


def estimate(config: ExperimentConfig, out: str | os.PathLike) -> Cost:
    """What is left of ``config`` in the folder ``out``, and its wall time estimated from a
    probe of each design's speed here (see the module docstring)."""
    out = Path(out)
    jobs = planning.plan(config)
    done = survey(config, out) if out.exists() else {j.name: 0 for j in jobs}
    cells = {c: planning.cell_config(config, c) for c in dict.fromkeys(j.cell for j in jobs)}
    data = {c: _data(cc, out, config.data) for c, cc in cells.items()}
    for c, cc in cells.items():
        cc.check_train_size(data[c][1][0])
    slots, alone, where, threads, device = _slots(config, len(done))
    busy = busy_note(_load(), cpu_count()) if device == "cpu" else None
    speeds: dict[str, Speed] = {}  # by the model as built and the image size
    names: dict[str, str] = {}  # how the speed lines name each
    w = max(15, *(len(j.name) for j in jobs))  # the run column
    lines = [
        f"experiment {config.name!r}: {len(jobs)} runs. {planning.path_taken(config)}.",
        *(f"data: {line}" for line in dict.fromkeys(d[0] for d in data.values())),
        f"{'run':<{w + 7}}{'epochs':>7}{'training images':>17}{'estimate':>12}",
    ]
    total, left, times = 0, 0, []
    for job in jobs:
        _, sizes, shape = data[job.cell]
        steps = cells[job.cell].steps_per_epoch(sizes[0])
        b = config.train.batch_size
        per_epoch = steps * b if steps is not None else sizes[0] // b * b
        total += job.epochs * per_epoch
        if job.name not in done:
            trained = job.epochs * per_epoch
            lines.append(f"  runs/{job.name:<{w}}{job.epochs:>7}{trained:>17,}{'finished':>12}")
            continue
        run = planning.run_config(config, job, device, threads)
        key = json.dumps([run.model.decisive(), shape])
        if key not in speeds:
            speeds[key] = probe(run, shape)
            cell = ", ".join(f"{a} = {label_of(v)}" for a, v in job.cell)
            names[key] = f"{job.model} ({cell})" if cell else job.model
        s = speeds[key]
        evals = run.train.eval_epochs()
        evaluated = sum(e > done[job.name] for e in evals) * (sizes[1] + sizes[2])
        images = (job.epochs - done[job.name]) * per_epoch
        times.append(images / s.train + evaluated / s.evaluate)
        left += images
        lines.append(f"  runs/{job.name:<{w}}{job.epochs:>7}{images:>17,}{duration(times[-1]):>12}")
    lines.append(f"total: {total:,} training images, {left:,} of them left to train")
    if speeds:
        precision = next(iter(speeds.values())).precision
        lines.append(
            f"speed measured here on {device} in {precision}, "
            f"{threads} thread{'s' * (threads > 1)} a run "
            f"(the faster of 2 × {PROBE_STEPS} training steps per design after a warm-up), "
            "images/s training | evaluating:"
        )
        width = max(6, *(len(n) for n in names.values()))
        lines += [
            f"  {names[k]:<{width}}{s.train:>10,.0f} | {s.evaluate:,.0f}" for k, s in speeds.items()
        ]
    seconds, serial = makespan(times, slots), makespan(times, alone)
    if serial > seconds:  # runs share a GPU: between perfect overlap and none
        lines.append(f"estimated wall time: {duration(seconds)} to {duration(serial)}, {where}")
        lines.append(SHARED_GPU_NOTE)
    else:
        lines.append(f"estimated wall time: {duration(seconds)}, {where}")
    if busy and speeds:  # nothing was probed when the folder is finished
        lines.append(busy)
    return Cost(lines, seconds, serial if serial > seconds else None)


def busy_note(load: float | None, cpus: int) -> str | None:
    """A warning when other work holds the CPUs the probe runs on (its speeds are then low
    and the estimate high), else None."""
    if load is None or load <= BUSY_LOAD * cpus:
        return None
    return (
        f"note: this machine was busy (1-minute load average {load:.1f} on {cpus} CPUs), "
        "so the speeds above are low and the estimate high; plan on an idle machine"
    )


def _load() -> float | None:
    """The 1-minute load average, None where the system has none (Windows)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None
