"""The backbone libraries (the extra ``stnlab[backbones]``) in the tests: the specs tried, and a
skip that says why where a library does not load (not installed, or broken).

A torchvision built for another torch build (the CUDA wheel from PyPI next to a CPU torch, as
on an offline CI machine where PyTorch's CPU index cannot be reached) fails on import only
because its compiled operators (nms, roi_align, ...) do not load and its import registers
fake kernels for two of them. The classifiers the tests use are plain Python over torch's
own operators, so ``load`` declares those two operator names first (their compiled kernels
stay missing: detection models would still fail) and the real torchvision models run."""

from __future__ import annotations

import importlib
import importlib.util
import sys

import pytest
import torch

# Small real models of each library, random weights (nothing is downloaded).
SPECS = [
    pytest.param("timm:resnet10t", id="timm"),
    pytest.param("torchvision:resnet18", id="torchvision"),
]

# The operators torchvision's import registers fake kernels for without checking that its
# compiled library loaded (torchvision/_meta_registrations.py); their schemas as it defines them.
_UNCHECKED_OPS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
_declared: list[torch.library.Library] = []  # kept alive: dropping a Library undefines its ops


def _declare_torchvision_ops() -> None:
    """Declare the operator names torchvision's import needs when its compiled library is absent."""
    if not _declared:
        lib = torch.library.Library("torchvision", "FRAGMENT")
        for schema in _UNCHECKED_OPS:
            lib.define(schema)
        _declared.append(lib)


def load(name: str) -> None:
    """Import library ``name`` (timm or torchvision), declaring torchvision's ops if needed."""
    try:
        importlib.import_module(name)
        return
    except Exception:
        if importlib.util.find_spec("torchvision") is None or _declared:
            raise
    for module in [m for m in sys.modules if m.split(".")[0] in ("torchvision", "timm")]:
        del sys.modules[module]  # the half-imported modules of the failed import
    _declare_torchvision_ops()
    importlib.import_module(name)


def why_not(spec: str) -> str | None:
    """Why the library of ``spec`` (``timm:NAME``) does not load here; None when it does."""
    name = spec.partition(":")[0]
    try:
        load(name)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        return (
            f"{name} does not load here ({type(exc).__name__}: {first}); "
            "pip install 'stnlab[backbones]' with the torchvision build made for this torch"
        )
    return None


def require(spec: str) -> str:
    """Skip the calling test unless the library of ``spec`` loads; ``spec``."""
    if (reason := why_not(spec)) is not None:
        pytest.skip(reason)
    return spec
