"""Training one run: the loop, evaluation, the θ monitor, TensorBoard, devices and DDP.

Example:
    >>> from stnlab.train import train, evaluate, resolve_device  # doctest: +SKIP
"""

from stnlab.train.devices import MixedPrecision, resolve_device
from stnlab.train.evaluation import Evaluation, evaluate
from stnlab.train.loop import TrainResult, train

__all__ = ["Evaluation", "MixedPrecision", "TrainResult", "evaluate", "resolve_device", "train"]
