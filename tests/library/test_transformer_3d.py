"""Tests of stnlab.SpatialTransformer3d: the layer on volumes (N, C, D, H, W)."""

from __future__ import annotations

import pytest
import torch
from conftest import assert_batched_equals_per_sample, gradcheck_parameters, perturb
from torch import nn

from stnlab import SpatialTransformer, SpatialTransformer3d, sample
from stnlab import transforms as T

FAMILIES_3D = T.names(dims=3)


@pytest.mark.parametrize("family", FAMILIES_3D)
def test_forward_shape_and_identity_start(family):
    torch.manual_seed(0)
    stn = SpatialTransformer3d(2, (8, 10, 12), transform=family)
    assert stn.transform.dims == 3
    x = torch.rand(3, 2, 8, 10, 12)
    torch.testing.assert_close(stn(x), x, rtol=0, atol=1e-5)
    torch.testing.assert_close(stn.last_theta, stn.transform.identity(3))


@pytest.mark.parametrize("kernel", ["bilinear", "nearest"])
def test_forward_is_sampling_at_the_predicted_grid(kernel):
    torch.manual_seed(1)
    stn = SpatialTransformer3d(1, 8, out_size=(4, 5, 6), kernel=kernel).double()
    perturb(stn, 0.5, seed=None)
    x = torch.rand(2, 1, 8, 8, 8, dtype=torch.float64)
    V = stn(x)
    assert V.shape == (2, 1, 4, 5, 6)
    expected = sample(x, stn.transform.grid(stn.last_theta, (4, 5, 6)), kernel)
    torch.testing.assert_close(V, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("size", [(8, 8, 8), (6, 12, 10)])
def test_default_localization_takes_any_size(size):
    stn = SpatialTransformer3d(1, 16, out_size=0.5)
    perturb(stn, 0.1)
    V = stn(torch.rand(2, 1, *size))
    assert V.shape == (2, 1, *(s // 2 for s in size))


def test_gradcheck_end_to_end():
    torch.manual_seed(2)
    loc = nn.Sequential(nn.Flatten(), nn.Linear(27, 3), nn.Tanh())
    stn = SpatialTransformer3d(1, 3, out_size=(2, 2, 3), localization=loc).double()
    perturb(stn, 0.2, seed=None)
    assert gradcheck_parameters(stn, torch.rand(1, 1, 3, 3, 3, dtype=torch.float64))


def test_every_parameter_gets_a_gradient():
    torch.manual_seed(3)
    stn = SpatialTransformer3d(2, 12, transform="projective")
    perturb(stn, 0.1, seed=None)
    stn(torch.rand(2, 2, 12, 12, 12)).square().mean().backward()
    for name, p in stn.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_batched_equals_per_sample():
    torch.manual_seed(4)
    stn = SpatialTransformer3d(1, 8).double()
    perturb(stn, 0.1, seed=None)
    assert_batched_equals_per_sample(stn, torch.rand(3, 1, 8, 8, 8, dtype=torch.float64))


def test_bad_input_and_arguments():
    stn = SpatialTransformer3d(1, 8)
    expected = r"SpatialTransformer3d expected input of shape \(N, 1, D, H, W\) with every side"
    with pytest.raises(ValueError, match=expected + r".*got \(2, 1, 8, 8\)"):
        stn(torch.rand(2, 1, 8, 8))  # an image
    with pytest.raises(ValueError, match=r"tps transform exists in 2D only, got dims=3"):
        SpatialTransformer3d(1, 8, transform="tps")
    with pytest.raises(ValueError, match="kernel 'bicubic' is for images only"):
        SpatialTransformer3d(1, 8, kernel="bicubic")
    with pytest.raises(ValueError, match="expected a 3D transform"):
        SpatialTransformer3d(1, 8, transform=T.get("affine"))
    with pytest.raises(ValueError, match=r"or a \(D, H, W\) tuple of them"):
        SpatialTransformer3d(1, 8, out_size=(4, 4))
    with pytest.raises(ValueError, match="expected input of shape"):
        SpatialTransformer(1, 8)(torch.rand(2, 1, 8, 8, 8))  # a volume into the 2D layer
