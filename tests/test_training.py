"""Tests of stnlab.training (the loop, config, evaluation, checkpoints) on tiny generated data."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch

from stnlab import models, training
from stnlab.atomic import atomic_write
from stnlab.checkpoint import load_checkpoint, load_weights, save_checkpoint
from stnlab.data import make_dataset
from stnlab.training import TrainConfig, TrainingDivergedError, evaluate, train

FAST = {"size": "tf-example"}  # the quickest preset on CPU


@pytest.fixture(scope="module")
def data():
    return make_dataset(sizes=(400, 100, 100), seed=0)


def cfg(**kw) -> TrainConfig:
    base = {"model": "cnn", "model_kwargs": FAST, "epochs": 2, "threads": 1}
    return TrainConfig(**{**base, **kw})


def weights_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def metric_lines(path) -> list[dict]:
    """metrics.jsonl without wall-clock fields, which differ between runs."""
    lines = [json.loads(s) for s in path.read_text().splitlines()]
    return [{k: v for k, v in d.items() if k not in ("seconds", "train_seconds")} for d in lines]


# ----------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"model": "nope"}, "unknown model 'nope'"),
        ({"epochs": 0}, "epochs must be positive"),
        ({"batch_size": -1}, "batch_size must be positive"),
        ({"lr": 0.0}, "learning rates must be positive"),
        ({"loc_lr": -1.0}, "learning rates must be positive"),
        ({"weight_decay": -0.1}, "weight_decay"),
        ({"schedule": "linear"}, "unknown schedule 'linear'"),
        ({"device": "auto"}, "device must be"),
        ({"eval_epochs": (5,)}, "eval_epochs must lie in 1..2"),
        ({"threads": 0}, "threads must be positive"),
    ],
)
def test_config_rejects_bad_values(kw, message):
    with pytest.raises(ValueError, match=message):
        cfg(**kw)


def test_config_normalises_eval_epochs():
    assert cfg(epochs=5, eval_epochs=[3, 1, 3]).eval_epochs == (1, 3)
    assert cfg().to_dict()["eval_epochs"] == []


def test_resolve_device():
    assert training.resolve_device("cpu") == "cpu"
    assert training.resolve_device("auto") in ("cpu", "cuda")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            training.resolve_device("cuda")


def test_lr_schedules():
    assert [training.lr_factor("constant", e, 4) for e in (1, 4)] == [1.0, 1.0]
    cos = [training.lr_factor("cosine", e, 4) for e in (1, 2, 3, 4)]
    assert cos[0] == 1.0 and all(a > b > 0 for a, b in itertools.pairwise(cos))
    step = [training.lr_factor("step", e, 8) for e in range(1, 9)]
    assert step == pytest.approx([1, 1, 1, 1, 0.1, 0.1, 0.01, 0.01])


def test_epoch_batches_shuffle_is_per_epoch_and_dealt_across_ranks():
    full = training.epoch_batches(1000, 200, seed=0, epoch=3)
    assert full.shape == (5, 200)  # 1,000 images at batch 200: 5 iterations
    assert torch.equal(full, training.epoch_batches(1000, 200, seed=0, epoch=3))
    assert not torch.equal(full, training.epoch_batches(1000, 200, seed=0, epoch=4))
    assert not torch.equal(full, training.epoch_batches(1000, 200, seed=1, epoch=3))
    ranks = [training.epoch_batches(1000, 200, 0, 3, rank=r, world=2) for r in (0, 1)]
    assert ranks[0].shape == (5, 100)
    for i in range(5):  # the two ranks split each global batch exactly
        assert sorted(torch.cat([ranks[0][i], ranks[1][i]]).tolist()) == sorted(full[i].tolist())
    assert training.epoch_batches(450, 200, 0, 1).shape == (2, 200)  # last partial batch dropped


def test_loc_lr_makes_its_own_param_group():
    model = models.create("stn", **FAST)
    opt = training._optimizer(model, cfg(model="stn", loc_lr=1e-4))
    lrs = [g["lr"] for g in opt.param_groups]
    assert lrs == [1e-3, 1e-4]
    loc = {id(p) for p in model.localization_parameters()}
    assert {id(p) for p in opt.param_groups[1]["params"]} == loc
    n = sum(len(g["params"]) for g in opt.param_groups)
    assert n == len(list(model.parameters()))


# ----------------------------------------------------------------------------- evaluate


def test_evaluate_figures_agree(data):
    torch.manual_seed(0)
    model = models.create("cnn", **FAST).train()
    ev = evaluate(model, data.x_test, data.y_test, batch_size=32)
    assert model.training  # mode restored
    n = len(data.y_test)
    assert ev.predictions.shape == ev.confidence.shape == ev.labels.shape == (n,)
    assert ev.probabilities.shape == (n, 10)
    np.testing.assert_allclose(ev.probabilities.sum(1), 1.0, atol=1e-5)
    assert ev.confusion.shape == (10, 10) and ev.confusion.sum() == n
    assert ev.accuracy == pytest.approx(np.trace(ev.confusion) / n)
    assert ev.accuracy == pytest.approx((ev.predictions == data.y_test.numpy()).mean())
    np.testing.assert_array_equal(ev.confusion.sum(1), np.bincount(ev.labels, minlength=10))
    with torch.no_grad():
        logits = model.eval()(data.x_test)
    ref = torch.nn.functional.cross_entropy(logits, data.y_test).item()
    assert ev.loss == pytest.approx(ref, rel=1e-4)
    assert ev.to_dict()["confusion"] == ev.confusion.tolist()
    back = training.Evaluation.from_state(ev.state())
    assert back.accuracy == ev.accuracy and np.array_equal(back.predictions, ev.predictions)


def test_evaluate_rejects_mismatched_inputs(data):
    model = models.create("cnn", **FAST)
    with pytest.raises(ValueError, match="samples"):
        evaluate(model, data.x_test, data.y_test[:-1])


# ----------------------------------------------------------------------------- a run


def test_train_writes_a_complete_run_directory(data, tmp_path):
    out = tmp_path / "run"
    res = train(cfg(model="stn", eval_epochs=(1,)), data, out_dir=out, progress=False)
    for name in ("config.json", "metrics.jsonl", "checkpoint.pt", "final.safetensors"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary == res.summary
    need = {"model", "epochs", "seed", "valid_accuracy", "test_accuracy", "train_seconds",
            "train_images_per_second", "parameters"}  # fmt: skip
    assert need <= summary.keys()
    assert summary["parameters"] == models.count_parameters(res.model)
    assert summary["test_accuracy"] == res.evaluations[2]["test"].accuracy

    config = json.loads((out / "config.json").read_text())
    assert config["model"] == res.model.config and config["epochs"] == 2
    lines = [json.loads(s) for s in (out / "metrics.jsonl").read_text().splitlines()]
    events = [(d["event"], d["epoch"], d.get("split")) for d in lines]
    assert events == [("train", 1, None), ("eval", 1, "valid"), ("eval", 1, "test"),
                      ("train", 2, None), ("eval", 2, "valid"), ("eval", 2, "test")]  # fmt: skip
    assert {"loss", "accuracy", "lr", "seconds"} <= lines[0].keys()
    assert lines[4]["train_seconds"] > lines[1]["train_seconds"] > 0
    assert set(res.evaluations) == {1, 2} and set(res.evaluations[1]) == {"valid", "test"}

    preds = np.load(out / "predictions.npz")
    assert preds["probabilities"].shape == (100, 10)
    np.testing.assert_array_equal(preds["predictions"], res.evaluations[2]["test"].predictions)
    np.testing.assert_array_equal(preds["labels"], data.y_test.numpy())

    loaded = models.load(out)  # the final weights rebuild the trained model
    with torch.no_grad():
        assert torch.equal(loaded(data.x_test[:8]), res.model(data.x_test[:8]))
    ck = torch.load(out / "checkpoint.pt", weights_only=True)  # data only, no pickled code
    assert ck["epoch"] == 2


def test_training_learns(data):
    torch.manual_seed(0)
    before = evaluate(models.create("cnn", **FAST), data.x_train, data.y_train)
    res = train(cfg(epochs=6), data, progress=False)
    after = evaluate(res.model, data.x_train, data.y_train)
    assert after.loss < before.loss - 0.1 and after.accuracy > 0.2  # chance is 0.1
    assert res.out_dir is None


def test_existing_run_needs_resume(data, tmp_path):
    train(cfg(epochs=1), data, out_dir=tmp_path, progress=False)
    with pytest.raises(FileExistsError, match="already holds a run"):
        train(cfg(epochs=1), data, out_dir=tmp_path, progress=False)


def test_resume_is_exact_and_rejects_a_changed_config(data, tmp_path, monkeypatch):
    ref = train(cfg(model="stn", epochs=3), data, out_dir=tmp_path / "ref", progress=False)

    real_save = training.save_checkpoint

    def save_then_die(path, state):
        real_save(path, state)
        if state["epoch"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(training, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train(cfg(model="stn", epochs=3), data, out_dir=tmp_path / "cut", progress=False)
    monkeypatch.undo()
    with pytest.raises(ValueError, match=r"lr: 0\.001 -> 0\.01"):
        train(cfg(model="stn", epochs=3, lr=1e-2), data, out_dir=tmp_path / "cut", resume=True)
    res = train(cfg(model="stn", epochs=3), data, out_dir=tmp_path / "cut", resume=True)

    assert weights_equal(res.model.state_dict(), ref.model.state_dict())
    assert metric_lines(tmp_path / "cut/metrics.jsonl") == metric_lines(
        tmp_path / "ref/metrics.jsonl"
    )
    assert res.summary["test_accuracy"] == ref.summary["test_accuracy"]

    # A finished run is reloaded, not retrained.
    again = train(cfg(model="stn", epochs=3), data, out_dir=tmp_path / "cut", resume=True)
    assert again.summary == res.summary
    assert weights_equal(again.model.state_dict(), res.model.state_dict())


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(data, tmp_path, monkeypatch):
    monkeypatch.setattr(training, "lr_factor", lambda s, e, n: 1.0 if e == 1 else float("nan"))
    with pytest.raises(TrainingDivergedError, match="epoch 2; the checkpoint of epoch 1 is kept"):
        train(cfg(epochs=3), data, out_dir=tmp_path, progress=False)
    ck = load_checkpoint(tmp_path / "checkpoint.pt")
    assert ck["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in ck["model"].values() if v.is_floating_point())
    assert not (tmp_path / "final.safetensors").exists()


# ----------------------------------------------------------------------------- files


def test_write_atomic_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"epoch": 1, "w": torch.ones(3)})

    with pytest.raises(OSError, match="disk full"), atomic_write(path) as f:
        f.write(b"half a checkpoint")
        raise OSError("disk full")
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # no temporary left


def test_checkpoint_refuses_pickled_code(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"f": np.random.default_rng}, path)  # an arbitrary callable, pickled
    with pytest.raises(Exception, match=r"[Ww]eights only"):
        load_checkpoint(path)


def test_final_weights_are_safetensors(data, tmp_path):
    res = train(cfg(epochs=1), data, out_dir=tmp_path, progress=False)
    assert weights_equal(load_weights(tmp_path / "final.safetensors"), res.model.state_dict())
