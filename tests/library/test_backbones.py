"""Tests of stnlab.backbones: a transformer in front of any classifier (with_transformer), and
classifiers from timm and torchvision by name (create_backbone)."""

from __future__ import annotations

import sys

import pytest
import torch
from backbone_libraries import SPECS, require
from conftest import perturb
from torch import nn

import stnlab
from stnlab import SpatialTransformer, diagnostics
from stnlab.backbones import WithTransformer, create_backbone, with_transformer


def small_net(channels: int = 1, classes: int = 10, pools: int = 0) -> nn.Module:
    """A classifier of any input size; ``pools`` 2x max-pools without padding first, so an
    input under 2**pools pixels is too small for it."""
    layers: list[nn.Module] = [nn.Conv2d(channels, 8, 3, padding=1)]
    layers += [nn.MaxPool2d(2) for _ in range(pools)]
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, classes))


# ----------------------------------------------------------------------------- with_transformer


def test_with_transformer_is_public_and_has_the_designs_interface():
    model = stnlab.with_transformer(small_net(3, 7), in_size=(32, 48), in_channels=3)
    x = torch.rand(5, 3, 32, 48)
    assert model(x).shape == (5, 7) and model.num_classes == 7
    (st,) = model.transformers
    assert isinstance(st, SpatialTransformer) and st.last_theta.shape == (5, 6)
    assert model.in_size == (32, 48) and model.in_channels == 3
    ids = {id(p) for p in model.localization_parameters()}
    assert ids == {id(p) for p in st.parameters()}  # the --loc-lr group: the transformer only
    assert not ids & {id(p) for p in model.backbone.parameters()}


@pytest.mark.parametrize(
    ("out_size", "fed"), [(None, (40, 40)), (24, (24, 24)), (0.5, (20, 20)), ((16, 30), (16, 30))]
)
def test_the_backbone_gets_the_transformers_output(out_size, fed):
    seen = []
    net = small_net()
    net.register_forward_pre_hook(lambda _, args: seen.append(tuple(args[0].shape[2:])))
    model = with_transformer(net, 40, out_size=out_size)
    seen.clear()  # the check made at construction
    model(torch.rand(2, 1, 40, 40))
    assert seen == [fed]
    stages = model.transform(torch.rand(2, 1, 40, 40))
    assert len(stages) == 1 and stages[0][0].shape == (2, 1, *fed)


@pytest.mark.parametrize("family", ["affine", "attention", "projective", "tps"])
def test_any_family_and_its_theta(family):
    model = perturb(with_transformer(small_net(), 24, transform=family, out_size=16))
    x = torch.rand(3, 1, 24, 24)
    warped, theta = model.transform(x)[0]
    assert theta.shape == (3, model.transformers[0].transform.num_params)
    torch.testing.assert_close(model(x), model.backbone(warped))  # the backbone sees the warp


def test_every_parameter_gets_a_gradient():
    model = perturb(with_transformer(small_net(), 24, init_zoom=0.7))
    model(torch.rand(4, 1, 24, 24)).logsumexp(1).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert not missing


def test_starts_as_the_zoom_it_is_given():
    model = with_transformer(small_net(), 40, init_zoom=0.5).eval()
    found = diagnostics.summarize_model(model, torch.rand(6, 1, 40, 40))
    assert list(found) == ["transformers.0"]  # named as the stn's
    assert found["transformers.0"]["area_ratio_median"] == pytest.approx(0.25)


def test_without_a_transformer_the_backbone_sees_the_image():
    net = small_net()
    model = WithTransformer(net, None, 1, 24)
    x = torch.rand(2, 1, 24, 24)
    assert model.transform(x) == [] and model.localization_parameters() == []
    torch.testing.assert_close(model(x), net(x))


def test_a_backbone_too_small_for_its_input_names_the_size_it_needs():
    with pytest.raises(ValueError, match=r"^backbone Sequential cannot take 12x12 inputs") as err:
        with_transformer(small_net(pools=5), 40, out_size=12)  # five 2x pools need 32 pixels
    assert str(err.value).endswith("it needs at least 32x32") and "\n" not in str(err.value)
    with_transformer(small_net(pools=5), 40, out_size=32)  # ...which it takes


def test_a_backbone_that_does_not_return_logits_is_refused():
    with pytest.raises(ValueError, match=r"must return logits \(N, K\), got \(2, 8, 40, 40\)"):
        with_transformer(nn.Conv2d(1, 8, 3, padding=1), 40)
    with pytest.raises(ValueError, match="cannot take 1x40x40 inputs"):  # wrong channels
        with_transformer(small_net(channels=3), 40)


def test_onnx_export_matches_pytorch(tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from stnlab.export import check_onnx, export_onnx

    model = perturb(with_transformer(small_net(3, 5), 32, 3, out_size=20), std=0.1).eval()
    path = export_onnx(model, tmp_path / "m.onnx")
    assert check_onnx(model, path) < 1e-4


# ----------------------------------------------------------------------------- create_backbone


@pytest.mark.parametrize("spec", ["resnet18", "keras:resnet18", "timm:"])
def test_a_spec_is_a_library_and_a_name(spec):
    with pytest.raises(ValueError, match="a backbone is timm:NAME or torchvision:NAME"):
        create_backbone(spec)


@pytest.mark.parametrize("library", ["timm", "torchvision"])
def test_a_missing_library_names_the_extra(monkeypatch, library):
    monkeypatch.setitem(sys.modules, library, None)  # as if not installed
    with pytest.raises(ImportError, match=r"install the extra: pip install 'stnlab\[backbones\]'"):
        create_backbone(f"{library}:resnet18")


@pytest.mark.parametrize("spec", SPECS)
def test_channels_and_classes(spec):
    net = create_backbone(require(spec), in_channels=1, num_classes=7).eval()
    assert net(torch.rand(2, 1, 40, 40)).shape == (2, 7)
    net = create_backbone(spec, in_channels=4, num_classes=3).eval()
    assert net(torch.rand(2, 4, 40, 40)).shape == (2, 3)


@pytest.mark.parametrize("spec", ["timm:resnet1", "torchvision:resnet1"])
def test_an_unknown_name_lists_similar_ones(spec):
    with pytest.raises(ValueError, match=r"unknown .*model 'resnet1'; similar: .*resnet18"):
        create_backbone(require(spec))


def test_pretrained_torchvision_weights_are_fitted_to_the_channels_and_classes():
    """What --pretrained does with the downloaded weights, on weights of their shape (3
    channels, 1000 classes) made here: nothing is downloaded."""
    require("torchvision:resnet18")
    from torchvision.models import resnet18

    from stnlab.backbones import _load_matching

    torch.manual_seed(1)
    imagenet = resnet18(num_classes=1000).state_dict()
    for channels in (1, 4):
        net = create_backbone("torchvision:resnet18", in_channels=channels, num_classes=10)
        head = net.fc.weight.clone()
        _load_matching(net, imagenet, channels)
        got = net.state_dict()
        rgb = imagenet["conv1.weight"]  # (64, 3, 7, 7)
        want = rgb.sum(1, keepdim=True) if channels == 1 else torch.cat([rgb, rgb[:, :1]], 1) * 0.75
        torch.testing.assert_close(got["conv1.weight"], want)
        assert torch.equal(got["layer3.1.conv2.weight"], imagenet["layer3.1.conv2.weight"])
        assert torch.equal(got["fc.weight"], head)  # a new head for the 10 classes


def test_a_timm_model_built_for_one_size_is_built_for_this_one():
    net = create_backbone(require("timm:vit_tiny_patch16_224"), 1, 10, in_size=(40, 40)).eval()
    assert net(torch.rand(2, 1, 40, 40)).shape == (2, 10)


@pytest.mark.parametrize("spec", SPECS)
def test_a_real_backbone_behind_a_transformer(spec):
    net = create_backbone(require(spec), in_channels=1, num_classes=10)
    model = perturb(with_transformer(net, 40, out_size=32, init_zoom=0.7))
    x = torch.rand(4, 1, 40, 40)
    model(x).logsumexp(1).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    # Through the backbone back to θ (timm zeroes each residual branch's last BN at init, so
    # some of the backbone's own gradients are zero at the start).
    assert all(p.grad.any() for p in model.localization_parameters())
    assert model.transformers[0].last_theta.shape == (4, 6)
