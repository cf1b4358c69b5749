"""Running an experiment: its config -> training runs (in sequence, in local worker
processes or on a Dask cluster: :mod:`stnlab.execution`), results.csv and summary.md.

A run is one :func:`stnlab.training.train` call in its own folder ``DIR/runs/NAME``.
With a constant learning rate a run of E epochs passes through the states of every
shorter run with the same seed, so one run per (model, seed), evaluated at each
budget, gives the protocol's numbers (*budget reuse*); a schedule tied to the total
number of epochs needs one run per (model, budget, seed) (*separate runs*).

Example:
    >>> from stnlab.experiment import preset
    >>> [job.name for job in plan(preset("smoke"))][:2]
    ['cnn-s0', 'cnn-s1']
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from stnlab import execution, placement, results
from stnlab.config import ExperimentConfig, RunConfig
from stnlab.errors import ConfigError
from stnlab.execution import Failure, Reporter, Task
from stnlab.expdir import ExperimentDir
from stnlab.rundir import CHECKPOINT, METRICS

__all__ = [
    "ExperimentResult",
    "Job",
    "Placement",
    "collect_rows",
    "describe_plan",
    "path_taken",
    "place",
    "plan",
    "prepare_data",
    "reuses_budgets",
    "run_config",
    "run_experiment",
    "survey",
]


@dataclass(frozen=True)
class Job:
    """One training run: ``epochs`` of ``model`` with ``seed``, read out at each of ``budgets``."""

    model: str
    seed: int
    epochs: int
    budgets: tuple[int, ...]
    name: str  # the run's folder under DIR/runs


def reuses_budgets(config: ExperimentConfig) -> bool:
    """True when one run per (model, seed) gives every budget's numbers (constant LR)."""
    return config.reuse and config.train.schedule == "constant"


def plan(config: ExperimentConfig) -> list[Job]:
    """The runs the config needs, in the order they are started."""
    if reuses_budgets(config):
        top = max(config.budgets)
        return [
            Job(m, s, top, config.budgets, f"{m}-s{s}") for m in config.models for s in config.seeds
        ]
    return [
        Job(m, s, b, (b,), f"{m}-e{b}-s{s}")
        for b in sorted(config.budgets, reverse=True)  # longest first: workers finish together
        for m in config.models
        for s in config.seeds
    ]


def run_config(
    config: ExperimentConfig, job: Job, device: str | None = None, threads: int | None = None
) -> RunConfig:
    """The config of one job's run: the experiment's, with the job's model, epochs and seed
    (and ``device``/``threads`` where given).

    Besides its budgets a run is evaluated every ``train.eval_every`` epochs, by default
    about 50 times (the points of the training curves).
    """
    every = config.train.eval_every or max(1, job.epochs // 50)
    train = replace(config.train, epochs=job.epochs, seed=job.seed, eval_at=job.budgets,
                    eval_every=every, device=device or config.train.device,
                    threads=threads or config.train.threads)  # fmt: skip
    return RunConfig(replace(config.model, name=job.model), train, config.data)


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
    """Where ``jobs`` runs of ``config`` would train (resolves ``auto``; imports torch unless
    on a cluster, whose workers decide ``auto``).

    Raises:
        ClusterError: a cluster without Dask installed (before anything is written).
    """
    if config.cluster is not None:
        from stnlab.cluster.jobs import distributed

        distributed()
        return Placement(config.cluster, (config.train.device,), config.train.threads)
    import torch

    from stnlab.training import resolve_device

    device = resolve_device(config.train.device)
    gpus = torch.cuda.device_count() if device.startswith("cuda") else 0
    devices = placement.local_devices(device, gpus, config.runs_per_gpu, jobs, config.workers)
    return Placement(None, tuple(devices), config.train.threads or cpu_count() // len(devices)
                     or 1)  # fmt: skip


# ----------------------------------------------------------------------------- running


@dataclass
class ExperimentResult:
    """What :func:`run_experiment` did: the jobs, which trained now, which were already done."""

    out: Path
    jobs: list[Job]
    trained: list[str]
    skipped: list[str]
    rows: list[dict[str, Any]]
    reuse: bool
    seconds: float
    failed: list[Failure] = field(default_factory=list)  # runs that failed by themselves


def cpu_count() -> int:
    """CPUs this process may use (respects affinity masks, unlike ``os.cpu_count``)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def _survey(out: ExperimentDir, jobs: list[Job], runs: dict[str, RunConfig]) -> dict[str, int]:
    """Epochs already trained by each unfinished job (finished ones left out), after checking
    every file of the run folders that resuming reads: nothing is written before this."""
    done = {}
    for job in jobs:
        folder = out.run(job.name)
        diff = folder.differences(runs[job.name])
        if diff:
            raise ConfigError(f"{folder.path} holds a run of another config ({'; '.join(diff)}); "
                              "delete it or choose another --out")  # fmt: skip
        if folder.is_finished():
            folder.summary()
            evs = folder.evaluations()
            lost = sorted({b for b in job.budgets for s in ("valid", "test") if (b, s) not in evs})
            if lost:
                raise folder.damaged(METRICS, f"lacks the evaluations after epochs {lost}")
            continue
        done[job.name] = 0
        if folder.file(CHECKPOINT).exists():
            ck = folder.load_checkpoint()
            folder.check_metrics(ck.metrics_bytes)
            done[job.name] = ck.epoch
    return done


def survey(config: ExperimentConfig, out: str | os.PathLike) -> dict[str, int]:
    """Epochs already trained by each unfinished run of ``config`` in ``out`` (finished runs
    left out), after checking every file that resuming reads; writes nothing."""
    folder, jobs = ExperimentDir(out), plan(config)
    _check_out(config, folder)
    return _survey(folder, jobs, {job.name: run_config(config, job) for job in jobs})


def prepare_data(config: ExperimentConfig, out: Path, log: Callable[[str], None]) -> Path:
    """The file every job loads: ``data.path``, the published set (downloaded once), or
    ``DIR/data.npz`` generated once."""
    from stnlab.data import save

    if (file := config.data.file()) is not None:
        path = Path(file).resolve()
    else:
        path = ExperimentDir(out).data_file
        if not path.is_file():
            log(f"making {config.data.describe()} -> {path}")
            save(config.data.dataset(), path)
    config.check_train_size(len(execution.load_data(str(path)).y_train))
    return path


def _check_out(config: ExperimentConfig, out: ExperimentDir) -> None:
    """Refuse a folder that holds an experiment on other data: its runs would be mixed up."""
    record = out.record()
    if record is not None and record["data"].decisive() != config.data.decisive():
        raise ConfigError(f"{out.path} holds an experiment on other data "
                          f"({record['data'].describe()}); choose another --out")  # fmt: skip


def run_experiment(
    config: ExperimentConfig,
    out: str | os.PathLike,
    workers: int | None = None,
    device: str | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> ExperimentResult:
    """Run every job of ``config`` not already finished under ``out``; write results and summary.

    Every file that resuming reads is checked before anything is written. A run that fails
    by itself (a diverged loss, say) is reported once and listed in the result's ``failed``;
    the others go on.

    Args:
        config: the experiment (already checked by its ``__post_init__``); ``config.cluster``
            sends the runs to a Dask cluster, else they train on this machine.
        out: the experiment's folder; run NAME trains in ``out/runs/NAME``.
        workers: parallel worker processes (``None``: ``config.workers``).
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (``None``: ``config.train.device``).
        progress: progress bars (one per run in sequence; one overall bar otherwise).
        log: where progress lines go.

    Raises:
        UserError: anything found wrong before training starts (a ConfigError, DataError,
            RunFolderError, or a ClusterError: no Dask, no scheduler at the address).
        KeyboardInterrupt: after stopping the runs (their folders stay resumable).
    """
    t0 = time.perf_counter()
    config = _override(config, workers, device)
    folder, jobs = ExperimentDir(out), plan(config)
    done = survey(config, out)
    todo = [job for job in jobs if job.name in done]
    where = place(config, len(todo))
    folder.path.mkdir(parents=True, exist_ok=True)
    data_path = prepare_data(config, folder.path, log)
    folder.write_record(config.to_dict(), reuses_budgets(config), data_path)
    skipped = [job.name for job in jobs if job.name not in done]
    for line in _plan_lines(config, jobs, skipped, where):
        log(line)
    tasks = [Task(j.name, run_config(config, j, where.device, where.threads),
                  folder.run(j.name).path.resolve(), done[j.name]) for j in todo]  # fmt: skip
    failed = _train_tasks(config, folder, todo, tasks, where, data_path, progress, log)
    rows = collect_rows(folder, jobs)
    _write_outcome(config, folder, rows, failed)
    trained = [job.name for job in todo if job.name not in {f.name for f in failed}]
    return ExperimentResult(folder.path, jobs, trained, skipped, rows, reuses_budgets(config),
                            time.perf_counter() - t0, failed)  # fmt: skip


def _override(config: ExperimentConfig, workers: int | None, device: str | None):
    """``config`` with the caller's workers and device, checked as the config's own fields."""
    if workers is not None:
        config = replace(config, workers=workers)
    if device is not None:
        config = replace(config, train=replace(config.train, device=device))
    return config


def _train_tasks(config, folder, todo, tasks, where, data_path, progress, log) -> list[Failure]:
    """Train the tasks where ``where`` says; returns the runs that failed."""
    by_name = {job.name: job for job in todo}
    several = where.cluster is not None or len(where.devices) > 1
    reporter = Reporter(tasks, lambda name, summary: _log_done(by_name[name], summary, folder, log),
                        log, bar=progress and several and bool(tasks))  # fmt: skip
    try:
        if not tasks:
            pass
        elif not several:
            execution.train_here(tasks, data_path, reporter, progress)
        else:
            tasks = _longest_first(config, tasks, by_name)
            if where.cluster is not None:
                shared = {"auto": None, "yes": True, "no": False}[config.shared_fs]
                execution.train_on_cluster(tasks, data_path, where.cluster, shared,
                                           folder.path.resolve(), reporter)  # fmt: skip
            else:
                execution.train_in_pool(tasks, data_path, where.devices, reporter)
    finally:
        reporter.close()
    return reporter.failures


def _write_outcome(config: ExperimentConfig, folder: ExperimentDir, rows, failed=()) -> None:
    """results.csv and summary.md (which names the runs that failed)."""
    folder.write_results(rows)
    notes = [f"Data: {config.data.describe()}.", path_taken(config) + "."]
    notes += [f"Run {f.name} failed: {f.message}." for f in failed]
    title = f"Experiment `{config.name}`: test accuracy"
    comparisons = results.compare(folder, rows) if rows else None
    folder.write_summary(results.summary_markdown(rows, title, notes, comparisons))


def path_taken(config: ExperimentConfig) -> str:
    """Which path the experiment takes (budget reuse or separate runs), and why."""
    t = config.train
    setting = f"batch {t.batch_size}, Adam lr {t.lr:g}, {config.model.size}-size models"
    if reuses_budgets(config):
        return (
            f"Budget reuse: one {max(config.budgets)}-epoch run per (model, seed), evaluated "
            f"after epochs {', '.join(map(str, config.budgets))} (constant learning rate); "
            + setting
        )
    why = "budget reuse is off" if t.schedule == "constant" else f"the {t.schedule} schedule"
    why += " depends on the total epochs" if t.schedule != "constant" else ""
    return f"Separate runs: one per (model, budget, seed), since {why}; " + setting


def describe_plan(config: ExperimentConfig) -> str:
    """The runs an experiment needs, one line each, after the path it takes."""
    jobs = plan(config)
    lines = [f"experiment {config.name!r}: {len(jobs)} runs. {path_taken(config)}."]
    lines.append(f"data: {config.data.describe()}")
    for job in jobs:
        at = ", ".join(map(str, job.budgets))
        lines.append(
            f"  runs/{job.name}: {job.model}, seed {job.seed}, {job.epochs} epochs, read at {at}"
        )
    return "\n".join(lines)


def _plan_lines(config, jobs, skipped, where: Placement) -> list[str]:
    lines = [f"experiment {config.name!r}: {len(jobs)} runs. {path_taken(config)}."]
    if skipped:
        lines.append(f"resuming: {len(skipped)} finished runs skipped ({', '.join(skipped)})")
    lines.append(where.describe(len(jobs) - len(skipped)))
    return lines


def _log_done(job: Job, summary: dict[str, Any], folder: ExperimentDir, log) -> None:
    evs = folder.run(job.name).evaluations()
    accs = ", ".join(
        f"{b}: {100 * evs[(b, 'test')]['accuracy']:.1f}%" for b in job.budgets if (b, "test") in evs
    )
    log(f"done {job.name} in {summary['train_seconds']:.0f} s; test accuracy after epochs {accs}")


def _longest_first(config: ExperimentConfig, tasks: list[Task], jobs: dict[str, Job]):
    """The tasks ordered by a cost guess (epochs × parameters), so workers end together."""
    from stnlab import models

    size = {m: models.count_parameters(models.create(replace(config.model, name=m)))
            for m in config.models}  # fmt: skip
    return sorted(tasks, key=lambda t: -jobs[t.name].epochs * size[jobs[t.name].model])


def collect_rows(folder: ExperimentDir, jobs: Sequence[Job]) -> list[dict[str, Any]]:
    """One row per model × budget × seed, read from each run's metrics.jsonl."""
    rows = []
    for job in jobs:
        evs = folder.run(job.name).evaluations()
        for b in job.budgets:
            valid, test = evs.get((b, "valid")), evs.get((b, "test"))
            if valid is not None and test is not None:
                rows.append(
                    {
                        "model": job.model,
                        "epochs": b,
                        "seed": job.seed,
                        "valid_accuracy": valid["accuracy"],
                        "test_accuracy": test["accuracy"],
                        "train_seconds": test["train_seconds"],
                        "run": job.name,
                    }
                )
    order = {name: i for i, name in enumerate(dict.fromkeys(job.model for job in jobs))}
    return sorted(rows, key=lambda r: (order[r["model"]], r["epochs"], r["seed"]))
