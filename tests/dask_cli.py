"""A Dask cluster started as a cluster user starts one: ``dask scheduler`` and ``dask worker``
processes on 127.0.0.1, in a folder of their own (not the tests' working directory).

Used by the ``dask_cli`` fixture (conftest.py), shared by every test file that needs it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parent


@dataclass
class DaskCLI:
    """A running scheduler with its workers: the address to give ``--cluster``, a client of
    the test's own, and the folder the processes run in."""

    address: str
    client: Any
    folder: Path

    def ready(self, workers: int = 2) -> Any:
        """The client, once ``workers`` workers are connected (a killed one is restarted by
        its nanny, which takes a while)."""
        self.client.wait_for_workers(workers, timeout=120)
        return self.client


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen) -> None:
    """End a process started here, with the worker processes its nanny started."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)


@contextmanager
def dask_cli(folder: Path, workers: int = 2) -> Iterator[DaskCLI]:
    """``dask scheduler`` and ``workers`` × ``dask worker --nworkers 1 --nthreads 1``, run in
    ``folder`` with tests/ on their path (the toy jobs of cluster_jobs.py); stopped after."""
    from stnlab.experiment.cluster import open_client

    dask = Path(sys.executable).with_name("dask")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
    }
    port, procs = free_port(), []
    address = f"tcp://127.0.0.1:{port}"

    def start(name: str, *args: str) -> None:
        with open(folder / f"{name}.log", "wb") as log:
            procs.append(
                subprocess.Popen(
                    [str(dask), *args],
                    cwd=folder,
                    env=env,
                    stdout=log,
                    stderr=log,
                    start_new_session=True,
                )
            )

    try:
        start(
            "scheduler", "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"
        )
        for i in range(workers):
            start(
                f"worker{i}",
                "worker",
                address,
                "--nworkers",
                "1",
                "--nthreads",
                "1",
                "--host",
                "127.0.0.1",
                "--no-dashboard",
                "--local-directory",
                str(folder / f"worker{i}"),
            )
        with open_client(address, connect_timeout=60) as client:
            cluster = DaskCLI(address, client, folder)
            cluster.ready(workers)
            yield cluster
    finally:
        for proc in reversed(procs):
            _stop(proc)


def kill_worker_running(client: Any, name: str) -> int:
    """SIGKILL the worker process that runs the task of job ``name`` (its nanny starts a new
    one); returns the killed pid."""
    processing = client.processing()
    where = [
        w for w, keys in processing.items() if any(str(k).startswith(f"{name}-") for k in keys)
    ]
    assert len(where) == 1, f"job {name} is not running on one worker: {processing}"
    pid = client.run(os.getpid, workers=where)[where[0]]
    os.kill(pid, signal.SIGKILL)
    return pid
