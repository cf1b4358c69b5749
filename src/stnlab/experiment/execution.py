"""Where an experiment's runs train: in this process, in local worker processes, or on a
Dask cluster; each way reports the same events.

Every way resumes each run from what its folder holds, feeds one :class:`Reporter`
(the overall progress bar, moved by the runs' per-epoch training records; each run's
summary as it finishes; each failed run's error, once) and lets the other runs go on
when one fails. Interrupting (Ctrl-C, or SIGTERM to this process: see stnlab.cli.app) stops
them all and leaves resumable folders.

* :func:`train_here`: one run after another in this process, each with its own bar.
* :func:`train_in_pool`: spawned worker processes, each with its own device (a GPU slot
  of :func:`stnlab.experiment.placement.local_devices` on CUDA), all loading the data file.
* :func:`train_on_cluster`: Dask (:mod:`stnlab.experiment.cluster`): the data file's bytes go to
  each worker process once; run folders are written in place or sent back.
"""

from __future__ import annotations

import queue
import tempfile
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from stnlab.config import RunConfig
from stnlab.config.errors import UserError
from stnlab.data import load
from stnlab.experiment import cluster
from stnlab.runs import records
from stnlab.runs.records import JSONRecord, Record, RunSummary, TrainRecord
from stnlab.train import train

__all__ = [
    "Failure",
    "Reporter",
    "Task",
    "cluster_job",
    "load_data",
    "load_npz_bytes",
    "train_here",
    "train_in_pool",
    "train_on_cluster",
]

Summary = RunSummary  # a run's summary.json


@dataclass(frozen=True)
class Task:
    """One run to train (or resume) into ``out_dir``; ``done`` epochs were trained before."""

    name: str
    run: RunConfig
    out_dir: Path
    done: int = 0
    data_path: Path | None = None  # its data file (None: the one the caller gives for all)


@dataclass(frozen=True)
class Failure:
    """A run that failed by itself: its one-line error, and the traceback of a bug."""

    name: str
    message: str
    traceback: str | None = None  # None for a user error or a numeric failure

    @classmethod
    def of(cls, name: str, error: BaseException, tb: str | None) -> Failure:
        """A UserError is its message; a numeric failure (an ArithmeticError, such as the
        layer's non-finite θ) is named by its type; anything else is a bug: with traceback."""
        if isinstance(error, UserError):
            return cls(name, str(error))
        first = (str(error).strip().splitlines() or [""])[0]
        message = f"{type(error).__name__}: {first}".rstrip(": ")
        return cls(name, message, None if isinstance(error, ArithmeticError) else tb)


class Reporter:
    """Where every way of training reports: an overall bar, finished runs, failed runs.

    The bar counts each run's highest epoch: after a lost cluster worker, a run resumed
    from its checkpoint sends the epochs since then again, which must not count twice.
    """

    def __init__(
        self,
        tasks: Sequence[Task],
        on_done: Callable[[str, Summary], None],
        log: Callable[[str], None],
        bar: bool,
    ):
        self.on_done, self.log = on_done, log
        self.epochs = {t.name: t.done for t in tasks}
        self.failures: list[Failure] = []
        self.bar = tqdm(
            total=sum(t.run.train.epochs for t in tasks),
            disable=not bar,
            initial=sum(self.epochs.values()),
            unit="epoch",
            desc="all runs",
            dynamic_ncols=True,
        )

    def record(self, name: str, record: Record) -> None:
        """A run's record (metrics.jsonl's line): a training record moves the bar."""
        if isinstance(record, TrainRecord) and record.epoch > self.epochs[name]:
            self.epochs[name] = record.epoch
            self.bar.update(sum(self.epochs.values()) - self.bar.n)

    def event(self, name: str, plain: JSONRecord) -> None:
        """A run's record as a Dask event brings it (:func:`_plain`), parsed for :meth:`record`."""
        self.record(name, records.parse(plain))

    def note(self, line: str) -> None:
        """Log a line under the bar."""
        self.bar.clear()
        self.log(line)

    def done(self, name: str, summary: Summary) -> None:
        self.bar.clear()
        self.on_done(name, summary)

    def failed(self, name: str, error: BaseException, tb: str | None = None) -> None:
        """Report a run's own error once; the other runs go on."""
        failure = Failure.of(name, error, tb)
        self.failures.append(failure)
        self.note(f"failed {name}: {failure.message}")

    def close(self) -> None:
        self.bar.close()


# ----------------------------------------------------------------------------- one run


_DATA: dict[str, Any] = {}  # the data set loaded in this process, by path
_DEVICE: str | None = None  # this pool worker's device (its slot's), set when it starts


def load_data(path: str):
    """The data file at ``path``, loaded once per process."""
    if path not in _DATA:
        _DATA.clear()
        _DATA[path] = load(path)
    return _DATA[path]


def load_npz_bytes(blob: bytes):
    """A data set from the bytes of its ``.npz`` file (run once per cluster worker)."""
    with tempfile.TemporaryDirectory(prefix="stnlab-data-") as tmp:
        path = Path(tmp) / "data.npz"
        path.write_bytes(blob)
        return load(path)  # every array is read into memory before the file goes


def _on(run: RunConfig, device: str) -> RunConfig:
    return replace(run, train=replace(run.train, device=device))


def _train(run: RunConfig, data: Any, out_dir: str | Path, progress: bool, on_record) -> Summary:
    res = train(run, data, out_dir, resume=True, progress=progress, on_record=on_record)
    return res.summary


def _run_job(spec: dict[str, Any]) -> Summary:
    """Train (or resume) one run in this process or a pool worker; returns its summary.

    With a ``queue`` (pool workers), each record goes there as (run name, record).
    """
    run, q, name = spec["run"], spec.get("queue"), Path(spec["out_dir"]).name
    run = _on(run, _DEVICE) if _DEVICE is not None else run
    on_record = [lambda record: q.put((name, record))] if q is not None else []
    return _train(run, load_data(spec["data_path"]), spec["out_dir"], spec["progress"], on_record)


def train_here(
    tasks: Sequence[Task], data_path: Path | None, reporter: Reporter, progress: bool
) -> None:
    """Train the runs one after another in this process, each with its own progress bar."""
    for i, task in enumerate(tasks):
        reporter.log(f"[{i + 1}/{len(tasks)}] {task.name}: {task.run.train.epochs} epochs")
        spec = {
            "run": task.run,
            "out_dir": str(task.out_dir),
            "data_path": str(task.data_path or data_path),
            "progress": progress,
        }
        try:
            summary = _run_job(spec)
        except Exception as exc:  # the run's own error: report it, train the others
            reporter.failed(task.name, exc, traceback.format_exc())
            continue
        reporter.done(task.name, summary)


# ----------------------------------------------------------------------------- worker processes


def _take_slot(slots: Any, devices: Sequence[str]) -> None:
    """Pool initializer: this worker process takes the next free slot and its device."""
    global _DEVICE
    _DEVICE = devices[slots.get()]


def start_pool(devices: Sequence[str], manager: Any) -> ProcessPoolExecutor:
    """Spawned worker processes, one per entry of ``devices``, each training on its own."""
    slots = manager.Queue()
    for i in range(len(devices)):
        slots.put(i)
    return ProcessPoolExecutor(
        len(devices),
        mp_context=get_context("spawn"),
        initializer=_take_slot,
        initargs=(slots, list(devices)),
    )


def worker_device() -> str | None:
    """The device of this pool worker process (None outside the pool)."""
    return _DEVICE


def train_in_pool(
    tasks: Sequence[Task], data_path: Path | None, devices: Sequence[str], reporter: Reporter
) -> None:
    """Train the runs in spawned worker processes, one per entry of ``devices``."""
    with get_context("spawn").Manager() as manager, start_pool(devices, manager) as pool:
        records = manager.Queue()  # (run name, record) from every worker's train()
        futures = {
            pool.submit(
                _run_job,
                {
                    "run": t.run,
                    "out_dir": str(t.out_dir),
                    "data_path": str(t.data_path or data_path),
                    "progress": False,
                    "queue": records,
                },
            ): t
            for t in tasks
        }
        pending = set(futures)
        try:
            while pending:
                _drain(records, reporter)
                for f in [f for f in pending if f.done()]:
                    pending.discard(f)
                    _settle(f, futures[f].name, reporter)
        except BaseException:
            for f in pending:
                f.cancel()
            _stop_workers(pool)
            raise


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """End the pool's worker processes now, so that no run goes on training after an
    interrupt (Ctrl-C reaches them too, a SIGTERM sent to this process alone does not);
    each run's folder keeps its last checkpoint and resumes from it."""
    terminate = getattr(pool, "terminate_workers", None)  # Python 3.14+
    if terminate is not None:
        terminate()
        return
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        process.terminate()


def _settle(future: Any, name: str, reporter: Reporter) -> None:
    try:
        summary = future.result()
    except Exception as exc:  # the worker's error (its traceback is chained to it)
        reporter.failed(name, exc, "".join(traceback.format_exception(exc)))
        return
    reporter.done(name, summary)


def _drain(records: Any, reporter: Reporter, wait: float = 0.2) -> None:
    """Hand the records waiting in the queue to the reporter."""
    try:
        item = records.get(timeout=wait)
        while True:
            reporter.record(*item)
            item = records.get_nowait()
    except queue.Empty:
        pass


# ----------------------------------------------------------------------------- a Dask cluster


def _plain(record: Record) -> JSONRecord:
    """The record as Dask's event log carries it: plain JSON data (Python numbers, strings
    and lists), parsed back on the client by :meth:`Reporter.event`."""
    return record.to_dict()


def cluster_job(spec: dict[str, Any], ctx: Any) -> Summary:
    """One run on a Dask worker (:class:`~stnlab.experiment.cluster.JobContext`): resumes from
    whatever
    ``ctx.run_dir`` holds, on the worker's GPU slot if it holds one."""
    run = _on(spec["run"], ctx.device) if ctx.device is not None else spec["run"]
    return _train(run, ctx.data, ctx.run_dir, False, [lambda r: ctx.emit(_plain(r))])


def cluster_device(client: Any, device: str) -> tuple[str, dict[str, int] | None]:
    """The device the runs ask for on the cluster, and the resources each job holds.

    ``auto`` is CUDA when some worker now connected offers a ``GPU`` resource, else CPU;
    a CUDA run holds one unit of ``GPU`` and trains on that slot's GPU.
    """
    if device == "auto":
        workers = client.scheduler_info()["workers"].values()
        device = "cuda" if any(w.get("resources", {}).get("GPU", 0) for w in workers) else "cpu"
    return device, ({"GPU": 1} if device.startswith("cuda") else None)


def train_on_cluster(
    tasks: Sequence[Task],
    data_path: Path | None,
    address: str,
    shared: bool | None,
    workdir: Path,
    reporter: Reporter,
) -> None:
    """Train the runs on the Dask cluster at ``address`` (see
    :func:`stnlab.experiment.cluster.open_client`).

    ``shared``: None detects whether the workers see ``workdir``; True insists; False has
    every run folder sent back. The runs' own device setting decides CPU or GPU.
    """
    with cluster.open_client(address) as client:
        device, resources = cluster_device(client, tasks[0].run.train.device)
        where = {True: "written in place", False: "sent back"}
        found = cluster.detect_shared(client, workdir) if shared is None else shared
        reporter.note(
            f"Dask cluster {address}: {cluster.cluster_threads(client)} worker threads "
            f"now, runs on {device}, run folders "
            f"{where.get(found, 'written in place where workers see them')}"
        )

        def settle(outcome: cluster.JobOutcome) -> None:
            if outcome.ok:
                reporter.done(outcome.name, outcome.result)
            else:
                reporter.failed(outcome.name, outcome.error, outcome.traceback)

        groups: dict[Path, list[Task]] = {}  # one data set on the workers at a time
        for t in tasks:
            groups.setdefault(Path(t.data_path or data_path), []).append(t)
        for path, group in groups.items():
            cluster.run_jobs(
                client,
                cluster_job,
                [cluster.ClusterJob(t.name, t.out_dir, {"run": _on(t.run, device)}) for t in group],
                workdir=workdir,
                data=path.read_bytes(),
                load=load_npz_bytes,
                on_event=reporter.event,
                on_done=settle,
                peek=cluster.checkpoint_epoch,
                on_retry=lambda retry: reporter.note(retry.describe()),
                resources=resources,
                shared=shared,
            )
