"""An experiment folder: its file names and formats, written (atomically) and read here only.

    experiment.json   the config, whether runs are reused across budgets, the data file
    data.npz          the data set every run trains on (when the config generates it)
    data-HASH.npz     the data set of the grid's cells whose data differs (one per data config)
    runs/NAME/        one training run each (:class:`stnlab.runs.run_folder.RunDir`)
    results.csv       one row per model × budget × seed (× cell: a column per axis first)
    grid.csv          per cell of the grid (one without axes) and design, the test error
                      after the last budget and the error over the first design's, with
                      their 95% intervals
    summary.md        test accuracy per model and budget
    report.html       the report, with its figures in figures/NAME.png

Example:
    >>> ExperimentDir("runs/demo").run("stn-s0")
    RunDir('runs/demo/runs/stn-s0')
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from stnlab.config import DataConfig
from stnlab.config.errors import ConfigError, RunFolderError
from stnlab.runs.atomic import atomic_write
from stnlab.runs.run_folder import RunDir

__all__ = ["GRID_COLUMNS", "RESULT_COLUMNS", "ExperimentDir", "axes_of"]

RECORD, RESULTS, SUMMARY, REPORT, DATA, GRID = (
    "experiment.json",
    "results.csv",
    "summary.md",
    "report.html",
    "data.npz",
    "grid.csv",
)
# grid.csv: the axes' columns, then these (fractions; the ratio is empty for the first design).
GRID_COLUMNS = (
    "model",
    "epochs",
    "error",
    "error_low",
    "error_high",
    "ratio",
    "ratio_low",
    "ratio_high",
)
# results.csv: the protocol's columns, then the run folder each row comes from.
RESULT_COLUMNS = (
    "model",
    "epochs",
    "seed",
    "valid_accuracy",
    "test_accuracy",
    "train_seconds",
    "precision",  # float32, bfloat16 or float16; empty in files written before it was
)
_TYPES = {
    "epochs": int,
    "seed": int,
    "valid_accuracy": float,
    "test_accuracy": float,
    "train_seconds": float,
}
_RERUN = "run `stnlab experiment` on this folder again to rewrite it (finished runs are kept)"


def axes_of(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The grid's axes that results rows carry: their keys before ``model`` (none: [])."""
    keys = list(rows[0]) if rows else []
    return keys[: keys.index("model")] if "model" in keys else []


class ExperimentDir:
    """The folder of one experiment (see the module docstring for its files)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def file(self, name: str) -> Path:
        return self.path / name

    def run(self, name: str) -> RunDir:
        return RunDir(self.path / "runs" / name)

    @property
    def data_file(self) -> Path:
        """Where the experiment keeps the data set it generates."""
        return self.file(DATA)

    def data_file_for(self, data: DataConfig, base: DataConfig) -> Path:
        """Where a cell's generated data set is kept: data.npz for the experiment's own
        ``base`` data, ``data-HASH.npz`` (from the fields that decide it) for other data."""
        if data.decisive() == base.decisive():
            return self.data_file
        digest = hashlib.sha256(json.dumps(data.decisive(), sort_keys=True).encode())
        return self.file(f"data-{digest.hexdigest()[:12]}.npz")

    def figure(self, name: str) -> Path:
        return self.path / "figures" / f"{name}.png"

    def _write(self, name: str, text: str) -> Path:
        with atomic_write(self.file(name)) as f:
            f.write(text.encode())
        return self.file(name)

    # ------------------------------------------------------------------------- experiment.json

    def write_record(self, config: dict[str, Any], reuse: bool, data_path: Path) -> None:
        """experiment.json: the config as run, the path it took and the data file it used."""
        record = {"config": config, "reuse": reuse, "data_path": str(data_path)}
        self._write(RECORD, json.dumps(record, indent=2) + "\n")

    def record(self) -> dict[str, Any] | None:
        """experiment.json, checked, with its data config parsed as ``record["data"]``;
        ``None`` when there is none yet."""
        path = self.file(RECORD)
        if not path.exists():
            return None
        todo = "delete it to let the experiment write it again (its runs are kept)"
        try:
            record = json.loads(path.read_bytes())
        except (ValueError, UnicodeDecodeError) as exc:
            problem = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise RunFolderError(f"{path} is not valid JSON ({problem}); {todo}") from None
        kinds = {"config": dict, "reuse": bool, "data_path": str}
        for key, kind in kinds.items():
            if not isinstance(record, dict) or not isinstance(record.get(key), kind):
                raise RunFolderError(f"{path} has no {key!r} of the right kind; {todo}")
        try:
            record["data"] = DataConfig.from_dict(record["config"].get("data", {}))
        except ConfigError as exc:
            raise RunFolderError(f"{path} holds a bad data config ({exc}); {todo}") from None
        return record

    # ------------------------------------------------------------------------- results.csv

    def write_results(self, rows: Sequence[dict[str, Any]]) -> None:
        """results.csv: one row per model × budget × seed (× cell, its axes' columns first),
        floats to 6 decimals."""
        buf = io.StringIO()
        header = [*axes_of(rows), *RESULT_COLUMNS, "run"]
        writer = csv.DictWriter(buf, fieldnames=header, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: round(v, 6) if isinstance(v, float) else v for k, v in row.items()})
        self._write(RESULTS, buf.getvalue())

    def results(self) -> list[dict[str, Any]]:
        """The rows of results.csv with numbers parsed, checked."""
        path = self.file(RESULTS)
        if not path.is_file():
            raise RunFolderError(
                f"{self.path} has no {RESULTS} (run `stnlab experiment --out {self.path}` first)"
            )
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            raise RunFolderError(f"{path} is not text; {_RERUN}") from None
        if not text.endswith("\n"):
            raise RunFolderError(f"{path} is cut short (no newline at its end); {_RERUN}")
        lines = text.splitlines()
        reader = csv.DictReader(lines, strict=True)
        try:
            header, tail = tuple(reader.fieldnames or ()), (*RESULT_COLUMNS, "run")
            if "precision" not in header and header[-1:] == ("run",):  # older: no precision
                header = (*header[:-1], "precision", "run")
            axes = header[: len(header) - len(tail)]
            if header[len(axes) :] != tail or not all("." in a for a in axes):
                raise RunFolderError(
                    f"{path} does not have the header [AXES,]{','.join(tail)} (an axis is a "
                    f"config field such as model.size); {_RERUN}"
                )
            return [self._row(path, i + 2, row) for i, row in enumerate(reader)]
        except csv.Error as exc:
            raise RunFolderError(f"{path} is not valid CSV ({exc}); {_RERUN}") from None

    @staticmethod
    def _row(path: Path, number: int, row: dict[str, Any]) -> dict[str, Any]:
        if None in row or None in row.values() or not row["model"] or not row["run"]:
            raise RunFolderError(
                f"{path} line {number} does not have the header's {len(row)} columns; {_RERUN}"
            )
        row.setdefault("precision", "")
        for key, kind in _TYPES.items():
            try:
                row[key] = kind(row[key])
            except ValueError:
                raise RunFolderError(
                    f"{path} line {number}: {key} {row[key]!r} is not a number; {_RERUN}"
                ) from None
        return row

    # ------------------------------------------------------------------------- grid.csv

    def write_grid(self, rows: Sequence[dict[str, Any]]) -> None:
        """grid.csv: one row per cell and design (the axes' columns first)."""
        buf = io.StringIO()
        header = [*axes_of(rows), *GRID_COLUMNS]
        writer = csv.DictWriter(buf, fieldnames=header, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: round(v, 6) if isinstance(v, float) else v for k, v in row.items()})
        self._write(GRID, buf.getvalue())

    def grid_rows(self) -> list[dict[str, Any]]:
        """The rows of grid.csv, numbers parsed (None where a ratio is empty)."""
        path = self.file(GRID)
        try:
            rows = list(csv.DictReader(path.read_text().splitlines(), strict=True))
            for row in rows:
                row["epochs"] = int(row["epochs"])
                for key in GRID_COLUMNS[2:]:
                    row[key] = float(row[key]) if row[key] else None
        except (OSError, csv.Error, KeyError, TypeError, ValueError) as exc:
            raise RunFolderError(f"{path} cannot be read ({exc}); {_RERUN}") from None
        return rows

    # ------------------------------------------------------------------------- summary, report

    def write_summary(self, text: str) -> Path:
        return self._write(SUMMARY, text)

    def summary_file(self) -> Path:
        return self.file(SUMMARY)

    def write_report(self, html: str, figures: dict[str, bytes], known: Iterable[str]) -> Path:
        """report.html and its figures; a ``known`` figure not made this time is deleted, so a
        stale one from an older report cannot survive."""
        for name in known:
            if name not in figures:
                self.figure(name).unlink(missing_ok=True)
        for name, png in figures.items():
            with atomic_write(self.figure(name)) as f:
                f.write(png)
        return self._write(REPORT, html)
