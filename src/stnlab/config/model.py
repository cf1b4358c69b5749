"""How a model is configured: the design's name, its layer sizes (presets) and its images."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, ClassVar

from stnlab.config.errors import ConfigError
from stnlab.config.options import Config, option, plain

__all__ = ["SIZES", "ModelConfig", "Widths"]


@dataclass(frozen=True)
class Widths(Config):
    """Layer sizes of a model: the classifier CNN and every localization network."""

    SECTION: ClassVar[str] = "model.widths"

    conv: tuple[int, ...] = option((16, 32, 64), "output channels of each classifier conv block")
    kernel: int = option(3, "conv kernel size ('same' padding)")
    stride: int = option(1, "conv stride")
    pool: int = option(2, "max-pool factor after each conv block (1: none)")
    norm: bool = option(True, "BatchNorm after every classifier conv")
    residual: bool = option(
        False,
        "make each classifier block residual: two convs and a skip (a 1x1 conv where the "
        "width changes), then the pool",
    )
    hidden: int = option(128, "width of the classifier's hidden FC layer")
    dropout: float = option(0.3, "dropout before the last FC layer of the head and of an MLP loc")
    loc_conv: tuple[int, ...] = option(
        (16, 32), "channels of the localization conv blocks (5x5, pool 2); () makes it an MLP"
    )
    loc_hidden: int = option(64, "width of the localization's feature vector")
    loc_pool: int = option(2, "max-pool factor applied to the image before its localization")
    loc_norm: bool = option(False, "BatchNorm in the localization convs too")
    # Chosen on validation accuracy (full-MNIST 40×40, default size, 30 epochs, seed 0):
    # started at the identity, the stn never learns to zoom (the classifier co-adapts to
    # the scale it first sees); started at 0.7 it keeps the zoom and follows the digit.
    # The measurements: docs/results.md, "How the defaults were chosen".
    loc_zoom: float = option(
        0.7,
        "the image transformer starts as a centred zoom on this "
        "part of each side (1: the identity)",
    )

    def check(self) -> None:
        self.require(
            len(self.conv) >= 2,
            "conv",
            f"needs at least two blocks (mstn places a transformer between), got {list(self.conv)}",
        )
        self.require(min(self.conv) >= 1, "conv", f"needs positive widths, got {list(self.conv)}")
        self.positive("kernel", "stride", "pool", "hidden", "loc_hidden", "loc_pool", "loc_zoom")
        self.require(0 <= self.dropout < 1, "dropout", f"must be in [0, 1), got {self.dropout}")


SIZES: dict[str, Widths] = {
    "small": Widths(conv=(8, 16, 32), hidden=64, loc_conv=(8, 16), loc_hidden=32),
    # (16, 32, 64) trains much faster than (32, 64, 64) on the 40×40 set. BatchNorm in the
    # localization made θ jumpy between train and eval mode, so it is off by default.
    # The measurements: docs/results.md, "How the defaults were chosen".
    "default": Widths(),
    "large": Widths(conv=(32, 64, 128), hidden=256, loc_conv=(32, 64), loc_hidden=128),
    # The richer ConvNet of the study's future work: large's widths and localization nets,
    # each block a ResNet basic block (6 convs, not 3) pooling after its first conv. The
    # skips keep a deeper classifier training as fast as a shallow one, so only the
    # classifier's capacity changes.
    "residual": Widths(
        conv=(32, 64, 128), residual=True, hidden=256, loc_conv=(32, 64), loc_hidden=128
    ),
    # tensorflow/models research/transformer/cluttered_mnist.py: loc FC 1600→20 (tanh)
    # → dropout → FC 20→6; conv 3×3×16 /2, conv 3×3×16 /2, FC 1600→1024, dropout, FC →10.
    "tf-example": Widths(
        conv=(16, 16),
        kernel=3,
        stride=2,
        pool=1,
        norm=False,
        hidden=1024,
        dropout=0.2,
        loc_conv=(),
        loc_hidden=20,
        loc_pool=1,
        loc_zoom=1.0,
    ),
}


@dataclass
class ModelConfig(Config):
    """A model: its design, layer sizes and the images it takes (see :mod:`stnlab.models`)."""

    SECTION: ClassVar[str] = "model"

    # Model and transform names are checked where models are built (stnlab.models), the
    # one registry of both: listing them here would import torch for `stnlab --help`.
    name: str = option(
        "stn",
        "the design: a registered model (`stnlab models` lists them)",
        decides=True,
        flag="model",
    )
    size: str = option("default", "layer sizes preset", decides=True, choices=SIZES, noun="size")
    transform: str = option(
        "affine",
        "transform family of the spatial transformers (`stnlab models` lists them)",
        decides=True,
    )
    widths: dict[str, Any] = option(
        factory=dict,
        decides=True,
        cli=False,
        help="layer sizes that replace the preset's (see Widths)",
    )
    steps: int = option(
        2, "transformers of icstn, each composing its warp with the last", decides=True
    )
    # Checked where models are built (stnlab.models, stnlab.backbones: timm and torchvision).
    backbone: str = option(
        "",
        "classify with timm:NAME or torchvision:NAME instead of the size's CNN (cnn and stn "
        "only; the size still sets the stn's localization net); needs stnlab[backbones]",
        decides=True,
        metavar="LIB:NAME",
    )
    pretrained: bool = option(
        False,
        "start the backbone from its pretrained weights (downloaded once: needs the network)",
        decides=True,
    )
    in_channels: int = option(1, "image channels (set from the data)", decides=True, cli=False)
    in_size: int | tuple[int, int] = option(
        40, "image size, or (height, width) (set from the data)", decides=True, cli=False
    )
    num_classes: int = option(10, "classes (set from the data)", decides=True, cli=False)

    def check(self) -> None:
        self.positive("steps", "in_channels", "num_classes")
        size = self.in_size if isinstance(self.in_size, tuple) else (self.in_size,) * 2
        self.require(min(size) >= 1, "in_size", f"must be positive, got {self.in_size}")
        self.in_size = size[0] if size[0] == size[1] else size
        known = [f.name for f in fields(Widths)]
        for k in self.widths:
            self.require(k in known, "widths", f": unknown width {k!r}; known: {', '.join(known)}")
        layers = self.layers()  # checks the widths and gives them their types
        self.widths = {k: getattr(layers, k) for k in self.widths}

    def layers(self) -> Widths:
        """The layer sizes: the ``size`` preset with ``widths`` replaced."""
        return replace(SIZES[self.size], **self.widths)

    def decisive(self) -> dict[str, Any]:
        """The fields that decide a result, with the widths as built (a preset may change)."""
        return {**super().decisive(), "widths": plain(self.layers())}

    def to_dict(self) -> dict[str, Any]:
        """Plain values with the widths resolved, so the model can be rebuilt as it was."""
        return {**plain(self), "widths": plain(self.layers())}

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str | None = None) -> ModelConfig:
        """Also reads the flat form of run folders written before the widths had a key."""
        if isinstance(values, dict):
            widths, known = [f.name for f in fields(Widths)], [f.name for f in fields(cls)]
            for k in values:
                if k not in known and k not in widths:
                    raise ConfigError(
                        f"unknown key {k!r} in {where or cls.SECTION}; known: "
                        f"{', '.join(known)}, or a width: {', '.join(widths)}"
                    )
            flat = {k: v for k, v in values.items() if k in widths}
            values = {k: v for k, v in values.items() if k not in flat}
            values = {**values, "widths": {**flat, **values.get("widths", {})}} if flat else values
        return super().from_dict(values, where)
