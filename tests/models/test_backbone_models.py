"""Tests of stnlab.models with a backbone: ``cnn``/``stn`` with a timm or torchvision classifier
built from the config, its errors, and loading a run without downloading anything."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from backbone_libraries import SPECS, require
from conftest import saved_run, weights_equal

from stnlab import models
from stnlab.backbones import WithTransformer
from stnlab.config import ModelConfig
from stnlab.config.errors import ConfigError


@pytest.mark.parametrize("spec", SPECS)
def test_cnn_and_stn_with_a_backbone(spec):
    stn = models.create("stn", backbone=require(spec), in_channels=3, num_classes=7)
    cnn = models.create("cnn", backbone=spec, in_channels=3, num_classes=7)
    assert isinstance(stn, WithTransformer) and stn.config.backbone == spec
    assert len(stn.transformers) == 1 and len(cnn.transformers) == 0
    x = torch.rand(2, 3, 40, 40)
    assert stn.eval()(x).shape == cnn.eval()(x).shape == (2, 7)
    # The stn's transformer is the one of its size preset: the localization net and the
    # zoom it starts at, as in stnlab's own stn.
    own = models.create("stn", in_channels=3, num_classes=7)
    assert [p.shape for p in stn.localization_parameters()] == [
        p.shape for p in own.localization_parameters()
    ]
    assert stn.transformers[0].init_zoom == own.widths.loc_zoom
    assert not cnn.localization_parameters()
    again = models.create(stn.config)  # the config rebuilds the architecture
    assert {k: v.shape for k, v in again.state_dict().items()} == {
        k: v.shape for k, v in stn.state_dict().items()
    }


def test_only_cnn_and_stn_take_a_backbone():
    with pytest.raises(ConfigError, match="only cnn and stn take a backbone, got model 'mstn'"):
        models.create("mstn", backbone="timm:resnet10t")


def test_pretrained_needs_a_backbone():
    with pytest.raises(ConfigError, match=r"model\.pretrained needs a backbone"):
        models.create(ModelConfig("stn", pretrained=True))


@pytest.mark.parametrize(
    ("backbone", "message"),
    [
        ("resnet18", "a backbone is timm:NAME or torchvision:NAME, got 'resnet18'"),
        ("timm:resnet19", "unknown timm model 'resnet19'; similar: resnet18"),
    ],
)
def test_bad_backbones_are_config_errors(backbone, message):
    if ":" in backbone:
        require(backbone)
    with pytest.raises(ConfigError, match=f"^model.backbone: {message}"):
        models.create("stn", backbone=backbone)


def test_a_backbone_too_small_for_the_images_names_the_size_it_needs():
    spec = require("torchvision:squeezenet1_1")
    with pytest.raises(ConfigError) as err:
        models.create("stn", backbone=spec, in_size=12)
    assert str(err.value) == (
        f"model.backbone: backbone {spec} cannot take 12x12 inputs (too small for its strides): "
        "it needs at least 17x17"
    )
    models.create("stn", backbone=spec, in_size=17)


@pytest.mark.parametrize("spec", SPECS)
def test_a_saved_pretrained_run_loads_its_own_weights(tmp_path, spec):
    model = models.create("stn", backbone=require(spec))
    model.config = replace(model.config, pretrained=True)  # as training with --pretrained saves
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01)  # weights that neither an init nor a download gives
    loaded = models.load(saved_run(tmp_path / "run", model))  # downloads nothing (offline here)
    assert loaded.config.pretrained is True
    assert weights_equal(loaded.state_dict(), model.state_dict())
