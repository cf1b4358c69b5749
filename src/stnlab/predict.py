"""Classify the user's own images and draw what the transformer looked at."""

from __future__ import annotations

from collections.abc import Sequence
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

__all__ = ["Picture", "Prediction", "load_image", "picture", "predict", "prepare", "show"]


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


@dataclass(frozen=True)
class Picture:
    """A picture made into a model's input, and what was done to it.

    ``image`` is the input (1, C, H, W); ``original`` the picture's (width, height),
    ``padded`` its (width, height) once padded to the input's aspect ratio; ``frame`` is
    where the picture lies in the input, (x0, y0, x1, y1) in input pixels (its edges, with
    pixel centres at integers as :mod:`stnlab.diagnostics` counts them); ``inverted`` says
    whether it was flipped to light on dark.
    """

    image: Tensor
    original: tuple[int, int]
    padded: tuple[int, int]
    frame: tuple[float, float, float, float]
    inverted: bool

    def describe(self, short: bool = False) -> str:
        """What was done, e.g. ``100×80 picture padded to 100×100, then resized to 40×40``;
        ``short``: the sizes only, ``100×80 → 100×100 → 40×40``."""
        h, w = self.image.shape[2:]
        if short:
            sizes = dict.fromkeys([self.original, self.padded, (w, h)])  # each size once
            return " → ".join(map(_wh, sizes))
        steps = ["inverted to light on dark"] if self.inverted else []  # in the order done
        if self.padded != self.original:
            steps.append(f"padded to {_wh(self.padded)}")
        if self.padded != (w, h):
            steps.append(f"resized to {_wh((w, h))}")
        done = ", then ".join([", ".join(steps[:-1]), steps[-1]] if len(steps) > 1 else steps)
        return f"{_wh(self.original)} picture {done or 'used as it is'}"


def _wh(size: tuple[int, int]) -> str:
    return f"{size[0]}×{size[1]}"


def _read(path: str | Path, channels: int) -> Image.Image:
    """The image file at ``path`` in grey (1 channel) or RGB; a DataError if it cannot be."""
    try:
        with Image.open(path) as img:
            return _flatten_alpha(img).convert("L" if channels == 1 else "RGB")
    except FileNotFoundError:
        raise DataError(f"no image file {str(path)!r}") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"cannot read {str(path)!r} as an image: {exc}") from None


def _pad(pixels: np.ndarray, aspect: float) -> tuple[np.ndarray, int, int]:
    """Pad (H, W, C) ``pixels`` evenly on two sides to width / height = ``aspect`` with the
    background (the median of the picture's border, per channel); returns the padded
    pixels and the padding's left and top widths."""
    h, w = pixels.shape[:2]
    width, height = max(w, round(h * aspect)), max(h, round(w / aspect))
    if (width, height) == (w, h):
        return pixels, 0, 0
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])  # (B, C)
    left, top = (width - w) // 2, (height - h) // 2
    out = np.empty((height, width, pixels.shape[2]), np.float32)
    out[:] = np.median(border, axis=0)
    out[top : top + h, left : left + w] = pixels
    return out, left, top


def _resize(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W, C) float pixels resized to ``size`` (H', W'), bilinear (PIL, per channel)."""
    if pixels.shape[:2] == tuple(size):
        return pixels
    planes = [
        np.asarray(
            Image.fromarray(np.ascontiguousarray(pixels[..., c])).resize(  # float32: mode F
                (size[1], size[0]), Image.Resampling.BILINEAR
            )
        )
        for c in range(pixels.shape[2])
    ]
    return np.stack(planes, axis=-1)  # (H', W', C)


def prepare(
    image: str | Path | Image.Image,
    size: tuple[int, int],
    channels: int = 1,
    invert: str = "auto",
) -> Picture:
    """Make an image file (or a PIL image) of any size a model's input of ``size`` (H, W).

    The picture is padded evenly to the input's aspect ratio with its background (the
    median of its border), so that nothing is squeezed, then resized: a 100×80 picture for
    a 40×40 input is padded to 100×100, then resized to 40×40. MNIST digits are light on
    dark; ``invert="auto"`` flips pictures whose border is mostly bright (a dark digit on
    white paper), ``"yes"``/``"no"`` force the choice. A transparent picture is laid on
    white first, as a viewer shows it.
    """
    if invert not in INVERT:
        raise ConfigError(f"invert must be one of {', '.join(INVERT)}, got {invert!r}", "invert")
    if isinstance(image, Image.Image):
        img = _flatten_alpha(image).convert("L" if channels == 1 else "RGB")
    else:
        img = _read(image, channels)
    pixels = np.asarray(img, dtype=np.float32) / 255.0  # (H, W) or (H, W, 3)
    pixels = pixels[..., None] if pixels.ndim == 2 else pixels  # (H, W, C)
    inverted = invert == "yes" or (invert == "auto" and _needs_inversion(pixels.mean(axis=2)))
    if inverted:
        pixels = 1.0 - pixels
    h, w = pixels.shape[:2]
    padded, left, top = _pad(pixels, size[1] / size[0])
    scale_x, scale_y = size[1] / padded.shape[1], size[0] / padded.shape[0]
    frame = (
        left * scale_x - 0.5,
        top * scale_y - 0.5,
        (left + w) * scale_x - 0.5,
        (top + h) * scale_y - 0.5,
    )
    x = torch.from_numpy(np.ascontiguousarray(_resize(padded, size))).permute(2, 0, 1)
    return Picture(
        image=x[None],  # (1, C, H, W)
        original=(w, h),
        padded=(padded.shape[1], padded.shape[0]),
        frame=frame,
        inverted=inverted,
    )


def load_image(
    path: str | Path, size: tuple[int, int], channels: int = 1, invert: str = "auto"
) -> Tensor:
    """Read any image file as (1, C, H, W) float in [0, 1]: :func:`prepare`'s input (padded
    to the input's aspect ratio, then resized to ``size`` (H, W))."""
    return prepare(path, size, channels, invert).image


@torch.no_grad()
def predict(model: nn.Module, images: Tensor) -> list[Prediction]:
    """The predicted class and confidence of each image in a (N, C, H, W) batch."""
    probs = torch.softmax(model.eval()(images), dim=1)  # (N, K)
    conf, label = probs.max(dim=1)
    return [Prediction(int(k), float(p)) for k, p in zip(label, conf, strict=True)]


def picture(
    model: nn.Module,
    images: Tensor,
    names: list[str] | None = None,
    labels: Sequence[int] | None = None,
    pictures: Sequence[Picture] | None = None,
):
    """The figure that :func:`show` saves (a matplotlib Figure): one row per image of the
    (N, C, H, W) batch, named by ``names``; each transformer's output carries that image's
    area ratio and rotation (:func:`stnlab.report.introspect.captions`) under it, and a
    thin-plate spline shows its control points and warped grid. With ``labels`` (the true
    classes) each prediction is coloured right or wrong; with ``pictures`` (what
    :func:`prepare` made of each image), each input shows where the picture lies once
    padded, and says what was done to it under it.

    Raises ConfigError for a model without a spatial transformer (``cnn``).
    """
    design = sample_design(model.config.name, model, images, with_captions=True)
    if design is None:
        raise ConfigError(f"model {model.config.name!r} has no spatial transformer to show")
    inputs = images.float().mean(1).numpy()  # (N, H, W)
    known = None if labels is None else np.asarray(labels)
    frames = notes = None
    if pictures is not None:
        frames = [p.frame for p in pictures]
        notes = [p.describe(short=True) for p in pictures]
    return figures.sampled(inputs, known, [design], names, frames, notes)


def show(
    model: nn.Module,
    images: Tensor,
    path: str | Path,
    names: list[str] | None = None,
    labels: Sequence[int] | None = None,
    pictures: Sequence[Picture] | None = None,
) -> Path:
    """Save :func:`picture` to ``path`` (PNG): per image, the input with each sampling
    grid's outline, then each output with its area ratio and rotation under it."""
    fig = picture(model, images, names, labels, pictures)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight", pad_inches=0.05)  # whole captions
    return path
