"""The client side: connect to a cluster, submit jobs, follow their events, bring results home."""

from __future__ import annotations

import logging
import os
import pickle
import queue
import time
import traceback
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from stnlab.config.experiment import parse_address
from stnlab.experiment.cluster.jobs import (
    ClusterError,
    ClusterJob,
    JobContext,
    JobOutcome,
    Record,
    Reply,
    Retry,
    Run,
    distributed,
    read_folder,
    sees_token,
    write_folder,
    write_token,
)
from stnlab.experiment.cluster.worker import attempt

__all__ = [
    "CONNECT_CHECK_SECONDS",
    "EVENT_WAIT_SECONDS",
    "LOCAL_DASK_CONFIG",
    "check_reachable",
    "cluster_threads",
    "detect_shared",
    "open_client",
    "parse_address",
    "run_jobs",
]

EVENT_WAIT_SECONDS = 5.0  # how long a finished job's last events may lag behind its result
STOP_WAIT_SECONDS = 60.0  # after an interrupt, how long to wait for running jobs to stop
CONNECT_CHECK_SECONDS = 5.0  # how long check_reachable waits for a scheduler to answer
# A local:N cluster's bookkeeping, made rarer: its scheduler, nannies and workers share this
# machine's cores with the training (Dask's defaults: a 10 ms profiler, 0.5 s system monitor,
# 0.1 s memory monitor), and with the defaults the training steps ran slower than in a plain
# process pool. benchmarks/bench_experiment.py measures it (figures: docs/benchmarks.md);
# docs/scale/cluster.md gives the same settings for `dask worker`.
LOCAL_DASK_CONFIG = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.system-monitor.interval": "5s",
    "distributed.worker.memory.monitor-interval": "1s",
}


class _SlowExit(logging.Filter):
    """Drops the nanny's warning that a worker took over 4 s to exit (it is then killed):
    a worker that imported torch often does on a busy machine, at the end of ``local:N``."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "still alive after" not in record.getMessage()


@contextmanager
def _quiet_local() -> Iterator[None]:
    """A ``local:N`` cluster without noise that asks nothing of the user: the slow-exit
    warning, and the notice that another Dask on this machine holds the HTTP port (8787)."""
    logger, only = logging.getLogger("distributed.nanny"), _SlowExit()
    logger.addFilter(only)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Port 8787 is already in use", UserWarning)
            yield
    finally:
        logger.removeFilter(only)


@contextmanager
def _environ_kept() -> Iterator[None]:
    """Give this process its environment back after a ``local:N`` cluster: Dask's nanny sets
    its workers' variables (MALLOC_TRIM_THRESHOLD_, OMP_NUM_THREADS=1, ...) in the parent's
    ``os.environ``, where every process started later would inherit them (a local pool's
    workers would then train up to 1.7× slower, see stnlab.experiment.cluster.worker)."""
    before = dict(os.environ)
    try:
        yield
    finally:
        for key in set(os.environ) - set(before):
            del os.environ[key]
        os.environ.update(before)


@contextmanager
def open_client(address: str, connect_timeout: float = 30.0) -> Iterator[Any]:
    """A ``dask.distributed.Client`` for ``address`` (see :func:`parse_address`), closed after.

    ``local:N`` starts a ``LocalCluster`` of N single-thread worker processes on 127.0.0.1,
    without a dashboard, and stops it at the end.

    Raises:
        ClusterError: no Dask installed, a bad address, or no scheduler answering there.
    """
    kind, where = parse_address(address)
    dist = distributed()
    if kind == "local":
        import dask

        with (
            _environ_kept(),
            _quiet_local(),
            dask.config.set(LOCAL_DASK_CONFIG),
            dist.LocalCluster(
                n_workers=where,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address=None,
            ) as cluster,
            dist.Client(cluster) as client,
        ):
            yield client
        return
    target = {"scheduler_file": where} if kind == "file" else {"address": where}
    try:
        client = dist.Client(**target, timeout=connect_timeout)
    except (OSError, TimeoutError) as exc:
        raise _unreachable(kind, where, exc, connect_timeout) from None
    with client:
        yield client


def _unreachable(kind: str, where: str, exc: BaseException, timeout: float) -> ClusterError:
    """The one line for a scheduler that did not answer: where, why, and what to check."""
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if first.startswith("Timed out"):  # Dask's own text repeats the address
        first = f"no answer within {timeout:g} s"
    if kind == "file":
        return ClusterError(
            f"cannot reach the Dask scheduler of the scheduler file {where}: {first}; check "
            "that the scheduler that wrote it is still running and that this machine can "
            "reach the address it holds"
        )
    return ClusterError(
        f"cannot reach the Dask scheduler at {where}: {first}; check that `dask scheduler` "
        "runs there and that this machine can reach that host and port (address, firewall)"
    )


def check_reachable(address: str, timeout: float = CONNECT_CHECK_SECONDS) -> None:
    """Check, before anything is written, that a cluster can be used: Dask is installed and
    a scheduler at ``address`` (or in its scheduler file) answers within ``timeout`` seconds.

    ``local:N`` is started later by :func:`open_client`; only Dask is checked for it.

    Raises:
        ClusterError: no Dask, a bad address, or no scheduler answering there, in one line.
    """
    kind, _ = parse_address(address)
    distributed()
    if kind != "local":
        with open_client(address, connect_timeout=timeout):
            pass


def cluster_threads(client: Any) -> int:
    """How many jobs the cluster runs at once now: the sum of its workers' threads."""
    return sum(client.nthreads().values())


def _workers_see(client: Any, path: Path, token: str) -> bool | None:
    """True if every worker now connected reads the token; None with no workers (or no answer)."""
    try:
        seen = client.run(sees_token, str(path), token)
    except Exception:  # a worker lost while asked: each job decides for itself anyway
        return None
    return all(seen.values()) if seen else None


def detect_shared(client: Any, workdir: str | Path) -> bool | None:
    """Whether the workers now connected share ``workdir``'s filesystem (None: no workers).

    The client writes a random token into ``workdir``; a worker shares the folder if it
    reads the same token at the same path (so a folder mounted elsewhere counts as not shared).
    """
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    path, token = write_token(workdir)
    try:
        return _workers_see(client, path, token)
    finally:
        path.unlink(missing_ok=True)


def _check_jobs(jobs: Sequence[ClusterJob], workdir: Path) -> None:
    names = [job.name for job in jobs]
    if len(set(names)) != len(names):
        raise ValueError(f"job names repeat: {names}")
    for job in jobs:
        if not Path(job.run_dir).resolve().is_relative_to(workdir):
            raise ValueError(f"run folder {job.run_dir} lies outside {workdir}")


def _check_resources(client: Any, resources: Mapping[str, float] | None) -> None:
    """Refuse resources that no connected worker offers (the jobs would wait forever)."""
    workers = list(client.scheduler_info()["workers"].values())
    for name, amount in (resources or {}).items():
        if workers and not any(w.get("resources", {}).get(name, 0) >= amount for w in workers):
            raise ClusterError(
                f"no worker of the cluster offers {name}={amount:g}; "
                f"start workers with: dask worker ADDRESS --resources {name}=K"
            )


class _Collector:
    """The client's side of a run: receives events, settles finished jobs, cancels on Ctrl-C."""

    def __init__(self, client: Any, tag: str, on_event, on_done, on_retry, event_wait: float):
        self.client, self.on_event, self.on_done = client, on_event, on_done
        self.on_retry = on_retry
        self.tag, self.event_wait = tag, event_wait  # the tag ends each job's task key
        self.events: queue.Queue[Record] = queue.Queue()
        self.counts: Counter[str] = Counter()  # events received per attempt
        self.begun: dict[str, tuple[str, str]] = {}  # job → (its last attempt, that worker)

    def receive(self, event: tuple[float, Record]) -> None:
        """Subscription handler (runs on the client's event-loop thread): queue the message."""
        self.events.put(event[1])

    def drain(self, timeout: float) -> None:
        """Hand queued records to ``on_event`` on this thread, waiting up to ``timeout`` for one."""
        try:
            msg = self.events.get(timeout=timeout)
            while True:
                if "begin" in msg:
                    self.begin(msg)
                else:
                    self.counts[msg["attempt"]] += 1
                    if self.on_event is not None:
                        self.on_event(msg["job"], msg["record"])
                msg = self.events.get_nowait()
        except queue.Empty:
            pass

    def begin(self, msg: dict[str, Any]) -> None:
        """An attempt began; a job's second attempt means that its worker was lost."""
        job, now = msg["job"], (msg["attempt"], msg["begin"])
        before, self.begun[job] = self.begun.get(job), now
        if before is not None and before[0] != now[0] and self.on_retry is not None:
            self.on_retry(Retry(job, before[1], now[1], msg["start"], msg["shared"]))

    def settle(self, future: Any, job: ClusterJob) -> JobOutcome:
        """The outcome of a finished future; a not-shared run's files are written home first."""
        if future.status == "error":  # outside the job: KilledWorker (lost too often)...
            tb = "".join(traceback.format_tb(future.traceback()))
            return JobOutcome(job.name, error=future.exception(), traceback=tb)
        if future.status != "finished":  # cancelled by the scheduler: it restarted or was lost
            lost = f"the Dask scheduler dropped job {job.name} (was it lost?); run again to resume"
            return JobOutcome(job.name, error=RuntimeError(lost))
        reply: Reply = future.result()
        deadline = time.monotonic() + self.event_wait
        while self.counts[reply.attempt] < reply.events and time.monotonic() < deadline:
            self.drain(0.05)
        if not reply.shared:
            write_folder(Path(job.run_dir), reply.files)
        return JobOutcome(
            job.name, reply.result, reply.error, reply.traceback, reply.shared, reply.worker
        )

    def collect(self, futures: dict[Any, ClusterJob], cancel: str) -> dict[str, JobOutcome]:
        """Wait for every future, settling each as it ends; on any interrupt cancel the rest."""
        pending, outcomes = dict(futures), {}
        try:
            while pending:
                self.drain(0.1)
                for future in [f for f in pending if f.done()]:
                    job = pending.pop(future)
                    outcomes[job.name] = self.settle(future, job)
                    future.release()  # the worker drops the reply and its files
                    if self.on_done is not None:
                        self.on_done(outcomes[job.name])
        except BaseException:
            self.cancel(list(pending), cancel)
            raise
        return outcomes

    def cancel(self, futures: list[Any], name: str) -> None:
        """Stop the jobs: queued ones never start, running ones stop at their next event."""
        with suppress(Exception):  # the scheduler may be gone already
            distributed().Event(name, client=self.client).set()
        with suppress(Exception):
            self.client.cancel(futures)
        self.wait_stopped(STOP_WAIT_SECONDS)

    def wait_stopped(self, timeout: float) -> None:
        """Wait until no worker runs a job of this call any more (at most ``timeout`` s): a
        cancelled job still writing its shared folder could spoil the next command's resume."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if not any(self.client.run(_running, self.tag).values()):
                    return
            except Exception:  # the scheduler or the workers are gone: nothing runs there
                return
            time.sleep(0.2)


def _running(tag: str, dask_worker: Any = None) -> int:
    """How many jobs of a run_jobs call (``tag``) this worker's threads run. A cancelled
    task's thread goes on until its job's next cancel check, after Dask forgot the task."""
    return sum(str(key).endswith(f"-{tag}") for key in list(dask_worker.active_threads.values()))


def _share(client: Any, data: Any, name: str) -> None:
    """Store ``data``, pickled, on the scheduler under ``name`` (a Dask Variable).

    Each worker process fetches it once (:mod:`stnlab.experiment.cluster.worker`). Not a scattered
    future: jobs would then go only to the workers holding it, and losing them all would
    cancel the jobs. The scheduler keeps the bytes without unpickling them (no torch there).
    """
    variable = distributed().Variable(name, client=client)
    variable.set(pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL))


def run_jobs(
    client: Any,
    job_fn: Callable[[Any, JobContext], Any],
    jobs: Sequence[ClusterJob],
    *,
    workdir: str | Path,
    data: Any = None,
    load: Callable[[Any], Any] | None = None,
    on_event: Callable[[str, Record], None] | None = None,
    on_done: Callable[[JobOutcome], None] | None = None,
    peek: Callable[[Path], int | None] | None = None,
    on_retry: Callable[[Retry], None] | None = None,
    resources: Mapping[str, float] | None = None,
    shared: bool | None = None,
    event_wait: float = EVENT_WAIT_SECONDS,
) -> list[JobOutcome]:
    """Run ``job_fn(job.spec, ctx)`` for every job on the cluster; one outcome per job, in order.

    Args:
        client: a ``dask.distributed.Client`` (see :func:`open_client`).
        job_fn: an importable function (workers unpickle it by reference); it trains into
            ``ctx.run_dir``, resuming from what it finds there, and sends per-epoch records
            with ``ctx.emit`` (:class:`JobContext`). Its return value is the
            job's ``result``; what it raises is the job's ``error``, reported once, not retried.
        jobs: the jobs, most expensive first (they start in this order).
        workdir: the experiment folder on the client; every ``run_dir`` lies inside it.
        data: kept by the scheduler (pickled), fetched once by each worker process and
            given to every job there as ``ctx.data``.
        load: an importable function run once per worker process on ``data``, whose result
            the jobs get as ``ctx.data`` instead: send a compact form (a compressed file's
            bytes) and unpack it on the workers.
        on_event: called on this thread as ``on_event(job name, record)`` for each record;
            after a lost worker, a resumed job sends the epochs since its checkpoint again.
        on_done: called on this thread with each job's outcome as it ends.
        peek: an importable function run on the worker at the start of each attempt on the
            folder the job trains in: the epochs it holds already (a retry's ``start``).
        on_retry: called on this thread with a :class:`Retry` when a job begins again
            because its worker was lost (say so to the user: ``retry.describe()``).
        resources: what each job holds while it runs, e.g. ``{"GPU": 1}``.
        shared: None detects whether workers share ``workdir``; True insists (a worker that
            does not is an error of its job); False always sends run folders back.
        event_wait: seconds to wait for a finished job's last events before settling it.

    Raises:
        ClusterError: ``resources`` that no connected worker offers.
        KeyboardInterrupt: after cancelling the jobs (their folders stay resumable).
    """
    distributed()  # a missing Dask is a one-line error, before anything is written
    workdir = Path(workdir).resolve()
    _check_jobs(jobs, workdir)
    _check_resources(client, resources)
    workdir.mkdir(parents=True, exist_ok=True)
    token_path, token = write_token(workdir)
    tag = token[:12]  # names this call's Dask objects
    run = Run(
        str(token_path),
        token,
        shared,
        f"stnlab-events-{tag}",
        f"stnlab-cancel-{tag}",
        gpu=bool(resources and resources.get("GPU")),
        data=f"stnlab-data-{tag}" if data is not None else None,
        load=load,
        peek=peek,
    )
    collector = _Collector(client, tag, on_event, on_done, on_retry, event_wait)
    try:
        client.subscribe_topic(run.topic, collector.receive)
        if data is not None:
            _share(client, data, run.data)
        seeded = shared is False or (shared is None and not _workers_see(client, token_path, token))
        futures = _submit(client, job_fn, run, jobs, seeded, resources)
        outcomes = collector.collect(futures, run.cancel)
    finally:
        _clean_up(client, run)
        token_path.unlink(missing_ok=True)
    return [outcomes[job.name] for job in jobs]


def _submit(
    client: Any,
    job_fn: Callable[[Any, JobContext], Any],
    run: Run,
    jobs: Sequence[ClusterJob],
    seeded: bool,
    resources: Mapping[str, float] | None,
) -> dict[Any, ClusterJob]:
    """Submit one task per job, in the given order (longest first); ``seeded``: each task
    carries the files its run folder holds, for a worker that does not see the folder."""
    futures = {}
    for i, job in enumerate(jobs):
        seed = read_folder(Path(job.run_dir)) if seeded else {}
        future = client.submit(
            attempt,
            job_fn,
            run,
            job,
            seed,
            key=f"{job.name}-{run.token[:12]}",
            pure=False,
            resources=resources,
            priority=len(jobs) - i,
        )
        futures[future] = job
    return futures


def _clean_up(client: Any, run: Run) -> None:
    """Forget this call's topic and data on the scheduler (which may be gone already)."""
    with suppress(Exception):
        client.unsubscribe_topic(run.topic)
    if run.data is not None:
        with suppress(Exception):
            distributed().Variable(run.data, client=client).delete()
