"""stnlab: Spatial Transformer Networks for PyTorch and the Cluttered MNIST study.

Coordinate convention (used everywhere in stnlab): sampling grids hold normalised
(x, y) coordinates in [-1, 1], x along the width and y along the height, with
``align_corners=False`` -- the same as :func:`torch.nn.functional.grid_sample`.
The corner -1 is the left/top *edge* of the first pixel, so pixel j's centre sits
at ``(2 * j + 1) / W - 1``. A transform's parameters θ map *output* (target)
coordinates to *input* (source) coordinates, as in the paper's equation
(x_s, y_s)ᵀ = A_θ (x_t, y_t, 1)ᵀ.
"""

__version__ = "0.1.0"

from stnlab import sampling, transforms
from stnlab.sampling import sample, sample_reference
from stnlab.transformer import SpatialTransformer

__all__ = [
    "SpatialTransformer",
    "__version__",
    "sample",
    "sample_reference",
    "sampling",
    "transforms",
]
