"""Tests of stnlab.runs.records: the typed records keep the on-disk format of earlier releases."""

from __future__ import annotations

import json

import pytest

from stnlab.runs.records import (
    EvalRecord,
    RecordError,
    RunSummary,
    ThetaRecord,
    TrainRecord,
    from_line,
    parse,
    to_line,
)
from stnlab.runs.run_folder import RunDir

# Lines as the release before typed records wrote them (its dicts, json.dumps'd): field names
# and order are the format.
TRAIN_LINE = (
    '{"event": "train", "epoch": 3, "loss": 0.25, "accuracy": 0.875, "lr": 0.001, "seconds": 1.5}'
)
EVAL_LINE = (
    '{"event": "eval", "epoch": 3, "split": "valid", "accuracy": 0.75, "loss": 0.5, '
    '"train_seconds": 4.5}'
)
THETA_LINE = (
    '{"event": "theta", "epoch": 3, "step": 150, "transformer": "transformers.0", '
    '"area_ratio_p10": 0.25, "area_ratio_median": 0.5, "area_ratio_p90": Infinity, '
    '"collapse": ["zoomed_out", "frozen"]}'
)
OLDER_THETA_LINE = (  # before "frozen" was judged by optimizer steps: no "step"
    '{"event": "theta", "epoch": 3, "transformer": "transformers.1", '
    '"identity_distance_px_p90": 0.1, "collapse": []}'
)


@pytest.mark.parametrize("line", [TRAIN_LINE, EVAL_LINE, THETA_LINE, OLDER_THETA_LINE])
def test_lines_of_the_earlier_release_read_and_write_back_byte_for_byte(line):
    record = from_line(line.encode())
    assert to_line(record) == line + "\n"
    assert parse(json.loads(line)) == record  # the Dask event's way in


def test_each_kind_reads_as_its_class_with_its_fields():
    train, ev, theta, older = (
        from_line(x.encode()) for x in (TRAIN_LINE, EVAL_LINE, THETA_LINE, OLDER_THETA_LINE)
    )
    assert train == TrainRecord(epoch=3, loss=0.25, accuracy=0.875, lr=0.001, seconds=1.5)
    assert ev == EvalRecord(epoch=3, split="valid", accuracy=0.75, loss=0.5, train_seconds=4.5)
    assert isinstance(theta, ThetaRecord) and theta.step == 150
    assert theta.figures == {
        "area_ratio_p10": 0.25,
        "area_ratio_median": 0.5,
        "area_ratio_p90": float("inf"),
    }
    assert theta.collapse == ("zoomed_out", "frozen")
    assert older.step is None and older.figures == {"identity_distance_px_p90": 0.1}


def test_unknown_events_and_bad_data():
    assert from_line(b'{"event": "warmup", "epoch": 1}') is None  # a newer stnlab's: skipped
    with pytest.raises(RecordError, match="has a bad 'event': 'warmup'"):
        parse({"event": "warmup", "epoch": 1})
    with pytest.raises(RecordError, match="is not a JSON record with an 'event'"):
        from_line(b"[1, 2]")
    with pytest.raises(RecordError, match="has a bad 'epoch': True"):
        parse({**json.loads(TRAIN_LINE), "epoch": True})
    with pytest.raises(RecordError, match="has a bad 'step': -1"):
        parse({**json.loads(THETA_LINE), "step": -1})


def test_summary_json_of_the_earlier_release_reads_and_writes_back_byte_for_byte(tmp_path):
    old = {
        "model": "stn",
        "size": "small",
        "transform": "affine",
        "epochs": 2,
        "seed": 0,
        "valid_accuracy": 0.5,
        "test_accuracy": 0.25,
        "valid_loss": 1.5,
        "test_loss": 2.0,
        "train_seconds": 3.5,
        "train_images_per_second": 1000.0,
        "parameters": 12345,
        "batch_size": 100,
        "device": "cpu",
        "world_size": 1,
        "test_per_class_accuracy": [0.5, None, 1.0],
    }
    text = json.dumps(old, indent=2) + "\n"
    run = RunDir(tmp_path / "a")
    run.path.mkdir()
    run.file("summary.json").write_text(text)
    summary = run.summary()
    assert isinstance(summary, RunSummary) and summary.test_per_class_accuracy == (0.5, None, 1.0)
    again = RunDir(tmp_path / "b")
    again.path.mkdir()
    again.write_summary(summary)
    assert again.file("summary.json").read_text() == text
    assert summary.to_dict() == old
