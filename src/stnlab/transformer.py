"""The spatial transformer layer: localization net -> θ -> grid generator -> sampler.

:class:`SpatialTransformer` warps images (N, C, H, W) and :class:`SpatialTransformer3d`
volumes (N, C, D, H, W); both are the same code, as ``nn.Conv2d`` and ``nn.Conv3d`` are.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Integral, Real

import torch
from torch import Tensor, nn

from stnlab import transforms as T
from stnlab.precision import autocast_off, work_dtype
from stnlab.sampling import check_options, sample

__all__ = ["SpatialTransformer", "SpatialTransformer3d", "default_localization", "probe_output"]

OutSize = int | float | Sequence[int | float]

POOLED = 4  # the default localization pools its features to 4 per axis, whatever the input
MIN_SIZE = 4  # ... after two 2× max-pools, so every input side must be at least 4
_AXES = {2: "H, W", 3: "D, H, W"}
_LAYERS = {  # dims -> (conv, max-pool, adaptive pool, kernel size)
    2: (nn.Conv2d, nn.MaxPool2d, nn.AdaptiveAvgPool2d, 5),
    3: (nn.Conv3d, nn.MaxPool3d, nn.AdaptiveAvgPool3d, 3),  # 3³ taps: 5³ costs 4.6× more
}


def default_localization(in_channels: int, hidden: int = 32, dims: int = 2) -> nn.Module:
    """A small conv net mapping inputs of any size (every side ≥ 4) to (N, hidden) features.

    Two conv + 2× max-pool blocks, then adaptive average pooling to 4 per axis, so the
    feature size does not depend on the input's. ``dims=3`` builds the volume version.
    """
    conv, pool, adaptive, k = _LAYERS[dims]
    return nn.Sequential(
        conv(in_channels, 8, kernel_size=k, padding=k // 2),
        pool(2),
        nn.ReLU(inplace=True),
        conv(8, 16, kernel_size=k, padding=k // 2),
        pool(2),
        nn.ReLU(inplace=True),
        adaptive(POOLED),
        nn.Flatten(),
        nn.Linear(16 * POOLED**dims, hidden),
        nn.ReLU(inplace=True),
    )


def _reference_tensor(module: nn.Module) -> Tensor:
    """An empty tensor on the module's device and floating dtype (CPU/default if none)."""
    for t in (*module.parameters(), *module.buffers()):
        if not isinstance(t, nn.parameter.UninitializedTensorMixin) and t.is_floating_point():
            return t.new_empty(0)
    return torch.empty(0)


def probe_output(module: nn.Module, input_shape: Sequence[int]) -> torch.Size:
    """The shape of ``module``'s output for an input of ``input_shape`` (batch included).

    Runs the module once on zeros (in its own device and dtype) in eval mode under
    ``no_grad``, then restores its train/eval mode.

    Raises:
        ValueError: the module cannot take such an input (too small, wrong channels).

    Example:
        >>> probe_output(nn.Conv2d(1, 4, 3), (2, 1, 8, 8))
        torch.Size([2, 4, 6, 6])
    """
    shape = tuple(int(n) for n in input_shape)
    probe = _reference_tensor(module).new_zeros(shape)
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            return module(probe).shape
    except RuntimeError as exc:
        raise ValueError(
            f"input of shape {shape} is too small or wrong for the network: "
            f"{str(exc).splitlines()[0]}"
        ) from exc
    finally:
        module.train(was_training)


def _out_size_spec(out_size: OutSize | None, dims: int) -> tuple[int | float, ...]:
    """Checked output size: per axis an int (pixels) or a float (a fraction of the input)."""
    if out_size is None:
        return (1.0,) * dims
    axes = (out_size,) * dims if isinstance(out_size, Real) else tuple(out_size)
    if len(axes) == dims and all(
        isinstance(a, Real) and not isinstance(a, bool) and 0 < a < math.inf for a in axes
    ):
        return tuple(int(a) if isinstance(a, Integral) else float(a) for a in axes)
    raise ValueError(
        f"out_size must be a positive int (pixels) or float (a fraction of the input size), "
        f"or a ({_AXES[dims]}) tuple of them, got {out_size!r}"
    )


class _SpatialTransformerNd(nn.Module):
    """The layer for ``dims`` spatial dimensions; see :class:`SpatialTransformer`."""

    dims = 2

    def __init__(
        self,
        in_channels: int,
        in_size: T.Size | None = None,
        out_size: OutSize | None = None,
        transform: str | T.Transform = "affine",
        localization: nn.Module | None = None,
        kernel: str = "bilinear",
        padding: str = "zeros",
        init_zoom: float = 1.0,
    ):
        super().__init__()
        if not 0 < init_zoom < math.inf:
            raise ValueError(f"init_zoom must be positive, got {init_zoom}")
        self.init_zoom = float(init_zoom)
        if in_channels < 1:
            raise ValueError(f"in_channels must be positive, got {in_channels}")
        self.in_channels = in_channels
        self.transform = T.get(transform, dims=self.dims)
        check_options(kernel, padding, self.dims)
        self.kernel, self.padding = kernel, padding
        # `is None`, not `or`: an empty nn.Sequential (raw pixels as features) is falsy.
        self.any_size = localization is None  # only the default net pools adaptively
        if localization is None:
            localization = default_localization(in_channels, dims=self.dims)
        elif in_size is None:
            raise ValueError("a custom localization network needs in_size, the size it takes")
        self.localization = localization
        self.in_size = None if in_size is None else T.as_size(in_size, self.dims)
        self.out_size = _out_size_spec(out_size, self.dims)
        if not self.any_size:  # the input size is fixed, so the output size is too
            self.out_size = self.output_size(self.in_size)
        probe = (2, in_channels, *(self.in_size or (MIN_SIZE,) * self.dims))
        features = math.prod(probe_output(localization, probe)[1:])
        reference = _reference_tensor(localization)
        self.regressor = nn.Linear(
            features, self.transform.num_params, device=reference.device, dtype=reference.dtype
        )
        self.reset_theta()
        self.last_theta: Tensor | None = None
        # Checking θ costs a host sync per call, and cannot run under torch.func.vmap or
        # CUDA graph capture: those set it off.
        self.check_finite = True

    def output_size(self, in_size: Sequence[int]) -> tuple[int, ...]:
        """The output's spatial size for an input of spatial size ``in_size``.

        An int axis of ``out_size`` is kept; a float one is that fraction of the input's
        side, rounded to the nearest int (at least 1).
        """
        return tuple(
            a if isinstance(a, int) else max(1, math.floor(a * n + 0.5))
            for a, n in zip(self.out_size, in_size, strict=True)
        )

    def reset_theta(self, zoom: float | None = None) -> None:
        """Make θ the same centred zoom for every input: zero weights, that zoom as the bias.

        ``zoom`` defaults to the layer's ``init_zoom``; 1 is the identity.
        """
        nn.init.zeros_(self.regressor.weight)
        with torch.no_grad():
            self.regressor.bias.copy_(self.transform.zoom(zoom or self.init_zoom, 1)[0])

    def reset_identity(self) -> None:
        """Make θ the identity for every input: zero weights, identity bias."""
        self.reset_theta(1.0)

    def _check_input(self, x: Tensor) -> None:
        c, dims = self.in_channels, self.dims
        if self.any_size:
            ok = x.ndim == dims + 2 and x.shape[1] == c and min(x.shape[2:]) >= MIN_SIZE
            expected = f"(N, {c}, {_AXES[dims]}) with every side at least {MIN_SIZE}"
        else:
            ok = x.ndim == dims + 2 and tuple(x.shape[1:]) == (c, *self.in_size)
            expected = str(("N", c, *self.in_size)).replace("'", "")
        if not ok:
            raise ValueError(
                f"{type(self).__name__} expected input of shape {expected}, got {tuple(x.shape)}"
            )

    def localize(self, x: Tensor) -> Tensor:
        """Predict θ for each input, (N, num_params).

        The localization net runs as autocast says; the regressor runs in its weights'
        dtype with autocast off, so θ is not rounded to bfloat16 (see :mod:`stnlab.precision`).
        """
        self._check_input(x)
        features = self.localization(x).flatten(1)  # (N, F)
        with autocast_off(x.device):
            theta = self.regressor(features.to(self.regressor.weight.dtype))  # (N, P)
        if self.check_finite and not torch.compiler.is_compiling() and not theta.isfinite().all():
            raise FloatingPointError(
                f"{type(self).__name__} produced non-finite θ (NaN or inf); "
                "lower the learning rate of the localization network"
            )
        return theta

    def warp(self, x: Tensor, theta: Tensor) -> Tensor:
        """Sample x at the grid of θ: (N, C, *in) -> (N, C, *out), in x's dtype.

        Grid and sampling run in at least float32 (see :mod:`stnlab.precision`).
        """
        work = work_dtype(x.dtype)
        size = self.output_size(x.shape[2:])
        grid = self.transform.grid(theta.to(work), size)  # (N, *out, dims)
        return sample(x.to(work), grid, self.kernel, self.padding).to(x.dtype)

    def stage(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The warped input and its θ, kept (detached) in ``last_theta``: one stage of a
        chain of transformers, for models that need each θ."""
        theta = self.localize(x)
        self.last_theta = theta.detach()
        return self.warp(x, theta), theta

    def forward(self, x: Tensor) -> Tensor:
        return self.stage(x)[0]

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, in_size={self.in_size}, out_size={self.out_size}, "
            f"transform={self.transform!r}, kernel={self.kernel!r}, padding={self.padding!r}"
        )


class SpatialTransformer(_SpatialTransformerNd):
    """A spatial transformer (Jaderberg et al., 2015) on images: warps by a predicted θ.

    Args:
        in_channels: channels C of the input (images or feature maps).
        in_size: the input size (H, W) (an int for square inputs) that ``localization``
            takes. ``None`` is allowed with the default localization, which takes any size.
        out_size: output size per axis: an int is pixels, a float a fraction of the
            input's side (``0.5``: half size); ``None`` keeps the input's size.
        transform: a family name from :func:`stnlab.transforms.names` or a 2D
            :class:`~stnlab.transforms.Transform`.
        localization: any module mapping (N, C, H, W) to features (N, F) (or any shape
            that flattens to it); it then takes inputs of ``in_size`` only. ``None`` uses
            :func:`default_localization`, which ends in adaptive pooling, so the layer
            takes inputs of any size (every side at least 4).
        kernel: sampling kernel, ``"bilinear"``, ``"nearest"`` or ``"bicubic"``.
        padding: ``"zeros"``, ``"border"`` or ``"reflection"``.
        init_zoom: the warp the layer starts with: a centred zoom that shows the central
            ``init_zoom`` part of each side (1: the identity; 0.7 suits a 28-pixel digit
            somewhere on a 40-pixel canvas).

    The regression layer that maps features to θ starts with zero weights and the
    parameters of that zoom as bias, so the module begins as the same warp of every
    input (by default the identity).
    ``last_theta`` holds the θ of the latest forward pass, detached. The ``out_size``
    attribute keeps the size per axis as given (with a custom localization, resolved at
    ``in_size``); :meth:`output_size` gives it for any input size. Under autocast the
    output keeps the input's dtype and the geometry runs in float32
    (see :mod:`stnlab.precision`).

    Example:
        >>> stn = SpatialTransformer(1, 40, out_size=20)
        >>> stn(torch.rand(8, 1, 40, 40)).shape
        torch.Size([8, 1, 20, 20])
        >>> stn(torch.rand(8, 1, 56, 56)).shape  # the default localization takes any size
        torch.Size([8, 1, 20, 20])
    """

    dims = 2


class SpatialTransformer3d(_SpatialTransformerNd):
    """A spatial transformer on volumes (N, C, D, H, W); otherwise as :class:`SpatialTransformer`.

    ``in_size`` and ``out_size`` are (D, H, W) (or one value for every side), the
    transform is a 3D family (``"affine"``: 3×4 matrices, 12 parameters; ``"attention"``:
    scale and three translations; ``"projective"``: 4×4 homographies, 15), the kernel
    ``"bilinear"`` (trilinear) or ``"nearest"``. Grids hold (x, y, z), see :mod:`stnlab`.

    Example:
        >>> stn = SpatialTransformer3d(1, out_size=16)
        >>> stn(torch.rand(2, 1, 24, 32, 32)).shape
        torch.Size([2, 1, 16, 16, 16])
    """

    dims = 3
