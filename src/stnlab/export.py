"""Export a trained model to ONNX (opset ≥ 16, where GridSample exists) and check it."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from stnlab.config import MIN_OPSET, ONNX_OPSET
from stnlab.config.errors import ConfigError

__all__ = ["check_onnx", "check_opset", "export_onnx"]


def check_opset(opset: int) -> None:
    """Refuse an opset without GridSample."""
    if opset < MIN_OPSET:
        raise ConfigError(f"opset must be at least {MIN_OPSET} (GridSample), got {opset}", "opset")


def _dummy(model: nn.Module, batch_size: int = 2) -> Tensor:
    """A random input of the model's shape, (batch_size, C, H, W)."""
    h, w = model.in_size
    # A model of stnlab.models has its config; one of stnlab.with_transformer, its channels.
    channels = getattr(model, "in_channels", None) or model.config.in_channels
    return torch.rand(batch_size, channels, h, w)


def export_onnx(model: nn.Module, path: str | Path, opset: int = ONNX_OPSET) -> Path:
    """Write ``model`` (eval mode, CPU) to ``path`` as ONNX with a dynamic batch axis.

    Uses the TorchScript exporter (``dynamo=False``): stnlab's grids are plain matmuls,
    so ``affine_grid`` (ONNX only from opset 20) is never needed; the sampler becomes
    one GridSample node. Input ``image`` (N, C, H, W) in [0, 1], output ``logits`` (N, K).

    Example:
        >>> from stnlab import models
        >>> export_onnx(models.create("stn"), "/tmp/stn.onnx").name
        'stn.onnx'
    """
    check_opset(opset)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval().cpu()
    with warnings.catch_warnings():
        # Tracing the SpatialTransformer's finiteness check warns that the branch is
        # frozen; the exported graph simply has no check, which is what we want.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (_dummy(model),),
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=["image"],
            output_names=["logits"],
            dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
        )
    return path


def check_onnx(model: nn.Module, path: str | Path, batch_size: int = 4, seed: int = 0) -> float:
    """Largest |ONNX − PyTorch| logit difference on random inputs (needs onnxruntime)."""
    import onnxruntime as ort

    torch.manual_seed(seed)
    x = _dummy(model, batch_size)
    with torch.no_grad():
        expected = model.eval()(x).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(["logits"], {"image": x.numpy()})
    return float(abs(got - expected).max())
