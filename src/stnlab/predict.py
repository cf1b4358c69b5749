"""Classify the user's own images and draw what the transformer looked at."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor, nn

from stnlab.config import INVERT
from stnlab.config.errors import ConfigError, DataError
from stnlab.report import figures
from stnlab.report.introspect import sample_design

__all__ = ["Prediction", "load_image", "picture", "predict", "show"]


@dataclass(frozen=True)
class Prediction:
    """The most likely class of one image and its softmax probability."""

    label: int
    confidence: float


def _needs_inversion(pixels: np.ndarray) -> bool:
    """True if the image looks dark-on-light (a bright border), unlike MNIST's light-on-dark."""
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    return float(border.mean()) > 0.5


def _flatten_alpha(img: Image.Image) -> Image.Image:
    """Lay a transparent image on white, as a viewer shows it (else the digit vanishes)."""
    if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba)
    return img


def load_image(
    path: str | Path, size: tuple[int, int], channels: int = 1, invert: str = "auto"
) -> Tensor:
    """Read any image file as (1, C, H, W) float in [0, 1], resized to ``size`` (H, W).

    MNIST digits are light on dark; ``invert="auto"`` flips images whose border is
    mostly bright (a dark digit on white paper), ``"yes"``/``"no"`` force the choice.
    """
    if invert not in INVERT:
        raise ConfigError(f"invert must be one of {', '.join(INVERT)}, got {invert!r}", "invert")
    try:
        with Image.open(path) as img:
            img = _flatten_alpha(img).convert("L" if channels == 1 else "RGB")
            img = img.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    except FileNotFoundError:
        raise DataError(f"no image file {str(path)!r}") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"cannot read {str(path)!r} as an image: {exc}") from None
    pixels = np.asarray(img, dtype=np.float32) / 255.0  # (H, W) or (H, W, 3)
    grey = pixels if pixels.ndim == 2 else pixels.mean(axis=2)
    if invert == "yes" or (invert == "auto" and _needs_inversion(grey)):
        pixels = 1.0 - pixels
    x = torch.from_numpy(pixels.copy())
    x = x[None] if x.ndim == 2 else x.permute(2, 0, 1)  # (C, H, W)
    return x[None]  # (1, C, H, W)


@torch.no_grad()
def predict(model: nn.Module, images: Tensor) -> list[Prediction]:
    """The predicted class and confidence of each image in a (N, C, H, W) batch."""
    probs = torch.softmax(model.eval()(images), dim=1)  # (N, K)
    conf, label = probs.max(dim=1)
    return [Prediction(int(k), float(p)) for k, p in zip(label, conf, strict=True)]


def picture(model: nn.Module, images: Tensor, names: list[str] | None = None):
    """The figure that :func:`show` saves (a matplotlib Figure): one row per image of the
    (N, C, H, W) batch, named by ``names``; each transformer's output carries that image's
    area ratio and rotation (:func:`stnlab.report.introspect.captions`) under it.

    Raises ConfigError for a model without a spatial transformer (``cnn``).
    """
    design = sample_design(model.config.name, model, images, with_captions=True)
    if design is None:
        raise ConfigError(f"model {model.config.name!r} has no spatial transformer to show")
    inputs = images.float().mean(1).numpy()  # (N, H, W)
    return figures.sampled(inputs, None, [design], row_titles=names)


def show(
    model: nn.Module, images: Tensor, path: str | Path, names: list[str] | None = None
) -> Path:
    """Save :func:`picture` to ``path`` (PNG): per image, the input with each sampling
    grid's outline, then each output with its area ratio and rotation under it."""
    fig = picture(model, images, names)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path
