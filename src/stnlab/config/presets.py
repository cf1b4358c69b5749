"""Experiment presets and config files: named presets, TOML (or YAML) files, overrides.

The config itself is :class:`stnlab.config.ExperimentConfig`, checked as a whole when
it is made, so a bad one fails before any training starts. :mod:`stnlab.experiment.runner` turns a
config into runs and results.

Example:
    >>> config = preset("smoke", seeds=[0])
    >>> config.models, config.budgets
    (('cnn', 'stn', 'mstn'), (1, 2))
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from stnlab.config import ExperimentConfig
from stnlab.config.errors import ConfigError

__all__ = ["PRESETS", "from_dict", "load_config", "preset"]


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``over``, one level into sub-tables."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in base.items()}
    for k, v in over.items():
        out[k] = {**out[k], **v} if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


# The STN paper's (Jaderberg et al., 2015) experiments: its four designs (stnlab.models,
# "the paper's designs"), 3 seeds, and its schedule: SGD, batch 256, lr 0.01 divided by 10
# every 50,000 of 150,000 iterations (150 epochs of 1,000 steps, the `thirds` schedule), on
# canvases generated from the full MNIST (50,000 / 10,000 / 10,000 source digits).
_PAPER: dict[str, Any] = dict(
    models=("fcn", "paper-cnn", "st-fcn", "st-cnn"),
    budgets=(150,),
    seeds=(0, 1, 2),
    iterations=1000,
    data=dict(source="mnist", sizes=(50_000, 10_000, 10_000)),
    train=dict(
        optimizer="sgd", batch_size=256, lr=0.01, weight_decay=0.0, schedule="thirds", eval_every=10
    ),
)
# Table 1: the distortion and the transform family as axes (4 × 3 cells × 4 designs × 3
# seeds; fcn and paper-cnn have no transformer, so their runs repeat across the family axis).
_DISTORTED: dict[str, Any] = dict(
    grid={
        "data.variant": ["rotated", "rts", "projective-paper", "elastic"],
        "model.transform": ["affine", "projective", "tps"],
    },
)
# The CPU scale: the same designs and schedule shape on 1/150 of the paper's steps (25
# epochs of 40 steps of 256 = 1,000 steps) and 10,000 training canvases (2,000 valid,
# 10,000 test), 2 one-thread workers; and Adam at 1e-3, the study's own recipe, since plain
# SGD at 0.01 leaves every design at chance after 1,000 steps (the fcn on 60x60-stn: test
# accuracy 12-14% over 3 seeds, loss still ln 10; Adam: 34% after 200 steps).
_CPU: dict[str, Any] = dict(
    budgets=(25,),
    iterations=40,
    workers=2,
    data=dict(sizes=(10_000, 2_000, 10_000)),
    train=dict(eval_every=5, optimizer="adam", lr=1e-3),
)

PRESETS: dict[str, dict[str, Any]] = {
    # The study: 3 designs × 100..500 epochs × 3 runs, batch 200 × 50 iterations = 10,000,
    # on the study's own published file; `published = ""` generates the same layout from the
    # full MNIST instead.
    "seed": dict(
        models=("cnn", "stn", "mstn"),
        budgets=(100, 200, 300, 400, 500),
        seeds=(0, 1, 2),
        iterations=50,
        data=dict(published="cluttered-40x40", variant="40x40", source="mnist"),
        train=dict(batch_size=200, lr=1e-3, schedule="constant", eval_every=10),
    ),
    # The same shape at a laptop's scale (minutes on 2 CPU cores; docs/benchmarks.md), on the
    # offline digits: 2 one-thread workers beat one two-thread process on these small nets.
    "demo": dict(
        models=("cnn", "stn", "mstn"),
        budgets=(5, 10, 15, 20, 25),
        seeds=(0, 1, 2),
        iterations=50,
        workers=2,
        model=dict(size="small"),
        data=dict(variant="40x40", source="embedded"),
        train=dict(batch_size=200, lr=2e-3, schedule="constant", eval_every=1),
    ),
    # The STN paper's Table 1 (R, RTS, P, E) and its translated-and-cluttered 60×60 result
    # (section 4.1: affine transformers, 6 crops of 6×6), at its own scale (a GPU's work) ...
    "paper-distorted": _merge(_PAPER, _DISTORTED),
    "paper-cluttered": _merge(_PAPER, dict(data=dict(variant="60x60-stn"))),
    # ... and at the CPU scale (_CPU above).
    "paper-distorted-cpu": _merge(_merge(_PAPER, _DISTORTED), _CPU),
    "paper-cluttered-cpu": _merge(_merge(_PAPER, dict(data=dict(variant="60x60-stn"))), _CPU),
    # Seconds, for tests.
    "smoke": dict(
        models=("cnn", "stn", "mstn"),
        budgets=(1, 2),
        seeds=(0, 1),
        model=dict(size="small"),
        data=dict(sizes=(200, 100, 100)),
        train=dict(batch_size=100, lr=2e-3, eval_every=1),
    ),
}


def _preset(name: str) -> dict[str, Any]:
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}", "preset")
    return PRESETS[name]


def from_dict(values: dict[str, Any], name: str = "custom") -> ExperimentConfig:
    """A config from nested plain values; a ``preset = "NAME"`` key starts from that preset."""
    values = dict(values)
    base = values.pop("preset", None)
    if base is not None:
        values = _merge(_preset(base), values)
    return ExperimentConfig.from_dict({"name": name, **values})


def preset(name: str, **overrides: Any) -> ExperimentConfig:
    """The named preset (``seed``, ``demo``, ``smoke``, ``paper-distorted``, ...; see
    :data:`PRESETS`), with any fields overridden."""
    return from_dict(_merge(_preset(name), overrides), name=name)


def load_config(path: str | os.PathLike) -> ExperimentConfig:
    """Read a TOML (or, with PyYAML, YAML) config; relative data paths are from its folder."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    if path.suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise ConfigError("YAML configs need PyYAML (pip install pyyaml)") from None
        parse, errors = yaml.safe_load, (yaml.YAMLError,)
    else:
        parse, errors = tomllib.loads, (tomllib.TOMLDecodeError,)
    try:
        values = parse(path.read_text()) or {}
    except (*errors, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: {str(exc).splitlines()[0]}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: the config must be a table of keys")
    data = values.get("data")
    for key in ("path", "source_dir", "cache_dir"):
        if isinstance(data, dict) and isinstance(data.get(key), str):
            data[key] = str(path.parent / data[key])
    return from_dict(values, name=str(values.pop("name", path.stem)))
