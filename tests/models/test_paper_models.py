"""The STN paper's designs (fcn, paper-cnn, st-fcn, st-cnn): shapes, gradients, layers and
the same parameter count across the designs of each column of its Table 1."""

from __future__ import annotations

import pytest
import torch
from conftest import perturb
from torch import nn

from stnlab import models

PAPER = ("fcn", "paper-cnn", "st-fcn", "st-cnn")
FAMILIES = ("affine", "projective", "tps")
# The columns' image sides: R, P and E are 28×28, RTS 42×42, the cluttered set 60×60.
SIDES = (28, 42, 60)


def count(name: str, side: int, transform: str = "affine") -> int:
    return models.count_parameters(models.create(name, in_size=side, transform=transform))


@pytest.mark.parametrize("name", PAPER)
@pytest.mark.parametrize("side", SIDES)
def test_forward_shape_and_finite(name, side):
    out = models.create(name, in_size=side, transform="tps")(torch.rand(2, 1, side, side))
    assert out.shape == (2, 10)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", ["st-fcn", "st-cnn"])
@pytest.mark.parametrize("transform", FAMILIES)
def test_every_parameter_gets_a_gradient(name, transform):
    model = perturb(models.create(name, in_size=28, transform=transform))
    model(torch.rand(4, 1, 28, 28)).logsumexp(1).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert not missing
    assert model.transformers[0].transform.name == transform


def test_the_base_nets_count_as_their_layers_add_up():
    # By hand, for 28×28 digits: the FCN 784 → 128 → 128 → 10; the CNN conv 9×9×32 (28 →
    # 20, pool → 10), conv 7×7×64 (10 → 4, pool → 2), FC 2·2·64 → 128 → 10.
    fcn = (784 * 128 + 128) + (128 * 128 + 128) + (128 * 10 + 10)
    cnn = (81 * 32 + 32) + (32 * 49 * 64 + 64) + (256 * 128 + 128) + (128 * 10 + 10)
    assert count("fcn", 28) == fcn
    assert count("paper-cnn", 28) == cnn


def test_the_cnn_is_conv9_pool_conv7_pool_fc():
    net = models.create("paper-cnn", in_size=28).classifier
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert [c.kernel_size for c in convs] == [(9, 9), (7, 7)]
    assert sum(isinstance(m, nn.MaxPool2d) for m in net.modules()) == 2
    assert net.sizes[-1] == (64, 2, 2)
    fcn = models.create("fcn", in_size=28).classifier
    assert not any(isinstance(m, nn.Conv2d) for m in fcn.modules())


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("transform", FAMILIES)
def test_parameter_counts_are_equal_within_a_column(side, transform):
    fcn, cnn = count("fcn", side), count("paper-cnn", side)
    assert count("st-fcn", side, transform) == pytest.approx(fcn, rel=0.01)
    assert count("st-cnn", side, transform) == pytest.approx(cnn, rel=0.01)
    # The transformer takes a real share of that budget: the base net did shrink.
    st = models.create("st-cnn", in_size=side, transform=transform)
    assert models.count_parameters(st.classifier) < 0.95 * cnn


def test_the_base_alone_ignores_the_transform_family():
    assert count("paper-cnn", 28, "tps") == count("paper-cnn", 28, "affine")
    assert not len(models.create("fcn", in_size=28, transform="tps").transformers)


def test_fit_width_is_the_nearest_by_brute_force():
    def cost(h: int) -> int:
        return 3 * h * h + 50 * h + 7

    for budget in (1, 60, 1000, 12_345, 10**9):
        best = min(range(1, 129), key=lambda h: (abs(cost(h) - budget), h))
        got = models.fit_width(cost, budget, 128)
        assert abs(cost(got) - budget) == abs(cost(best) - budget)
