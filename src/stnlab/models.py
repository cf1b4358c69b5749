"""The study's classifiers (cnn, stn, mstn) and icstn, created by name from a registry.

Every model is one classifier CNN, split into conv blocks and a fully connected head,
with spatial transformers placed in front of (or between) its blocks, so the
classifier part has the same size in every design of a given size preset:

    cnn    image ─────────────────────────────── blocks ─ head ─ digit
    stn    image ─ STN ───────────────────────── blocks ─ head ─ digit
    mstn   image ─ STN ─ block 1 ─ STN ────────── blocks 2.. ─ head ─ digit
    icstn  image ─ STN ─ STN (θ = θ1 ∘ Δ, one warp of the image) ─ blocks ─ head ─ digit

Example:
    >>> import torch
    >>> from stnlab import models
    >>> m = models.create("stn", size="tf-example")
    >>> m(torch.rand(2, 1, 40, 40)).shape
    torch.Size([2, 10])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from stnlab import transforms as T
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
        self.classifier = Classifier(
            config.in_channels, self.in_size, config.num_classes, self.widths
        )

    def _image_transformer(self, first: bool = True) -> SpatialTransformer:
        """A transformer that warps the input image to its own size.

        The first one starts zoomed in by ``loc_zoom``; later ones (IC-STN's updates)
        start at the identity, since their warps compose with the first.
        """
        c = self.config.in_channels
        loc = localization(c, self.in_size, self.widths, self.widths.loc_pool)
        zoom = self.widths.loc_zoom if first else 1.0
        return SpatialTransformer(
            c, self.in_size, transform=self.config.transform, localization=loc, init_zoom=zoom
        )

    def blocks_done(self) -> int:
        """Classifier blocks that :meth:`transform` has already run on its last output."""
        return max(0, len(self.transformers) - 1)

    def transform(self, x: Tensor) -> list[tuple[Tensor, Tensor]]:
        """Each transformer's output and θ: [(warped (N, C, H', W'), θ (N, P)), ...]."""
        stages = []
        for k, st in enumerate(self.transformers):
            if k:
                x = self.classifier.features(x, k - 1, k)  # the block before transformer k
            theta = st.localize(x)
            st.last_theta = theta.detach()
            x = st.warp(x, theta)
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


# ----------------------------------------------------------------------------- registry API


def names() -> list[str]:
    """Names of the models: the built-in designs and any registered ones."""
    return sorted(_REGISTRY)


def create(name: str | ModelConfig, **options: Any) -> Model:
    """Build a model from its config, or from a name and config fields.

    ``options`` are :class:`~stnlab.config.ModelConfig` fields or free widths (see
    :class:`~stnlab.config.Widths`). ``model.config`` keeps the config, so
    ``create(model.config)`` rebuilds the same architecture.

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
        return _REGISTRY[config.name](config)
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


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def load(run_dir: str | Path, weights: str | None = None) -> Model:
    """The model of a training run (its config.json and weights), in eval mode.

    Raises:
        RunFolderError: the folder, its config or its weights are missing or damaged.
    """
    run = RunDir(run_dir)
    model = create(run.model_config())
    run.load_weights(model, weights)
    return model.eval()


def parameter_table(sizes: Sequence[str] = tuple(SIZES)) -> str:
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
