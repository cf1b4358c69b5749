"""A toy job for the cluster tests: trains nothing, but behaves as a training run does.

It writes a run folder (config, one metrics line per epoch, a checkpoint after each
epoch, a summary last), resumes from its checkpoint, emits one record per epoch, and
can be told to sleep per epoch or to fail at an epoch. Every attempt appends a line to
``spec["log"]`` when it begins (job, pid, start epoch) and when it ends, however it
ends (job, pid, last epoch), so tests can count attempts, find the process running a
job and see that it stopped. Imported by the workers (tests/ is on their path).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from stnlab.experiment.cluster import JobContext


class Payload:
    """A data set stand-in that appends a line to ``counter`` each time it is unpickled."""

    def __init__(self, values: list[int], counter: str):
        self.values, self.counter = values, counter

    def __reduce__(self):
        return (_rebuild, (self.values, self.counter))


def _rebuild(values: list[int], counter: str) -> Payload:
    with open(counter, "a") as f:
        f.write(f"{os.getpid()}\n")
    return Payload(values, counter)


def load_payload(payload: Payload) -> Payload:
    """A ``load`` for run_jobs: logs each call to COUNTER.loads; doubles the values."""
    with open(payload.counter + ".loads", "a") as f:
        f.write(f"{os.getpid()}\n")
    return Payload([2 * v for v in payload.values], payload.counter)


def toy_job(spec: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """``spec``: epochs, seed, log; optional sleep (s per epoch), fail_at (epoch)."""
    run = ctx.run_dir
    run.mkdir(parents=True, exist_ok=True)
    ckpt = run / "checkpoint.txt"
    start = int(ckpt.read_text()) if ckpt.exists() else 0
    _log(spec["log"], "begin", ctx.name, start)
    try:
        return _epochs(spec, ctx, start)
    finally:
        _log(spec["log"], "end", ctx.name, int(ckpt.read_text()) if ckpt.exists() else 0)


def toy_peek(run_dir: Path) -> int:
    """A ``peek`` for run_jobs: the epochs the toy's checkpoint holds (0 without one)."""
    ckpt = run_dir / "checkpoint.txt"
    return int(ckpt.read_text()) if ckpt.exists() else 0


def _log(path: str, what: str, name: str, epoch: int) -> None:
    with open(path, "a") as f:
        f.write(f"{what} {name} {os.getpid()} {epoch}\n")


def _epochs(spec: dict[str, Any], ctx: JobContext, start: int) -> dict[str, Any]:
    run, ckpt = ctx.run_dir, ctx.run_dir / "checkpoint.txt"
    if start == 0:
        (run / "config.json").write_text(json.dumps({"seed": spec["seed"]}))
        (run / "metrics.jsonl").write_text("")
    for epoch in range(start + 1, spec["epochs"] + 1):
        time.sleep(spec.get("sleep", 0))
        if epoch == spec.get("fail_at"):
            raise ValueError(f"bad config on purpose, at epoch {epoch}")
        record = {"event": "train", "epoch": epoch, "loss": 1.0 / (epoch + spec["seed"])}
        with open(run / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        ckpt.write_text(str(epoch))
        ctx.emit(record)
    data_sum = sum(ctx.data.values) if ctx.data is not None else None
    summary = {"seed": spec["seed"], "epochs": spec["epochs"], "data_sum": data_sum}
    (run / "summary.json").write_text(json.dumps(summary))
    return {**summary, "run_dir": str(run), "device": ctx.device, "shared": ctx.shared}


def attempts(log: str | Path, what: str = "begin") -> list[tuple[str, int, int]]:
    """The attempts logged so far: (job name, pid, start epoch); with ``what="end"``, the
    attempts that ended: (job name, pid, last checkpointed epoch)."""
    path = Path(log)
    lines = path.read_text().splitlines() if path.exists() else []
    rows = [line.split() for line in lines]
    return [(name, int(pid), int(epoch)) for kind, name, pid, epoch in rows if kind == what]
