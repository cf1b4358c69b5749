"""The study's folders and what they hold: every file name and format, written and read here only.

A run folder (:class:`RunDir`), an experiment folder (:class:`ExperimentDir`), the typed
records of metrics.jsonl (:mod:`stnlab.runs.records`) and atomic writes
(:mod:`stnlab.runs.atomic`). Torch is imported only by the methods that read or write tensors.
"""

from stnlab.runs.experiment_folder import RESULT_COLUMNS, ExperimentDir
from stnlab.runs.records import EvalRecord, Record, RunSummary, ThetaRecord, TrainRecord
from stnlab.runs.run_folder import Checkpoint, Predictions, RunDir

__all__ = [
    "RESULT_COLUMNS",
    "Checkpoint",
    "EvalRecord",
    "ExperimentDir",
    "Predictions",
    "Record",
    "RunDir",
    "RunSummary",
    "ThetaRecord",
    "TrainRecord",
]
