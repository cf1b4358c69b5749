"""Mixed precision: the geometry of a spatial transformer never runs in bfloat16 or float16.

The rule, stated here once:

- Grid generators (:mod:`stnlab.transforms`) compute in their parameters' dtype and the
  samplers (:mod:`stnlab.sampling`) in their inputs' dtype, with autocast turned off, so
  under ``torch.autocast`` (CUDA or CPU, bfloat16 or float16) they keep the dtypes their
  callers chose. In bfloat16 normalised coordinates carry about 1/128 of resolution, a
  third of a pixel at 40 pixels: a low-precision grid is wrong, not just slower.
- :class:`stnlab.SpatialTransformer` runs its localization net as autocast says (low
  precision), its regressor in the regressor's own dtype with autocast off (so θ is
  float32 in a float32 model), and the grid and the sampling in :func:`work_dtype` of the
  input: float32 for bfloat16, float16 and float32 inputs, float64 for float64.
- The layer's output has its *input's* dtype, autocast or not, as any resampling op:
  float32 images give float32 warped images (the next conv autocasts them as usual);
  bfloat16 feature maps give bfloat16 warped feature maps; ``last_theta`` is float32.
"""

from __future__ import annotations

import contextlib

import torch

__all__ = ["autocast_off", "work_dtype"]

# torch < 2.4 lacks the query; there, assume the two device types autocast always had.
_has_autocast = getattr(torch.amp, "is_autocast_available", lambda kind: kind in ("cpu", "cuda"))


def autocast_off(device: torch.device) -> contextlib.AbstractContextManager:
    """A context in which ops on ``device`` run in their inputs' dtypes, autocast or not."""
    if not _has_autocast(device.type):  # e.g. meta tensors: nothing to turn off
        return contextlib.nullcontext()
    return torch.autocast(device.type, enabled=False)


def work_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the layer's geometry runs in for inputs of ``dtype``: at least float32."""
    return torch.promote_types(dtype, torch.float32)
