"""SpatialTransformer: localization net -> θ -> grid generator -> sampler, as one module."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from stnlab import transforms as T
from stnlab.sampling import sample

__all__ = ["SpatialTransformer", "default_localization"]


def default_localization(in_channels: int, hidden: int = 32) -> nn.Module:
    """A small conv net that maps (N, C, H, W) to a (N, hidden) feature vector."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 8, kernel_size=5, padding=2),
        nn.MaxPool2d(2),
        nn.ReLU(inplace=True),
        nn.Conv2d(8, 16, kernel_size=5, padding=2),
        nn.MaxPool2d(2),
        nn.ReLU(inplace=True),
        nn.Flatten(),
        nn.LazyLinear(hidden),
        nn.ReLU(inplace=True),
    )


class SpatialTransformer(nn.Module):
    """A spatial transformer (Jaderberg et al., 2015): warps its input by a predicted θ.

    Args:
        in_channels: channels C of the input (images or feature maps).
        in_size: input size (H, W) or an int for square inputs.
        out_size: output size (H', W'); ``None`` keeps the input size.
        transform: a family name from :func:`stnlab.transforms.names` or a
            :class:`~stnlab.transforms.Transform`.
        localization: any module mapping (N, C, H, W) to features (N, F) (or any shape
            that flattens to it); ``None`` uses :func:`default_localization`.
        kernel: sampling kernel, ``"bilinear"``, ``"nearest"`` or ``"bicubic"``.
        padding: ``"zeros"``, ``"border"`` or ``"reflection"``.

    The regression layer that maps features to θ starts with zero weights and the
    identity's parameters as bias, so the module begins as the identity warp.
    ``last_theta`` holds the θ of the latest forward pass, detached.

    Example:
        >>> stn = SpatialTransformer(1, 40, out_size=20)
        >>> stn(torch.rand(8, 1, 40, 40)).shape
        torch.Size([8, 1, 20, 20])
    """

    def __init__(
        self,
        in_channels: int,
        in_size: T.Size,
        out_size: T.Size | None = None,
        transform: str | T.Transform = "affine",
        localization: nn.Module | None = None,
        kernel: str = "bilinear",
        padding: str = "zeros",
    ):
        super().__init__()
        if in_channels < 1:
            raise ValueError(f"in_channels must be positive, got {in_channels}")
        self.in_channels = in_channels
        self.in_size = T.as_size(in_size)
        self.out_size = self.in_size if out_size is None else T.as_size(out_size)
        self.transform = T.get(transform)
        self.kernel, self.padding = kernel, padding
        # `is None`, not `or`: an empty nn.Sequential (raw pixels as features) is falsy.
        if localization is None:
            localization = default_localization(in_channels)
        self.localization = localization
        features = self._feature_count()
        reference = self._probe_like()
        self.regressor = nn.Linear(
            features, self.transform.num_params, device=reference.device, dtype=reference.dtype
        )
        self.reset_identity()
        self.last_theta: Tensor | None = None

    def _probe_like(self) -> Tensor:
        """An empty tensor on the localization net's device and dtype (CPU/default if none)."""
        for t in (*self.localization.parameters(), *self.localization.buffers()):
            if not isinstance(t, nn.parameter.UninitializedTensorMixin) and t.is_floating_point():
                return t.new_empty(0)
        return torch.empty(0)

    def _feature_count(self) -> int:
        """Run the localization net once on zeros to learn its feature size."""
        probe = self._probe_like().new_zeros(2, self.in_channels, *self.in_size)
        was_training = self.localization.training
        self.localization.eval()
        try:
            with torch.no_grad():
                features = self.localization(probe)
        except RuntimeError as exc:
            raise ValueError(
                f"in_size {self.in_size} is too small or wrong for the localization network: "
                f"{str(exc).splitlines()[0]}"
            ) from exc
        finally:
            self.localization.train(was_training)
        return features.reshape(2, -1).shape[1]

    def reset_identity(self) -> None:
        """Make θ the identity for every input: zero weights, identity bias."""
        nn.init.zeros_(self.regressor.weight)
        with torch.no_grad():
            self.regressor.bias.copy_(self.transform.identity(1)[0])

    def _check_input(self, x: Tensor) -> None:
        expected = (self.in_channels, *self.in_size)
        if x.ndim != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(
                "SpatialTransformer expected input of shape (N, {}, {}, {}), got {}".format(
                    *expected, tuple(x.shape)
                )
            )

    def localize(self, x: Tensor) -> Tensor:
        """Predict θ for each input, (N, num_params)."""
        self._check_input(x)
        features = self.localization(x).flatten(1)  # (N, F)
        theta = self.regressor(features)
        if not torch.compiler.is_compiling() and not torch.isfinite(theta).all():
            raise FloatingPointError(
                "SpatialTransformer produced non-finite θ (NaN or inf); "
                "lower the learning rate of the localization network"
            )
        return theta

    def warp(self, x: Tensor, theta: Tensor) -> Tensor:
        """Sample x at the grid of θ: (N, C, H, W) -> (N, C, H', W')."""
        grid = self.transform.grid(theta.to(x.dtype), self.out_size)  # (N, H', W', 2)
        return sample(x, grid, self.kernel, self.padding)

    def forward(self, x: Tensor) -> Tensor:
        theta = self.localize(x)
        self.last_theta = theta.detach()
        return self.warp(x, theta)

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, in_size={self.in_size}, out_size={self.out_size}, "
            f"transform={self.transform!r}, kernel={self.kernel!r}, padding={self.padding!r}"
        )
