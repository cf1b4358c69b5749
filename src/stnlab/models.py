"""The study's classifiers (cnn, stn, mstn) and icstn, created by name from a registry.

Every model is one classifier CNN, split into conv blocks and a fully connected head,
with spatial transformers placed in front of (or between) its blocks, so the
classifier part has the same size in every design of a given size preset:

    cnn    image ─────────────────────────────── blocks ─ head ─ digit
    stn    image ─ STN ───────────────────────── blocks ─ head ─ digit
    mstn   image ─ STN ─ block 1 ─ STN ────────── blocks 2.. ─ head ─ digit
    icstn  image ─ STN ─ STN (θ = θ1 ∘ Δ, one warp of the image) ─ blocks ─ head ─ digit

Example:
    >>> from stnlab import models
    >>> m = models.create("stn", size="tf-example")
    >>> m(torch.rand(2, 1, 40, 40)).shape
    torch.Size([2, 10])
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from stnlab import transforms as T
from stnlab.transformer import SpatialTransformer

__all__ = [
    "SIZES",
    "Model",
    "Widths",
    "count_parameters",
    "create",
    "load",
    "names",
    "register",
]


@dataclass(frozen=True)
class Widths:
    """Layer sizes of a model: the classifier CNN and every localization network.

    Args:
        conv: output channels of each classifier conv block.
        kernel: conv kernel size ('same' padding).
        stride: conv stride.
        pool: max-pool factor after each conv block (1: none).
        norm: BatchNorm after every classifier conv.
        hidden: width of the classifier's hidden FC layer.
        dropout: dropout before the last FC layer of the head and of an MLP localization.
        loc_conv: channels of the localization conv blocks (5×5, pool 2); ``()`` makes
            the localization an MLP on the pixels with a tanh, as in the TF example.
        loc_hidden: width of the localization's feature vector (the regressor's input).
        loc_pool: max-pool factor applied to the *image* before its localization net.
        loc_norm: BatchNorm in the localization convs too.
    """

    conv: tuple[int, ...] = (16, 32, 64)
    kernel: int = 3
    stride: int = 1
    pool: int = 2
    norm: bool = True
    hidden: int = 128
    dropout: float = 0.3
    loc_conv: tuple[int, ...] = (16, 32)
    loc_hidden: int = 64
    loc_pool: int = 2
    loc_norm: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "conv", tuple(int(c) for c in self.conv))
        object.__setattr__(self, "loc_conv", tuple(int(c) for c in self.loc_conv))
        if not self.conv or min(self.conv) < 1:
            raise ValueError(f"conv needs at least one positive width, got {self.conv}")
        if len(self.conv) < 2:
            raise ValueError("conv needs at least two blocks (mstn places a transformer between)")
        for name in ("kernel", "stride", "pool", "hidden", "loc_hidden", "loc_pool"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be a positive int, got {getattr(self, name)!r}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


_PRESETS: dict[str, Widths] = {
    "small": Widths(conv=(8, 16, 32), hidden=64, loc_conv=(8, 16), loc_hidden=32),
    # Measured on the 40×40 set (embedded digits, seed 0; Adam 1e-3, batch 200, 2 CPU
    # cores): stn 97.6% test at epoch 15, cnn 96.6% at 12; (16, 32, 64) trains ~2× faster
    # than (32, 64, 64). BatchNorm in the localization made θ jumpy between train and
    # eval mode (one epoch fell to 91%), so it is off by default.
    "default": Widths(),
    "large": Widths(conv=(32, 64, 128), hidden=256, loc_conv=(32, 64), loc_hidden=128),
    # tensorflow/models research/transformer/cluttered_mnist.py: loc FC 1600→20 (tanh)
    # → dropout → FC 20→6; conv 3×3×16 /2, conv 3×3×16 /2, FC 1600→1024, dropout, FC →10.
    "tf-example": Widths(
        conv=(16, 16), kernel=3, stride=2, pool=1, norm=False, hidden=1024, dropout=0.2,
        loc_conv=(), loc_hidden=20, loc_pool=1,
    ),
}  # fmt: skip
SIZES: tuple[str, ...] = tuple(_PRESETS)


def resolve_widths(size: str = "default", **overrides: Any) -> Widths:
    """The widths of preset ``size`` with any field overridden (free widths)."""
    if size not in _PRESETS:
        raise ValueError(f"unknown size {size!r}; known: {', '.join(SIZES)}")
    known = {f.name for f in fields(Widths)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown width {unknown[0]!r}; known: {', '.join(sorted(known))}")
    return replace(_PRESETS[size], **overrides)


# ----------------------------------------------------------------------------- building blocks


def _conv_block(
    c_in: int, c_out: int, kernel: int, stride: int, pool: int, norm: bool
) -> nn.Sequential:
    """Conv ('same' padding) → [MaxPool] → [BatchNorm] → ReLU.

    Pooling first (max-pooling commutes with ReLU) runs BatchNorm and ReLU on a
    quarter of the pixels; on CPU that made the default CNN ~2× faster to train.
    """
    layers: list[nn.Module] = [
        nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=not norm)
    ]
    if pool > 1:
        layers.append(nn.MaxPool2d(pool))
    if norm:
        layers.append(nn.BatchNorm2d(c_out))
    layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def _out_size(module: nn.Module, channels: int, size: tuple[int, int]) -> tuple[int, ...]:
    """Shape (C, H, W) of ``module``'s output for one input of (channels, *size)."""
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            out = module(torch.zeros(1, channels, *size))
    except RuntimeError as exc:
        raise ValueError(f"input size {size} is too small for this model's layers") from exc
    finally:
        module.train(was_training)
    return tuple(out.shape[1:])


def localization(in_channels: int, in_size: tuple[int, int], w: Widths, pool: int) -> nn.Module:
    """A localization net (N, C, H, W) → (N, loc_hidden); pools the input by ``pool`` first."""
    layers: list[nn.Module] = [nn.MaxPool2d(pool)] if pool > 1 else []
    c = in_channels
    for width in w.loc_conv:
        layers.append(_conv_block(c, width, 5, 1, 2, w.loc_norm))
        c = width
    layers.append(nn.Flatten())
    features = _out_size(nn.Sequential(*layers), in_channels, in_size)[0]
    if w.loc_conv:
        layers += [nn.Linear(features, w.loc_hidden), nn.ReLU(inplace=True)]
    else:
        layers += [nn.Linear(features, w.loc_hidden), nn.Tanh(), nn.Dropout(w.dropout)]
    return nn.Sequential(*layers)


class Classifier(nn.Module):
    """The CNN shared by every design: conv ``blocks`` then an FC ``head`` to logits."""

    def __init__(self, in_channels: int, in_size: tuple[int, int], num_classes: int, w: Widths):
        super().__init__()
        c, blocks = in_channels, []
        for width in w.conv:
            blocks.append(_conv_block(c, width, w.kernel, w.stride, w.pool, w.norm))
            c = width
        self.blocks = nn.ModuleList(blocks)
        self.sizes = [(in_channels, *in_size)]  # (C, H, W) entering each block, then leaving
        for block in self.blocks:
            self.sizes.append(_out_size(block, self.sizes[-1][0], self.sizes[-1][1:]))
        features = self.sizes[-1][0] * self.sizes[-1][1] * self.sizes[-1][2]
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(features, w.hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(w.dropout),
            nn.Linear(w.hidden, num_classes),
        )

    def features(self, x: Tensor, start: int = 0, stop: int | None = None) -> Tensor:
        """Run conv blocks ``start:stop`` on x."""
        for block in self.blocks[start:stop]:
            x = block(x)
        return x

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


# ----------------------------------------------------------------------------- the designs


class Model(nn.Module):
    """Base of the registered models: a classifier plus zero or more spatial transformers."""

    def __init__(self, config: dict[str, Any], widths: Widths):
        super().__init__()
        self.config = config
        self.widths = widths
        self.in_size = T.as_size(config["in_size"])
        self.transformers = nn.ModuleList()  # registered first: the figures read left to right
        self.classifier = Classifier(
            config["in_channels"], self.in_size, config["num_classes"], widths
        )

    def _image_transformer(self, transform: str) -> SpatialTransformer:
        """A transformer that warps the input image to its own size."""
        c = self.config["in_channels"]
        loc = localization(c, self.in_size, self.widths, self.widths.loc_pool)
        return SpatialTransformer(c, self.in_size, transform=transform, localization=loc)

    def transform(self, x: Tensor) -> list[tuple[Tensor, Tensor]]:
        """Each transformer's output and θ: [(warped (N, C, H', W'), θ (N, P)), ...]."""
        return []

    def glimpse(self, x: Tensor) -> tuple[SpatialTransformer, Tensor, Tensor] | None:
        """The transformer that warps the input image, its final warped image and θ."""
        return None

    def localization_parameters(self) -> list[nn.Parameter]:
        """Parameters of every localization net and regressor (for their own learning rate)."""
        return [p for st in self.transformers for p in st.parameters()]


_REGISTRY: dict[str, Callable[..., Model]] = {}


def register(name: str) -> Callable:
    """Class decorator: make a model creatable as ``create(name, ...)`` (timm-style).

    The class is called as ``cls(config, widths)``, like the :class:`Model` subclasses here.
    """

    def add(cls: Callable[..., Model]) -> Callable[..., Model]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = cls
        return cls

    return add


@register("cnn")
class CNN(Model):
    """The control: image → CNN → digit."""

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(x)


@register("stn")
class STN(Model):
    """Jaderberg et al.: image → STN → CNN → digit; the CNN classifies the warped image."""

    def __init__(self, config: dict[str, Any], widths: Widths):
        super().__init__(config, widths)
        self.transformers.append(self._image_transformer(config["transform"]))

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.transformers[0](x))

    def transform(self, x: Tensor) -> list[tuple[Tensor, Tensor]]:
        st = self.transformers[0]
        theta = st.localize(x)
        return [(st.warp(x, theta), theta)]

    def glimpse(self, x: Tensor) -> tuple[SpatialTransformer, Tensor, Tensor]:
        (warped, theta), *_ = self.transform(x)
        return self.transformers[0], warped, theta


@register("mstn")
class MSTN(Model):
    """Image → STN → CNN block → STN → CNN blocks → digit; the second warps feature maps."""

    def __init__(self, config: dict[str, Any], widths: Widths):
        super().__init__(config, widths)
        c, h, w = self.classifier.sizes[1]  # feature maps after the first block
        # The feature maps are already downsampled, so their localization does not pool.
        loc = localization(c, (h, w), widths, pool=1)
        self.transformers.append(self._image_transformer(config["transform"]))
        self.transformers.append(
            SpatialTransformer(c, (h, w), transform=config["transform"], localization=loc)
        )

    def forward(self, x: Tensor) -> Tensor:
        x = self.classifier.features(self.transformers[0](x), 0, 1)
        x = self.classifier.features(self.transformers[1](x), 1)
        return self.classifier.head(x)

    def transform(self, x: Tensor) -> list[tuple[Tensor, Tensor]]:
        out = []
        for i, st in enumerate(self.transformers):
            theta = st.localize(x)
            x = st.warp(x, theta)
            out.append((x, theta))
            if i == 0:
                x = self.classifier.features(x, 0, 1)
        return out

    def glimpse(self, x: Tensor) -> tuple[SpatialTransformer, Tensor, Tensor]:
        st = self.transformers[0]
        theta = st.localize(x)
        return st, st.warp(x, theta), theta


@register("icstn")
class ICSTN(Model):
    """Inverse-compositional STN (Lin & Lucey, 2017), one localization net per step.

    Step k predicts an update Δ_k from the image warped by θ_{k-1} and composes it,
    θ_k = θ_{k-1} ∘ Δ_k; every step resamples the *original* image once, so no
    content is lost at the borders by warping twice. ``steps`` is the number of
    transformers (default 2); the transform family must be a matrix family.
    """

    def __init__(self, config: dict[str, Any], widths: Widths):
        super().__init__(config, widths)
        steps = int(config.get("steps", 2))
        if steps < 1:
            raise ValueError(f"icstn steps must be at least 1, got {steps}")
        for _ in range(steps):
            self.transformers.append(self._image_transformer(config["transform"]))
        if not hasattr(self.transformers[0].transform, "compose"):
            matrix = [n for n in T.names() if hasattr(T.get(n), "compose")]
            raise ValueError(
                f"icstn composes warps, so its transform must be one of {', '.join(matrix)}; "
                f"got {config['transform']!r}"
            )

    def transform(self, x: Tensor) -> list[tuple[Tensor, Tensor]]:
        out, theta = [], None
        for st in self.transformers:
            update = st.localize(x if theta is None else out[-1][0])
            theta = update if theta is None else st.transform.compose(theta, update)
            st.last_theta = theta.detach()
            out.append((st.warp(x, theta), theta))
        return out

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.transform(x)[-1][0])

    def glimpse(self, x: Tensor) -> tuple[SpatialTransformer, Tensor, Tensor]:
        warped, theta = self.transform(x)[-1]
        return self.transformers[-1], warped, theta


# ----------------------------------------------------------------------------- registry API


def names() -> list[str]:
    """Names of the registered models."""
    return sorted(_REGISTRY)


def create(
    name: str,
    in_channels: int = 1,
    in_size: int | Sequence[int] = 40,
    num_classes: int = 10,
    size: str = "default",
    transform: str = "affine",
    **kwargs: Any,
) -> Model:
    """Build model ``name``; kwargs are free widths (see :class:`Widths`) or model options.

    ``model.config`` holds every argument, widths resolved, so ``create(**model.config)``
    rebuilds the same architecture even if a preset changes later.

    Example:
        >>> create("cnn", size="small", hidden=32).config["hidden"]
        32
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(names())}")
    if transform not in T.names():
        raise ValueError(f"unknown transform {transform!r}; known: {', '.join(T.names())}")
    options = {"steps": int(kwargs.pop("steps", 2))} if name == "icstn" else {}
    if "steps" in kwargs:
        raise ValueError("option 'steps' applies to icstn only")
    widths = resolve_widths(size, **kwargs)
    h, w = T.as_size(in_size if isinstance(in_size, int) else tuple(in_size))
    config = {
        "name": name,
        "in_channels": int(in_channels),
        "in_size": h if h == w else [h, w],
        "num_classes": int(num_classes),
        "size": size,
        "transform": transform,
        **{k: list(v) if isinstance(v, tuple) else v for k, v in asdict(widths).items()},
        **options,
    }
    return _REGISTRY[name](config, widths)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def load(run_dir: str | Path, weights: str = "final.safetensors") -> Model:
    """The model of a training run (``config.json["model"]`` + weights), in eval mode.

    Raises:
        FileNotFoundError: the run directory, its config or its weights are missing.
        ValueError: the config has no model, or the weights do not fit it.
    """
    from safetensors.torch import load_file

    run = Path(run_dir)
    config_path, weights_path = run / "config.json", run / weights
    if not run.is_dir():
        raise FileNotFoundError(f"no run directory {str(run)!r}")
    for path in (config_path, weights_path):
        if not path.is_file():
            raise FileNotFoundError(f"{str(run)!r} has no {path.name} (is it a finished run?)")
    config = json.loads(config_path.read_text())
    if not isinstance(config.get("model"), dict) or "name" not in config["model"]:
        raise ValueError(f"{config_path} has no model configuration (key 'model' with a 'name')")
    model = create(**config["model"])
    try:
        model.load_state_dict(load_file(str(weights_path)))
    except RuntimeError as exc:
        raise ValueError(f"{weights_path} does not fit the model in config.json") from exc
    return model.eval()


def parameter_table(sizes: Sequence[str] = SIZES) -> str:
    """A text table of parameter counts: model × size, classifier and transformers apart."""
    rows = [f"{'model':<7}{'size':<12}{'total':>10}{'classifier':>12}{'transformers':>14}"]
    for size in sizes:
        for name in names():
            m = create(name, size=size)
            loc = sum(p.numel() for p in m.localization_parameters())
            total = count_parameters(m)
            rows.append(f"{name:<7}{size:<12}{total:>10,}{total - loc:>12,}{loc:>14,}")
    return "\n".join(rows)


if __name__ == "__main__":
    print(parameter_table())
