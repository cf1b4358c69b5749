"""A run's configuration, torch-free: the study's vocabulary and one dataclass per concern.

Every option is a dataclass field declared once, with :func:`stnlab.config.options.option`:
its default, its help text (which becomes the CLI's ``--help``) and whether it *decides a
result* (a run with another value computes other numbers). The CLI flags, experiment
files, resume and budget reuse all read these declarations; nothing repeats them.
This package imports nothing else of stnlab and no torch, so ``stnlab --help`` stays fast.

Example:
    >>> TrainConfig(lr=-1)
    Traceback (most recent call last):
    ...
    stnlab.config.errors.ConfigError: train.lr must be positive, got -1
    >>> RunConfig(train=TrainConfig(lr=0.01)).differences(RunConfig().to_dict())
    ['train.lr: 0.001 -> 0.01']
"""

from stnlab.config.errors import (
    CommandError,
    ConfigError,
    DataError,
    ReportError,
    RunFolderError,
    UserError,
)
from stnlab.config.experiment import ExperimentConfig, parse_address
from stnlab.config.model import SIZES, ModelConfig, Widths
from stnlab.config.run import DataConfig, RunConfig, TrainConfig
from stnlab.config.vocabulary import (
    DEFAULT_SIZES,
    EVAL_BATCH,
    INVERT,
    MIN_OPSET,
    ONNX_OPSET,
    OPTIMIZERS,
    PLACEMENTS,
    REPORT_SAMPLES,
    SCHEDULES,
    SHARED_FS,
    SOURCES,
    SPLITS,
    VARIANTS,
)

__all__ = [
    "DEFAULT_SIZES",
    "EVAL_BATCH",
    "INVERT",
    "MIN_OPSET",
    "ONNX_OPSET",
    "OPTIMIZERS",
    "PLACEMENTS",
    "REPORT_SAMPLES",
    "SCHEDULES",
    "SHARED_FS",
    "SIZES",
    "SOURCES",
    "SPLITS",
    "VARIANTS",
    "CommandError",
    "ConfigError",
    "DataConfig",
    "DataError",
    "ExperimentConfig",
    "ModelConfig",
    "ReportError",
    "RunConfig",
    "RunFolderError",
    "TrainConfig",
    "UserError",
    "Widths",
    "parse_address",
]
