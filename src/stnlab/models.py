"""The study's classifiers (cnn, stn, mstn) and icstn, created by name from a registry.

Every model is one classifier CNN, split into conv blocks and a fully connected head,
with spatial transformers placed in front of (or between) its blocks, so the
classifier part has the same size in every design of a given size preset:

    cnn    image ─────────────────────────────── blocks ─ head ─ digit
    stn    image ─ STN ───────────────────────── blocks ─ head ─ digit
    mstn   image ─ STN ─ block 1 ─ STN ────────── blocks 2.. ─ head ─ digit
    icstn  image ─ STN ─ STN (θ = θ1 ∘ Δ, one warp of the image) ─ blocks ─ head ─ digit

The STN paper's own designs (Table 1) have their own base networks, not the size's CNN:
``fcn`` and ``paper-cnn``, and ``st-fcn`` and ``st-cnn`` with a transformer in front,
their base nets narrowed to the same parameter count (docs/study/paper.md).

``cnn`` and ``stn`` also take a timm or torchvision classifier in place of the CNN
(``backbone``; :mod:`stnlab.backbones`).

Example:
    >>> import torch
    >>> from stnlab import models
    >>> m = models.create("stn", size="tf-example")
    >>> m(torch.rand(2, 1, 40, 40)).shape
    torch.Size([2, 10])
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from stnlab import transforms as T
from stnlab.backbones import WithTransformer, create_backbone
from stnlab.config import SIZES, ModelConfig, Widths
from stnlab.config.errors import ConfigError
from stnlab.runs import RunDir
from stnlab.transformer import SpatialTransformer, probe_output

__all__ = [
    "Model",
    "count_parameters",
    "create",
    "load",
    "names",
    "register",
]


# ----------------------------------------------------------------------------- building blocks


def _conv_block(
    c_in: int, c_out: int, kernel: int, stride: int, pool: int, norm: bool
) -> nn.Sequential:
    """Conv ('same' padding) → [MaxPool] → [BatchNorm] → ReLU.

    Pooling first (max-pooling commutes with ReLU) runs BatchNorm and ReLU on a
    quarter of the pixels, which makes training markedly faster on CPU
    (docs/results.md, "How the defaults were chosen").
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


class _Residual(nn.Module):
    """A ResNet basic block that pools where the plain blocks do, after its first conv:
    ReLU(BN(conv(block x)) + skip(pool x)), ``block`` a plain :func:`_conv_block`
    (conv → pool → BN → ReLU) and the skip a 1×1 conv (and BN) where the width or stride
    changes.

    The second conv runs on the pooled maps: 2.3–2.6× the training speed of pooling after
    the whole block (docs/results.md, "How the defaults were chosen").
    """

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, pool: int, norm: bool):
        super().__init__()
        self.first = _conv_block(c_in, c_out, kernel, stride, pool, norm)
        self.second = nn.Sequential(
            nn.Conv2d(c_out, c_out, kernel, padding=kernel // 2, bias=not norm),
            nn.BatchNorm2d(c_out) if norm else nn.Identity(),
        )
        skip: list[nn.Module] = [nn.MaxPool2d(pool)] if pool > 1 else []
        if c_in != c_out or stride > 1:
            skip.append(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=not norm))
            skip.append(nn.BatchNorm2d(c_out) if norm else nn.Identity())
        self.skip = nn.Sequential(*skip)

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(self.second(self.first(x)) + self.skip(x))


def _out_size(module: nn.Module, channels: int, size: tuple[int, int]) -> tuple[int, ...]:
    """Shape (C, H, W) of ``module``'s output for one input of (channels, *size)."""
    return tuple(probe_output(module, (1, channels, *size))[1:])


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


class _Stages(nn.Module):
    """A classifier as the designs use it: conv ``blocks`` (a ModuleList), then a ``head``."""

    blocks: nn.ModuleList
    head: nn.Module

    def features(self, x: Tensor, start: int = 0, stop: int | None = None) -> Tensor:
        """Run conv blocks ``start:stop`` on x."""
        for block in self.blocks[start:stop]:
            x = block(x)
        return x

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


class Classifier(_Stages):
    """The CNN shared by every design: conv ``blocks`` then an FC ``head`` to logits."""

    def __init__(self, in_channels: int, in_size: tuple[int, int], num_classes: int, w: Widths):
        super().__init__()
        c, blocks = in_channels, []
        block = _Residual if w.residual else _conv_block
        for width in w.conv:
            blocks.append(block(c, width, w.kernel, w.stride, w.pool, w.norm))
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


# ----------------------------------------------------------------------------- the designs


def image_transformer(config: ModelConfig, first: bool = True) -> SpatialTransformer:
    """A transformer that warps the input image to its own size.

    The first one starts zoomed in by ``loc_zoom``; later ones (IC-STN's updates)
    start at the identity, since their warps compose with the first.
    """
    c, size, w = config.in_channels, T.as_size(config.in_size), config.layers()
    loc = localization(c, size, w, w.loc_pool)
    zoom = w.loc_zoom if first else 1.0
    return SpatialTransformer(c, size, transform=config.transform, localization=loc, init_zoom=zoom)


class Model(nn.Module):
    """Base of the registered models: a classifier with spatial transformers in a chain.

    Transformer k > 0 sits after classifier block k - 1 (one transformer: STN; two: MSTN);
    :meth:`transform` runs the chain, :meth:`forward` classifies its last output.
    Subclasses add transformers in ``__init__`` or override :meth:`transform`.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.widths: Widths = config.layers()
        self.in_size = T.as_size(config.in_size)
        self.transformers = nn.ModuleList()  # registered first: the figures read left to right
        self.classifier = self._classifier()

    def _classifier(self) -> _Stages:
        """The classifier: the size's CNN (the paper's designs override it)."""
        c, n = self.config.in_channels, self.config.num_classes
        return Classifier(c, self.in_size, n, self.widths)

    def _image_transformer(self, first: bool = True) -> SpatialTransformer:
        return image_transformer(self.config, first)

    def blocks_done(self) -> int:
        """Classifier blocks that :meth:`transform` has already run on its last output."""
        return max(0, len(self.transformers) - 1)

    def transform(self, x: Tensor) -> list[tuple[Tensor, Tensor]]:
        """Each transformer's output and θ: [(warped (N, C, H', W'), θ (N, P)), ...]."""
        stages = []
        for k, st in enumerate(self.transformers):
            if k:
                x = self.classifier.features(x, k - 1, k)  # the block before transformer k
            x, theta = st.stage(x)
            stages.append((x, theta))
        return stages

    def forward(self, x: Tensor) -> Tensor:
        stages = self.transform(x)
        x = stages[-1][0] if stages else x
        return self.classifier.head(self.classifier.features(x, self.blocks_done()))

    def localization_parameters(self) -> list[nn.Parameter]:
        """Parameters of every localization net and regressor (for their own learning rate)."""
        return [p for st in self.transformers for p in st.parameters()]


_REGISTRY: dict[str, Callable[[ModelConfig], Model]] = {}  # every model, built-in or not
BACKBONE_DESIGNS = ("cnn", "stn")  # the designs that take a --backbone


def register(name: str) -> Callable:
    """Class decorator: make a model creatable as ``create(name, ...)`` (timm-style).

    The one way a model becomes known, for the built-in designs below as for a user's.
    The class is called as ``cls(config)`` with a :class:`~stnlab.config.ModelConfig`,
    like the :class:`Model` subclasses here.
    """

    def add(cls: Callable[[ModelConfig], Model]) -> Callable[[ModelConfig], Model]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = cls
        return cls

    return add


@register("cnn")
class CNN(Model):
    """The control: image → CNN → digit."""


@register("stn")
class STN(Model):
    """Jaderberg et al.: image → STN → CNN → digit; the CNN classifies the warped image."""

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        self.transformers.append(self._image_transformer())


@register("mstn")
class MSTN(Model):
    """Image → STN → CNN block → STN → CNN blocks → digit; the second warps feature maps."""

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        c, h, w = self.classifier.sizes[1]  # feature maps after the first block
        # The feature maps are already downsampled, so their localization does not pool.
        loc = localization(c, (h, w), self.widths, pool=1)
        self.transformers.append(self._image_transformer())
        self.transformers.append(
            SpatialTransformer(c, (h, w), transform=config.transform, localization=loc)
        )


@register("icstn")
class ICSTN(Model):
    """Inverse-compositional STN (Lin & Lucey, 2017), one localization net per step.

    Step k predicts an update Δ_k from the image warped by θ_{k-1} and composes it,
    θ_k = θ_{k-1} ∘ Δ_k; every step resamples the *original* image once, so no
    content is lost at the borders by warping twice. ``config.steps`` is the number of
    transformers; the transform family must be a matrix family.
    """

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        for k in range(config.steps):
            self.transformers.append(self._image_transformer(first=k == 0))
        if not hasattr(self.transformers[0].transform, "compose"):
            matrix = [n for n in T.names() if hasattr(T.get(n), "compose")]
            raise ConfigError(
                f"model.transform: icstn composes warps, so its transform must be one of "
                f"{', '.join(matrix)}; got {config.transform!r}",
                "model.transform",
            )

    def blocks_done(self) -> int:
        return 0

    def transform(self, x: Tensor) -> list[tuple[Tensor, Tensor]]:
        out, theta = [], None
        for st in self.transformers:
            update = st.localize(x if theta is None else out[-1][0])
            theta = update if theta is None else st.transform.compose(theta, update)
            st.last_theta = theta.detach()
            out.append((st.warp(x, theta), theta))
        return out


# ----------------------------------------------------------------------------- the paper's designs

# Jaderberg et al. (2015), Table 1 and section 4.1: an FCN and a CNN, alone or behind a
# spatial transformer whose localization net is of the same kind (ST-FCN, ST-CNN). The
# paper gives the CNN's shape (conv 9×9 → max-pool → conv 7×7 → max-pool → FC) and asks
# for the same number of parameters in every model of a column; the widths below are our
# choice (docs/study/paper.md), kept small enough for a CPU. No dropout or BatchNorm: the
# paper's nets are plain ReLU networks.
PAPER_HIDDEN = 128  # the FCN's two hidden layers; the CNN's FC layer after the convs
PAPER_CONV = ((32, 9), (64, 7))  # the CNN's (channels, kernel): 'valid' convs, max-pool 2 each
PAPER_LOC_FC = (32, 32)  # ST-FCN's localization: hidden FC layers
PAPER_LOC_CONV = (20, 20)  # ST-CNN's localization: 5×5 'same' convs, max-pool 2 each ...
PAPER_LOC_HIDDEN = 50  # ... then this FC layer; its input is max-pooled by 2 first


class PaperNet(_Stages):
    """The paper's base networks: ``fcn`` (two hidden FC layers) or ``cnn`` (two conv blocks
    then one hidden FC layer), ``hidden`` units wide, the convs narrowed to ``narrow`` of
    ``PAPER_CONV``'s channels; ReLU throughout, logits out."""

    def __init__(
        self,
        kind: str,
        in_channels: int,
        in_size: tuple[int, int],
        num_classes: int,
        hidden: int,
        narrow: float = 1.0,
    ):
        super().__init__()
        c, blocks = in_channels, []
        for full, kernel in PAPER_CONV if kind == "cnn" else ():
            width = max(1, round(full * narrow))
            blocks.append(nn.Sequential(nn.Conv2d(c, width, kernel), nn.MaxPool2d(2), nn.ReLU()))
            c = width
        self.blocks = nn.ModuleList(blocks)
        self.sizes = [(in_channels, *in_size)]  # (C, H, W) entering each block, then leaving
        for block in self.blocks:
            self.sizes.append(_out_size(block, self.sizes[-1][0], self.sizes[-1][1:]))
        features = math.prod(self.sizes[-1])
        layers: list[nn.Module] = [nn.Flatten()]
        for _ in range(2 if kind == "fcn" else 1):
            layers += [nn.Linear(features, hidden), nn.ReLU()]
            features = hidden
        self.head = nn.Sequential(*layers, nn.Linear(features, num_classes))


def paper_localization(kind: str, in_channels: int, in_size: tuple[int, int]) -> nn.Module:
    """The localization net of ST-FCN (``fcn``) or ST-CNN (``cnn``): (N, C, H, W) → (N, F)."""
    if kind == "fcn":
        layers: list[nn.Module] = [nn.Flatten()]
        features = in_channels * in_size[0] * in_size[1]
        for width in PAPER_LOC_FC:
            layers += [nn.Linear(features, width), nn.ReLU()]
            features = width
        return nn.Sequential(*layers)
    layers, c = [nn.MaxPool2d(2)], in_channels
    for width in PAPER_LOC_CONV:
        layers += [nn.Conv2d(c, width, 5, padding=2), nn.MaxPool2d(2), nn.ReLU()]
        c = width
    layers.append(nn.Flatten())
    features = _out_size(nn.Sequential(*layers), in_channels, in_size)[0]
    return nn.Sequential(*layers, nn.Linear(features, PAPER_LOC_HIDDEN), nn.ReLU())


def fit_width(count: Callable[[int], int], budget: int, widest: int) -> int:
    """The width in 1..``widest`` whose ``count`` (increasing in it) is nearest ``budget``.

    Example:
        >>> fit_width(lambda h: 10 * h, 333, 128)
        33
    """
    lo, hi = 1, widest
    while lo < hi:  # the narrowest width that reaches the budget
        mid = (lo + hi) // 2
        lo, hi = (mid + 1, hi) if count(mid) < budget else (lo, mid)
    return min((lo, max(lo - 1, 1)), key=lambda h: abs(count(h) - budget))


class _PaperBase(Model):
    """The paper's FCN or CNN alone (``kind``), at the full width."""

    kind = "cnn"

    def _base(self, hidden: int, narrow: float = 1.0) -> PaperNet:
        c, n = self.config.in_channels, self.config.num_classes
        return PaperNet(self.kind, c, self.in_size, n, hidden, narrow)

    def _classifier(self) -> PaperNet:
        return self._base(PAPER_HIDDEN)


class _PaperST(_PaperBase):
    """A spatial transformer (of ``config.transform``'s family) in front of the paper's base
    net, narrowed (every layer in proportion) so that the whole has the base's parameter count.

    Narrowing every layer, not the FC layer alone, keeps the base trainable where the
    localization net is a large part of the budget (small images)."""

    def __init__(self, config: ModelConfig):
        super().__init__(config)  # the base alone, at full width: the count to match
        target = count_parameters(self.classifier)
        c = config.in_channels
        loc = paper_localization(self.kind, c, self.in_size)
        st = SpatialTransformer(c, self.in_size, transform=config.transform, localization=loc)
        self.transformers.append(st)
        budget, top = target - count_parameters(st), PAPER_HIDDEN
        # Every layer in proportion first, then the FC width alone for the last few hundred.
        h = fit_width(lambda h: count_parameters(self._base(h, h / top)), budget, top)
        hidden = fit_width(lambda k: count_parameters(self._base(k, h / top)), budget, top)
        self.classifier = self._base(hidden, h / top)


@register("fcn")
class FCN(_PaperBase):
    """The paper's FCN: image → FC → FC → digit."""

    kind = "fcn"


@register("paper-cnn")
class PaperCNN(_PaperBase):
    """The paper's CNN: image → conv 9×9 → pool → conv 7×7 → pool → FC → digit."""


@register("st-fcn")
class STFCN(_PaperST):
    """The paper's ST-FCN: image → ST (FC localization) → FCN → digit, as many parameters
    as ``fcn``."""

    kind = "fcn"


@register("st-cnn")
class STCNN(_PaperST):
    """The paper's ST-CNN: image → ST (conv localization) → CNN → digit, as many parameters
    as ``paper-cnn``."""


# ----------------------------------------------------------------------------- registry API


def names() -> list[str]:
    """Names of the models: the built-in designs and any registered ones."""
    return sorted(_REGISTRY)


def create(name: str | ModelConfig, **options: Any) -> Model | WithTransformer:
    """Build a model from its config, or from a name and config fields.

    ``options`` are :class:`~stnlab.config.ModelConfig` fields or free widths (see
    :class:`~stnlab.config.Widths`). ``model.config`` keeps the config, so
    ``create(model.config)`` rebuilds the same architecture. With a ``backbone``
    (``cnn`` and ``stn`` only) the classifier is that timm or torchvision model
    (a :class:`~stnlab.backbones.WithTransformer`).

    Raises:
        ConfigError: an unknown name or option, or a config the layers cannot be built for.

    Example:
        >>> create("cnn", size="small", hidden=32).widths.hidden
        32
    """
    if isinstance(name, ModelConfig):
        config = ModelConfig.from_dict({**name.to_dict(), **options}) if options else name
    else:
        config = ModelConfig.from_dict({"name": name, **options})
    _check_names(config)
    try:
        return _with_backbone(config) if config.backbone else _REGISTRY[config.name](config)
    except ConfigError:
        raise
    except ValueError as exc:  # e.g. an input size too small for the layers
        size = "x".join(map(str, T.as_size(config.in_size)))
        raise ConfigError(f"model: cannot build {config.name} for {size} images: {exc}") from exc


def _check_names(config: ModelConfig) -> None:
    """Refuse a model or transform name that nobody registered, naming the known ones."""
    for key, name, known in (
        ("model.name", config.name, names()),
        ("model.transform", config.transform, T.names()),
    ):
        if name not in known:
            noun = key.split(".")[1].replace("name", "model")
            raise ConfigError(f"{key}: unknown {noun} {name!r}; known: {', '.join(known)}", key)
    if config.pretrained and not config.backbone:
        raise ConfigError("model.pretrained needs a backbone", "model.pretrained")
    if config.backbone and config.name not in BACKBONE_DESIGNS:
        raise ConfigError(
            f"model.backbone: only {' and '.join(BACKBONE_DESIGNS)} take a backbone, "
            f"got model {config.name!r}",
            "model.backbone",
        )


def _with_backbone(config: ModelConfig) -> WithTransformer:
    """``cnn`` or ``stn`` with ``config.backbone`` as the classifier; the stn's transformer
    is the one of its size (:func:`image_transformer`)."""
    transformer = image_transformer(config) if config.name == "stn" else None
    size = T.as_size(config.in_size)
    fed = size if transformer is None else transformer.output_size(size)
    c = config.in_channels
    try:
        net = create_backbone(config.backbone, c, config.num_classes, config.pretrained, fed)
        model = WithTransformer(net, transformer, c, size, name=config.backbone)
    except (ValueError, ImportError, ConnectionError) as exc:
        raise ConfigError(f"model.backbone: {exc}", "model.backbone") from exc
    model.config = config
    return model


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def load(run_dir: str | Path, weights: str | None = None) -> Model | WithTransformer:
    """The model of a training run (its config.json and weights), in eval mode.

    Raises:
        RunFolderError: the folder, its config or its weights are missing or damaged.
    """
    run = RunDir(run_dir)
    config = run.model_config()
    model = create(replace(config, pretrained=False))  # the run's weights: no download
    model.config = config
    run.load_weights(model, weights)
    return model.eval()


def parameter_table(sizes: Sequence[str] = tuple(SIZES)) -> str:
    """A text table of parameter counts: model × size, classifier and transformers apart."""
    rows = [f"{'model':<10}{'size':<12}{'total':>10}{'classifier':>12}{'transformers':>14}"]
    for size in sizes:
        for name in names():
            m = create(name, size=size)
            loc = sum(p.numel() for p in m.localization_parameters())
            total = count_parameters(m)
            rows.append(f"{name:<10}{size:<12}{total:>10,}{total - loc:>12,}{loc:>14,}")
    return "\n".join(rows)


if __name__ == "__main__":
    print(parameter_table())
