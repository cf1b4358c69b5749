"""Tests of stnlab.config: checks that name the key, the fields that decide a result."""

from __future__ import annotations

from dataclasses import fields, replace

import pytest

from stnlab.config import (
    DataConfig,
    ExperimentConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
)
from stnlab.config.errors import ConfigError


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: TrainConfig(lr=-1), "train.lr must be positive, got -1"),
        (lambda: TrainConfig(lr="fast"), "train.lr must be a number, got 'fast'"),
        (lambda: TrainConfig(epochs=True), "train.epochs must be an integer, got True"),
        (lambda: TrainConfig(batch_size=0), "train.batch_size must be positive, got 0"),
        (lambda: TrainConfig(loc_lr=-1.0), "train.loc_lr must be positive"),
        (lambda: TrainConfig(weight_decay=-0.1), "train.weight_decay must be non-negative"),
        (lambda: TrainConfig(schedule="linear"), "train.schedule: unknown schedule 'linear'"),
        (lambda: TrainConfig(device="gpu"), "train.device must be auto, cpu, cuda or cuda:N"),
        (lambda: TrainConfig(epochs=2, eval_at=(5,)), "train.eval_at must lie in 1..2, got [5]"),
        (lambda: TrainConfig(threads=0), "train.threads must be positive"),
        (lambda: TrainConfig(amp="yes"), "train.amp must be auto, true or false, got 'yes'"),
        (lambda: ModelConfig(size="huge"), "model.size: unknown size 'huge'"),
        (lambda: ModelConfig(widths={"hidden": 0}), "model.widths.hidden must be positive"),
        (lambda: ModelConfig(in_size=(0, 4)), "model.in_size must be positive"),
        (lambda: DataConfig(variant="80x80"), "data.variant: unknown variant '80x80'"),
        (lambda: DataConfig(sizes=(1, 2)), "data.sizes must be a list of 3 integers"),
        (lambda: DataConfig(sizes=(10, 0, 1)), "data.sizes must be 3 positive counts"),
        (lambda: ExperimentConfig(seeds=(1, 1)), "seeds repeat: [1, 1]"),
        (lambda: TrainConfig.from_dict({"lrr": 1}), "unknown key 'lrr' in train; known: epochs"),
        (lambda: TrainConfig(checkpoint_every=-1), "train.checkpoint_every must be 0 or positive"),
        (lambda: ExperimentConfig(cluster="head:8786"), "cluster 'head:8786': unknown form"),
        (lambda: ExperimentConfig(cluster="local:0"), "cluster 'local:0': local:N needs a"),
        (
            lambda: ExperimentConfig(cluster="local:2", train=TrainConfig(device="cuda")),
            "cluster local:2 trains on the CPU; for GPUs on this machine leave out --cluster",
        ),
        (lambda: ExperimentConfig(shared_fs="maybe"), "shared_fs: unknown setting 'maybe'"),
        (lambda: ExperimentConfig(runs_per_gpu=0), "runs_per_gpu must be positive, got 0"),
    ],
)
def test_bad_values_are_refused_with_the_key(make, message):
    with pytest.raises(ConfigError) as info:
        make()
    assert message in str(info.value) and "\n" not in str(info.value)


def test_values_get_their_types():
    t = TrainConfig(lr=1, eval_at=[3, 1])
    assert t.lr == 1.0 and isinstance(t.lr, float) and t.eval_at == (3, 1)
    assert ModelConfig(in_size=[24, 24]).in_size == 24  # square sizes are one number
    assert ModelConfig(widths={"conv": [8, 8]}).widths == {"conv": (8, 8)}


def test_eval_epochs():
    assert TrainConfig(epochs=5).eval_epochs() == (5,)
    assert TrainConfig(epochs=5, eval_every=2, eval_at=(3,)).eval_epochs() == (2, 3, 4, 5)


# What each change does to a run; decides=True in config.py is the declaration under test.
CHANGES = {
    "model": {
        "name": "cnn",
        "size": "small",
        "transform": "tps",
        "widths": {"hidden": 7},
        "steps": 3,
        "backbone": "timm:resnet18",
        "pretrained": True,
        "in_channels": 3,
        "in_size": 28,
        "num_classes": 5,
    },
    "train": {
        "epochs": 7,
        "batch_size": 50,
        "lr": 0.5,
        "loc_lr": 0.1,
        "weight_decay": 0.1,
        "label_smoothing": 0.1,
        "schedule": "step",
        "optimizer": "sgd",
        "seed": 4,
        "iterations": 7,
        "eval_every": 3,
        "eval_at": (1,),
        "device": "cpu",
        "amp": True,
        "compile": True,
        "threads": 1,
        "theta_images": 10,
        "stop_on_collapse": True,
        "tensorboard": "tb",
        "checkpoint_every": 5.0,
    },
    "data": {
        "path": "x.npz",
        "variant": "60x60",
        "source": "mnist",
        "seed": 3,
        "sizes": (5, 5, 5),
        "source_dir": "mnist",
        "cache_dir": "cache",
        "published": "cluttered-40x40",
    },
}
HOW_NOT_WHAT = {
    "train.eval_every",
    "train.eval_at",
    "train.device",
    "train.amp",
    "train.compile",
    "train.threads",
    "train.theta_images",
    "train.stop_on_collapse",
    "train.tensorboard",
    "data.source_dir",
    "data.cache_dir",
    "train.checkpoint_every",
}


def test_every_field_has_a_change_to_try():
    for part in (ModelConfig, TrainConfig, DataConfig):
        assert set(CHANGES[part.SECTION]) == {f.name for f in fields(part)}, part


@pytest.mark.parametrize(
    "key", [f"{section}.{name}" for section, changes in CHANGES.items() for name in changes]
)
def test_only_the_fields_that_decide_a_result_make_a_run_differ(key):
    section, name = key.split(".")
    before = RunConfig()
    after = replace(
        before, **{section: replace(getattr(before, section), **{name: CHANGES[section][name]})}
    )
    diff = after.differences(before.to_dict())
    if key in HOW_NOT_WHAT:
        assert diff == []
    else:
        assert diff and diff[0].startswith(key), diff
        assert all(line.startswith(section) for line in diff), diff  # (a size: its widths too)


def test_widths_are_compared_as_built():
    # The same layers, once as a preset and once spelled out: not a different run.
    spelled = ModelConfig(size="small", widths=ModelConfig(size="small").to_dict()["widths"])
    assert spelled.decisive() == ModelConfig(size="small").decisive()
    assert (
        RunConfig(model=spelled).differences(RunConfig(ModelConfig(size="small")).to_dict()) == []
    )


def test_a_run_config_round_trips_through_plain_values():
    run = RunConfig(
        ModelConfig("icstn", size="small", widths={"hidden": 9}, in_size=(24, 32)),
        TrainConfig(epochs=3, loc_lr=1e-4),
        DataConfig(variant="rts"),
    )
    again = RunConfig.from_dict(run.to_dict())
    assert again.decisive() == run.decisive() and again.train == run.train


def test_model_config_reads_the_flat_form_of_older_run_folders():
    old = {
        "name": "stn",
        "in_channels": 1,
        "in_size": 40,
        "num_classes": 10,
        "size": "default",
        "transform": "affine",
        "hidden": 32,
        "conv": [8, 16],
    }
    config = ModelConfig.from_dict(old)
    assert config.layers().hidden == 32 and config.layers().conv == (8, 16)


def test_experiment_dict_leaves_out_what_the_experiment_sets():
    d = ExperimentConfig().to_dict()
    assert "name" not in d["model"] and "in_size" not in d["model"]
    assert not {"epochs", "seed", "eval_at"} & set(d["train"])
    assert {"lr", "batch_size", "eval_every"} <= set(d["train"])
