"""Tests for ONNX export: onnxruntime's outputs match PyTorch's, the CLI's errors."""

from __future__ import annotations

import pytest
import torch
from conftest import SMALL, perturb, saved_run

from stnlab import cli, models
from stnlab.export import check_onnx, export_onnx


def _trained_looking(name: str, **kwargs) -> models.Model:
    """A model whose transformers are not the identity, so the warps are exercised."""
    torch.manual_seed(0)
    return perturb(models.create(name, **SMALL, **kwargs), std=0.1).eval()


@pytest.mark.parametrize(
    ("name", "transform"),
    [("stn", "affine"), ("mstn", "affine"), ("stn", "tps"), ("icstn", "affine")],
)
def test_onnxruntime_matches_pytorch(tmp_path, name, transform):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    model = _trained_looking(name, transform=transform)
    path = export_onnx(model, tmp_path / "m.onnx", opset=16)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (1, 5):  # the batch axis is dynamic
        x = torch.rand(batch, 1, 24, 24)
        (got,) = session.run(["logits"], {"image": x.numpy()})
        with torch.no_grad():
            want = model(x)
        torch.testing.assert_close(torch.from_numpy(got), want, atol=1e-4, rtol=1e-4)
        assert not torch.allclose(model.transform(x)[0][0], x, atol=1e-3)  # really warps


def test_exported_graph_uses_grid_sample(tmp_path):
    onnx = pytest.importorskip("onnx")
    path = export_onnx(_trained_looking("stn"), tmp_path / "m.onnx", opset=17)
    graph = onnx.load(str(path))
    assert graph.opset_import[0].version == 17
    assert "GridSample" in {node.op_type for node in graph.graph.node}


def test_export_rejects_old_opset(tmp_path):
    with pytest.raises(ValueError, match="at least 16"):
        export_onnx(models.create("cnn", **SMALL), tmp_path / "m.onnx", opset=15)


def test_cli_export_writes_a_checked_model(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    model = _trained_looking("stn")
    run, out = saved_run(tmp_path / "run", model), tmp_path / "out" / "stn.onnx"
    assert cli.main(["export", str(run), "--onnx", str(out)]) == 0
    assert out.is_file() and "matches PyTorch" in capsys.readouterr().out
    assert check_onnx(model, out) < 1e-4


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--opset", "11"], "at least 16"), ([], "no run directory")],
)
def test_cli_export_errors_are_one_line(tmp_path, fails_with, args, message):
    fails_with(["export", str(tmp_path / "missing"), "--onnx", "x.onnx", *args], message)
