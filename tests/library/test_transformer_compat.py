"""Weights saved by earlier stnlab versions still load, and the fixed-size layer is unchanged.

The registered models build their transformers with custom localization nets for a
fixed input size: that path must keep its state-dict keys, shapes and arithmetic, or old
run folders stop loading. ``SAVED`` is the transformer part of the state dicts that
``models.create(name)`` wrote before any-size inputs, autocast and 3D came in (the
classifier part belongs to the models module and is taken from the model as it is).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import transformers_of

from stnlab import SpatialTransformer, models

IMAGE_LOC = {  # pool → conv block → conv block → flatten → linear → relu, on 40×40 images
    "localization.1.0.weight": (16, 1, 5, 5),
    "localization.1.0.bias": (16,),
    "localization.2.0.weight": (32, 16, 5, 5),
    "localization.2.0.bias": (32,),
    "localization.4.weight": (64, 800),
    "localization.4.bias": (64,),
    "regressor.weight": (6, 64),
    "regressor.bias": (6,),
}
FEATURE_LOC = {  # MSTN's second: conv block → conv block → flatten → linear → relu
    "localization.0.0.weight": (16, 16, 5, 5),
    "localization.0.0.bias": (16,),
    "localization.1.0.weight": (32, 16, 5, 5),
    "localization.1.0.bias": (32,),
    "localization.3.weight": (64, 800),
    "localization.3.bias": (64,),
    "regressor.weight": (6, 64),
    "regressor.bias": (6,),
}
SAVED = {  # per model, each transformer's keys and shapes, in order
    "stn": [IMAGE_LOC],
    "mstn": [IMAGE_LOC, FEATURE_LOC],
    "icstn": [IMAGE_LOC, IMAGE_LOC],
}


def literal_forward(st: SpatialTransformer, x: torch.Tensor) -> torch.Tensor:
    """The fixed-size affine layer as first written: regress θ, affine grid, grid_sample."""
    theta = st.regressor(st.localization(x).flatten(1))  # (N, 6)
    n, c, h, w = x.shape
    grid = F.affine_grid(theta.reshape(n, 2, 3), [n, c, h, w], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


@pytest.mark.parametrize("name", sorted(SAVED))
def test_transformer_keys_and_shapes_are_unchanged(name):
    found = transformers_of(models.create(name)).values()
    assert len(found) == len(SAVED[name])
    for st, saved in zip(found, SAVED[name], strict=True):
        assert {k: tuple(v.shape) for k, v in st.state_dict().items()} == saved


@pytest.mark.parametrize("name", sorted(SAVED))
def test_old_weights_load_and_compute_as_before(name):
    torch.manual_seed(0)
    model = models.create(name)
    old = dict(model.state_dict())  # the classifier's part as the model has it now
    for prefix, saved in zip(transformers_of(model), SAVED[name], strict=True):
        old |= {f"{prefix}.{k}": 0.05 * torch.randn(shape) for k, shape in saved.items()}
    fresh = models.create(name)
    fresh.load_state_dict(old, strict=True)
    fresh.double().eval()
    for prefix, st in transformers_of(fresh).items():
        assert not st.any_size  # a custom localization: the fixed-size path
        x = torch.rand(2, st.in_channels, *st.in_size, dtype=torch.float64)
        torch.testing.assert_close(st.regressor.weight.float(), old[f"{prefix}.regressor.weight"])
        with torch.no_grad():
            torch.testing.assert_close(st(x), literal_forward(st, x), rtol=0, atol=1e-12)
