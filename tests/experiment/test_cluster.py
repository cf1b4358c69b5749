"""The Dask executor on real clusters on 127.0.0.1: a LocalCluster (``local:2``) and a
scheduler and two workers started with the ``dask`` commands a cluster user types.

The jobs are the toy of tests/cluster_jobs.py (it writes a run folder, resumes from its
checkpoint, emits one record per epoch, and logs each attempt), so these tests check the
executor, not training.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stnlab.config import ConfigError
from stnlab.experiment.cluster import (
    INSTALL_HINT,
    ClusterError,
    ClusterJob,
    Retry,
    check_reachable,
    detect_shared,
    open_client,
    parse_address,
    run_jobs,
)
from stnlab.experiment.cluster import jobs as cjobs
from stnlab.experiment.cluster import worker as cworker
from stnlab.experiment.cluster.client import LOCAL_DASK_CONFIG

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))  # the workers of local:2 inherit this path
from cluster_jobs import Payload, attempts, load_payload, toy_job, toy_peek  # noqa: E402
from dask_cli import free_port  # noqa: E402


def _jobs(workdir: Path, log: Path, n: int, **spec) -> list[ClusterJob]:
    return [
        ClusterJob(f"job{i}", workdir / "runs" / f"job{i}", {"seed": i, "log": str(log), **spec})
        for i in range(n)
    ]


class _Events:
    """on_event: the epochs each job reported, in arrival order."""

    def __init__(self):
        self.epochs: dict[str, list[int]] = {}

    def __call__(self, name: str, record: dict) -> None:
        self.epochs.setdefault(name, []).append(record["epoch"])


def _wait_until(ok, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not ok():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.1)


# ----------------------------------------------------------------------------- clusters


@pytest.fixture(scope="module")
def local_client():
    pytest.importorskip("distributed")
    with open_client("local:2") as client:
        yield client


@pytest.fixture
def cli_client(dask_cli):
    """The client of ``dask scheduler`` and two ``dask worker`` processes, the workers in
    another folder (conftest.py's session-wide ``dask_cli``)."""
    return dask_cli.ready()


# ----------------------------------------------------------------------------- without a cluster


def test_normal_path_imports_no_dask():
    code = (
        "import sys, stnlab, stnlab.cli.app, stnlab.experiment.runner, "
        "stnlab.cli.commands.experiment, "
        "stnlab.experiment.cluster, stnlab.experiment.placement\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed'))\n"
        "print(bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_missing_dask_is_one_line_saying_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "distributed", None)  # `import distributed` fails
    with pytest.raises(ClusterError) as info, open_client("local:2"):
        pass
    assert INSTALL_HINT in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ClusterError, match="stnlab\\[cluster\\]"):
        run_jobs(None, toy_job, [], workdir=tmp_path / "exp")
    assert not (tmp_path / "exp").exists()  # nothing written


@pytest.mark.parametrize(
    ("address", "parsed"),
    [
        ("local:3", ("local", 3)),
        ("tcp://10.0.0.5:8786", ("scheduler", "tcp://10.0.0.5:8786")),
        ("tls://head:8786", ("scheduler", "tls://head:8786")),
    ],
)
def test_parse_address(address, parsed):
    assert parse_address(address) == parsed


def test_parse_address_scheduler_file(tmp_path):
    path = tmp_path / "scheduler.json"
    path.write_text("{}")
    assert parse_address(str(path)) == ("file", str(path))


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("local:0", "positive number of workers"),
        ("local:two", "positive number of workers"),
        ("headnode:8786", "use local:N, tcp://HOST:PORT"),
        ("/nowhere/scheduler.json", "no such scheduler file"),
    ],
)
def test_parse_address_refuses(address, message):
    with pytest.raises(ConfigError, match=message):
        parse_address(address)


def test_unreachable_scheduler_is_one_line():
    pytest.importorskip("distributed")
    address = f"tcp://127.0.0.1:{free_port()}"  # nothing listens there
    with (
        pytest.raises(ClusterError, match="cannot reach the Dask scheduler") as info,
        open_client(address, connect_timeout=1),
    ):
        pass
    assert "\n" not in str(info.value)


def test_reachability_check_names_the_address_and_what_to_check():
    pytest.importorskip("distributed")
    address = f"tcp://127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(ClusterError, match=f"cannot reach the Dask scheduler at {address}") as info:
        check_reachable(address, timeout=1)
    assert "\n" not in str(info.value)
    assert "check that `dask scheduler` runs there" in str(info.value)
    check_reachable("local:2")  # started later by open_client: nothing to reach now


@pytest.mark.parametrize(
    ("retry", "line"),
    [
        (
            Retry("job0", "tcp://a:1", "tcp://b:2", 2, True),
            "lost the worker running job0 (tcp://a:1); resumed it on tcp://b:2 "
            "from its checkpoint after epoch 2",
        ),
        (
            Retry("job0", "tcp://a:1", "tcp://b:2", 0, True),
            "lost the worker running job0 (tcp://a:1); restarted it on tcp://b:2 from epoch 0 "
            "(it had no checkpoint yet)",
        ),
        (
            Retry("job0", "tcp://a:1", "tcp://b:2", 0, False),
            "restarted it on tcp://b:2 from epoch 0 (run folders are not shared",
        ),
        (Retry("job0", "tcp://a:1", "tcp://b:2", None, True), "started it again on tcp://b:2"),
    ],
)
def test_a_retry_says_where_and_from_which_epoch(retry, line):
    assert line in retry.describe() and "\n" not in retry.describe()


def test_bad_job_lists_are_refused(tmp_path):
    pytest.importorskip("distributed")
    job = ClusterJob("a", tmp_path / "exp" / "runs" / "a", {})
    with pytest.raises(ValueError, match="names repeat"):
        run_jobs(None, toy_job, [job, job], workdir=tmp_path / "exp")
    outside = ClusterJob("b", tmp_path / "elsewhere" / "b", {})
    with pytest.raises(ValueError, match="lies outside"):
        run_jobs(None, toy_job, [outside], workdir=tmp_path / "exp")


def test_token_is_seen_only_with_the_same_content_at_the_same_path(tmp_path):
    path, token = cjobs.write_token(tmp_path)
    assert cjobs.sees_token(str(path), token)
    assert not cjobs.sees_token(str(path), token[::-1])
    assert not cjobs.sees_token(str(tmp_path / "other" / path.name), token)


def test_folder_files_travel_in_write_order(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    for i, name in enumerate(["summary.json", "sub/a.bin", "config.json"]):  # written last first
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(name.encode() * 3)
        os.utime(src / name, ns=(10**18 - i * 10**9, 10**18 - i * 10**9))
    files = cjobs.read_folder(src)
    assert list(files) == ["config.json", "sub/a.bin", "summary.json"]
    cjobs.write_folder(dst, files)
    assert cjobs.read_folder(dst).keys() == files.keys()
    assert all((dst / k).read_bytes() == v for k, v in files.items())


@pytest.mark.parametrize("name", ["../escape", "/abs/path", ""])
def test_returned_files_stay_inside_the_run_folder(tmp_path, name):
    with pytest.raises(ClusterError, match="outside its run folder"):
        cjobs.write_folder(tmp_path / "run", {name: b"x"})


def test_gpu_jobs_take_round_robin_slots_of_the_visible_gpus(monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with cworker._device(True) as a, cworker._device(True) as b, cworker._device(True) as c:
        assert (a, b, c) == ("cuda:0", "cuda:1", "cuda:0")
    with cworker._device(True) as again:
        assert again == "cuda:0"  # slots are given back
    with cworker._device(False) as none:
        assert none is None
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    with pytest.raises(ClusterError, match="sees no CUDA device"), cworker._device(True):
        pass


# ----------------------------------------------------------------------------- a LocalCluster


def test_local_cluster_runs_jobs_in_place_with_data_sent_once(local_client, tmp_path):
    workdir, log, counter = tmp_path / "exp", tmp_path / "log", tmp_path / "unpickled"
    jobs, events, done, retries = _jobs(workdir, log, 5, epochs=3), _Events(), [], []
    outcomes = run_jobs(
        local_client,
        toy_job,
        jobs,
        workdir=workdir,
        on_event=events,
        data=Payload([1, 2, 3], str(counter)),
        load=load_payload,
        on_done=done.append,
        peek=toy_peek,
        on_retry=retries.append,
    )
    assert not retries  # no worker was lost
    assert [o.name for o in outcomes] == [j.name for j in jobs]
    assert sorted(o.name for o in done) == sorted(j.name for j in jobs)
    for job, outcome in zip(jobs, outcomes, strict=True):
        assert outcome.ok and outcome.shared and outcome.result["shared"]
        assert outcome.result["run_dir"] == str(job.run_dir.resolve())
        assert outcome.result["data_sum"] == 12  # the loaded data
        assert json.loads((job.run_dir / "summary.json").read_text())["seed"] == job.spec["seed"]
        assert events.epochs[job.name] == [1, 2, 3]
    assert len(counter.read_text().split()) <= 2 < len(jobs)  # once per worker, not per job
    assert len(Path(f"{counter}.loads").read_text().split()) <= 2  # loaded once per worker
    assert not list(workdir.glob(".stnlab-cluster-*"))  # the token is removed


def test_workers_get_back_the_usual_malloc(local_client):
    """Dask's MALLOC_TRIM_THRESHOLD_ freezes glibc's mmap threshold; jobs raise it again."""
    if sys.platform != "linux":
        pytest.skip("glibc only")
    env = local_client.run(lambda: "MALLOC_TRIM_THRESHOLD_" in os.environ)
    assert all(env.values())  # the reason: Dask's nanny sets it
    assert all(local_client.run(cworker._unfreeze_malloc).values())


def test_failing_job_is_reported_once_and_the_others_finish(local_client, tmp_path):
    workdir, log = tmp_path / "exp", tmp_path / "log"
    jobs = _jobs(workdir, log, 3, epochs=3)
    jobs[1] = ClusterJob("bad", workdir / "runs" / "bad", {**jobs[1].spec, "fail_at": 2})
    outcomes = run_jobs(local_client, toy_job, jobs, workdir=workdir)
    bad = outcomes[1]
    assert isinstance(bad.error, ValueError) and "bad config on purpose" in str(bad.error)
    assert "toy_job" in bad.traceback
    assert [o.ok for o in outcomes] == [True, False, True]
    assert [a[0] for a in attempts(log)].count("bad") == 1  # not retried
    assert (jobs[0].run_dir / "summary.json").is_file()
    assert (jobs[2].run_dir / "summary.json").is_file()


def test_gpu_jobs_are_refused_by_a_cluster_without_gpus(local_client, tmp_path):
    jobs = _jobs(tmp_path / "exp", tmp_path / "log", 1, epochs=1)
    with pytest.raises(ClusterError, match="offers GPU=1"):
        run_jobs(local_client, toy_job, jobs, workdir=tmp_path / "exp", resources={"GPU": 1})


def _kill_at(log: Path, name: str, epoch: int, killed: list[int], events: _Events):
    """on_event that SIGKILLs the worker process running ``name`` when it reports ``epoch``."""

    def on_event(job: str, record: dict) -> None:
        events(job, record)
        if job == name and record["epoch"] == epoch and not killed:
            killed.append([pid for n, pid, _ in attempts(log) if n == name][-1])
            os.kill(killed[-1], signal.SIGKILL)

    return on_event


def test_losing_every_worker_not_shared_costs_no_result(local_client, tmp_path):
    """Both workers die while both run a job: the data set and every job come through."""
    local_client.wait_for_workers(2, timeout=60)
    workdir, log, counter, killed = tmp_path / "exp", tmp_path / "log", tmp_path / "n", []
    jobs, events, retries = _jobs(workdir, log, 2, epochs=5, sleep=0.2), _Events(), []

    def kill_all(name: str, record: dict) -> None:
        events(name, record)
        running = {n: pid for n, pid, _ in attempts(log)}
        if len(running) == 2 and not killed:  # each job has begun, on its own worker
            killed.extend(running.values())
            for pid in killed:
                os.kill(pid, signal.SIGKILL)

    outcomes = run_jobs(
        local_client,
        toy_job,
        jobs,
        workdir=workdir,
        shared=False,
        data=Payload([4], str(counter)),
        on_event=kill_all,
        peek=toy_peek,
        on_retry=retries.append,
    )
    assert len(set(killed)) == 2 and all(o.ok and o.shared is False for o in outcomes)
    # Each job's loss is told once: it started over, not in the client's folder.
    assert sorted(r.name for r in retries) == [j.name for j in jobs]
    assert all(r.start == 0 and r.shared is False and r.lost != r.worker for r in retries)
    assert all("restarted it on" in r.describe() for r in retries)
    assert all(o.result["data_sum"] == 4 for o in outcomes)  # the data set was sent again
    for job in jobs:
        tries = [a for a in attempts(log) if a[0] == job.name]
        assert len(tries) == 2 and tries[1][1] not in killed
        assert tries[1][2] == 0  # without a shared folder the retry starts over
        run = job.run_dir  # written home from the returned files
        assert (run / "checkpoint.txt").read_text() == "5"
        assert len((run / "metrics.jsonl").read_text().splitlines()) == 5
        assert set(events.epochs[job.name]) == {1, 2, 3, 4, 5}


def test_interrupt_cancels_the_jobs_and_leaves_them_resumable(local_client, tmp_path):
    local_client.wait_for_workers(2, timeout=60)
    workdir, log = tmp_path / "exp", tmp_path / "log"
    jobs = _jobs(workdir, log, 3, epochs=40, sleep=0.1)

    def interrupt(name: str, record: dict) -> None:
        if record["epoch"] == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_jobs(local_client, toy_job, jobs, workdir=workdir, on_event=interrupt)
    # The running jobs stop soon (at their next event after the cancel check); none finishes.
    _wait_until(lambda: len(attempts(log, "end")) == len(attempts(log)))
    stopped = {name: epoch for name, _, epoch in attempts(log, "end")}
    assert len(stopped) == 2 and all(0 < e < 40 for e in stopped.values())
    assert not list(workdir.glob("runs/*/summary.json"))
    assert not list(workdir.glob(".stnlab-cluster-*"))

    first = len(attempts(log))
    outcomes = run_jobs(local_client, toy_job, jobs, workdir=workdir)
    assert all(o.ok for o in outcomes)
    resumed = {name: start for name, _, start in attempts(log)[first:]}
    assert resumed == {j.name: stopped.get(j.name, 0) for j in jobs}


# ---------------------------------------------------------------------------- dask scheduler/worker


def test_cli_cluster_not_shared_forced_returns_run_folders(cli_client, tmp_path):
    cli_client.wait_for_workers(2, timeout=60)
    workdir, log, counter = tmp_path / "exp", tmp_path / "log", tmp_path / "unpickled"
    jobs, events = _jobs(workdir, log, 4, epochs=3), _Events()
    outcomes = run_jobs(
        cli_client,
        toy_job,
        jobs,
        workdir=workdir,
        shared=False,
        data=Payload([5, 6], str(counter)),
        on_event=events,
    )
    for job, outcome in zip(jobs, outcomes, strict=True):
        assert outcome.ok and outcome.shared is False
        assert not Path(outcome.result["run_dir"]).is_relative_to(workdir)  # trained elsewhere
        assert json.loads((job.run_dir / "summary.json").read_text()) == {
            "seed": job.spec["seed"],
            "epochs": 3,
            "data_sum": 11,
        }
        assert (job.run_dir / "checkpoint.txt").read_text() == "3"
        assert events.epochs[job.name] == [1, 2, 3]
    assert len({o.worker for o in outcomes}) == 2  # the data set does not pin jobs to a worker
    assert len(counter.read_text().split()) == 2  # one copy per worker for four jobs


def test_cli_cluster_shared_is_detected_and_trains_in_place(cli_client, tmp_path):
    cli_client.wait_for_workers(2, timeout=60)
    workdir, log = tmp_path / "exp", tmp_path / "log"
    assert detect_shared(cli_client, workdir) is True
    jobs = _jobs(workdir, log, 3, epochs=2)
    outcomes = run_jobs(cli_client, toy_job, jobs, workdir=workdir)
    assert all(o.ok and o.shared for o in outcomes)
    assert [o.result["run_dir"] for o in outcomes] == [str(j.run_dir.resolve()) for j in jobs]


def test_cli_cluster_lost_worker_resumes_from_its_checkpoint(cli_client, tmp_path):
    cli_client.wait_for_workers(2, timeout=60)
    workdir, log, killed, events, retries = tmp_path / "exp", tmp_path / "log", [], _Events(), []
    jobs = _jobs(workdir, log, 2, epochs=6, sleep=0.2)
    outcomes = run_jobs(
        cli_client,
        toy_job,
        jobs,
        workdir=workdir,
        on_event=_kill_at(log, "job0", 2, killed, events),
        peek=toy_peek,
        on_retry=retries.append,
    )
    assert killed and all(o.ok and o.shared for o in outcomes)
    tries = [a for a in attempts(log) if a[0] == "job0"]
    assert len(tries) == 2 and tries[1][1] != killed[0]
    assert tries[1][2] >= 2  # resumed from the checkpoint the killed attempt left
    # The loss is told once, with the epoch the new attempt really started from.
    (retry,) = retries
    assert retry.name == "job0" and retry.shared and retry.lost != retry.worker
    assert retry.start == tries[1][2]
    assert f"from its checkpoint after epoch {tries[1][2]}" in retry.describe()
    assert (jobs[0].run_dir / "checkpoint.txt").read_text() == "6"
    assert set(events.epochs["job0"]) == set(range(1, 7))
    assert [a[0] for a in attempts(log)].count("job1") == 1


def _worker_config(keys: list[str]) -> list:
    import dask

    return [dask.config.get(k) for k in keys]


def test_local_workers_keep_their_bookkeeping_rare(local_client):
    """local:N's workers run with LOCAL_DASK_CONFIG (they share this machine's cores)."""
    keys = list(LOCAL_DASK_CONFIG)
    got = local_client.run(_worker_config, keys)
    assert len(got) == 2 and all(v == list(LOCAL_DASK_CONFIG.values()) for v in got.values())
