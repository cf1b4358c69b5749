"""Crash-safe files for a run: atomic writes, ``weights_only`` checkpoints, safetensors weights."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import torch
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_save
from torch import nn

__all__ = [
    "load_checkpoint",
    "load_weights",
    "save_checkpoint",
    "save_weights",
    "write_atomic",
    "write_json",
]


def write_atomic(path: str | Path, write: Callable[[BinaryIO], None]) -> None:
    """Write ``path`` through ``write(file)`` so that readers see the old or the new file, whole.

    The bytes go to a temporary file in the same directory, are flushed and fsync'ed,
    and only then replace ``path`` (``os.replace`` is atomic on POSIX and Windows). A
    process killed at any point leaves either the previous file or the complete new one,
    plus at worst a stray ``.tmp`` file that is never read.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    """Persist the rename itself (POSIX; a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_json(path: str | Path, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON."""
    text = json.dumps(obj, indent=2, sort_keys=False) + "\n"
    write_atomic(path, lambda f: f.write(text.encode()))


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Atomically save a checkpoint: a dict of tensors, numbers, strings, lists and dicts."""
    write_atomic(path, lambda f: torch.save(state, f))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``: data only, never pickled code."""
    return torch.load(path, map_location="cpu", weights_only=True)


def save_weights(
    path: str | Path, model: nn.Module, metadata: dict[str, str] | None = None
) -> None:
    """Atomically save ``model``'s state dict as safetensors (CPU, contiguous copies)."""
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    data = safetensors_save(tensors, metadata=metadata)
    write_atomic(path, lambda f: f.write(data))


def load_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a safetensors file into a CPU state dict."""
    return load_file(str(path), device="cpu")
