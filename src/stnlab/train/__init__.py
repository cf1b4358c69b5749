"""Training one run: the loop and its run state, evaluation, the θ monitor, TensorBoard,
devices and DDP.

Example:
    >>> from stnlab.train import train, evaluate, resolve_device  # doctest: +SKIP
"""

from stnlab.train.devices import MixedPrecision, resolve_device
from stnlab.train.evaluation import Evaluation, evaluate
from stnlab.train.loop import train
from stnlab.train.state import RunState, TrainResult

__all__ = [
    "Evaluation",
    "MixedPrecision",
    "RunState",
    "TrainResult",
    "evaluate",
    "resolve_device",
    "train",
]
