"""The study's vocabulary: the names and defaults every stage shares, torch-free.

Each name list is declared here once and imported wherever it is checked or shown.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "DEFAULT_SIZES",
    "EVAL_BATCH",
    "INVERT",
    "MIN_OPSET",
    "ONNX_OPSET",
    "PLACEMENTS",
    "REPORT_SAMPLES",
    "SCHEDULES",
    "SHARED_FS",
    "SOURCES",
    "SPLITS",
    "VARIANTS",
]

SCHEDULES: tuple[str, ...] = ("constant", "cosine", "step")
SOURCES: tuple[str, ...] = ("embedded", "mnist")
SPLITS: tuple[str, ...] = ("train", "valid", "test")
DEFAULT_SIZES: tuple[int, int, int] = (10_000, 1_000, 1_000)
PLACEMENTS: tuple[str, ...] = ("published", "uniform", "center")
SHARED_FS: tuple[str, ...] = ("auto", "yes", "no")  # whether cluster workers see the folder

# The named Cluttered/distorted MNIST layouts: fields of stnlab.data.cluttered.Variant.
VARIANTS: dict[str, dict[str, Any]] = {
    # Published 40x40 set (mnist_sequence1_sample_5distortions5x5.npz): 5 patches of 5x5.
    "40x40": {},
    # RAM / STN "translated and cluttered" MNIST (the common 60x60 file has 6 patches).
    "60x60": dict(canvas=60, patches=4, patch_size=8, placement="uniform"),
    # STN paper Table 1 (distortion ranges as stated there; no clutter).
    "rotated": dict(canvas=28, patches=0, distortion="affine", rotation=90.0),
    "rts": dict(
        canvas=42, patches=0, distortion="affine", rotation=45.0, scale=(0.7, 1.2), shift=7.0
    ),
    "projective": dict(
        canvas=28, patches=0, distortion="projective", corner_std=0.15, scale=(0.75, 1.0)
    ),
    "elastic": dict(canvas=28, patches=0, distortion="elastic", elastic_std=1.5),
}

# Other defaults the command line shows before it imports torch.
INVERT: tuple[str, ...] = ("auto", "yes", "no")  # predict: flip dark-on-light images
EVAL_BATCH = 1000  # images per forward pass when evaluating
ONNX_OPSET, MIN_OPSET = 17, 16  # ONNX export; opset 16 is the first with GridSample
REPORT_SAMPLES = 8  # test images in the report's sampled-STN figure
