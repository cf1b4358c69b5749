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

import json
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from stnlab import results
from stnlab.experiment import RUN_KEYS, ConfigError, ExperimentConfig, require

__all__ = [
    "ExperimentResult",
    "Job",
    "collect_rows",
    "describe_plan",
    "plan",
    "prepare_data",
    "reuses_budgets",
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


def eval_epochs(config: ExperimentConfig, job: Job) -> tuple[int, ...]:
    """Epochs at which a run is evaluated: its budgets, plus curve points every ``eval_every``."""
    every = config.train.eval_every or max(1, job.epochs // 50)
    return tuple(sorted(set(job.budgets) | set(range(every, job.epochs + 1, every))))


def train_config(config: ExperimentConfig, job: Job, device: str, threads: int | None):
    """The :class:`stnlab.training.TrainConfig` of one job."""
    from stnlab.training import TrainConfig

    t = config.train
    return TrainConfig(
        model=job.model,
        model_kwargs=asdict(config.model),
        epochs=job.epochs,
        batch_size=t.batch_size,
        lr=t.lr,
        loc_lr=t.loc_lr,
        weight_decay=t.weight_decay,
        schedule=t.schedule,
        seed=job.seed,
        eval_epochs=eval_epochs(config, job),
        device=device,
        amp=t.amp,
        compile=t.compile,
        threads=threads,
    )


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


def _config_diff(run_dir: Path, cfg) -> list[str]:
    """Fields, of those that decide the result, where the run saved in ``run_dir`` differs."""
    try:
        saved = json.loads((run_dir / "config.json").read_text())
    except (OSError, ValueError):
        return []
    if isinstance(saved.get("model"), dict):  # config.json holds the resolved model config
        saved["model"] = saved["model"].get("name")
    now = json.loads(json.dumps(cfg.to_dict()))
    return [f"{k}: {saved.get(k)!r} -> {now[k]!r}" for k in RUN_KEYS if saved.get(k) != now[k]]


def _is_done(run_dir: Path, job: Job) -> bool:
    """A finished run that evaluated every budget of the job."""
    evs = results.read_evaluations(run_dir)
    done = all((b, s) in evs for b in job.budgets for s in ("valid", "test"))
    return done and (run_dir / "summary.json").is_file()


_DATA: dict[str, Any] = {}  # the data set loaded in this process, by path


def _load_data(path: str):
    from stnlab.data import load

    if path not in _DATA:
        _DATA.clear()
        _DATA[path] = load(path)
    return _DATA[path]


def _run_job(spec: dict[str, Any]) -> dict[str, Any]:
    """Train (or resume) one job, in this process or a worker; returns its summary."""
    from stnlab.training import train

    data = _load_data(spec["data_path"])
    res = train(
        spec["cfg"],
        data,
        spec["out_dir"],
        resume=True,
        progress=spec["progress"],
        data_info={"path": spec["data_path"]},
    )
    return res.summary


def prepare_data(config: ExperimentConfig, out: Path, log: Callable[[str], None]) -> Path:
    """The file every job loads: ``data.path``, or ``DIR/data.npz`` generated once."""
    from stnlab.data import DataError, make_dataset, save

    if config.data.path is not None:
        path = Path(config.data.path).resolve()
    else:
        path = out / "data.npz"
        if not path.is_file():
            d = config.data
            log(f"making {d.describe()} -> {path}")
            try:
                ds = make_dataset(
                    d.variant, d.source, d.seed, d.sizes, d.source_dir, cache_dir=d.cache_dir
                )
                save(ds, path)
            except DataError as exc:
                raise ConfigError(str(exc)) from None
    try:
        data = _load_data(str(path))
    except DataError as exc:
        raise ConfigError(str(exc)) from None
    config.check_train_size(len(data.y_train))
    return path


def _check_out(config: ExperimentConfig, out: Path) -> None:
    """Refuse a DIR that holds an experiment on other data: its runs would be mixed up."""
    path = out / "experiment.json"
    if path.is_file():
        before = json.loads(path.read_text()).get("config", {}).get("data")
        require(
            before is None or before == config.to_dict()["data"],
            f"{out} holds an experiment on other data ({before}); choose another --out",
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

    Args:
        config: the experiment (already checked by its ``__post_init__``).
        out: the experiment's folder; run NAME trains in ``out/runs/NAME``.
        workers: parallel worker processes (``None``: ``config.workers``).
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (``None``: ``config.train.device``).
        progress: progress bars (one per run in sequence; one overall bar with workers).
        log: where progress lines go.

    Raises:
        ConfigError: anything found wrong before training starts.
    """
    from stnlab.training import resolve_device

    t0 = time.perf_counter()
    out, jobs = Path(out), plan(config)
    workers = min(config.workers if workers is None else workers, len(jobs))
    require(workers >= 1, f"workers must be positive, got {workers}")
    try:
        device = resolve_device(device or config.train.device)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    threads = max(1, cpu_count() // workers)
    cfgs = {job.name: train_config(config, job, device, threads) for job in jobs}
    _check_out(config, out)
    for job in jobs:
        diff = _config_diff(out / "runs" / job.name, cfgs[job.name])
        require(
            not diff,
            f"{out / 'runs' / job.name} holds a run of another config "
            f"({'; '.join(diff)}); delete it or choose another --out",
        )
    out.mkdir(parents=True, exist_ok=True)
    data_path = prepare_data(config, out, log)
    reuse = reuses_budgets(config)
    record = {"config": config.to_dict(), "reuse": reuse, "data_path": str(data_path)}
    (out / "experiment.json").write_text(json.dumps(record, indent=2) + "\n")

    todo = [job for job in jobs if not _is_done(out / "runs" / job.name, job)]
    skipped = [job.name for job in jobs if job not in todo]
    for line in _plan_lines(config, jobs, skipped, workers, threads, device):
        log(line)
    sequential = workers == 1 or len(todo) <= 1
    specs = [
        {
            "cfg": cfgs[j.name],
            "out_dir": str(out / "runs" / j.name),
            "data_path": str(data_path),
            "progress": progress and sequential,
        }
        for j in todo
    ]
    if sequential:
        for i, (job, spec) in enumerate(zip(todo, specs, strict=True)):
            log(f"[{i + 1}/{len(todo)}] {job.name}: {job.epochs} epochs")
            _log_done(job, _run_job(spec), out, log)
    else:
        _run_parallel(*_longest_first(config, todo, specs), workers, out, progress, log)

    rows = collect_rows(out, jobs)
    results.write_results(out / "results.csv", rows)
    notes = [f"Data: {config.data.describe()}.", _how(config) + "."]
    title = f"Experiment `{config.name}`: test accuracy"
    (out / "summary.md").write_text(results.summary_markdown(rows, title, notes))
    trained = [job.name for job in todo]
    return ExperimentResult(out, jobs, trained, skipped, rows, reuse, time.perf_counter() - t0)


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


def _log_done(job: Job, summary: dict[str, Any], out: Path, log: Callable[[str], None]) -> None:
    evs = results.read_evaluations(out / "runs" / job.name)
    accs = ", ".join(
        f"{b}: {100 * evs[(b, 'test')]['accuracy']:.1f}%" for b in job.budgets if (b, "test") in evs
    )
    log(f"done {job.name} in {summary['train_seconds']:.0f} s; test accuracy after epochs {accs}")


def _longest_first(config: ExperimentConfig, jobs: list[Job], specs: list[dict]):
    """Jobs and specs ordered by a cost guess (epochs × parameters), so workers end together."""
    from stnlab import models

    size = {
        m: models.count_parameters(models.create(m, **asdict(config.model))) for m in config.models
    }
    order = sorted(range(len(jobs)), key=lambda i: -jobs[i].epochs * size[jobs[i].model])
    return [jobs[i] for i in order], [specs[i] for i in order]


def _run_parallel(todo, specs, workers: int, out: Path, progress: bool, log) -> None:
    """Run jobs in spawned worker processes; one overall bar counts epochs in metrics files."""
    from tqdm.auto import tqdm

    def epochs_done() -> int:
        paths = [out / "runs" / job.name / "metrics.jsonl" for job in todo]
        return sum(p.read_text().count('"event": "train"') for p in paths if p.is_file())

    total = sum(job.epochs for job in todo)
    bar = tqdm(total=total, disable=not progress, unit="epoch", desc="all runs", dynamic_ncols=True)
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(_run_job, spec): job for job, spec in zip(todo, specs, strict=True)}
        pending = set(futures)
        try:
            while pending:
                for f in [f for f in pending if f.done()]:
                    pending.discard(f)
                    summary = f.result()  # re-raises a worker's error here
                    bar.clear()
                    _log_done(futures[f], summary, out, log)
                bar.n = min(total, epochs_done())
                bar.refresh()
                time.sleep(0.5 if pending else 0)
        except BaseException:
            for f in pending:
                f.cancel()
            raise
        finally:
            bar.close()


def collect_rows(out: Path, jobs: Sequence[Job]) -> list[dict[str, Any]]:
    """One row per model × budget × seed, read from each run's metrics.jsonl."""
    rows = []
    for job in jobs:
        evs = results.read_evaluations(out / "runs" / job.name)
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
