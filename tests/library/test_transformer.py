"""Tests of stnlab.transformer: SpatialTransformer's shapes, identity start, gradients, errors,
inputs of any size, and probe_output."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import assert_batched_equals_per_sample, gradcheck_parameters, perturb
from torch import nn

from stnlab import SpatialTransformer, sample
from stnlab import transforms as T
from stnlab.transformer import probe_output

FAMILIES = T.names()


def tiny_localization(in_features: int, hidden: int = 4) -> nn.Module:
    """A localization net small enough for gradcheck: flatten -> linear -> tanh."""
    return nn.Sequential(nn.Flatten(), nn.Linear(in_features, hidden), nn.Tanh())


# --------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("channels", [1, 3, 16])
def test_forward_shape(channels):
    stn = SpatialTransformer(channels, 40, out_size=20)
    V = stn(torch.rand(4, channels, 40, 40))
    assert V.shape == (4, channels, 20, 20)
    assert torch.isfinite(V).all()


@pytest.mark.parametrize("family", FAMILIES)
def test_non_square_sizes(family):
    stn = SpatialTransformer(2, (24, 32), out_size=(12, 20), transform=family)
    assert stn(torch.rand(3, 2, 24, 32)).shape == (3, 2, 12, 20)
    assert stn.last_theta.shape == (3, stn.transform.num_params)


@pytest.mark.parametrize("size", [(12, 16), (9, 30)])
def test_default_out_size_is_the_input_size(size):
    stn = SpatialTransformer(1, (12, 16))
    assert stn.output_size(size) == size
    assert stn(torch.rand(2, 1, *size)).shape == (2, 1, *size)


def test_default_out_size_of_a_custom_localization_is_in_size():
    stn = SpatialTransformer(1, (12, 16), localization=tiny_localization(12 * 16))
    assert stn.out_size == (12, 16)
    assert stn(torch.rand(2, 1, 12, 16)).shape == (2, 1, 12, 16)


# --------------------------------------------------------------------------- identity start


@pytest.mark.parametrize("kernel", ["bilinear", "bicubic", "nearest"])
@pytest.mark.parametrize("family", FAMILIES)
def test_starts_as_identity(family, kernel):
    torch.manual_seed(0)
    stn = SpatialTransformer(3, 16, transform=family, kernel=kernel)
    assert torch.count_nonzero(stn.regressor.weight) == 0
    torch.testing.assert_close(stn.regressor.bias.detach(), stn.transform.identity(1)[0])
    x = torch.rand(2, 3, 16, 16)
    torch.testing.assert_close(stn(x), x, rtol=0, atol=1e-5)
    expected = stn.transform.identity(2)
    torch.testing.assert_close(stn.last_theta, expected)


def test_identity_to_half_size_averages_blocks():
    # Output pixel j's centre lies halfway between input pixels 2j and 2j + 1.
    stn = SpatialTransformer(1, 40, out_size=20)
    x = torch.rand(2, 1, 40, 40)
    torch.testing.assert_close(stn(x), F.avg_pool2d(x, 2), rtol=0, atol=1e-5)


def test_reset_identity_restores_the_identity():
    stn = SpatialTransformer(1, 12)
    perturb(stn, 1.0)
    x = torch.rand(2, 1, 12, 12)
    assert not torch.allclose(stn(x), x, atol=1e-3)
    stn.reset_identity()
    torch.testing.assert_close(stn(x), x, rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    ("kernel", "padding"), [("bilinear", "zeros"), ("nearest", "border"), ("bicubic", "reflection")]
)
def test_forward_is_sampling_at_the_predicted_grid(kernel, padding):
    torch.manual_seed(6)
    stn = SpatialTransformer(2, 12, out_size=(8, 10), kernel=kernel, padding=padding).double()
    perturb(stn, 0.5, seed=None)
    x = torch.rand(3, 2, 12, 12, dtype=torch.float64)
    V = stn(x)
    expected = sample(x, stn.transform.grid(stn.last_theta, (8, 10)), kernel, padding)
    torch.testing.assert_close(V, expected, rtol=0, atol=1e-12)
    assert not torch.allclose(V, F.interpolate(x, size=(8, 10), mode="bilinear"), atol=1e-2)


# --------------------------------------------------------------------------- last_theta


def test_last_theta_is_detached():
    stn = SpatialTransformer(1, 16)
    assert stn.last_theta is None
    perturb(stn, 0.1)
    x = torch.rand(3, 1, 16, 16)
    stn(x).sum().backward()
    theta = stn.last_theta
    assert theta.shape == (3, 6)
    assert theta.requires_grad is False
    assert theta.grad_fn is None
    with torch.no_grad():
        torch.testing.assert_close(theta, stn.localize(x))


def test_train_and_eval_modes():
    torch.manual_seed(1)
    loc = nn.Sequential(nn.Flatten(), nn.Linear(144, 8), nn.Dropout(0.5), nn.ReLU())
    stn = SpatialTransformer(1, 12, localization=loc)
    perturb(stn, 1.0, seed=None)
    x = torch.rand(4, 1, 12, 12)
    stn.train()
    train_thetas = []
    for _ in range(2):
        stn(x)
        train_thetas.append(stn.last_theta)
    assert not torch.equal(*train_thetas)  # dropout is active in train mode
    stn.eval()
    with torch.no_grad():
        first = stn(x)
        eval_theta = stn.last_theta
        second = stn(x)
    torch.testing.assert_close(first, second)
    assert eval_theta.shape == (4, 6)


# --------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("family", ["affine", "tps"])
def test_gradcheck_end_to_end(family):
    torch.manual_seed(2)
    stn = SpatialTransformer(
        1, 6, out_size=(4, 5), transform=family, localization=tiny_localization(36)
    ).double()
    perturb(stn, 0.2, seed=None)
    assert gradcheck_parameters(stn, torch.rand(1, 1, 6, 6, dtype=torch.float64))


def test_every_parameter_gets_a_gradient():
    torch.manual_seed(3)
    stn = SpatialTransformer(3, 16, transform="tps")
    perturb(stn, 0.1, seed=None)
    stn(torch.rand(4, 3, 16, 16)).square().mean().backward()
    for name, p in stn.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
    first_conv = stn.localization[0].weight.grad
    assert first_conv.abs().sum() > 0  # the gradient reaches the start of the localization net


def test_as_a_middle_layer_on_feature_maps():
    torch.manual_seed(4)
    net = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        SpatialTransformer(8, 16, out_size=8),
        nn.Conv2d(8, 4, 3, padding=1),
        nn.Flatten(),
        nn.Linear(4 * 8 * 8, 10),
    )
    perturb(net[2], 0.1, seed=None)
    out = net(torch.rand(5, 1, 16, 16))
    assert out.shape == (5, 10)
    out.sum().backward()
    assert net[0].weight.grad.abs().sum() > 0
    assert net[2].last_theta.shape == (5, 6)


# --------------------------------------------------------------------------- localization nets


def test_custom_localization_returning_features():
    loc = tiny_localization(2 * 10 * 10, hidden=7)
    stn = SpatialTransformer(2, 10, localization=loc, transform="attention")
    assert stn.regressor.in_features == 7
    assert stn(torch.rand(3, 2, 10, 10)).shape == (3, 2, 10, 10)


def test_empty_localization_uses_raw_pixels():
    stn = SpatialTransformer(1, 8, localization=nn.Sequential())
    assert len(stn.localization) == 0
    assert stn.regressor.in_features == 64
    x = torch.rand(2, 1, 8, 8)
    torch.testing.assert_close(stn(x), x, rtol=0, atol=1e-5)


def test_float64_localization_is_probed_in_its_dtype():
    stn = SpatialTransformer(1, 8, localization=tiny_localization(64).double())
    assert stn.regressor.weight.dtype == torch.float64
    x = torch.rand(2, 1, 8, 8, dtype=torch.float64)
    assert stn(x).dtype == torch.float64


# --------------------------------------------------------------------------- errors


def test_wrong_input_shape_names_the_expected_one():
    stn = SpatialTransformer(1, 40, out_size=20)
    expected = r"expected input of shape \(N, 1, H, W\) with every side at least 4, got "
    with pytest.raises(ValueError, match=expected + r"\(1, 40, 40\)"):
        stn(torch.rand(1, 40, 40))  # wrong rank
    with pytest.raises(ValueError, match=expected + r"\(2, 3, 40, 40\)"):
        stn(torch.rand(2, 3, 40, 40))  # wrong channel count
    with pytest.raises(ValueError, match=expected + r"\(2, 1, 3, 40\)"):
        stn(torch.rand(2, 1, 3, 40))  # too small for the default localization


def test_custom_localization_takes_its_size_only():
    stn = SpatialTransformer(1, 12, localization=tiny_localization(144))
    expected = r"SpatialTransformer expected input of shape \(N, 1, 12, 12\), got "
    with pytest.raises(ValueError, match=expected + r"\(2, 1, 12, 16\)"):
        stn(torch.rand(2, 1, 12, 16))
    with pytest.raises(ValueError, match=expected + r"\(2, 2, 12, 12\)"):
        stn(torch.rand(2, 2, 12, 12))


def test_too_small_for_the_localization_net():
    with pytest.raises(ValueError, match=r"input of shape \(2, 1, 3, 3\) is too small"):
        SpatialTransformer(1, 3)
    with pytest.raises(ValueError, match=r"input of shape \(2, 1, 8, 8\) is too small or wrong"):
        SpatialTransformer(1, 8, localization=tiny_localization(36))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_theta_raises(bad):
    stn = SpatialTransformer(1, 12)
    with torch.no_grad():
        stn.regressor.bias[0] = bad
    with pytest.raises(FloatingPointError, match="non-finite θ"):
        stn(torch.rand(2, 1, 12, 12))


def test_without_the_check_it_runs_under_vmap_as_a_loop_would():
    """check_finite off: no data-dependent branch, so torch.func.vmap over stacked copies
    gives each copy's own output (the check would raise inside vmap)."""
    copies = [SpatialTransformer(1, 12) for _ in range(3)]
    for stn in copies:
        nn.init.normal_(stn.regressor.weight, std=0.1)
    x = torch.rand(3, 2, 1, 12, 12)
    params, buffers = torch.func.stack_module_state(copies)
    base = copies[0]

    def run(p, b, xi):
        return torch.func.functional_call(base, (p, b), (xi,))

    with pytest.raises(RuntimeError, match="vmap"):
        torch.func.vmap(run)(params, buffers, x)
    base.check_finite = False
    batched = torch.func.vmap(run)(params, buffers, x)
    looped = torch.stack([stn(xi) for stn, xi in zip(copies, x, strict=True)])
    torch.testing.assert_close(batched, looped)


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="in_channels must be positive"):
        SpatialTransformer(0, 12)
    with pytest.raises(ValueError, match="unknown transform 'shear'; known: affine"):
        SpatialTransformer(1, 12, transform="shear")
    with pytest.raises(ValueError, match="size must be a positive int"):
        SpatialTransformer(1, 12, out_size=(0, 4))
    with pytest.raises(ValueError, match=r"size must be a positive int or \(H, W\) tuple"):
        SpatialTransformer(1, (12, 12, 12))
    with pytest.raises(ValueError, match="custom localization network needs in_size"):
        SpatialTransformer(1, localization=tiny_localization(16))
    with pytest.raises(ValueError, match="expected a 2D transform"):
        SpatialTransformer(1, 12, transform=T.get("affine", dims=3))


@pytest.mark.parametrize(
    "bad", [0, -0.5, 0.0, float("nan"), float("inf"), "half", (10,), (10, 10, 10), True]
)
def test_bad_out_size(bad):
    with pytest.raises(ValueError, match=r"out_size must be a positive int \(pixels\) or float"):
        SpatialTransformer(1, 12, out_size=bad)


# --------------------------------------------------------------------------- invariants


def test_float64_preserved():
    stn = SpatialTransformer(2, 12, transform="projective").double()
    perturb(stn, 0.1)
    x = torch.rand(2, 2, 12, 12, dtype=torch.float64)
    V = stn(x)
    assert V.dtype == torch.float64
    assert stn.last_theta.dtype == torch.float64
    assert V.device == x.device


def test_input_not_modified():
    stn = SpatialTransformer(3, 16, transform="tps")
    perturb(stn, 0.1)
    x = torch.randn(2, 3, 16, 16, requires_grad=True)
    before = x.detach().clone()
    stn(x).square().sum().backward()
    assert torch.equal(x.detach(), before)


def test_batched_equals_per_sample():
    torch.manual_seed(5)
    stn = SpatialTransformer(1, 12, transform="affine").double()
    perturb(stn, 0.1, seed=None)
    assert_batched_equals_per_sample(stn, torch.rand(3, 1, 12, 12, dtype=torch.float64))


# --------------------------------------------------------------------------- any input size


@pytest.mark.parametrize("size", [(32, 32), (56, 56), (24, 48)])
def test_default_localization_takes_any_size(size):
    torch.manual_seed(7)
    stn = SpatialTransformer(3, 40, out_size=20)
    perturb(stn, 0.1, seed=None)
    V = stn(torch.rand(2, 3, *size))
    assert V.shape == (2, 3, 20, 20)
    assert stn.last_theta.shape == (2, 6)
    x = torch.rand(2, 3, *size)
    expected = sample(x, stn.transform.grid(stn.localize(x), (20, 20)))
    torch.testing.assert_close(stn(x), expected, rtol=0, atol=0)


@pytest.mark.parametrize("size", [32, 56])
def test_any_size_gradcheck(size):
    # The acceptance case: a layer built for 40×40, given other sizes, differentiates
    # correctly w.r.t. its input and every parameter (fast mode: random directions).
    torch.manual_seed(8)
    stn = SpatialTransformer(1, 40, out_size=20).double()
    perturb(stn, 0.2, seed=None)
    x = torch.rand(1, 1, size, size, dtype=torch.float64)
    assert stn(x).shape == (1, 1, 20, 20)
    assert gradcheck_parameters(stn, x, fast_mode=True)


def test_any_size_input_gradcheck_in_full():
    torch.manual_seed(9)
    stn = SpatialTransformer(1, 40, out_size=(3, 4)).double()
    perturb(stn, 0.2, seed=None)
    x = torch.rand(1, 1, 8, 10, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(stn, (x,))


def test_in_size_may_be_left_out_with_the_default_localization():
    stn = SpatialTransformer(2, out_size=0.5)
    assert stn.in_size is None
    assert stn(torch.rand(3, 2, 16, 10)).shape == (3, 2, 8, 5)


@pytest.mark.parametrize(
    ("out_size", "size", "expected"),
    [
        (0.5, (32, 56), (16, 28)),
        ((0.5, 20), (32, 56), (16, 20)),
        (1.5, (10, 7), (15, 11)),  # 10.5 rounds to the nearest int, half up
        (0.29, (100, 100), (29, 29)),  # not floor(28.999…)
        (0.01, (20, 20), (1, 1)),  # at least one pixel
    ],
)
def test_relative_out_size(out_size, size, expected):
    stn = SpatialTransformer(1, 40, out_size=out_size)
    assert stn.output_size(size) == expected
    assert stn(torch.rand(1, 1, *size)).shape == (1, 1, *expected)


@pytest.mark.parametrize("size", [(8, 8), (13, 21)])
def test_identity_at_any_size(size):
    stn = SpatialTransformer(2, 40)
    x = torch.rand(2, 2, *size)
    torch.testing.assert_close(stn(x), x, rtol=0, atol=1e-5)


def test_relative_out_size_of_a_custom_localization_is_fixed_at_in_size():
    stn = SpatialTransformer(1, (12, 16), out_size=0.5, localization=tiny_localization(192))
    assert stn.out_size == (6, 8)
    assert stn(torch.rand(2, 1, 12, 16)).shape == (2, 1, 6, 8)


# --------------------------------------------------------------------------- probe_output


def test_probe_output_shape():
    conv = nn.Sequential(nn.Conv2d(2, 4, 3), nn.MaxPool2d(2))
    assert probe_output(conv, (3, 2, 10, 12)) == torch.Size([3, 4, 4, 5])


@pytest.mark.parametrize("training", [True, False])
def test_probe_output_runs_in_eval_mode_and_restores_the_mode(training):
    net = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3)).train(training)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    probe_output(net, (2, 1, 6, 6))
    assert net.training is training and net[1].training is training
    for k, v in net.state_dict().items():  # batch norm statistics untouched (eval mode)
        assert torch.equal(v, before[k]), k


def test_probe_output_uses_the_module_dtype_and_no_grad():
    net = nn.Linear(4, 2).double()
    assert probe_output(net, (1, 4)) == torch.Size([1, 2])
    assert net.weight.grad is None


def test_probe_output_turns_a_runtime_error_into_a_clear_value_error():
    net = nn.Sequential(nn.Conv2d(1, 2, 5), nn.MaxPool2d(2))
    with pytest.raises(ValueError, match=r"input of shape \(1, 1, 4, 4\) is too small or wrong"):
        probe_output(net, (1, 1, 4, 4))
    with pytest.raises(ValueError, match=r"input of shape \(1, 3, 9, 9\) is too small or wrong"):
        probe_output(net, (1, 3, 9, 9))  # wrong channel count


def test_init_zoom_starts_as_a_centred_zoom_and_is_checked():
    x = torch.rand(2, 1, 12, 12, dtype=torch.float64)
    stn = SpatialTransformer(1, 12, init_zoom=0.5).double()
    a = torch.tensor([[0.5, 0, 0], [0, 0.5, 0]], dtype=torch.float64).expand(2, 2, 3)
    grid = F.affine_grid(a, (2, 1, 12, 12), align_corners=False)
    torch.testing.assert_close(stn(x), F.grid_sample(x, grid, align_corners=False))
    stn.reset_identity()
    torch.testing.assert_close(stn(x), x)
    with pytest.raises(ValueError, match="init_zoom must be positive"):
        SpatialTransformer(1, 12, init_zoom=0)
