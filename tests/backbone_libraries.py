"""The backbone libraries (the extra ``stnlab[backbones]``) in the tests: the specs tried, and a
skip that says why where a library does not load (not installed, or a torchvision built for
another torch, which fails on import)."""

from __future__ import annotations

import importlib

import pytest

# Small real models of each library, random weights (nothing is downloaded).
SPECS = [
    pytest.param("timm:resnet10t", id="timm"),
    pytest.param("torchvision:resnet18", id="torchvision"),
]


def why_not(spec: str) -> str | None:
    """Why the library of ``spec`` (``timm:NAME``) does not load here; None when it does."""
    name = spec.partition(":")[0]
    try:
        importlib.import_module(name)
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
