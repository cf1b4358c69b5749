"""What a model's transformers do to images: each stage's output and its grid's outline.

Shared by :mod:`stnlab.report.html` (the sampled-STN figure) and :mod:`stnlab.predict`
(``--show``); the drawing itself is :func:`stnlab.report.figures.sampled`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from stnlab.diagnostics import measure, outline, to_pixel_points
from stnlab.report import figures

__all__ = ["captions", "outlines", "sample_design"]

_BORDER = 48  # points per side of a grid outline


@torch.no_grad()
def outlines(model: torch.nn.Module, thetas: Sequence[torch.Tensor], image_size) -> list:
    """Each transformer's output border in input-image pixels, (N, M, 2) arrays of (x, y).

    A transformer whose input is the image (same channels and size) is drawn as is; one
    that warps feature maps (MSTN's second) is mapped back through the previous warp,
    since a 'same'-padded conv block keeps normalised coordinates in place.
    """
    h, w = image_size
    c = model.config.in_channels
    found, previous = [], None  # previous: the last image-space fine grid (N, K, K, 2)
    for st, theta in zip(model.transformers, thetas, strict=True):
        fine = st.transform.grid(theta.float(), (_BORDER, _BORDER))  # (N, K, K, 2), normalised
        on_image = st.in_channels == c and tuple(st.in_size) == (h, w)
        if not on_image and previous is not None:  # sample the previous grid at these points
            field = previous.permute(0, 3, 1, 2)  # (N, 2, K, K)
            fine = F.grid_sample(field, fine, align_corners=False, padding_mode="border")
            fine = fine.permute(0, 2, 3, 1)  # (N, K, K, 2)
        previous = fine
        found.append(to_pixel_points(outline(fine), (h, w)).cpu().numpy())  # (N, M, 2) pixel (x, y)
    return found


def captions(model: torch.nn.Module, thetas: Sequence[torch.Tensor]) -> list[list[str]]:
    """Per transformer, per image: ``area 0.49, rotation +3°`` (the sampled area relative to
    the transformer's input, and the rotation where the family has one)."""
    found = []
    for st, theta in zip(model.transformers, thetas, strict=True):
        m = measure(theta.float(), st.in_size, st.out_size, st.transform)
        area = m["area_ratio"].tolist()
        rotation = m["rotation_deg"].tolist() if "rotation_deg" in m else None
        found.append(
            [
                f"area {a:.2f}" + ("" if rotation is None else f", rotation {rotation[i]:+.0f}°")
                for i, a in enumerate(area)
            ]
        )
    return found


@torch.no_grad()
def sample_design(
    name: str, model: torch.nn.Module, x: torch.Tensor, with_captions: bool = False
) -> figures.Sampled | None:
    """Each transformer's output, grid outline and the prediction for images x (N, C, H, W);
    with ``with_captions``, each output's :func:`captions` too.

    ``None`` for a model without transformers (``cnn``).
    """
    model.eval()
    if not len(getattr(model, "transformers", [])):
        return None
    stages = model.transform(x)
    outputs = [warped.float().mean(1).numpy() for warped, _ in stages]  # (N, H', W') each
    titles = [
        ("output" if len(stages) == 1 else f"stage {k + 1}")
        + ("" if warped.shape[1] == 1 else f"\n(mean of {warped.shape[1]} maps)")
        for k, (warped, _) in enumerate(stages)
    ]
    thetas = [theta for _, theta in stages]
    lines = outlines(model, thetas, x.shape[2:])
    predictions = model(x).argmax(1).numpy()
    texts = captions(model, thetas) if with_captions else []
    return figures.Sampled(name, outputs, lines, predictions, titles, texts)
