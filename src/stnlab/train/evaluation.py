"""Evaluating a classifier on tensors: accuracy, loss, per-class figures, per-sample results."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stnlab.config import EVAL_BATCH

__all__ = ["Evaluation", "confusion_matrix", "eval_batch", "evaluate", "per_class_accuracy"]


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, k: int) -> np.ndarray:
    """(K, K) counts of (true class, predicted class); any leading axes of the inputs are
    summed over (e.g. several runs' predictions (R, N) against labels (R, N))."""
    index = np.asarray(labels, dtype=np.int64) * k + np.asarray(predictions, dtype=np.int64)
    return np.bincount(index.ravel(), minlength=k * k).reshape(k, k)


def per_class_accuracy(confusion: np.ndarray) -> np.ndarray:
    """(K,) accuracy within each true class of a confusion matrix (NaN for an absent class)."""
    totals = confusion.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, np.diag(confusion) / np.maximum(totals, 1), np.nan)


@dataclass
class Evaluation:
    """A classifier's results on one labelled set of N samples and K classes.

    Attributes:
        accuracy: fraction of samples classified correctly.
        loss: mean cross-entropy.
        per_class_accuracy: (K,) accuracy within each true class (NaN for an absent class).
        confusion: (K, K) counts; row = true class, column = predicted class.
        predictions: (N,) predicted class.
        confidence: (N,) softmax probability of the predicted class.
        labels: (N,) true class.
        probabilities: (N, K) softmax probabilities, or ``None`` where not kept.
    """

    accuracy: float
    loss: float
    per_class_accuracy: np.ndarray
    confusion: np.ndarray
    predictions: np.ndarray
    confidence: np.ndarray
    labels: np.ndarray
    probabilities: np.ndarray | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The summary figures as JSON-able values (per-sample arrays left out)."""
        return {
            "accuracy": self.accuracy,
            "loss": self.loss,
            "per_class_accuracy": [
                None if np.isnan(a) else float(a) for a in self.per_class_accuracy
            ],
            "confusion": self.confusion.tolist(),
        }

    def state(self) -> dict[str, Any]:
        """Tensors and numbers only, for a ``weights_only`` checkpoint (probabilities dropped)."""
        return {
            "accuracy": self.accuracy,
            "loss": self.loss,
            "per_class_accuracy": torch.from_numpy(self.per_class_accuracy),
            "confusion": torch.from_numpy(self.confusion),
            "predictions": torch.from_numpy(self.predictions),
            "confidence": torch.from_numpy(self.confidence),
            "labels": torch.from_numpy(self.labels),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Evaluation:
        arrays = {k: v.numpy() for k, v in state.items() if isinstance(v, Tensor)}
        return cls(accuracy=float(state["accuracy"]), loss=float(state["loss"]), **arrays)


def eval_batch(device: torch.device | str) -> int:
    """Images per forward pass when evaluating on ``device``: :data:`EVAL_BATCH` of its type
    (an accelerator other than CUDA as CUDA)."""
    return EVAL_BATCH.get(torch.device(device).type, EVAL_BATCH["cuda"])


@torch.no_grad()
def evaluate(model: nn.Module, x: Tensor, y: Tensor, batch_size: int | None = None) -> Evaluation:
    """Classify ``x`` in batches and compare with ``y``.

    Batches move to the device of ``model``'s parameters; ``x`` and ``y`` may stay where
    they are. The model is put in eval mode and its previous mode restored.

    Args:
        model: maps (B, C, H, W) images to (B, K) logits.
        x: (N, C, H, W) float images.
        y: (N,) int64 labels.
        batch_size: samples per forward pass (default: :func:`eval_batch` of the model's
            device).

    Example:
        >>> from stnlab import models
        >>> x, y = torch.rand(8, 1, 40, 40), torch.arange(8) % 10
        >>> ev = evaluate(models.create("cnn", size="small"), x, y)
        >>> ev.confusion.shape, ev.predictions.shape
        ((10, 10), (8,))
    """
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} samples but y has {len(y)}")
    if len(x) == 0:
        raise ValueError("cannot evaluate on an empty set")
    if batch_size is not None and batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    device = next(model.parameters()).device
    batch_size = eval_batch(device) if batch_size is None else batch_size
    was_training = model.training
    model.eval()
    try:
        probs, loss = [], torch.zeros((), dtype=torch.float64, device=device)
        for i in range(0, len(x), batch_size):
            xb, yb = x[i : i + batch_size].to(device), y[i : i + batch_size].to(device)
            logits = model(xb).float()
            loss += F.cross_entropy(logits, yb, reduction="sum").double()
            probs.append(logits.softmax(dim=1))
    finally:
        model.train(was_training)
    p = torch.cat(probs).cpu().numpy()  # (N, K)
    labels = y.cpu().numpy().astype(np.int64)
    k = p.shape[1]
    pred = p.argmax(axis=1)
    confusion = confusion_matrix(labels, pred, k)
    return Evaluation(
        accuracy=float((pred == labels).mean()),
        loss=float(loss.item()) / len(x),
        per_class_accuracy=per_class_accuracy(confusion).astype(np.float64),
        confusion=confusion.astype(np.int64),
        predictions=pred.astype(np.int64),
        confidence=p.max(axis=1).astype(np.float32),
        labels=labels,
        probabilities=p.astype(np.float32),
    )
