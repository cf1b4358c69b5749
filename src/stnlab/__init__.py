"""stnlab: Spatial Transformer Networks for PyTorch and the Cluttered MNIST study.

Coordinate convention (used everywhere in stnlab): sampling grids hold normalised
(x, y) coordinates in [-1, 1], x along the width and y along the height, with
``align_corners=False`` -- the same as :func:`torch.nn.functional.grid_sample`.
The corner -1 is the left/top *edge* of the first pixel, so pixel j's centre sits
at ``(2 * j + 1) / W - 1``. A transform's parameters θ map *output* (target)
coordinates to *input* (source) coordinates, as in the paper's equation
(x_s, y_s)ᵀ = A_θ (x_t, y_t, 1)ᵀ.

Volumes (N, C, D, H, W) follow the same rule with a third coordinate: grids hold
normalised (x, y, z), z along the depth D, so a grid has shape (N, D', H', W', 3) with
``grid[..., 0] = x`` (width), ``[..., 1] = y`` (height), ``[..., 2] = z`` (depth), and
voxel l's centre along the depth sits at ``(2 * l + 1) / D - 1``, as ``grid_sample`` reads
5-D input; θ maps (x_t, y_t, z_t, 1)ᵀ to the source point.
"""

__version__ = "0.2.0"

# The public names are imported on first use, so `import stnlab` (and `stnlab --help`)
# does not pay for importing torch.
_EXPORTS = {
    "SpatialTransformer": "stnlab.transformer",
    "SpatialTransformer3d": "stnlab.transformer",
    "diagnostics": None,
    "sample": "stnlab.sampling",
    "sample_reference": "stnlab.sampling",
    "sampling": None,
    "transforms": None,
    "with_transformer": "stnlab.backbones",
}

__all__ = [
    "SpatialTransformer",
    "SpatialTransformer3d",
    "__version__",
    "diagnostics",
    "sample",
    "sample_reference",
    "sampling",
    "transforms",
    "with_transformer",
]


def __getattr__(name: str):
    """Import a public name (or submodule) of stnlab when it is first used."""
    import importlib

    if name not in _EXPORTS:
        raise AttributeError(f"module 'stnlab' has no attribute {name!r}")
    module = importlib.import_module(_EXPORTS[name] or f"stnlab.{name}")
    value = module if _EXPORTS[name] is None else getattr(module, name)
    globals()[name] = value
    return value
