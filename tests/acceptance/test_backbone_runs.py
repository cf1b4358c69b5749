"""A spatial transformer in front of a timm or torchvision ResNet, through the whole study:
``--model cnn|stn --backbone LIB:NAME`` trains in an experiment, its report draws the
transformer's figures, the stn run evaluates, inspects and exports to ONNX (checked with
onnxruntime), resumes exactly, and the errors are one line (too small, offline --pretrained)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from backbone_libraries import SPECS, require, why_not
from conftest import weights_equal

from stnlab import cli, models
from stnlab.config import ModelConfig, RunConfig, TrainConfig
from stnlab.data import ClutteredMNIST, make_dataset, save
from stnlab.export import check_onnx
from stnlab.runs.experiment_folder import ExperimentDir
from stnlab.runs.run_folder import Checkpoint, RunDir
from stnlab.train import train

MODEL_FIGURES = ("stn_samples", "theta_curves", "theta_distribution")  # drawn from the models


@pytest.fixture(scope="module")
def small_file(tmp_path_factory):
    """100/50/50 digits on 28x28 canvases (the `rotated` set): two batches of 50 an epoch."""
    path = tmp_path_factory.mktemp("backbone-data") / "rotated.npz"
    save(make_dataset("rotated", sizes=(100, 50, 50), seed=0), path)
    return path


@pytest.fixture(scope="module", params=SPECS)
def experiment(request, tmp_path_factory, small_file):
    """cnn and stn with the backbone, one epoch each, and the report: (spec, folder)."""
    spec = require(request.param)
    out = tmp_path_factory.mktemp("backbone-experiment")
    config = out.parent / f"{out.name}.toml"
    config.write_text(
        'models = ["cnn", "stn"]\nbudgets = [1]\nseeds = [0]\n'
        f'[model]\nbackbone = "{spec}"\n'
        f'[data]\npath = "{small_file}"\n'
        "[train]\nbatch_size = 50\nthreads = 1\n"
    )
    assert cli.main(["experiment", "--config", str(config), "--out", str(out), "--quiet"]) == 0
    return spec, out


def test_an_experiment_trains_both_designs_and_reports_the_transformer(experiment):
    spec, out = experiment
    folder = ExperimentDir(out)
    rows = folder.results()
    assert sorted(r["model"] for r in rows) == ["cnn", "stn"]
    assert all(0 <= r["test_accuracy"] <= 1 for r in rows)
    for row in rows:
        config = folder.run(row["run"]).run_config().model
        assert (config.name, config.backbone, config.in_size) == (row["model"], spec, 28)
    page = folder.file("report.html").read_text()
    assert "What the transformers learned" in page
    for name in MODEL_FIGURES:
        assert (out / "figures" / f"{name}.png").stat().st_size > 5_000, name


def _stn_run(out) -> str:
    folder = ExperimentDir(out)
    (row,) = [r for r in folder.results() if r["model"] == "stn"]
    return str(folder.run(row["run"]).path)


def test_the_stn_run_evaluates_inspects_and_exports(experiment, small_file, tmp_path, capsys):
    spec, out = experiment
    run = _stn_run(out)
    assert cli.main(["evaluate", run, "--data", str(small_file), "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["n"] == 50 and 0 <= figures["accuracy"] <= 1

    assert cli.main(["inspect", run, "--data", str(small_file), "--json"]) == 0
    theta = json.loads(capsys.readouterr().out)["transformers"]
    assert list(theta) == ["transformers.0"] and theta["transformers.0"]["area_ratio_median"] > 0

    onnx = tmp_path / "stn.onnx"
    assert cli.main(["export", run, "--onnx", str(onnx)]) == 0
    assert "matches PyTorch" in capsys.readouterr().out
    model = models.load(run)
    assert model.config.backbone == spec
    assert check_onnx(model, onnx) < 1e-4  # onnxruntime, on other inputs than the CLI's


@pytest.mark.parametrize("spec", SPECS)
def test_a_run_cut_after_its_first_epoch_resumes_exactly(spec, tmp_path, monkeypatch):
    require(spec)
    config = RunConfig(
        ModelConfig("stn", backbone=spec),
        TrainConfig(epochs=2, batch_size=50, threads=1, device="cpu", checkpoint_every=0),
    )
    data = make_dataset("rotated", sizes=(100, 50, 50), seed=0)
    ref = train(config, data, tmp_path / "ref", progress=False)

    real_save = RunDir.save_checkpoint

    def save_then_die(self, ck: Checkpoint) -> None:
        real_save(self, ck)
        raise KeyboardInterrupt  # right after epoch 1's checkpoint

    monkeypatch.setattr(RunDir, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train(config, data, tmp_path / "cut", progress=False)
    monkeypatch.undo()
    assert RunDir(tmp_path / "cut").load_checkpoint().epoch == 1
    res = train(config, data, tmp_path / "cut", resume=True, progress=False)
    assert weights_equal(res.model.state_dict(), ref.model.state_dict())
    assert res.summary.test_accuracy == ref.summary.test_accuracy


def test_images_too_small_for_the_backbone_are_a_one_line_error(tmp_path, fails_with):
    spec = require("torchvision:squeezenet1_1")
    x, y = torch.rand(8, 1, 12, 12), torch.zeros(8, dtype=torch.long)
    save(ClutteredMNIST(x, y, x, y, x, y), tmp_path / "small.npz")
    data = str(tmp_path / "small.npz")
    argv = ["train", "--data", data, "--backbone", spec, "--batch-size", "4", "--quiet"]
    line = fails_with([*argv, "--out", str(tmp_path / "r")], f"backbone {spec} cannot take 12x12")
    assert "it needs at least 17x17" in line


# Run in a fresh interpreter, where the variables below hold from the start (huggingface_hub
# reads HF_HUB_OFFLINE on import): for each spec, `train --pretrained` offline, then `evaluate`
# of a run saved with pretrained = true, which has its own weights and needs no download.
OFFLINE = """
import contextlib, io, json, sys
from dataclasses import replace
from pathlib import Path
from stnlab import cli, models
from backbone_libraries import why_not
from conftest import saved_run
specs, data, tmp = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
assert not any(why_not(spec) for spec in specs)  # loads them as in the parent
found = {}
for spec in specs:
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(err):
        status = cli.main(["train", "--data", data, "--backbone", spec, "--pretrained",
                           "--out", f"{tmp}/{spec}", "--quiet"])
    model = models.create("stn", backbone=spec, in_size=28)
    model.config = replace(model.config, pretrained=True)  # as a run trained online saved it
    run = saved_run(Path(tmp) / "online" / spec, model)
    with contextlib.redirect_stdout(out):
        evaluated = cli.main(["evaluate", str(run), "--data", data, "--json"])
    found[spec] = [status, err.getvalue(), evaluated, json.loads(out.getvalue())["n"]]
print(json.dumps(found))
"""


def test_pretrained_offline_is_one_line_and_a_pretrained_run_loads_offline(small_file, tmp_path):
    specs = [p.values[0] for p in SPECS if why_not(p.values[0]) is None]
    if not specs:
        pytest.skip("neither timm nor torchvision loads here")
    closed = "http://127.0.0.1:9"  # the discard port: nothing listens there
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.update(
        HF_HUB_OFFLINE="1",  # no network, and no weights in the caches
        HF_HOME=str(tmp_path / "hf"),
        TORCH_HOME=str(tmp_path / "torch"),
        HTTP_PROXY=closed,
        HTTPS_PROXY=closed,
        http_proxy=closed,
        https_proxy=closed,
        PYTHONPATH=os.pathsep.join([str(Path(__file__).parents[1]), env.get("PYTHONPATH", "")]),
    )
    argv = [sys.executable, "-c", OFFLINE, json.dumps(specs), str(small_file), str(tmp_path)]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    for spec, (status, err, evaluated, n) in json.loads(done.stdout).items():
        assert status == 2 and err.count("\n") == 1, err  # stdout and stderr together
        assert f"could not get the pretrained weights of {spec}" in err
        assert "needs the network" in err and not (tmp_path / spec).exists()
        assert (evaluated, n) == (0, 50)  # the saved run loads offline
