"""What passes between the client and the workers: jobs, contexts, outcomes, run-folder files.

Shared by both sides of :mod:`stnlab.experiment.cluster`; imports no Dask.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from stnlab.config.errors import UserError
from stnlab.runs.atomic import atomic_write
from stnlab.runs.records import JSONRecord

__all__ = [
    "INSTALL_HINT",
    "ClusterError",
    "ClusterJob",
    "JobCancelledError",
    "JobContext",
    "JobOutcome",
    "Record",
    "Retry",
    "distributed",
]

INSTALL_HINT = "pip install 'stnlab[cluster]'"
TOKEN_PREFIX = ".stnlab-cluster-"  # the token file in the experiment folder, removed at the end

# What a job sends with ctx.emit: plain (msgpack-able) data, such as a run's record as JSON
# (stnlab.runs.records: a record's to_dict(), parsed back with parse()).
Record = JSONRecord


class ClusterError(UserError, ValueError):
    """A cluster that cannot be used (no Dask, a bad address, no suitable worker)."""


class JobCancelledError(RuntimeError):
    """Raised inside a job whose client cancelled it (Ctrl-C), to stop it at its next event."""


def distributed():
    """The ``distributed`` package, or a one-line error saying how to install it."""
    try:
        import distributed
    except ImportError:
        raise ClusterError(f"running on a Dask cluster needs Dask: {INSTALL_HINT}") from None
    return distributed


@dataclass(frozen=True)
class ClusterJob:
    """One job: a unique ``name``, its run folder on the client, and what the job function gets."""

    name: str
    run_dir: Path  # on the client, inside run_jobs' workdir
    spec: Any  # picklable


@dataclass
class JobContext:
    """What a job function gets on the worker, besides its spec."""

    name: str
    run_dir: Path  # where to write the run folder: the client's own (shared) or a temp folder
    data: Any  # the data set (this worker's one copy), after run_jobs' ``load``
    emit: Callable[[Record], None]  # send one record (an epoch, an evaluation) to the client
    device: str | None  # "cuda:N" for a job holding a GPU slot; None: the spec decides
    shared: bool  # whether run_dir is the client's folder itself


@dataclass
class JobOutcome:
    """How a job ended: its function's return value, or the error that ended it."""

    name: str
    result: Any = None
    error: BaseException | None = None
    traceback: str | None = None  # where ``error`` was raised, as text
    shared: bool | None = None  # trained in place in the shared folder (None: unknown)
    worker: str | None = None  # the address of the worker that ran its last attempt

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class Run:
    """What the worker side needs to know about one run_jobs call (pickled into its tasks)."""

    token_path: str
    token: str
    shared: bool | None  # None: detect; True: insist; False: never in place
    topic: str  # the event topic of this call
    cancel: str  # the name of its cancel Event
    gpu: bool  # whether each job holds a GPU slot
    data: str | None = None  # the name of the Variable holding the pickled data set
    load: Callable[[Any], Any] | None = None  # turns that data into ctx.data
    peek: Callable[[Path], int | None] | None = None  # epochs a run folder holds already


@dataclass(frozen=True)
class Retry:
    """A job begun again because the worker running it was lost (Dask ran its task elsewhere)."""

    name: str
    lost: str  # the address of the worker lost
    worker: str  # the address of the worker that runs it now
    start: int | None  # epochs trained already in the folder it starts from (None: unknown)
    shared: bool  # it trains in the client's own folder (else in a copy sent with its task)

    def describe(self) -> str:
        """One line for the user, such as ``lost the worker running stn-s0
        (tcp://10.0.0.5:40123); resumed it on tcp://10.0.0.6:39001 from its checkpoint
        after epoch 2``."""
        head = f"lost the worker running {self.name} ({self.lost})"
        if self.start is None:
            return f"{head}; started it again on {self.worker}"
        if self.start > 0:
            after = f"from its checkpoint after epoch {self.start}"
            return f"{head}; resumed it on {self.worker} {after}"
        why = "it had no checkpoint yet"
        if not self.shared:
            why = "run folders are not shared: a new worker starts from the folder sent with it"
        return f"{head}; restarted it on {self.worker} from epoch 0 ({why})"


@dataclass
class Reply:
    """What one attempt of a job hands back to the client."""

    result: Any
    error: BaseException | None
    traceback: str | None
    files: dict[str, bytes]  # the run folder, when not trained in place
    shared: bool
    attempt: str  # a random id: events of this attempt carry it
    events: int  # how many records this attempt emitted
    worker: str


# ----------------------------------------------------------------------------- files


def write_token(folder: Path) -> tuple[Path, str]:
    """A fresh token file in ``folder``: (its path, its random content)."""
    token = secrets.token_hex(16)
    path = folder / f"{TOKEN_PREFIX}{token[:12]}"
    with atomic_write(path) as f:
        f.write(token.encode())
    return path, token


def sees_token(path: str, token: str) -> bool:
    """Whether this machine reads ``token`` at ``path``, i.e. shares the client's folder."""
    try:
        return Path(path).read_text() == token
    except (OSError, UnicodeDecodeError):
        return False


def read_folder(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` by relative POSIX path, in the order they were last written.

    The order carries over a run folder's convention that the file written last (summary.json)
    marks a finished run.
    """
    if not folder.is_dir():
        return {}
    paths = [p for p in folder.rglob("*") if p.is_file()]
    paths.sort(key=lambda p: (p.stat().st_mtime_ns, str(p)))
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in paths}


def write_folder(folder: Path, files: Mapping[str, bytes]) -> None:
    """Write ``files`` (relative POSIX path → bytes) into ``folder``, each atomically, in order."""
    for rel, blob in files.items():
        path = PurePosixPath(rel)
        if not path.parts or path.is_absolute() or ".." in path.parts:
            raise ClusterError(f"a job returned a file outside its run folder: {rel!r}")
        with atomic_write(folder.joinpath(*path.parts)) as f:
            f.write(blob)
