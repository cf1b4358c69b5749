"""Running an experiment: its plan (:mod:`stnlab.experiment.planning`) -> training runs (in
sequence, in local worker processes or on a Dask cluster: :mod:`stnlab.experiment.execution`)
-> results.csv and summary.md.

A run is one :func:`stnlab.train.train` call in its own folder ``DIR/runs/NAME``; a run
folder that holds part of a run resumes, a finished one is read, not trained again.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from stnlab import models
from stnlab.config import ConfigError, DataConfig, ExperimentConfig, RunConfig
from stnlab.config.experiment import Cell, label_of
from stnlab.data import dataset_of, describe, file_of, save
from stnlab.experiment import execution
from stnlab.experiment.cluster import check_reachable
from stnlab.experiment.execution import Failure, Reporter, Task
from stnlab.experiment.placement import Placement, place
from stnlab.experiment.planning import (
    Job,
    cell_config,
    path_taken,
    plan,
    reuses_budgets,
    run_config,
)
from stnlab.report import paper, results
from stnlab.runs import ExperimentDir
from stnlab.runs.run_folder import CHECKPOINT, METRICS

__all__ = ["ExperimentResult", "collect_rows", "prepare_data", "run_experiment", "survey"]


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


def _survey(out: ExperimentDir, jobs: list[Job], runs: dict[str, RunConfig]) -> dict[str, int]:
    """Epochs already trained by each unfinished job (finished ones left out), after checking
    every file of the run folders that resuming reads: nothing is written before this."""
    done = {}
    # The image size, channels and classes come from the data set (checked with the data
    # config, which is compared): the runs planned here do not know them yet.
    from_data = tuple(
        f"model.{k}: " for k, v in ExperimentConfig.SET_HERE["model"].items() if v == "the data"
    )
    for job in jobs:
        folder = out.run(job.name)
        diff = [d for d in folder.differences(runs[job.name]) if not d.startswith(from_data)]
        if diff:
            raise ConfigError(
                f"{folder.path} holds a run of another config ({'; '.join(diff)}); "
                "delete it or choose another --out"
            )
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


def prepare_data(
    config: ExperimentConfig, out: Path, log: Callable[[str], None], base: DataConfig | None = None
) -> Path:
    """The file the jobs of ``config`` load: ``data.path``, the published set (downloaded
    once), or a file generated once in ``out``: ``data.npz`` for the experiment's own data
    (``base``, default: ``config.data``), another name for a cell's other data."""
    if (file := file_of(config.data)) is not None:
        path = Path(file).resolve()
    else:
        path = ExperimentDir(out).data_file_for(config.data, base or config.data)
        if not path.is_file():
            log(f"making {describe(config.data)} -> {path}")
            save(dataset_of(config.data), path)
    config.check_train_size(len(execution.load_data(str(path)).y_train))
    return path


def _prepare_cells(
    config: ExperimentConfig, out: Path, jobs: Sequence[Job], log: Callable[[str], None]
) -> dict[Cell, Path]:
    """The data file of each cell with jobs, each distinct data set made once."""
    paths: dict[Cell, Path] = {}
    for cell in dict.fromkeys(job.cell for job in jobs):
        paths[cell] = prepare_data(cell_config(config, cell), out, log, config.data)
    return paths


def _check_out(config: ExperimentConfig, out: ExperimentDir) -> None:
    """Refuse a folder that holds an experiment on other data: its runs would be mixed up."""
    record = out.record()
    if record is not None and record["data"].decisive() != config.data.decisive():
        raise ConfigError(
            f"{out.path} holds an experiment on other data "
            f"({describe(record['data'])}); choose another --out"
        )


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
    done = survey(config, out)  # epochs trained by each unfinished run; every file checked
    todo = [job for job in jobs if job.name in done]
    session = _start(config, folder, jobs, done, progress, log)
    tasks = [_task(session, job, done[job.name]) for job in todo]
    failed = _train_tasks(session, tasks, {job.name: job for job in todo})
    rows = collect_rows(folder, jobs)
    _write_outcome(config, folder, rows, failed)
    lost = {f.name for f in failed}
    return ExperimentResult(
        out=folder.path,
        jobs=jobs,
        trained=[job.name for job in todo if job.name not in lost],
        skipped=[job.name for job in jobs if job.name not in done],
        rows=rows,
        reuse=reuses_budgets(config),
        seconds=time.perf_counter() - t0,
        failed=failed,
    )


@dataclass(frozen=True)
class _Session:
    """What the steps of one :func:`run_experiment` call share once its folder is ready."""

    config: ExperimentConfig
    folder: ExperimentDir
    where: Placement
    data_paths: dict[Cell, Path]  # the data file of each cell of the grid
    progress: bool
    log: Callable[[str], None]


def _start(
    config: ExperimentConfig,
    folder: ExperimentDir,
    jobs: Sequence[Job],
    done: dict[str, int],
    progress: bool,
    log: Callable[[str], None],
) -> _Session:
    """Place the runs, make the data and experiment.json, and say what will happen: the
    first writes, after every check has passed."""
    if config.cluster is not None:
        check_reachable(config.cluster)  # no Dask, no scheduler: one line, before any write
    where = place(config, len(done))
    folder.path.mkdir(parents=True, exist_ok=True)
    data_paths = _prepare_cells(config, folder.path, jobs, log)
    folder.write_record(config.to_dict(), reuses_budgets(config), next(iter(data_paths.values())))
    skipped = [job.name for job in jobs if job.name not in done]
    for line in _plan_lines(config, jobs, skipped, where):
        log(line)
    return _Session(config, folder, where, data_paths, progress, log)


def _task(session: _Session, job: Job, done: int) -> Task:
    """The task that trains (or resumes, after ``done`` epochs) ``job`` where it is placed."""
    where = session.where
    run = run_config(session.config, job, where.device, where.threads)
    out_dir, data = session.folder.run(job.name).path.resolve(), session.data_paths[job.cell]
    return Task(job.name, run, out_dir, done, data)


def _override(
    config: ExperimentConfig, workers: int | None, device: str | None
) -> ExperimentConfig:
    """``config`` with the caller's workers and device, checked as the config's own fields."""
    if workers is not None:
        config = replace(config, workers=workers)
    if device is not None:
        config = replace(config, train=replace(config.train, device=device))
    return config


def _train_tasks(s: _Session, tasks: list[Task], jobs: dict[str, Job]) -> list[Failure]:
    """Train the tasks where the session places them; returns the runs that failed, by name."""
    several = s.where.cluster is not None or len(s.where.devices) > 1
    reporter = Reporter(
        tasks,
        lambda name, summary: _log_done(jobs[name], summary, s.folder, s.log),
        s.log,
        bar=s.progress and several and bool(tasks),
    )
    try:
        if not tasks:
            pass
        elif not several:
            execution.train_here(tasks, None, reporter, s.progress)
        elif s.where.cluster is not None:
            shared = {"auto": None, "yes": True, "no": False}[s.config.shared_fs]
            workdir = s.folder.path.resolve()
            ordered = _longest_first(s.config, tasks, jobs)
            execution.train_on_cluster(ordered, None, s.where.cluster, shared, workdir, reporter)
        else:
            ordered = _longest_first(s.config, tasks, jobs)
            execution.train_in_pool(ordered, None, s.where.devices, reporter)
    finally:
        reporter.close()
    return sorted(reporter.failures, key=lambda f: f.name)  # not in completion order


def _write_outcome(
    config: ExperimentConfig,
    folder: ExperimentDir,
    rows: list[dict[str, Any]],
    failed: Sequence[Failure] = (),
) -> None:
    """results.csv and summary.md (which names the runs that failed)."""
    folder.write_results(rows)
    notes = [_data_note(config), path_taken(config) + "."]
    notes += [f"Run {f.name} failed: {f.message}." for f in failed]
    title = f"Experiment `{config.name}`: test accuracy"
    grid = results.grid_estimates(folder, rows) if rows else None
    if grid is not None:
        folder.write_grid(results.grid_rows(grid))
    if config.grid:
        text = results.grid_markdown(folder, rows, grid, title, notes)
    else:
        comparisons = results.compare(folder, rows) if rows else None
        text = results.summary_markdown(rows, title, notes, comparisons)
    beside = paper.beside_paper(grid, config.to_dict()) if grid is not None else []
    if beside:
        text += "\n" + paper.paper_markdown(beside, _scale(config, grid.budget))
    folder.write_summary(text)


def _data_note(config: ExperimentConfig) -> str:
    """summary.md's line on the data: each distinct data set, when an axis changes it."""
    cells = dict.fromkeys(job.cell for job in plan(config))
    datas = list(dict.fromkeys(describe(cell_config(config, c).data) for c in cells))
    return f"Data: {datas[0]}." if len(datas) == 1 else f"Data, by cell: {'; '.join(datas)}."


def _scale(config: ExperimentConfig, budget: int) -> str:
    """Which schedule the runs had, beside the paper's."""
    steps = f"{config.iterations} steps" if config.iterations else "one pass"
    return (
        f"these runs: {budget} epochs of {steps} of {config.train.batch_size} images; the "
        "paper's: 150,000 steps of 256."
    )


def _plan_lines(
    config: ExperimentConfig, jobs: Sequence[Job], skipped: list[str], where: Placement
) -> list[str]:
    """What the experiment will do: its runs, the finished ones skipped, where the rest train."""
    lines = [f"experiment {config.name!r}: {len(jobs)} runs. {path_taken(config)}."]
    if skipped:
        lines.append(f"resuming: {len(skipped)} finished runs skipped ({', '.join(skipped)})")
    lines.append(where.describe(len(jobs) - len(skipped)))
    return lines


def _log_done(
    job: Job, summary: execution.Summary, folder: ExperimentDir, log: Callable[[str], None]
) -> None:
    """One line for a finished run: its training time and test accuracy at each budget."""
    evs = folder.run(job.name).evaluations()
    accs = ", ".join(
        f"{b}: {100 * evs[(b, 'test')].accuracy:.1f}%" for b in job.budgets if (b, "test") in evs
    )
    log(f"done {job.name} in {summary.train_seconds:.0f} s; test accuracy after epochs {accs}")


def _longest_first(config: ExperimentConfig, tasks: list[Task], jobs: dict[str, Job]) -> list[Task]:
    """The tasks ordered by a cost guess (epochs × parameters), so workers end together."""
    size = {
        m: models.count_parameters(models.create(replace(config.model, name=m)))
        for m in config.models
    }
    return sorted(tasks, key=lambda t: -jobs[t.name].epochs * size[jobs[t.name].model])


def collect_rows(folder: ExperimentDir, jobs: Sequence[Job]) -> list[dict[str, Any]]:
    """One row per cell × model × budget × seed, read from each run's metrics.jsonl (a run
    that gives several cells' results, one row in each); a run that never started (it failed
    first, say) has no file and no rows."""
    rows: list[tuple[int, dict[str, Any]]] = []  # (the cell's place, the row)
    cells = {c: i for i, c in enumerate(dict.fromkeys(c for job in jobs for c in job.cells))}
    order = {name: i for i, name in enumerate(dict.fromkeys(job.model for job in jobs))}
    for job in jobs:
        run = folder.run(job.name)
        if not run.file(METRICS).exists():
            continue
        evs = run.evaluations()
        for b in job.budgets:
            valid, test = evs.get((b, "valid")), evs.get((b, "test"))
            if valid is None or test is None:
                continue
            row = {
                "model": job.model,
                "epochs": b,
                "seed": job.seed,
                "valid_accuracy": valid.accuracy,
                "test_accuracy": test.accuracy,
                "train_seconds": test.train_seconds,
                "precision": run.precision(),  # read only from a run with results
                "run": job.name,
            }
            rows += [(cells[c], {**{a: label_of(v) for a, v in c}, **row}) for c in job.cells]
    rows.sort(key=lambda r: (r[0], order[r[1]["model"]], r[1]["epochs"], r[1]["seed"]))
    return [row for _, row in rows]
