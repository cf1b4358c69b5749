"""What the previous release (stnlab 0.1.0, commit 005c582) wrote still works with this one:
its run folders resume, evaluate, inspect and predict; its experiment folders report and
resume; its command lines and experiment files run; the library's import paths still hold.

Every file is written here from literal values, as that release wrote it (rundir.py,
expdir.py and training.py of 005c582), never with today's writers: when a reader stops
accepting that format, these tests fail. The weights come from today's models (their keys
are pinned by tests/library/test_transformer_compat.py); the optimizer and RNG states are
torch's own formats.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from stnlab import cli, models
from stnlab.runs import ExperimentDir
from stnlab.runs.run_folder import RunDir

# ----------------------------------------------------------------------------- config.json

SMALL_WIDTHS = {  # the "small" preset, resolved, as config.json holds it
    "conv": [8, 16, 32],
    "kernel": 3,
    "stride": 1,
    "pool": 2,
    "norm": True,
    "hidden": 64,
    "dropout": 0.3,
    "loc_conv": [8, 16],
    "loc_hidden": 32,
    "loc_pool": 2,
    "loc_norm": False,
    "loc_zoom": 0.7,
}
PARAMETERS = {"cnn": 57858, "stn": 74312}  # of the small designs on 40x40 images
THETA = {  # the median of each θ statistic; p10 and p90 are written the same
    "area_ratio": 0.49,
    "outside_fraction": 0.0,
    "shift_x_px": -0.07,
    "shift_y_px": -0.07,
    "identity_distance_px": 4.9,
    "start_distance_px": 0.12,
    "scale_x": 0.7,
    "scale_y": 0.7,
    "rotation_deg": 0.3,
    "shear": 0.0,
}
# The flags of `stnlab train` that made the single runs below.
TRAIN = ["--model", "stn", "--size", "small", "--epochs", "2", "--batch-size", "100"]
TRAIN += ["--eval-every", "1", "--theta-images", "8", "--threads", "1", "--quiet"]


def model_table(name: str) -> dict:
    return {
        "name": name,
        "size": "small",
        "transform": "affine",
        "widths": SMALL_WIDTHS,
        "steps": 2,
        "in_channels": 1,
        "in_size": 40,
        "num_classes": 10,
    }


def train_table(epochs: int, eval_at: list[int]) -> dict:
    return {
        "epochs": epochs,
        "batch_size": 100,
        "lr": 0.001,
        "loc_lr": None,
        "weight_decay": 0.0005,
        "label_smoothing": 0.0,
        "schedule": "constant",
        "seed": 0,
        "eval_every": 1,
        "eval_at": eval_at,
        "device": "cpu",
        "amp": False,
        "compile": False,
        "threads": 1,
        "theta_images": 8,
        "stop_on_collapse": False,
        "tensorboard": None,
        "checkpoint_every": 60.0,
    }


def data_table(path: Path) -> dict:
    return {
        "path": str(path),
        "variant": "40x40",
        "source": "embedded",
        "seed": 0,
        "sizes": [10000, 1000, 1000],
        "source_dir": None,
        "cache_dir": None,
        "published": "",
    }


def run_config(name: str, data_file: Path, eval_at: list[int]) -> dict:
    """A RunConfig.to_dict() of 005c582: the checkpoint's ``config``."""
    return {
        "model": model_table(name),
        "train": train_table(2, eval_at),
        "data": data_table(data_file),
    }


def config_json(name: str, data_file: Path, eval_at: list[int]) -> dict:
    """config.json: the run's config, then the facts beside it."""
    return {
        **run_config(name, data_file, eval_at),
        "shapes": {"image_size": [40, 40], "train_size": 400, "valid_size": 100, "test_size": 100},
        "world_size": 1,
        "versions": {"stnlab": "0.1.0", "torch": "2.13.0+cpu", "python": "3.11.7"},
    }


# ----------------------------------------------------------------------------- metrics.jsonl


def epoch_records(name: str, epoch: int) -> list[dict]:
    """One epoch's lines: train, eval valid, eval test, then (with a transformer) θ, whose
    record has no "step" (the field came later)."""
    accuracy, loss, seconds = 0.1 * epoch, 2.3 - 0.1 * epoch, 0.5 * epoch
    train = {"event": "train", "epoch": epoch, "loss": loss, "accuracy": accuracy, "lr": 0.001}
    records = [{**train, "seconds": 0.5}]
    for split in ("valid", "test"):
        evaluation = {"event": "eval", "epoch": epoch, "split": split, "accuracy": accuracy}
        records.append({**evaluation, "loss": loss, "train_seconds": seconds})
    if name != "cnn":
        stats = {f"{k}_{q}": v for k, v in THETA.items() for q in ("p10", "median", "p90")}
        theta = {"event": "theta", "epoch": epoch, "transformer": "transformers.0"}
        records.append({**theta, **stats, "collapse": []})
    return records


def lines(records: list[dict]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in records).encode()


# ----------------------------------------------------------------------------- the other files


def weights(name: str) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return models.create(name, size="small").state_dict()


def evaluation_state(labels: torch.Tensor) -> dict:
    """Evaluation.state() of 005c582: the checkpoint's record of one split's evaluation."""
    n = len(labels)
    return {
        "accuracy": 0.1,
        "loss": 2.2,
        "per_class_accuracy": torch.full((10,), 0.1, dtype=torch.float64),
        "confusion": torch.zeros(10, 10, dtype=torch.int64),
        "predictions": torch.zeros(n, dtype=torch.int64),
        "confidence": torch.full((n,), 0.1),
        "labels": labels.clone(),
    }


def checkpoint(name: str, data, config: dict, epoch: int, metrics: bytes) -> dict:
    """checkpoint.pt of 005c582: the fields of its Checkpoint dataclass, torch.save'd."""
    model = models.create(name, size="small")
    model.load_state_dict(weights(name))
    groups = [{"params": list(model.parameters()), "lr": 0.001, "base_lr": 0.001}]
    try:  # as 005c582 made it: fused, or foreach where fused is unsupported
        optimizer = torch.optim.Adam(groups, lr=0.001, weight_decay=0.0005, fused=True)
    except RuntimeError:
        optimizer = torch.optim.Adam(groups, lr=0.001, weight_decay=0.0005, foreach=True)
    torch.nn.functional.cross_entropy(model(data.x_train[:4]), data.y_train[:4]).backward()
    optimizer.step()
    evaluation = {"valid": evaluation_state(data.y_valid), "test": evaluation_state(data.y_test)}
    return {
        "config": config,
        "epoch": epoch,
        "train_seconds": 0.5 * epoch,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scaler": {},  # GradScaler's state when loss scaling is off
        "rng": torch.get_rng_state(),
        "evaluations": {e: evaluation for e in range(1, epoch + 1)},
        "metrics_bytes": len(metrics),
        "cuda_rng": None,
    }


def summary(name: str, epochs: int) -> dict:
    return {
        "model": name,
        "size": "small",
        "transform": "affine",
        "epochs": epochs,
        "seed": 0,
        "valid_accuracy": 0.1 * epochs,
        "test_accuracy": 0.1 * epochs,
        "valid_loss": 2.3 - 0.1 * epochs,
        "test_loss": 2.3 - 0.1 * epochs,
        "train_seconds": 0.5 * epochs,
        "train_images_per_second": 1600.0,
        "parameters": PARAMETERS[name],
        "batch_size": 100,
        "device": "cpu",
        "world_size": 1,
        "test_per_class_accuracy": [0.1] * 10,
    }


def predictions(labels: torch.Tensor, epochs: list[int]) -> dict[str, np.ndarray]:
    """predictions.npz of 005c582: the test set's predictions after every evaluated epoch."""
    n, e = len(labels), len(epochs)
    return {
        "labels": labels.numpy(),
        "epochs": np.array(epochs),
        "predictions": (np.arange(e * n).reshape(e, n) % 10).astype(np.int16),
        "confidence": np.full((e, n), 0.5, dtype=np.float32),
        "probabilities": np.full((n, 10), 0.1, dtype=np.float32),
    }


def write_run(folder: Path, name: str, data, data_file: Path, done: int, eval_at=()) -> Path:
    """A run folder of ``name`` (2 epochs, evaluated after each) as 005c582 left it: after
    ``done`` epochs, finished (2) or stopped by a crash that tore the next line of
    metrics.jsonl. ``eval_at``: the budgets an experiment evaluates its runs after."""
    folder.mkdir(parents=True)
    config = config_json(name, data_file, list(eval_at))
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    metrics = lines([r for e in range(1, done + 1) for r in epoch_records(name, e)])
    ck = checkpoint(name, data, run_config(name, data_file, list(eval_at)), done, metrics)
    torch.save(ck, folder / "checkpoint.pt")
    finished = done == 2
    if not finished:
        torn = lines(epoch_records(name, done + 1)[:1])[:-20]
        (folder / "metrics.jsonl").write_bytes(metrics + torn)
        return folder
    (folder / "metrics.jsonl").write_bytes(metrics)
    save_file({k: v.contiguous() for k, v in weights(name).items()}, folder / "final.safetensors")
    np.savez(folder / "predictions.npz", **predictions(data.y_test, list(range(1, done + 1))))
    (folder / "summary.json").write_text(json.dumps(summary(name, done), indent=2) + "\n")
    return folder


def png(path: Path) -> Path:
    pixels = np.zeros((30, 50), dtype=np.uint8)  # (H, W): a white bar on black
    pixels[5:-5, 22:28] = 255
    Image.fromarray(pixels, mode="L").save(path)
    return path


# ----------------------------------------------------------------------------- run folders


def test_an_unfinished_run_resumes_where_it_stopped(tmp_path, tiny_data, data_file, capsys):
    run = write_run(tmp_path / "stn", "stn", tiny_data, data_file, done=1)
    kept = lines(epoch_records("stn", 1))  # the lines the checkpoint covers
    assert cli.main(["train", "--resume", "--out", str(run), "--data", str(data_file), *TRAIN]) == 0
    folder = RunDir(run)
    assert folder.is_finished()
    assert set(folder.evaluations()) == {(e, s) for e in (1, 2) for s in ("valid", "test")}
    assert folder.file("metrics.jsonl").read_bytes().startswith(kept)  # epoch 1 as written
    assert cli.main(["evaluate", str(run), "--data", str(data_file)]) == 0
    assert "test: 100 images" in capsys.readouterr().out


def test_a_finished_run_evaluates_inspects_predicts_and_is_not_trained_again(
    tmp_path, tiny_data, data_file, capsys
):
    run = write_run(tmp_path / "stn", "stn", tiny_data, data_file, done=2)
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    assert cli.main(["evaluate", str(run), "--data", str(data_file)]) == 0
    assert "test: 100 images" in capsys.readouterr().out
    assert cli.main(["inspect", str(run), "--data", str(data_file)]) == 0
    assert "stn transformers.0 (affine, 40x40 -> 40x40)" in capsys.readouterr().out
    assert cli.main(["predict", str(run), str(png(tmp_path / "bar.png"))]) == 0
    assert "bar.png" in capsys.readouterr().out
    assert cli.main(["train", "--resume", "--out", str(run), "--data", str(data_file), *TRAIN]) == 0
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


def test_a_run_of_an_older_release_with_flat_widths_evaluates(tmp_path, data_file, capsys):
    """Before a66f461 gave each part of the config a table, config.json held the training
    fields at its top and the model's widths flat beside its name: it evaluates and predicts."""
    run = tmp_path / "older"
    run.mkdir()
    model = {"name": "stn", "in_channels": 1, "in_size": 40, "num_classes": 10}
    model |= {"size": "small", "transform": "affine"}
    model |= {k: v for k, v in SMALL_WIDTHS.items() if k != "loc_zoom"}  # no loc_zoom then
    config = {
        "model": model,
        "model_kwargs": {"size": "small"},
        "epochs": 2,
        "batch_size": 100,
        "lr": 0.001,
        "loc_lr": None,
        "weight_decay": 0.0,
        "schedule": "constant",
        "seed": 0,
        "eval_epochs": [],
        "device": "cpu",
        "amp": True,
        "compile": False,
        "threads": None,
        "world_size": 1,
        "data": {
            "image_size": [40, 40],
            "train_size": 400,
            "valid_size": 100,
            "test_size": 100,
            "path": str(data_file),
        },
        "versions": {"stnlab": "0.1.0", "torch": "2.5.1", "python": "3.11.7"},
    }
    (run / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    tensors = {k: v.contiguous() for k, v in weights("stn").items()}
    save_file(tensors, run / "final.safetensors", metadata={"model": json.dumps(model)})
    assert cli.main(["evaluate", str(run), "--data", str(data_file)]) == 0
    assert "test: 100 images" in capsys.readouterr().out
    assert cli.main(["predict", str(run), str(png(tmp_path / "bar.png"))]) == 0


# ----------------------------------------------------------------------------- experiment folders


def experiment_file(folder: Path, data_file: Path) -> Path:
    """An experiment file as the previous release's README wrote them."""
    path = folder / "old.toml"
    path.write_text(
        'name = "old"\nmodels = ["cnn", "stn"]\nseeds = [0]\nbudgets = [1, 2]\n'
        f'[data]\npath = "{data_file}"\n'
        '[model]\nsize = "small"\n'
        "[train]\nbatch_size = 100\nthreads = 1\ntheta_images = 8\n"
    )
    return path


PER_RUN = ("epochs", "seed", "eval_at")  # an experiment's train table leaves them to its runs


def write_experiment(out: Path, data, data_file: Path, stn_done: int) -> None:
    """experiment.json, its runs (stn's stopped after ``stn_done`` epochs unless 2) and, when
    every run finished, results.csv (the previous runner wrote it last)."""
    out.mkdir()
    config = {
        "name": "old",
        "models": ["cnn", "stn"],
        "budgets": [1, 2],
        "seeds": [0],
        "iterations": None,
        "reuse": True,
        "workers": 1,
        "model": {"size": "small", "transform": "affine", "widths": {}, "steps": 2},
        "data": data_table(data_file),
        "train": {k: v for k, v in train_table(2, []).items() if k not in PER_RUN}
        | {"eval_every": 0, "device": "auto", "amp": None},  # as the file gave them
        "cluster": None,
        "shared_fs": "auto",
        "runs_per_gpu": 1,
    }
    record = {"config": config, "reuse": True, "data_path": str(data_file)}
    (out / "experiment.json").write_text(json.dumps(record, indent=2) + "\n")
    write_run(out / "runs" / "cnn-s0", "cnn", data, data_file, done=2, eval_at=[1, 2])
    write_run(out / "runs" / "stn-s0", "stn", data, data_file, stn_done, eval_at=[1, 2])
    if stn_done == 2:
        (out / "results.csv").write_text(
            "model,epochs,seed,valid_accuracy,test_accuracy,train_seconds,run\n"
            "cnn,1,0,0.1,0.1,0.5,cnn-s0\n"
            "cnn,2,0,0.2,0.2,1.0,cnn-s0\n"
            "stn,1,0,0.1,0.1,0.5,stn-s0\n"
            "stn,2,0,0.2,0.2,1.0,stn-s0\n"
        )


def test_an_experiment_folder_is_reported(tmp_path, tiny_data, data_file):
    out = tmp_path / "old"
    write_experiment(out, tiny_data, data_file, stn_done=2)
    assert cli.main(["report", str(out)]) == 0
    assert (out / "report.html").is_file()
    assert len(ExperimentDir(out).results()) == 4


def test_an_unfinished_experiment_resumes_from_its_experiment_file(
    tmp_path, tiny_data, data_file, capsys
):
    out = tmp_path / "old"
    write_experiment(out, tiny_data, data_file, stn_done=1)
    argv = ["experiment", "--config", str(experiment_file(tmp_path, data_file))]
    assert cli.main([*argv, "--out", str(out), "--quiet", "--no-report"]) == 0
    text = capsys.readouterr().out
    assert "resuming: 1 finished runs skipped (cnn-s0)" in text
    assert "1 runs trained, 1 skipped" in text
    assert RunDir(out / "runs" / "stn-s0").is_finished()
    assert len(ExperimentDir(out).results()) == 4


# ----------------------------------------------------------------------------- the library

# Each library module's __all__ in the previous release.
PUBLIC = {
    "stnlab": "SpatialTransformer SpatialTransformer3d __version__ diagnostics sample "
    "sample_reference sampling transforms",
    "stnlab.transforms": "Affine Attention Projective ThinPlateSpline Transform get names "
    "rotation target_grid",
    "stnlab.sampling": "KERNELS KERNELS_3D PADDINGS check_options sample sample_reference",
    "stnlab.transformer": "SpatialTransformer SpatialTransformer3d default_localization "
    "probe_output",
    "stnlab.precision": "autocast_off work_dtype",
    "stnlab.diagnostics": "Decomposition QUANTILES area_ratio centre_shift decompose "
    "find_transformers from_pixels identity_distance initial_theta invert matrix_families "
    "measure measure_model outline outside_fraction start_distance summarize summarize_model "
    "to_pixel_points to_pixels",
}
# The collapse rules are the study's policy, not geometry: they left the library for the
# training monitor (a library module cannot import the study to keep the old names).
MOVED = {
    "stnlab.diagnostics": (
        "stnlab.train.monitor",
        "AREA_RATIO_MAX AREA_RATIO_MIN FROZEN_DISTANCE_PX FROZEN_FROM_STEP OUTSIDE_MAX "
        "REMEDIES collapse",
    ),
}


@pytest.mark.parametrize("module", PUBLIC)
def test_the_librarys_public_names_are_where_they_were(module):
    found = importlib.import_module(module)
    assert [name for name in PUBLIC[module].split() if not hasattr(found, name)] == []
    if module in MOVED:
        home, names = MOVED[module]
        assert all(hasattr(importlib.import_module(home), name) for name in names.split())


def test_the_old_import_line_runs_as_written():
    from stnlab import (
        SpatialTransformer,
        SpatialTransformer3d,
        diagnostics,
        sample,
        sample_reference,
        transforms,
    )

    x = torch.rand(2, 1, 12, 12)
    affine = transforms.get("affine")
    grid = affine.grid(torch.tensor([[0.8, 0.1, 0.2, -0.1, 0.9, 0.0]]).expand(2, 6), 12)
    torch.testing.assert_close(sample(x, grid), sample_reference(x, grid), atol=1e-6, rtol=0)
    stn = SpatialTransformer(1, 12)
    assert stn(x).shape == x.shape
    assert SpatialTransformer3d(1, 6)(torch.rand(1, 1, 6, 6, 6)).shape == (1, 1, 6, 6, 6)
    assert diagnostics.summarize_model(stn, x)[""]["area_ratio_median"] == pytest.approx(1.0)
