"""A spatial transformer in front of any classifier, and classifiers from timm or torchvision.

:func:`with_transformer` puts a :class:`~stnlab.SpatialTransformer` in front of any
``nn.Module`` that maps images (N, C, H', W') to logits (N, K): a ResNet, a ViT, your own
net. The result has what stnlab's own designs have (``transformers``, each with its
``last_theta``; :meth:`~WithTransformer.transform`;
:meth:`~WithTransformer.localization_parameters`), so the θ statistics of
:mod:`stnlab.diagnostics` and ONNX export work on it as they do on an ``stn``.
:func:`create_backbone` builds ``timm:NAME`` or ``torchvision:NAME`` for given input
channels and classes (the optional extra ``stnlab[backbones]``).

Example:
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Conv2d(1, 8, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
    ...                     nn.Linear(8, 10))
    >>> model = with_transformer(net, in_size=40, out_size=28)  # 40x40 in, 28x28 to the net
    >>> model(torch.rand(2, 1, 40, 40)).shape
    torch.Size([2, 10])
    >>> model.transformers[0].last_theta.shape  # affine: 6 parameters per image
    torch.Size([2, 6])
"""

from __future__ import annotations

import contextlib
import importlib
import io
import math
import sys
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from stnlab import transforms as T
from stnlab.transformer import OutSize, SpatialTransformer

__all__ = ["LIBRARIES", "WithTransformer", "create_backbone", "with_transformer"]

LIBRARIES = ("timm", "torchvision")  # where create_backbone finds a NAME
EXTRA = "pip install 'stnlab[backbones]'"
_LARGEST = 1024  # the largest side tried when looking for the size a backbone needs

# torchvision builders whose defaults return more than logits or warn without these.
_TORCHVISION_OPTIONS = {
    "googlenet": {"aux_logits": False, "init_weights": True},
    "inception_v3": {"aux_logits": False, "init_weights": True},
}


class WithTransformer(nn.Module):
    """A classifier with a spatial transformer in front: image → STN → backbone → logits.

    Args:
        backbone: any module mapping (N, C, H', W') to logits (N, K), where (H', W') is the
            transformer's output size (the input's without a transformer).
        transformer: the :class:`~stnlab.SpatialTransformer` in front, or ``None`` for
            the backbone alone (the control without a transformer).
        in_channels: channels C of the images.
        in_size: the image size (H, W), or an int for square images.
        name: how messages name the backbone (default: its class name).

    Raises:
        ValueError: the backbone cannot take the transformer's output (too small for its
            strides: the message names the size it needs), or does not return (N, K).

    ``transformers`` holds the transformer (or nothing), so ``transformers.0`` names it as
    in stnlab's ``stn``; ``num_classes`` is K, found by one forward pass.
    """

    def __init__(
        self,
        backbone: nn.Module,
        transformer: SpatialTransformer | None,
        in_channels: int,
        in_size: T.Size,
        name: str | None = None,
    ):
        super().__init__()
        # Registered first: figures and θ records read left to right, as for the stn.
        self.transformers = nn.ModuleList([] if transformer is None else [transformer])
        self.backbone = backbone
        self.in_channels = in_channels
        self.in_size = T.as_size(in_size)
        self.config = None  # the ModelConfig when stnlab.models built the model
        size = self.in_size if transformer is None else transformer.output_size(self.in_size)
        self.num_classes = _classes(backbone, in_channels, size, name or type(backbone).__name__)

    def transform(self, x: Tensor) -> list[tuple[Tensor, Tensor]]:
        """The transformer's output and θ: [(warped (N, C, H', W'), θ (N, P))], or []."""
        stages = []
        for st in self.transformers:
            x, theta = st.stage(x)
            stages.append((x, theta))
        return stages

    def forward(self, x: Tensor) -> Tensor:
        stages = self.transform(x)
        return self.backbone(stages[-1][0] if stages else x)

    def localization_parameters(self) -> list[nn.Parameter]:
        """The transformer's parameters (localization net and regressor), for their own
        learning rate; none without a transformer."""
        return [p for st in self.transformers for p in st.parameters()]


def with_transformer(
    backbone: nn.Module,
    in_size: T.Size,
    in_channels: int = 1,
    *,
    out_size: OutSize | None = None,
    transform: str | T.Transform = "affine",
    localization: nn.Module | None = None,
    init_zoom: float = 1.0,
    kernel: str = "bilinear",
    padding: str = "zeros",
) -> WithTransformer:
    """``backbone`` with a new :class:`~stnlab.SpatialTransformer` in front of it.

    The transformer takes images (N, ``in_channels``, *``in_size``) and hands the backbone
    its output of ``out_size``; the other arguments are the layer's (see
    :class:`~stnlab.SpatialTransformer`; the default localization net takes any size).

    Raises:
        ValueError: a bad layer argument, or a backbone that cannot take the output (the
            message names the size it needs).

    Example:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 20 * 20, 5))
        >>> m = with_transformer(net, 64, 3, out_size=20, transform="attention")
        >>> m(torch.rand(4, 3, 64, 64)).shape, m.transformers[0].transform.name
        (torch.Size([4, 5]), 'attention')
    """
    st = SpatialTransformer(
        in_channels,
        in_size,
        out_size=out_size,
        transform=transform,
        localization=localization,
        kernel=kernel,
        padding=padding,
        init_zoom=init_zoom,
    )
    return WithTransformer(backbone, st, in_channels, in_size)


# ----------------------------------------------------------------------------- taking the input


def _takes(backbone: nn.Module, shape: Sequence[int]) -> tuple[Tensor | None, str]:
    """The backbone's output for zeros of ``shape`` (eval mode, no grad), or None and why not."""
    reference = next(iter(backbone.parameters()), torch.empty(0))
    was_training = backbone.training
    backbone.eval()
    try:
        with torch.no_grad():
            return backbone(reference.new_zeros(tuple(shape))), ""
    except (RuntimeError, ValueError, AssertionError, IndexError) as exc:
        return None, (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    finally:
        backbone.train(was_training)


def _smallest_side(backbone: nn.Module, channels: int, side: int) -> int | None:
    """The smallest square side above ``side`` that the backbone takes (a larger input is
    assumed to fit too), or None up to :data:`_LARGEST`."""
    low, high = side, side * 2
    while _takes(backbone, (1, channels, high, high))[0] is None:
        if high >= _LARGEST:
            return None
        low, high = high, min(high * 2, _LARGEST)
    while high - low > 1:  # low fails, high fits
        mid = (low + high) // 2
        low, high = (
            (low, mid) if _takes(backbone, (1, channels, mid, mid))[0] is not None else (mid, high)
        )
    return high


def _classes(backbone: nn.Module, channels: int, size: tuple[int, int], name: str) -> int:
    """K of the backbone's (N, K) logits for inputs (N, channels, *size); a ValueError naming
    the size it needs when it cannot take them."""
    out, why = _takes(backbone, (2, channels, *size))
    shown = "x".join(map(str, size))
    if out is None:
        needs = _smallest_side(backbone, channels, max(size))
        if needs is None:
            raise ValueError(f"backbone {name} cannot take {channels}x{shown} inputs: {why}")
        raise ValueError(
            f"backbone {name} cannot take {shown} inputs (too small for its strides): "
            f"it needs at least {needs}x{needs}"
        )
    if not isinstance(out, Tensor) or out.ndim != 2 or len(out) != 2:
        got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(f"backbone {name} must return logits (N, K), got {got} for N = 2")
    return out.shape[1]


# ----------------------------------------------------------------------------- timm and torchvision


def _library(name: str, spec: str):
    """Import timm or torchvision, or an ImportError saying what to install."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ImportError(
            f"backbone {spec} needs {name} ({exc}); install the extra: {EXTRA}"
        ) from exc
    except Exception as exc:  # installed but broken, e.g. a torchvision built for another torch
        first = (str(exc).strip().splitlines() or [""])[0]
        raise ImportError(
            f"backbone {spec}: {name} is installed but does not load with torch "
            f"{torch.__version__} ({type(exc).__name__}: {first}); install the torchvision "
            "build made for this torch (tools/install-torch.sh does)"
        ) from exc


def _close(name: str, known: Sequence[str]) -> str:
    """``; similar: a, b`` for the known names that contain ``name`` or look like it."""
    import difflib

    found = [k for k in known if name.lower() in k.lower()][:6]
    found = found or difflib.get_close_matches(name, known, n=6)
    return f"; similar: {', '.join(found)}" if found else ""


def _timm(
    name: str, spec: str, channels: int, classes: int, pretrained: bool, size: tuple | None
) -> nn.Module:
    timm = _library("timm", spec)
    if not timm.is_model(name):
        raise ValueError(f"unknown timm model {name!r}{_close(name, timm.list_models())}")
    options = {"num_classes": classes, "in_chans": channels}
    cfg = timm.models.get_pretrained_cfg(name)
    if size is not None and cfg is not None and getattr(cfg, "fixed_input_size", False):
        options["img_size"] = tuple(size)  # a ViT is built for one size: make it this one
    net = timm.create_model(name, pretrained=False, **options)
    if pretrained:
        try:
            net = timm.create_model(name, pretrained=True, **options)
        except Exception as exc:
            raise _download_error(spec, exc) from exc
    return net


def _torchvision(name: str, spec: str, channels: int, classes: int, pretrained: bool) -> nn.Module:
    _library("torchvision", spec)
    from torchvision import models as tvm

    known = tvm.list_models(module=tvm)  # the classification models
    if name not in known:
        raise ValueError(f"unknown torchvision classification model {name!r}{_close(name, known)}")
    net = tvm.get_model(
        name, weights=None, num_classes=classes, **_TORCHVISION_OPTIONS.get(name, {})
    )
    if channels != 3:
        _set_input_channels(net, channels, spec)
    if pretrained:
        said = io.StringIO()  # torch.hub's "Downloading: URL": a line too many on failure
        try:
            with contextlib.redirect_stdout(said), contextlib.redirect_stderr(said):
                state = tvm.get_model_weights(name).DEFAULT.get_state_dict(progress=False)
        except Exception as exc:
            raise _download_error(spec, exc) from exc
        sys.stderr.write(said.getvalue())
        _load_matching(net, state, channels)
    return net


def _download_error(spec: str, exc: Exception) -> ConnectionError:
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return ConnectionError(
        f"could not get the pretrained weights of {spec} ({type(exc).__name__}: {first}); "
        "they are downloaded once, which needs the network"
    )


def _set_input_channels(net: nn.Module, channels: int, spec: str) -> None:
    """Replace the first conv (3 input channels, in registration order) by one taking
    ``channels``."""
    for key, conv in net.named_modules():
        if isinstance(conv, nn.Conv2d):
            if conv.in_channels != 3 or conv.groups != 1:
                break
            parent, _, attr = key.rpartition(".")
            new = nn.Conv2d(
                channels,
                conv.out_channels,
                conv.kernel_size,
                conv.stride,
                conv.padding,
                conv.dilation,
                bias=conv.bias is not None,
                padding_mode=conv.padding_mode,
            )
            setattr(net.get_submodule(parent), attr, new)
            return
    raise ValueError(f"backbone {spec}: found no first convolution to give {channels} channels")


def _load_matching(net: nn.Module, state: dict[str, Tensor], channels: int) -> None:
    """Load pretrained weights where the shapes match; the first conv's RGB filters are
    summed (1 channel) or repeated (others) as timm does; the new head keeps its init."""
    own, kept = net.state_dict(), {}
    for key, value in state.items():
        if key not in own:
            continue
        if value.shape == own[key].shape:
            kept[key] = value
        elif value.ndim == 4 and value.shape[1] == 3 and own[key].shape[1] == channels:
            if channels == 1:
                kept[key] = value.sum(1, keepdim=True)  # (O, 1, k, k)
            else:
                repeats = math.ceil(channels / 3)
                kept[key] = value.repeat(1, repeats, 1, 1)[:, :channels] * (3 / channels)
    net.load_state_dict(kept, strict=False)


def create_backbone(
    spec: str,
    in_channels: int = 3,
    num_classes: int = 10,
    pretrained: bool = False,
    in_size: T.Size | None = None,
) -> nn.Module:
    """A classifier ``timm:NAME`` or ``torchvision:NAME`` for images of ``in_channels``
    and ``num_classes`` classes: random weights, or ``pretrained`` ones (downloaded once;
    the first conv is adapted to the channels and the head is new).

    ``in_size`` (H, W) is passed to timm models built for one input size (ViTs), so they
    take this one. Needs the extra ``stnlab[backbones]`` (timm and torchvision).

    Raises:
        ValueError: a spec not of that form, or a name the library does not know.
        ImportError: the library is missing (the message names the extra) or broken.
        ConnectionError: the pretrained weights could not be downloaded.

    Example:
        >>> net = create_backbone("timm:resnet10t", in_channels=1, num_classes=10)  # doctest: +SKIP
    """
    library, _, name = spec.partition(":")
    if library not in LIBRARIES or not name:
        raise ValueError(
            f"a backbone is {' or '.join(f'{k}:NAME' for k in LIBRARIES)}, got {spec!r}"
        )
    if library == "timm":
        size = None if in_size is None else T.as_size(in_size)
        return _timm(name, spec, in_channels, num_classes, pretrained, size)
    return _torchvision(name, spec, in_channels, num_classes, pretrained)
