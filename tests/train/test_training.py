"""Tests of stnlab.train.loop (the loop, its record stream, evaluation, checkpoints, resume)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from conftest import records_without_times, weights_equal

from stnlab import models
from stnlab.config import EVAL_BATCH, ModelConfig, RunConfig, TrainConfig
from stnlab.config.errors import ConfigError, RunFolderError, TrainingDivergedError
from stnlab.runs.atomic import atomic_write
from stnlab.runs.records import EvalRecord, Record, ThetaRecord, TrainRecord
from stnlab.runs.run_folder import Checkpoint, RunDir
from stnlab.train import MixedPrecision, train
from stnlab.train import loop as training
from stnlab.train.evaluation import Evaluation, eval_batch, evaluate

FAST = {"size": "tf-example"}  # the quickest preset on CPU


def run_config(model: str = "cnn", **train_fields) -> RunConfig:
    """A quick run; a checkpoint after every epoch unless ``checkpoint_every`` says otherwise."""
    fields = {"epochs": 2, "threads": 1, "device": "cpu", "checkpoint_every": 0, **train_fields}
    return RunConfig(ModelConfig(model, **FAST), TrainConfig(**fields))


# ----------------------------------------------------------------------------- pieces


def test_resolve_device():
    assert training.resolve_device("cpu") == "cpu"
    assert training.resolve_device("auto") in ("cpu", "cuda")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
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


def test_iterations_fix_an_epoch_and_see_every_image_equally_often():
    # 1,000 images, 3 steps of 100 an epoch: 10 epochs are 3 whole shuffled passes
    epochs = [training.epoch_batches(1000, 100, 7, e, iterations=3) for e in range(1, 11)]
    assert all(b.shape == (3, 100) for b in epochs)
    stream = torch.cat([b.reshape(-1) for b in epochs])
    for p in range(3):
        assert sorted(stream[1000 * p : 1000 * (p + 1)].tolist()) == list(range(1000))
    assert len({tuple(stream[1000 * p : 1000 * p + 10].tolist()) for p in range(3)}) == 3
    # the same batches after a resume (epoch alone decides), and dealt across ranks
    assert torch.equal(epochs[4], training.epoch_batches(1000, 100, 7, 5, iterations=3))
    halves = [training.epoch_batches(1000, 100, 7, 5, r, 2, iterations=3) for r in (0, 1)]
    assert torch.equal(torch.cat(halves, 1).sort(1).values, epochs[4].sort(1).values)
    # more steps than one pass holds: the stream runs on into the next shuffle
    long = training.epoch_batches(150, 100, 0, 1, iterations=3).reshape(-1)
    assert sorted(long[:150].tolist()) == list(range(150)) and len(set(long.tolist())) == 150


def test_iterations_that_make_one_pass_give_the_one_pass_batches():
    for epoch in (1, 2, 9):
        assert torch.equal(
            training.epoch_batches(1000, 200, 3, epoch, iterations=5),
            training.epoch_batches(1000, 200, 3, epoch),
        )


def test_loc_lr_makes_its_own_param_group():
    model = models.create("stn", **FAST)
    opt = training._optimizer(model, TrainConfig(loc_lr=1e-4))
    assert [g["lr"] for g in opt.param_groups] == [1e-3, 1e-4]
    loc = {id(p) for p in model.localization_parameters()}
    assert {id(p) for p in opt.param_groups[1]["params"]} == loc
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters()))


def test_precision_is_off_unless_asked_and_then_bfloat16():
    cpu = torch.device("cpu")
    assert not MixedPrecision.of(TrainConfig(), cpu).enabled
    assert not MixedPrecision.of(TrainConfig(), torch.device("cuda")).enabled  # float32 is faster
    on = MixedPrecision.of(TrainConfig(amp=True), cpu)
    assert on.enabled and on.dtype == torch.bfloat16 and not on.scaler.is_enabled()
    assert not MixedPrecision.of(TrainConfig(amp=False), cpu).enabled


def _smoothed_loss(logits: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    """Label smoothing as its formula: the target is (1 - eps) one-hot + eps uniform."""
    logp = logits.double().log_softmax(1)  # (N, K)
    return -((1 - eps) * logp[torch.arange(len(y)), y] + eps * logp.mean(1)).mean()


def test_loss_with_label_smoothing_is_the_formula():
    torch.manual_seed(0)
    logits, y = 3 * torch.randn(16, 10), torch.randint(0, 10, (16,))
    for eps in (0.0, 0.1, 0.5):
        got = training.loss(logits, y, TrainConfig(label_smoothing=eps))
        assert got.item() == pytest.approx(_smoothed_loss(logits, y, eps).item(), rel=1e-6)
    with pytest.raises(ConfigError, match=r"train.label_smoothing must be in \[0, 1\), got 1.0"):
        TrainConfig(label_smoothing=1)


def test_training_minimises_the_smoothed_loss(tiny_data):
    # With a vanishing learning rate, the first epoch's recorded loss is the loss of the
    # initial model (no dropout, no BatchNorm in tf-example) over that epoch's batches.
    model = ModelConfig("cnn", size="tf-example", widths={"dropout": 0.0})
    torch.manual_seed(0)
    init = models.create(model)
    idx = training.epoch_batches(len(tiny_data.y_train), 200, seed=0, epoch=1).reshape(-1)
    with torch.no_grad():
        logits = init(tiny_data.x_train[idx])
    for eps in (0.0, 0.9):  # near-uniform logits at init: the losses differ by ~3e-4
        seen: list[Record] = []
        run = RunConfig(model, TrainConfig(epochs=1, lr=1e-12, label_smoothing=eps, threads=1))
        train(run, tiny_data, progress=False, on_record=[seen.append])
        want, other = (_smoothed_loss(logits, tiny_data.y_train[idx], e) for e in (eps, 0.9 - eps))
        assert seen[0].loss == pytest.approx(want.item(), rel=1e-6)
        assert seen[0].loss != pytest.approx(other.item(), rel=1e-5)


def test_bad_data_for_the_config(tiny_data):
    with pytest.raises(ConfigError, match="more than the 400 training images"):
        train(run_config(batch_size=500), tiny_data, progress=False)


# ----------------------------------------------------------------------------- evaluate


def test_evaluate_figures_agree(tiny_data):
    data = tiny_data
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
    for k in range(10):  # per-class accuracy, counted directly
        mine = ev.labels == k
        if mine.any():
            assert ev.per_class_accuracy[k] == pytest.approx((ev.predictions[mine] == k).mean())
    with torch.no_grad():
        logits = model.eval()(data.x_test)
    ref = torch.nn.functional.cross_entropy(logits, data.y_test).item()
    assert ev.loss == pytest.approx(ref, rel=1e-4)
    assert ev.to_dict()["confusion"] == ev.confusion.tolist()
    back = Evaluation.from_state(ev.state())
    assert back.accuracy == ev.accuracy and np.array_equal(back.predictions, ev.predictions)


def test_evaluate_rejects_mismatched_inputs(tiny_data):
    model = models.create("cnn", **FAST)
    with pytest.raises(ValueError, match="samples"):
        evaluate(model, tiny_data.x_test, tiny_data.y_test[:-1])
    with pytest.raises(ValueError, match="batch_size must be positive, got 0"):
        evaluate(model, tiny_data.x_test, tiny_data.y_test, batch_size=0)


def test_evaluate_gives_the_same_figures_at_any_batch_size(tiny_data):
    """The default batch depends on the device; what it measures must not."""
    torch.manual_seed(0)
    model = models.create("stn", **FAST).to(memory_format=torch.channels_last)
    x, y = tiny_data.x_test, tiny_data.y_test
    default, small = evaluate(model, x, y), evaluate(model, x, y, batch_size=7)
    np.testing.assert_array_equal(default.predictions, small.predictions)
    np.testing.assert_allclose(default.probabilities, small.probabilities, atol=1e-5)
    assert default.loss == pytest.approx(small.loss, rel=1e-5)


def test_eval_batch_follows_the_device_type():
    assert eval_batch("cpu") == EVAL_BATCH["cpu"]
    assert eval_batch(torch.device("cuda", 1)) == EVAL_BATCH["cuda"]
    assert eval_batch("mps") == EVAL_BATCH["cuda"]  # another accelerator: as CUDA


# ----------------------------------------------------------------------------- a run


def test_train_writes_a_complete_run_folder(tiny_data, tmp_path):
    out = RunDir(tmp_path / "run")
    seen: list[Record] = []
    res = train(
        run_config("stn", eval_at=(1,)),
        tiny_data,
        out.path,
        progress=False,
        on_record=[seen.append],
    )
    assert out.summary() == res.summary
    assert (res.summary.model, res.summary.epochs, res.summary.world_size) == ("stn", 2, 1)
    assert res.summary.parameters == models.count_parameters(res.model)
    assert res.summary.test_accuracy == res.evaluations[2]["test"].accuracy
    assert res.summary.train_images_per_second > 0

    saved = out.run_config()
    assert saved.model.decisive() == res.model.config.decisive() and saved.train.epochs == 2
    assert saved.train.device == "cpu" and saved.train.amp is False  # as the run resolved them
    records = out.records()
    assert records == seen  # one stream: the callbacks get exactly the metrics.jsonl lines
    events = [(type(r), r.epoch, getattr(r, "split", None)) for r in records]
    assert events == [
        (TrainRecord, 1, None),
        (EvalRecord, 1, "valid"),
        (EvalRecord, 1, "test"),
        (ThetaRecord, 1, None),
        (TrainRecord, 2, None),
        (EvalRecord, 2, "valid"),
        (EvalRecord, 2, "test"),
        (ThetaRecord, 2, None),
    ]
    assert records[4].lr == 1e-3 and records[4].seconds > 0
    evals = [r for r in records if isinstance(r, EvalRecord)]
    assert evals[2].train_seconds > evals[0].train_seconds > 0

    p = out.predictions()  # every evaluated epoch's per-sample test predictions
    assert p.epochs.tolist() == [1, 2] and p.predictions.shape == (2, 100)
    for epoch in (1, 2):
        predictions, confidence = p.at(epoch)
        np.testing.assert_array_equal(predictions, res.evaluations[epoch]["test"].predictions)
        np.testing.assert_array_equal(confidence, res.evaluations[epoch]["test"].confidence)
    assert p.probabilities.shape == (100, 10)
    np.testing.assert_array_equal(p.labels, tiny_data.y_test.numpy())

    loaded = models.load(out.path)  # the final weights rebuild the trained model
    with torch.no_grad():
        assert torch.equal(loaded(tiny_data.x_test[:8]), res.model(tiny_data.x_test[:8]))
    assert out.load_checkpoint().epoch == 2


def test_training_learns(tiny_data):
    torch.manual_seed(0)
    data = tiny_data
    before = evaluate(models.create("cnn", **FAST), data.x_train, data.y_train)
    res = train(run_config(epochs=6), data, progress=False)
    after = evaluate(res.model, data.x_train, data.y_train)
    assert after.loss < before.loss - 0.1 and after.accuracy > 0.2  # chance is 0.1
    assert res.out_dir is None


@pytest.mark.parametrize("model", ["cnn", "stn", "mstn", "icstn"])
def test_amp_on_cpu_trains_in_bfloat16_close_to_float32(tiny_data, model):
    # The same run in float32 and under bfloat16 autocast: close, not equal (8-bit mantissa).
    losses = {}
    for amp in (False, True):
        seen: list[Record] = []
        cfg = run_config(model, epochs=1, amp=amp)
        train(cfg, tiny_data, progress=False, on_record=[seen.append])
        losses[amp] = seen[0].loss
    assert losses[True] != losses[False]
    assert losses[True] == pytest.approx(losses[False], rel=0.02)


def test_existing_run_needs_resume(tiny_data, tmp_path):
    train(run_config(epochs=1), tiny_data, tmp_path, progress=False)
    with pytest.raises(RunFolderError, match="already holds a run"):
        train(run_config(epochs=1), tiny_data, tmp_path, progress=False)


def test_resume_is_exact_and_rejects_a_changed_config(tiny_data, tmp_path, monkeypatch):
    ref = train(run_config("stn", epochs=3), tiny_data, tmp_path / "ref", progress=False)

    real_save = RunDir.save_checkpoint

    def save_then_die(self, ck: Checkpoint):
        real_save(self, ck)
        if ck.epoch == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(RunDir, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train(run_config("stn", epochs=3), tiny_data, tmp_path / "cut", progress=False)
    monkeypatch.undo()
    cut = RunDir(tmp_path / "cut")
    cut.append(TrainRecord(3, 1.0, 0.5, 1e-3, 1.0))  # a line of the epoch cut short...
    with open(cut.file("metrics.jsonl"), "a") as f:
        f.write('{"event": "tr')  # ...and a torn one, as a crash leaves
    with pytest.raises(ConfigError, match=r"train\.lr: 0\.001 -> 0\.01"):
        train(run_config("stn", epochs=3, lr=1e-2), tiny_data, cut.path, resume=True)
    res = train(run_config("stn", epochs=3), tiny_data, cut.path, resume=True)

    assert weights_equal(res.model.state_dict(), ref.model.state_dict())
    assert records_without_times(cut) == records_without_times(RunDir(tmp_path / "ref"))
    assert res.summary.test_accuracy == ref.summary.test_accuracy
    p, q = cut.predictions(), RunDir(tmp_path / "ref").predictions()
    assert np.array_equal(p.predictions, q.predictions) and p.epochs.tolist() == [3]

    # A finished run is reloaded, not retrained.
    again = train(run_config("stn", epochs=3), tiny_data, cut.path, resume=True)
    assert again.summary == res.summary and again.evaluations == {}
    assert weights_equal(again.model.state_dict(), res.model.state_dict())
    with pytest.raises(ConfigError, match="differs from the finished run's"):
        train(run_config("stn", epochs=3, seed=1), tiny_data, cut.path, resume=True)


def test_checkpoints_are_due_by_time_at_budgets_and_at_the_end():
    cfg = TrainConfig(epochs=10, eval_at=(4,), checkpoint_every=60)
    due = [e for e in range(1, 11) if training.checkpoint_due(cfg, e, since_last=5.0)]
    assert due == [4, 10]
    assert training.checkpoint_due(cfg, 3, since_last=60.0)  # a minute since the last one
    every = TrainConfig(epochs=10, checkpoint_every=0)
    assert all(training.checkpoint_due(every, e, since_last=0.0) for e in range(1, 11))


def test_resume_is_exact_when_a_checkpoint_was_skipped_by_time(tiny_data, tmp_path):
    """Checkpoints after epochs 2 (a budget) and 4 only; killed in epoch 4, the run goes back
    to epoch 2, trains 3 again and ends as a run checkpointed every epoch does."""
    ref = train(run_config("stn", epochs=4), tiny_data, tmp_path / "ref", progress=False)
    sparse = run_config("stn", epochs=4, eval_at=(2,), checkpoint_every=3600)
    saved: list[int] = []

    def die_in_epoch_4(record: Record) -> None:
        if isinstance(record, TrainRecord) and record.epoch == 4:
            saved.append(RunDir(tmp_path / "cut").load_checkpoint().epoch)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(sparse, tiny_data, tmp_path / "cut", progress=False, on_record=[die_in_epoch_4])
    assert saved == [2]  # epochs 1 and 3 were not checkpointed
    cut = RunDir(tmp_path / "cut")
    lines = [r.epoch for r in cut.records() if isinstance(r, TrainRecord)]
    assert lines == [1, 2, 3, 4]  # written after the checkpoint: dropped by the resume
    res = train(sparse, tiny_data, cut.path, resume=True, progress=False)
    assert weights_equal(res.model.state_dict(), ref.model.state_dict())
    kept = [r for r in records_without_times(cut) if r["event"] == "train"]
    assert kept == [
        r for r in records_without_times(RunDir(tmp_path / "ref")) if r["event"] == "train"
    ]
    assert res.summary.test_accuracy == ref.summary.test_accuracy


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tiny_data, tmp_path, monkeypatch):
    monkeypatch.setattr(training, "lr_factor", lambda s, e, n: 1.0 if e == 1 else float("nan"))
    with pytest.raises(TrainingDivergedError, match="epoch 2; the checkpoint of epoch 1 is kept"):
        train(run_config(epochs=3), tiny_data, tmp_path, progress=False)
    ck = RunDir(tmp_path).load_checkpoint()
    assert ck.epoch == 1
    assert all(torch.isfinite(v).all() for v in ck.model.values() if v.is_floating_point())
    assert not (tmp_path / "final.safetensors").exists()


def test_final_weights_are_the_trained_ones(tiny_data, tmp_path):
    res = train(run_config(epochs=1), tiny_data, tmp_path, progress=False)
    assert weights_equal(models.load(tmp_path).state_dict(), res.model.state_dict())


# ----------------------------------------------------------------------------- files


def test_write_atomic_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")
    with pytest.raises(OSError, match="disk full"), atomic_write(path) as f:
        f.write(b"half a file")
        raise OSError("disk full")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]  # no temporary left


def test_checkpoint_refuses_pickled_code(tmp_path):
    torch.save({"f": np.random.default_rng}, tmp_path / "checkpoint.pt")  # pickled code
    with pytest.raises(RunFolderError, match=r"checkpoint\.pt cannot be read \([Ww]eights only"):
        RunDir(tmp_path).load_checkpoint()
