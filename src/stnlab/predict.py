"""Classify the user's own images and draw what the transformer looked at."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, UnidentifiedImageError
from torch import Tensor, nn

__all__ = ["INVERT", "Prediction", "load_image", "predict", "show"]

INVERT = ("auto", "yes", "no")


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
        raise ValueError(f"invert must be one of {', '.join(INVERT)}, got {invert!r}")
    try:
        with Image.open(path) as img:
            img = _flatten_alpha(img).convert("L" if channels == 1 else "RGB")
            img = img.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    except FileNotFoundError:
        raise FileNotFoundError(f"no image file {str(path)!r}") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"cannot read {str(path)!r} as an image: {exc}") from None
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


def _outline(grid: Tensor, size: tuple[int, int], scale: int) -> list[tuple[float, float]]:
    """The sampling grid's border as pixel points of the input drawn ``scale``× larger."""
    g = grid[0]  # (H', W', 2), normalised source coordinates
    edge = torch.cat([g[0, :], g[:, -1], g.flip(0)[0, :].flip(0), g.flip(0)[:, 0]])  # (P, 2)
    h, w = size
    # Normalised -> pixel edges (align_corners=False): -1 is the image's left/top edge.
    xs = (edge[:, 0] + 1) / 2 * w * scale
    ys = (edge[:, 1] + 1) / 2 * h * scale
    return list(zip(xs.tolist(), ys.tolist(), strict=True))


def _to_pil(x: Tensor, scale: int) -> Image.Image:
    """A (C, H, W) tensor in [0, 1] (first 3 channels or grey) as an RGB picture, upscaled."""
    x = x[:3] if x.shape[0] >= 3 else x[:1].expand(3, -1, -1)
    pixels = (x.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    img = Image.fromarray(np.ascontiguousarray(pixels), mode="RGB")
    return img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST)


@torch.no_grad()
def show(model: nn.Module, image: Tensor, path: str | Path, scale: int = 8) -> Path:
    """Save the input with the transformer's sampling-grid outline beside the warped output.

    ``image`` is one (1, C, H, W) input. Models without a transformer (``cnn``) show
    the input alone.
    """
    model.eval()
    panels = [_to_pil(image[0], scale)]
    glimpse = model.glimpse(image) if hasattr(model, "glimpse") else None
    if glimpse is not None:
        st, warped, theta = glimpse
        grid = st.transform.grid(theta, st.out_size)  # (1, H', W', 2)
        draw = ImageDraw.Draw(panels[0])
        points = _outline(grid, tuple(image.shape[2:]), scale)
        draw.line([*points, points[0]], fill=(255, 40, 40), width=max(1, scale // 4))
        panels.append(_to_pil(warped[0], scale))
    gap = scale * 2
    width = sum(p.width for p in panels) + gap * (len(panels) - 1)
    canvas = Image.new("RGB", (width, max(p.height for p in panels)), (255, 255, 255))
    left = 0
    for panel in panels:
        canvas.paste(panel, (left, 0))
        left += panel.width + gap
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
    return path
