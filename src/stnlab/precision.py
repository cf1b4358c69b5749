"""Mixed precision: the geometry of a spatial transformer never runs in bfloat16 or float16.

The rule, stated here once:

- Grid generators (:mod:`stnlab.transforms`) compute in their parameters' dtype and the
  samplers (:mod:`stnlab.sampling`) in their inputs' dtype, with autocast turned off, so
  under ``torch.autocast`` (CUDA or CPU, bfloat16 or float16) they keep the dtypes their
  callers chose. In bfloat16 normalised coordinates carry about 1/128 of resolution, a
  third of a pixel at 40 pixels: a low-precision grid is wrong, not just slower.
- :class:`stnlab.SpatialTransformer` runs its localization net as autocast says (low
  precision), then its regressor, θ, the grid and the sampling in :func:`work_dtype` of the
  input: float32 for bfloat16, float16 and float32 inputs, float64 for float64.
- The layer's output has its *input's* dtype, autocast or not, as any resampling op:
  float32 images give float32 warped images (the next conv autocasts them as usual);
  bfloat16 feature maps give bfloat16 warped feature maps. ``last_theta`` is float32.
"""

from __future__ import annotations

import torch

__all__ = ["autocast_off", "work_dtype"]


def autocast_off(device: torch.device) -> torch.autocast:
    """A context in which ops on ``device`` run in their inputs' dtypes, autocast or not."""
    return torch.autocast(device.type, enabled=False)


def work_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the layer's geometry runs in for inputs of ``dtype``: at least float32."""
    return torch.promote_types(dtype, torch.float32)
