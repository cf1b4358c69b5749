"""The worker side of a cluster job: where it trains, on which GPU, and what it sends back.

:func:`attempt` is the function every Dask task runs; a task that Dask runs again after
its worker was lost is a new attempt, with a new id on its events. Each attempt first says
where it begins and after how many epochs (run_jobs' ``peek``), so the client can tell the
user that a job's worker was lost and whether it resumed or started over.

The data set is not a dependency of the job tasks (Dask would then place every job on the
workers holding it, and scattered data lost with its workers cannot be remade). The client
stores it, pickled, in a Dask ``Variable`` on the scheduler; each worker process fetches
it once, when its first job starts, and keeps it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import pickle
import shutil
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from stnlab.experiment.cluster.jobs import (
    ClusterError,
    ClusterJob,
    JobCancelledError,
    JobContext,
    Record,
    Reply,
    Run,
    distributed,
    read_folder,
    sees_token,
    write_folder,
)
from stnlab.experiment.placement import SlotPool, device_for_slot
from stnlab.runs.run_folder import CHECKPOINT, RunDir

__all__ = ["CANCEL_CHECK_SECONDS", "attempt", "checkpoint_epoch"]

CANCEL_CHECK_SECONDS = 1.0  # how often a running job asks whether it was cancelled
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt's parameters, from glibc's malloc.h
_MMAP_THRESHOLD = 32 << 20  # glibc's ceiling for its dynamic mmap threshold on 64 bit

_SLOTS = SlotPool()  # the GPU slots of this worker process
_LOADED: dict[str, Any] = {}  # the data set as this process's jobs get it, by name
_DATA_LOCK = threading.Lock()


@functools.cache
def _unfreeze_malloc() -> bool:
    """Give back glibc's malloc its speed for training in this worker (once per process).

    Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``, and setting it fixes
    glibc's mmap threshold at 128 KiB: every tensor above that is mapped and unmapped anew,
    and the heap is given back to the system after every step. A training step then takes
    about 1.7× as long as in a plain process. Setting both thresholds where glibc's own
    dynamic rule ends (mmap above 32 MiB on 64 bit, trim above twice that) brings the
    speed back. Returns whether it was done (not on other C libraries).
    """
    if "MALLOC_TRIM_THRESHOLD_" not in os.environ or sys.platform != "linux":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        return (
            libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD) == 1
            and libc.mallopt(_M_TRIM_THRESHOLD, 2 * _MMAP_THRESHOLD) == 1
        )
    except (OSError, AttributeError, TypeError):  # no glibc (musl), no libc found
        return False


def _data(run: Run, dist: Any) -> Any:
    """This process's copy of the data set, fetched and loaded once for all its jobs."""
    if run.data is None:
        return None
    with _DATA_LOCK:
        if run.data not in _LOADED:
            data = pickle.loads(dist.Variable(run.data).get())
            _LOADED.clear()  # one data set per process, as the local runner keeps
            _LOADED[run.data] = run.load(data) if run.load is not None else data
        return _LOADED[run.data]


class _Emitter:
    """``ctx.emit``: logs each record as a Dask event; now and then checks for cancellation."""

    def __init__(self, dist: Any, worker: Any, run: Run, name: str):
        self.dist, self.worker, self.run, self.name = dist, worker, run, name
        self.attempt, self.count = uuid.uuid4().hex, 0
        self.checked = time.monotonic()

    def begin(self, start: int | None, shared: bool) -> None:
        """Say that this attempt begins, here, after ``start`` epochs: not a record of the job
        (not counted in ``Reply.events``); a second attempt tells the client its worker was lost."""
        where = self.worker.address
        msg = {"job": self.name, "attempt": self.attempt, "begin": where, "start": start}
        self.worker.log_event(self.run.topic, {**msg, "shared": shared})

    def __call__(self, record: Record) -> None:
        msg = {"job": self.name, "attempt": self.attempt, "record": record}
        self.worker.log_event(self.run.topic, msg)
        self.count += 1
        if time.monotonic() - self.checked >= CANCEL_CHECK_SECONDS:
            self.checked = time.monotonic()
            if self.dist.Event(self.run.cancel).is_set():
                raise JobCancelledError(f"job {self.name} was cancelled by its client")


@contextmanager
def _folder(
    job: ClusterJob, seed: dict[str, bytes], in_place: bool, local_dir: str
) -> Iterator[Path]:
    """The run folder to train in: the shared one, or a temp one seeded and removed after."""
    if in_place:
        yield Path(job.run_dir)
        return
    tmp = Path(tempfile.mkdtemp(prefix="stnlab-job-", dir=local_dir))
    try:
        run_dir = tmp / Path(job.run_dir).name
        run_dir.mkdir()
        write_folder(run_dir, seed)
        yield run_dir
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def _device(gpu: bool) -> Iterator[str | None]:
    """A free GPU of this worker for the job's duration (round-robin over visible GPUs)."""
    if not gpu:
        yield None
        return
    count = torch.cuda.device_count()
    if count == 0:
        raise ClusterError("this worker offers a GPU resource but sees no CUDA device")
    with _SLOTS.slot() as slot:
        yield device_for_slot(slot, count)


def _portable(exc: BaseException) -> BaseException:
    """``exc`` if it survives pickling (to reach the client), else a RuntimeError with its text."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")


def checkpoint_epoch(run_dir: Path) -> int:
    """The epochs a training run's folder holds (its checkpoint's; 0 without one): the ``peek``
    of stnlab's runs on a cluster.

    Raises:
        RunFolderError: a checkpoint that cannot be read (the run itself then says so).
    """
    folder = RunDir(run_dir)
    return folder.load_checkpoint().epoch if folder.file(CHECKPOINT).exists() else 0


def _peek(peek: Callable[[Path], int | None] | None, run_dir: Path) -> int | None:
    """``peek(run_dir)``, or None without one or when it fails (the job itself then will)."""
    try:
        return None if peek is None else peek(run_dir)
    except Exception:
        return None


def attempt(
    job_fn: Callable[[Any, JobContext], Any], run: Run, job: ClusterJob, seed: dict[str, bytes]
) -> Reply:
    """Run one attempt of ``job`` on this worker; an error of the job is returned, not raised.

    ``seed`` holds the files to start a not-shared run folder from. Returning the job's own
    error (rather than raising it) keeps the run folder's files of a failed not-shared job,
    and Dask never retries it; only a lost worker makes Dask run this again.
    """
    dist = distributed()
    worker = dist.get_worker()
    _unfreeze_malloc()
    sees = sees_token(run.token_path, run.token)
    if run.shared and not sees:
        folder = Path(run.token_path).parent
        raise ClusterError(f"worker {worker.address} does not see {folder} (shared was forced)")
    in_place = sees and run.shared is not False
    emit = _Emitter(dist, worker, run, job.name)
    with (
        _folder(job, seed, in_place, worker.local_directory) as run_dir,
        _device(run.gpu) as device,
    ):
        emit.begin(_peek(run.peek, run_dir), in_place)
        try:
            ctx = JobContext(job.name, run_dir, _data(run, dist), emit, device, in_place)
            result, error, tb = job_fn(job.spec, ctx), None, None
        except Exception as exc:
            result, error, tb = None, _portable(exc), traceback.format_exc()
        files = {} if in_place else read_folder(run_dir)
    return Reply(result, error, tb, files, in_place, emit.attempt, emit.count, worker.address)
