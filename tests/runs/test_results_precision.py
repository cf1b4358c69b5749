"""Tests of results.csv's ``precision`` column: written and read back, and absent from the
files of older releases, which still read (the column empty)."""

from __future__ import annotations

from stnlab.runs import ExperimentDir
from stnlab.runs.experiment_folder import RESULT_COLUMNS

ROW = {
    "model": "stn",
    "epochs": 2,
    "seed": 0,
    "valid_accuracy": 0.5,
    "test_accuracy": 0.25,
    "train_seconds": 3.0,
    "precision": "bfloat16",
    "run": "stn-s0",
}


def test_the_precision_column_round_trips(tmp_path):
    folder = ExperimentDir(tmp_path)
    folder.write_results([ROW, {**ROW, "seed": 1, "precision": "float32", "run": "stn-s1"}])
    header = folder.file("results.csv").read_text().splitlines()[0]
    assert header.split(",") == [*RESULT_COLUMNS, "run"] and "precision" in RESULT_COLUMNS
    assert [r["precision"] for r in folder.results()] == ["bfloat16", "float32"]
    assert folder.results()[0] == ROW


def test_results_of_an_older_release_read_with_an_empty_precision(tmp_path):
    folder = ExperimentDir(tmp_path)
    folder.file("results.csv").write_text(
        "model,epochs,seed,valid_accuracy,test_accuracy,train_seconds,run\n"
        "stn,2,0,0.5,0.25,3.0,stn-s0\n"
    )
    assert folder.results() == [{**ROW, "precision": ""}]
