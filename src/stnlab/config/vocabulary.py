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
    "OPTIMIZERS",
    "PLACEMENTS",
    "REPORT_SAMPLES",
    "SCHEDULES",
    "SHARED_FS",
    "SOURCES",
    "SPLITS",
    "VARIANTS",
]

SCHEDULES: tuple[str, ...] = ("constant", "cosine", "step", "thirds")
OPTIMIZERS: tuple[str, ...] = ("adam", "sgd")
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
    # The same, named for what it is: the RAM paper's layout (Mnih et al., 2014), 4 crops of
    # 8x8 from other digits.
    "60x60-ram": dict(canvas=60, patches=4, patch_size=8, placement="uniform"),
    # The STN paper's (section 4.1): the digit at a uniform position, 6 crops of 6x6 from
    # other digits of the same split.
    "60x60-stn": dict(canvas=60, patches=6, patch_size=6, placement="uniform"),
    # STN paper Table 1 (no clutter). R: rotation uniform in ±90°. RTS: rotation ±45°,
    # scale 0.7-1.2, the 28x28 digit box moved uniformly by up to ±7 px on each axis of a
    # 42x42 canvas (anywhere it fits at scale 1). E: our choice (the paper gives none): the
    # affine identity plus a smooth field, bicubic through a 4x4 grid of control points
    # displaced by N(0, 1.5 px) each.
    "rotated": dict(canvas=28, patches=0, distortion="affine", rotation=90.0),
    "rts": dict(
        canvas=42, patches=0, distortion="affine", rotation=45.0, scale=(0.7, 1.2), shift=7.0
    ),
    # Scale 0.75-1.0, then each corner moved by N(0, 0.15 x 14 px x scale), 2.1 px at most
    # (kept as it was: earlier data and runs use it) ...
    "projective": dict(
        canvas=28, patches=0, distortion="projective", corner_std=0.15, scale=(0.75, 1.0)
    ),
    # ... and the paper's P: scale 0.75-1.0, then each corner moved by N(0, 5 px).
    "projective-paper": dict(
        canvas=28, patches=0, distortion="projective", corner_px=5.0, scale=(0.75, 1.0)
    ),
    "elastic": dict(canvas=28, patches=0, distortion="elastic", elastic_std=1.5),
}

# Other defaults the command line shows before it imports torch.
INVERT: tuple[str, ...] = ("auto", "yes", "no")  # predict: flip dark-on-light images
# Images per forward pass when evaluating, by device type: on a CPU a batch whose activations
# stay in cache runs 1.3-2.2x faster than 1000 (benchmarks/bench_eval.py, docs/benchmarks.md);
# a GPU wants big ones.
EVAL_BATCH: dict[str, int] = {"cpu": 200, "cuda": 1000}
ONNX_OPSET, MIN_OPSET = 17, 16  # ONNX export; opset 16 is the first with GridSample
REPORT_SAMPLES = 8  # test images in the report's sampled-STN figure
