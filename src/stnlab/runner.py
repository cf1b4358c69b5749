"""Running an experiment: its config -> training runs (in sequence or in parallel workers),
results.csv and summary.md.

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
import queue
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from stnlab import results
from stnlab.config import ExperimentConfig, RunConfig
from stnlab.errors import ConfigError
from stnlab.expdir import ExperimentDir
from stnlab.rundir import CHECKPOINT, METRICS

__all__ = [
    "ExperimentResult",
    "Job",
    "collect_rows",
    "describe_plan",
    "plan",
    "prepare_data",
    "reuses_budgets",
    "run_config",
    "run_experiment",
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


def run_config(config: ExperimentConfig, job: Job, device: str, threads: int | None) -> RunConfig:
    """The config of one job's run: the experiment's, with the job's model, epochs and seed.

    Besides its budgets a run is evaluated every ``train.eval_every`` epochs, by default
    about 50 times (the points of the training curves).
    """
    every = config.train.eval_every or max(1, job.epochs // 50)
    train = replace(config.train, epochs=job.epochs, seed=job.seed, eval_at=job.budgets,
                    eval_every=every, device=device, threads=threads)  # fmt: skip
    return RunConfig(replace(config.model, name=job.model), train, config.data)


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


_DATA: dict[str, Any] = {}  # the data set loaded in this process, by path


def _load_data(path: str):
    from stnlab.data import load

    if path not in _DATA:
        _DATA.clear()
        _DATA[path] = load(path)
    return _DATA[path]


def _run_job(spec: dict[str, Any]) -> dict[str, Any]:
    """Train (or resume) one job, in this process or a worker; returns its summary.

    With a ``queue`` (parallel workers), each record goes there as (run name, record).
    """
    from stnlab.training import train

    data = _load_data(spec["data_path"])
    q, name = spec.get("queue"), Path(spec["out_dir"]).name
    on_record = [lambda record: q.put((name, record))] if q is not None else []
    res = train(spec["run"], data, spec["out_dir"], resume=True, progress=spec["progress"],
                on_record=on_record)  # fmt: skip
    return res.summary


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
    config.check_train_size(len(_load_data(str(path)).y_train))
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

    Every file that resuming reads is checked before anything is written.

    Args:
        config: the experiment (already checked by its ``__post_init__``).
        out: the experiment's folder; run NAME trains in ``out/runs/NAME``.
        workers: parallel worker processes (``None``: ``config.workers``).
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (``None``: ``config.train.device``).
        progress: progress bars (one per run in sequence; one overall bar with workers).
        log: where progress lines go.

    Raises:
        UserError: anything found wrong before training starts (a ConfigError, DataError
            or RunFolderError).
    """
    from stnlab.training import resolve_device

    t0 = time.perf_counter()
    config = _override(config, workers, device)
    folder, jobs = ExperimentDir(out), plan(config)
    workers = min(config.workers, len(jobs))
    device = resolve_device(config.train.device)
    threads = max(1, cpu_count() // workers)
    runs = {job.name: run_config(config, job, device, threads) for job in jobs}
    _check_out(config, folder)
    done = _survey(folder, jobs, runs)
    folder.path.mkdir(parents=True, exist_ok=True)
    data_path = prepare_data(config, folder.path, log)
    folder.write_record(config.to_dict(), reuses_budgets(config), data_path)
    todo = [job for job in jobs if job.name in done]
    skipped = [job.name for job in jobs if job.name not in done]
    for line in _plan_lines(config, jobs, skipped, workers, threads, device):
        log(line)
    specs = [{"run": runs[j.name], "out_dir": str(folder.run(j.name).path),
              "data_path": str(data_path), "progress": progress} for j in todo]  # fmt: skip
    _train_jobs(config, folder, todo, specs, workers, sum(done.values()), progress, log)
    rows = collect_rows(folder, jobs)
    _write_outcome(config, folder, rows)
    trained = [job.name for job in todo]
    return ExperimentResult(folder.path, jobs, trained, skipped, rows, reuses_budgets(config),
                            time.perf_counter() - t0)  # fmt: skip


def _override(config: ExperimentConfig, workers: int | None, device: str | None):
    """``config`` with the caller's workers and device, checked as the config's own fields."""
    if workers is not None:
        config = replace(config, workers=workers)
    if device is not None:
        config = replace(config, train=replace(config.train, device=device))
    return config


def _train_jobs(config, folder, todo, specs, workers, done, progress, log) -> None:
    """Train the jobs left, in this process or in ``workers`` worker processes."""
    if workers == 1 or len(todo) <= 1:
        for i, (job, spec) in enumerate(zip(todo, specs, strict=True)):
            log(f"[{i + 1}/{len(todo)}] {job.name}: {job.epochs} epochs")
            _log_done(job, _run_job(spec), folder, log)
    else:
        _run_parallel(*_longest_first(config, todo, specs), workers, done, folder, progress, log)


def _write_outcome(config: ExperimentConfig, folder: ExperimentDir, rows) -> None:
    """results.csv and summary.md."""
    folder.write_results(rows)
    notes = [f"Data: {config.data.describe()}.", _how(config) + "."]
    title = f"Experiment `{config.name}`: test accuracy"
    comparisons = results.compare(folder, rows) if rows else None
    folder.write_summary(results.summary_markdown(rows, title, notes, comparisons))


def _how(config: ExperimentConfig) -> str:
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
    lines = [f"experiment {config.name!r}: {len(jobs)} runs. {_how(config)}."]
    lines.append(f"data: {config.data.describe()}")
    for job in jobs:
        at = ", ".join(map(str, job.budgets))
        lines.append(
            f"  runs/{job.name}: {job.model}, seed {job.seed}, {job.epochs} epochs, read at {at}"
        )
    return "\n".join(lines)


def _plan_lines(config, jobs, skipped, workers, threads, device) -> list[str]:
    lines = [f"experiment {config.name!r}: {len(jobs)} runs. {_how(config)}."]
    if skipped:
        lines.append(f"resuming: {len(skipped)} finished runs skipped ({', '.join(skipped)})")
    mode = "in sequence" if workers == 1 else f"in {workers} worker processes"
    n = len(jobs) - len(skipped)
    each = f"{threads} thread{'s' * (threads > 1)} each"
    lines.append(f"training {n} runs {mode} on {device}, {each}")
    return lines


def _log_done(job: Job, summary: dict[str, Any], folder: ExperimentDir, log) -> None:
    evs = folder.run(job.name).evaluations()
    accs = ", ".join(
        f"{b}: {100 * evs[(b, 'test')]['accuracy']:.1f}%" for b in job.budgets if (b, "test") in evs
    )
    log(f"done {job.name} in {summary['train_seconds']:.0f} s; test accuracy after epochs {accs}")


def _longest_first(config: ExperimentConfig, jobs: list[Job], specs: list[dict]):
    """Jobs and specs ordered by a cost guess (epochs × parameters), so workers end together."""
    from stnlab import models

    size = {m: models.count_parameters(models.create(replace(config.model, name=m)))
            for m in config.models}  # fmt: skip
    order = sorted(range(len(jobs)), key=lambda i: -jobs[i].epochs * size[jobs[i].model])
    return [jobs[i] for i in order], [specs[i] for i in order]


def _run_parallel(todo, specs, workers: int, done: int, folder, progress: bool, log) -> None:
    """Run jobs in spawned worker processes; one overall bar moves with the epochs they report."""
    from tqdm.auto import tqdm

    context = get_context("spawn")
    total = sum(job.epochs for job in todo)
    bar = tqdm(total=total, initial=done, disable=not progress, unit="epoch", desc="all runs",
               dynamic_ncols=True)  # fmt: skip
    with context.Manager() as manager, ProcessPoolExecutor(workers, mp_context=context) as pool:
        records = manager.Queue()  # (run name, record) from every worker's train()
        futures = {pool.submit(_run_job, {**spec, "queue": records, "progress": False}): job
                   for job, spec in zip(todo, specs, strict=True)}  # fmt: skip
        pending = set(futures)
        try:
            while pending:
                _advance(bar, records)
                for f in [f for f in pending if f.done()]:
                    pending.discard(f)
                    summary = f.result()  # re-raises a worker's error here
                    bar.clear()
                    _log_done(futures[f], summary, folder, log)
        except BaseException:
            for f in pending:
                f.cancel()
            raise
        finally:
            bar.close()


def _advance(bar, records, wait: float = 0.2) -> None:
    """Move the bar one step per ``train`` record waiting in the queue."""
    try:
        item = records.get(timeout=wait)
        while True:
            bar.update(item[1]["event"] == "train")
            item = records.get_nowait()
    except queue.Empty:
        pass


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
