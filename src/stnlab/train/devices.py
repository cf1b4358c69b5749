"""Where and in what precision a run computes: the device named by the config, and autocast.

For the CLI and runners (and :func:`stnlab.train.train`, the runner of one run): library code
below them takes the device of the tensors it is given.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from stnlab.config import ConfigError, TrainConfig

__all__ = ["MixedPrecision", "resolve_device"]


def resolve_device(name: str = "auto") -> str:
    """``auto`` → ``cuda`` when available, else ``cpu``; checks that CUDA exists if asked for.

    For the CLI and runners (and :func:`train`, the runner of one run): library code
    below them takes the device of the tensors it is given.
    """
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if torch.device(name).type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"train.device {name!r} asked for, but CUDA is not available here", "train.device"
        )
    return name


@dataclass
class MixedPrecision:
    """Autocast of a run: bfloat16, or float16 with loss scaling on CUDA without bfloat16."""

    enabled: bool
    dtype: torch.dtype
    scaler: torch.amp.GradScaler

    @classmethod
    def of(cls, cfg: TrainConfig, device: torch.device) -> MixedPrecision:
        """``cfg.amp``; off by default, on CUDA too: these small models train faster in
        float32 there (benchmarks/bench_train.py's ``amp`` column)."""
        enabled = bool(cfg.amp)
        fp16 = enabled and device.type == "cuda" and not torch.cuda.is_bf16_supported()
        dtype = torch.float16 if fp16 else torch.bfloat16
        return cls(enabled, dtype, torch.amp.GradScaler("cuda", enabled=fp16))
