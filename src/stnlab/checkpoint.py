"""Crash-safe files for a run: atomic writes, ``weights_only`` checkpoints, safetensors weights."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_save
from torch import nn

from stnlab.atomic import atomic_write

__all__ = [
    "load_checkpoint",
    "load_weights",
    "save_checkpoint",
    "save_weights",
    "write_json",
]


def write_json(path: str | Path, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON."""
    text = json.dumps(obj, indent=2, sort_keys=False) + "\n"
    with atomic_write(path) as f:
        f.write(text.encode())


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Atomically save a checkpoint: a dict of tensors, numbers, strings, lists and dicts."""
    with atomic_write(path) as f:
        torch.save(state, f)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``: data only, never pickled code."""
    return torch.load(path, map_location="cpu", weights_only=True)


def save_weights(
    path: str | Path, model: nn.Module, metadata: dict[str, str] | None = None
) -> None:
    """Atomically save ``model``'s state dict as safetensors (CPU, contiguous copies)."""
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    data = safetensors_save(tensors, metadata=metadata)
    with atomic_write(path) as f:
        f.write(data)


def load_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a safetensors file into a CPU state dict."""
    return load_file(str(path), device="cpu")
