"""``ClutteredMNIST``: the three splits as tensors, the form the training code consumes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from stnlab.config import SPLITS
from stnlab.config.errors import DataError


@dataclass(frozen=True)
class ClutteredMNIST:
    """Images float32 (N, 1, H, W) in [0, 1] and labels int64 (N,) for each split.

    Example:
        >>> from stnlab.data import make_dataset
        >>> ds = make_dataset(sizes=(20, 5, 5))
        >>> ds.x_train.shape, ds.y_train.dtype, ds.image_size
        (torch.Size([20, 1, 40, 40]), torch.int64, (40, 40))
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_valid: torch.Tensor
    y_valid: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    def __post_init__(self) -> None:
        sizes = set()
        for name in SPLITS:
            x, y = self.split(name)
            if x.dtype != torch.float32 or x.ndim != 4 or x.shape[1] != 1:
                got = f"{x.dtype} {tuple(x.shape)}"
                raise DataError(f"x_{name} must be float32 (N, 1, H, W), got {got}")
            if y.dtype != torch.int64 or y.shape != (len(x),):
                got = f"{y.dtype} {tuple(y.shape)}"
                raise DataError(f"y_{name} must be int64 ({len(x)},), got {got}")
            sizes.add(tuple(x.shape[2:]))
        if len(sizes) != 1:
            raise DataError(f"splits have different image sizes: {sorted(sizes)}")

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W) of every image."""
        return tuple(self.x_train.shape[2:])

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, y)`` of the split ``train``, ``valid`` or ``test``."""
        if name not in SPLITS:
            raise DataError(f"unknown split {name!r}; choose from {', '.join(SPLITS)}")
        return getattr(self, f"x_{name}"), getattr(self, f"y_{name}")

    @classmethod
    def from_numpy(cls, arrays: dict[str, tuple[np.ndarray, np.ndarray]]) -> ClutteredMNIST:
        """Build from ``{split: (images (N, H, W) or (N, 1, H, W), labels (N,))}``."""
        fields = {}
        for name in SPLITS:
            x, y = arrays[name]
            x = np.asarray(x, dtype=np.float32)
            x = x.reshape(len(x), 1, *x.shape[-2:])  # (N, 1, H, W)
            fields[f"x_{name}"] = torch.from_numpy(np.ascontiguousarray(x))
            fields[f"y_{name}"] = torch.from_numpy(np.asarray(y, dtype=np.int64).reshape(-1))
        return cls(**fields)
