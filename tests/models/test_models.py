"""Tests for stnlab.models: registry, shapes, gradients, identity start, config round trip."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from conftest import SMALL, perturb, saved_run

from stnlab import models
from stnlab.config import SIZES, ModelConfig, RunConfig
from stnlab.config.errors import ConfigError, RunFolderError
from stnlab.runs.run_folder import RunDir


def test_names_include_the_study_designs():
    assert {"cnn", "stn", "mstn", "icstn"} <= set(models.names())
    assert {"default", "tf-example"} <= set(SIZES)


@pytest.mark.parametrize("name", models.names())
def test_forward_shape_and_finite(name):
    model = models.create(name, num_classes=7, **SMALL)
    out = model(torch.rand(3, 1, 24, 24))
    assert out.shape == (3, 7)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", models.names())
def test_every_parameter_gets_a_gradient(name):
    model = models.create(name, **SMALL)
    perturb(model)
    loss = model(torch.rand(4, 1, 24, 24)).logsumexp(1).sum()
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert not missing


def test_localization_gets_gradient_after_one_step_from_identity():
    # Honest version of the check without perturbing: one step moves the regressor
    # weights off zero, after which the localization net receives gradient.
    torch.manual_seed(0)
    model = models.create("stn", **SMALL)
    x, y = torch.rand(8, 1, 24, 24), torch.randint(0, 10, (8,))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(2):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    conv = model.transformers[0].localization[1][0]
    assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["stn", "mstn", "icstn"])
@pytest.mark.parametrize("transform", ["affine", "projective", "attention"])
def test_transformers_start_as_identity(name, transform):
    model = models.create(name, transform=transform, **{**SMALL, "loc_zoom": 1.0}).eval()
    x = torch.rand(2, 1, 24, 24)
    (warped, theta), *_ = model.transform(x)
    identity = model.transformers[0].transform.identity(2)
    torch.testing.assert_close(theta, identity)
    torch.testing.assert_close(warped, x, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["stn", "mstn", "icstn"])
def test_the_first_transformer_starts_zoomed_in_by_loc_zoom(name):
    model = models.create(name, **{**SMALL, "loc_zoom": 0.5}).eval()
    x = torch.rand(2, 1, 24, 24)
    stages = model.transform(x)
    a = torch.tensor([[0.5, 0, 0, 0, 0.5, 0]]).expand(2, 6)  # the paper's A_θ of a 2× zoom
    torch.testing.assert_close(stages[0][1], a)
    central = F.grid_sample(
        x,
        F.affine_grid(a.reshape(2, 2, 3), (2, 1, 24, 24), align_corners=False),
        align_corners=False,
    )
    torch.testing.assert_close(stages[0][0], central, atol=1e-5, rtol=0)
    for st, (_, theta) in zip(model.transformers[1:], stages[1:], strict=True):
        if name == "icstn":  # later steps compose an identity update with the first zoom
            torch.testing.assert_close(theta, a)
        else:  # mstn's second transformer warps feature maps, from the identity
            torch.testing.assert_close(theta, st.transform.identity(2))


def test_default_sizes_zoom_and_the_published_one_does_not():
    assert models.create("stn").transformers[0].init_zoom == 0.7
    assert models.create("stn", size="tf-example").transformers[0].init_zoom == 1.0


@pytest.mark.parametrize("name", models.names())
def test_transform_lists_each_transformer(name):
    model = models.create(name, **SMALL).eval()
    out = model.transform(torch.rand(2, 1, 24, 24))
    assert len(out) == len(model.transformers)
    for (warped, theta), st in zip(out, model.transformers, strict=True):
        assert warped.shape == (2, st.in_channels, *st.out_size)
        assert theta.shape == (2, st.transform.num_params)


def test_mstn_second_transformer_warps_feature_maps():
    model = models.create("mstn", **SMALL)
    (image, _), (features, _) = model.transform(torch.rand(2, 1, 24, 24))
    assert image.shape == (2, 1, 24, 24)
    assert features.shape[1] == SIZES["small"].conv[0]


def test_icstn_composes_and_warps_the_original_once():
    model = models.create("icstn", **SMALL).eval()
    perturb(model, std=0.2)
    x = torch.rand(2, 1, 24, 24)
    (w1, t1), (w2, t2) = model.transform(x)
    first, second = model.transformers
    update = second.localize(w1)
    torch.testing.assert_close(t2, first.transform.compose(t1, update))
    torch.testing.assert_close(w2, first.warp(x, t2))  # the original, resampled once
    torch.testing.assert_close(model(x), model.classifier(w2))


def test_classifier_is_the_same_size_across_designs():
    for size in SIZES:
        counts = {}
        for name in ("cnn", "stn", "mstn"):
            m = models.create(name, size=size)
            loc = sum(p.numel() for p in m.localization_parameters())
            counts[name] = models.count_parameters(m) - loc
        assert len(set(counts.values())) == 1, (size, counts)


def test_tf_example_layer_sizes():
    m = models.create("stn", size="tf-example")
    linears = [mod for mod in m.modules() if isinstance(mod, torch.nn.Linear)]
    shapes = [(mod.in_features, mod.out_features) for mod in linears]
    assert shapes == [(1600, 20), (20, 6), (1600, 1024), (1024, 10)]
    convs = [mod for mod in m.modules() if isinstance(mod, torch.nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size, c.stride) for c in convs] == [(16, (3, 3), (2, 2))] * 2


@pytest.mark.parametrize("transform", ["affine", "attention", "projective", "tps"])
def test_stn_takes_every_transform_family(transform):
    m = models.create("stn", transform=transform, **SMALL)
    assert m.transformers[0].transform.name == transform
    assert m(torch.rand(2, 1, 24, 24)).shape == (2, 10)


def test_config_rebuilds_the_same_architecture():
    m = models.create("icstn", size="small", in_size=(24, 32), hidden=48, steps=3)
    config = json.loads(json.dumps(m.config.to_dict()))  # JSON-serialisable
    assert config["name"] == "icstn" and config["widths"]["hidden"] == 48 and config["steps"] == 3
    for again in (models.create(ModelConfig.from_dict(config)), models.create(m.config)):
        assert [(k, v.shape) for k, v in again.state_dict().items()] == [
            (k, v.shape) for k, v in m.state_dict().items()
        ]


def test_create_takes_a_config_or_a_name_with_fields():
    config = ModelConfig("mstn", size="small", widths={"hidden": 40})
    a, b = models.create(config), models.create("mstn", size="small", hidden=40)
    assert a.config == b.config and a.widths.hidden == 40
    assert models.create(config, transform="attention").config.transform == "attention"


def test_a_run_folder_of_an_older_stnlab_still_loads(tmp_path):
    """config.json as stnlab wrote it before ModelConfig: one flat model dict."""
    torch.manual_seed(0)
    m = perturb(models.create("stn", size="small", in_size=24))
    old = {
        "name": "stn",
        "in_channels": 1,
        "in_size": 24,
        "num_classes": 10,
        "size": "small",
        "transform": "affine",
        **{k: list(v) if isinstance(v, tuple) else v for k, v in m.widths.to_dict().items()},
    }
    RunDir(tmp_path).save_weights(m)
    (tmp_path / "config.json").write_text(json.dumps({"model": old, "epochs": 1, "lr": 0.001}))
    x = torch.rand(2, 1, 24, 24)
    torch.testing.assert_close(models.load(tmp_path)(x), m.eval()(x))


def test_localization_parameters_are_the_transformers():
    m = models.create("mstn", **SMALL)
    ids = {id(p) for p in m.localization_parameters()}
    assert ids == {id(p) for st in m.transformers for p in st.parameters()}
    assert models.create("cnn", **SMALL).localization_parameters() == []


def test_register_decorator_adds_a_model():
    @models.register("test-tiny")
    class Tiny(models.CNN):
        pass

    try:
        assert "test-tiny" in models.names()
        assert isinstance(models.create("test-tiny", **SMALL), Tiny)
        assert ModelConfig("test-tiny").name == "test-tiny"  # known to the config checks too
        with pytest.raises(ValueError, match="already registered"):
            models.register("test-tiny")(Tiny)
        with pytest.raises(ValueError, match="already registered"):
            models.register("stn")(Tiny)
    finally:
        models._REGISTRY.pop("test-tiny")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"name": "resnet"},
            "unknown model 'resnet'; known: cnn, fcn, icstn, mstn, paper-cnn, st-cnn, st-fcn, stn",
        ),
        ({"name": "stn", "size": "huge"}, "unknown size 'huge'; known: small, default"),
        ({"name": "stn", "transform": "twirl"}, "unknown transform 'twirl'"),
        ({"name": "stn", "colour": 3}, "unknown key 'colour' in model"),
        ({"name": "stn", "widths": {"colour": 3}}, "model.widths: unknown width 'colour'"),
        ({"name": "stn", "dropout": 1.5}, "model.widths.dropout must be in"),
        ({"name": "stn", "conv": [16]}, "at least two blocks"),
        ({"name": "icstn", "transform": "tps"}, "icstn composes warps"),
        ({"name": "icstn", "steps": 0}, "model.steps must be positive"),
        ({"name": "cnn", "in_size": 4}, "too small"),
    ],
)
def test_bad_arguments_give_one_line_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")) as info:
        models.create(**kwargs)
    assert "\n" not in str(info.value)


def test_load_restores_weights_in_eval_mode(tmp_path):
    torch.manual_seed(0)
    m = models.create("stn", **SMALL)
    perturb(m)
    loaded = models.load(saved_run(tmp_path, m))
    assert not loaded.training
    x = torch.rand(2, 1, 24, 24)
    torch.testing.assert_close(loaded(x), m.eval()(x))


def test_load_errors_are_clear(tmp_path):
    with pytest.raises(RunFolderError, match="no run directory"):
        models.load(tmp_path / "nope")
    with pytest.raises(RunFolderError, match=r"has no config\.json"):
        models.load(tmp_path)
    run = saved_run(tmp_path, models.create("cnn", **SMALL))
    RunDir(run).write_config(RunConfig(model=models.create("stn", **SMALL).config))
    with pytest.raises(RunFolderError, match=r"final\.safetensors does not fit"):
        models.load(run)
    (run / "config.json").write_text("{}")
    with pytest.raises(RunFolderError, match="no model configuration"):
        models.load(run)


def test_parameter_table_lists_every_model():
    table = models.parameter_table(["small"])
    assert all(name in table for name in models.names())


def _literal_residual(block, x):
    """The residual block's formula written out with functional ops (eval-mode BatchNorm):
    ReLU(BN(conv(ReLU(BN(pool(conv x))))) + BN(conv1x1(pool x)))."""

    def bn(mod, z):
        return F.batch_norm(z, mod.running_mean, mod.running_var, mod.weight, mod.bias, False)

    conv1, _, bn1, _ = block.first
    conv2, bn2 = block.second
    h = F.relu(bn(bn1, F.max_pool2d(F.conv2d(x, conv1.weight, None, 1, 1), 2)))
    h = bn(bn2, F.conv2d(h, conv2.weight, None, 1, 1))
    pooled = F.max_pool2d(x, 2)
    if len(block.skip) == 1:  # the width stays: the pooled input itself
        return F.relu(h + pooled)
    _, conv_skip, bn_skip = block.skip
    return F.relu(h + bn(bn_skip, F.conv2d(pooled, conv_skip.weight)))


def test_residual_size_blocks_are_resnet_basic_blocks():
    m = models.create("mstn", size="residual").double().eval()
    assert len(m.classifier.blocks) == 3
    g = torch.Generator().manual_seed(0)
    for bn in (mod for mod in m.classifier.modules() if isinstance(mod, torch.nn.BatchNorm2d)):
        for t in (bn.running_mean, bn.weight, bn.bias):  # away from the identity
            t.data = torch.randn(t.shape, generator=g, dtype=t.dtype)
        bn.running_var.data = 0.5 + torch.rand(bn.running_var.shape, generator=g, dtype=t.dtype)
    x = torch.rand(2, 1, 40, 40, dtype=torch.float64)
    for block in m.classifier.blocks:
        torch.testing.assert_close(block(x), _literal_residual(block, x))
        x = block(x)
    assert x.shape == (2, 128, 5, 5)


def test_residual_skip_carries_the_input_when_the_body_is_silenced():
    block = models.create("cnn", size="residual").classifier.blocks[0].eval()
    torch.nn.init.zeros_(block.second[-1].weight)  # the body's last BatchNorm scale
    torch.nn.init.zeros_(block.second[-1].bias)
    x = torch.rand(2, 1, 40, 40)
    torch.testing.assert_close(block(x), F.relu(block.skip(x)))
