"""Experiment configs: models × epoch budgets × seeds, data and training settings; presets.

A config is checked as a whole when it is made, so a bad one fails before any
training starts. :mod:`stnlab.runner` turns a config into runs and results.

Example:
    >>> config = preset("smoke", seeds=[0])
    >>> config.models, config.budgets
    (('cnn', 'stn', 'mstn'), (1, 2))
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

__all__ = [
    "PRESETS",
    "RUN_KEYS",
    "ConfigError",
    "DataConfig",
    "ExperimentConfig",
    "ModelConfig",
    "TrainSettings",
    "from_dict",
    "load_config",
    "preset",
    "require",
]

# TrainConfig fields that decide what a run computes; a saved run must match them to be reused.
RUN_KEYS = ("model", "model_kwargs", "epochs", "batch_size", "lr", "loc_lr", "weight_decay")
RUN_KEYS += ("schedule", "seed")


class ConfigError(ValueError):
    """An experiment config that cannot run, with a one-line reason."""


def require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _one_of(value: Any, known: Iterable[str], what: str) -> None:
    known = list(known)
    require(value in known, f"unknown {what} {value!r}; known: {', '.join(known)}")


@dataclass
class DataConfig:
    """The data: a saved ``.npz`` (``path``), or else generated from ``variant`` and ``source``."""

    path: str | None = None
    variant: str = "40x40"
    source: str = "embedded"
    seed: int = 0
    sizes: tuple[int, int, int] = (10_000, 1_000, 1_000)
    source_dir: str | None = None  # MNIST IDX files already on disk (source "mnist")
    cache_dir: str | None = None  # where downloaded MNIST files are kept

    def __post_init__(self) -> None:
        from stnlab.data import SOURCES, VARIANTS

        self.sizes = tuple(self.sizes)
        require(
            len(self.sizes) == 3 and all(isinstance(s, int) and s > 0 for s in self.sizes),
            f"data.sizes must be 3 positive counts (train, valid, test), got {list(self.sizes)}",
        )
        if self.path is not None:
            require(Path(self.path).is_file(), f"data file {self.path!r} does not exist")
        _one_of(self.variant, VARIANTS, "data.variant")
        _one_of(self.source, SOURCES, "data.source")

    def describe(self) -> str:
        """One line naming the data, for summaries."""
        if self.path is not None:
            return f"the file {self.path}"
        sizes = "/".join(map(str, self.sizes))
        return f"{self.variant} Cluttered MNIST from {self.source} digits, {sizes} train/valid/test"


@dataclass
class ModelConfig:
    """Options given to :func:`stnlab.models.create` for every design."""

    size: str = "default"
    transform: str = "affine"

    def __post_init__(self) -> None:
        from stnlab import models, transforms

        _one_of(self.size, models.SIZES, "model.size")
        _one_of(self.transform, transforms.names(), "model.transform")


@dataclass
class TrainSettings:
    """Training settings shared by every run (see :class:`stnlab.training.TrainConfig`)."""

    batch_size: int = 200
    lr: float = 1e-3
    loc_lr: float | None = None
    weight_decay: float = 0.0
    schedule: str = "constant"
    amp: bool = True
    compile: bool = False
    device: str = "auto"
    eval_every: int | None = None  # epochs between curve points; None: about 50 per run

    def __post_init__(self) -> None:
        from stnlab.training import SCHEDULES

        require(self.batch_size >= 1, f"train.batch_size must be positive, got {self.batch_size}")
        require(self.lr > 0, f"train.lr must be positive, got {self.lr}")
        require(self.loc_lr is None or self.loc_lr > 0, "train.loc_lr must be positive")
        require(self.weight_decay >= 0, "train.weight_decay must be non-negative")
        _one_of(self.schedule, SCHEDULES, "train.schedule")
        require(
            self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:"),
            f"train.device must be auto, cpu, cuda or cuda:N, got {self.device!r}",
        )
        require(self.eval_every is None or self.eval_every >= 1, "train.eval_every must be >= 1")


@dataclass
class ExperimentConfig:
    """Models × epoch budgets × seeds on one data set; checked as a whole before any training.

    ``iterations`` (per epoch) is a check, not a knob: an epoch is one pass over the
    training split in full batches, so it must equal train size // batch size.
    """

    name: str = "custom"
    models: tuple[str, ...] = ("cnn", "stn", "mstn")
    budgets: tuple[int, ...] = (100, 200, 300, 400, 500)
    seeds: tuple[int, ...] = (0, 1, 2)
    iterations: int | None = None
    reuse: bool = True  # one run per (model, seed) read at every budget, when the LR allows
    workers: int = 1
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainSettings = field(default_factory=TrainSettings)

    def __post_init__(self) -> None:
        from stnlab import models

        self.models, self.seeds = tuple(self.models), tuple(self.seeds)
        require(bool(self.models), "models must name at least one model")
        for name in self.models:
            _one_of(name, models.names(), "model")
        require(len(set(self.models)) == len(self.models), f"models repeat: {list(self.models)}")
        require(bool(self.budgets), "budgets must list at least one epoch count")
        for b in self.budgets:
            require(isinstance(b, int) and b > 0, f"budgets must be positive ints, got {b!r}")
        self.budgets = tuple(sorted(set(self.budgets)))
        require(bool(self.seeds), "seeds must list at least one seed")
        for s in self.seeds:
            require(isinstance(s, int) and s >= 0, f"seeds must be non-negative ints, got {s!r}")
        require(len(set(self.seeds)) == len(self.seeds), f"seeds repeat: {list(self.seeds)}")
        require(self.workers >= 1, f"workers must be positive, got {self.workers}")
        if self.data.path is None:
            self.check_train_size(self.data.sizes[0])

    def check_train_size(self, n: int) -> None:
        """Reject a training split too small for a batch, or not ``iterations`` batches long."""
        b = self.train.batch_size
        require(n >= b, f"{n} training images make no batch of {b}")
        require(
            self.iterations is None or n // b == self.iterations,
            f"{self.iterations} iterations per epoch need train size // batch size = "
            f"{self.iterations}, but {n} // {b} = {n // b}",
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/TOML-able values (tuples as lists)."""
        return json.loads(json.dumps(asdict(self)))


PRESETS: dict[str, dict[str, Any]] = {
    # The study: 3 designs × 100..500 epochs × 3 runs, batch 200 × 50 iterations = 10,000.
    "seed": dict(
        models=("cnn", "stn", "mstn"), budgets=(100, 200, 300, 400, 500), seeds=(0, 1, 2),
        iterations=50, data=dict(variant="40x40", source="mnist"),
        train=dict(batch_size=200, lr=1e-3, schedule="constant", eval_every=10),
    ),
    # The same shape at a laptop's scale (~10 min on 2 CPU cores: 2 one-thread workers beat
    # one two-thread process on these small nets), on the offline digits.
    "demo": dict(
        models=("cnn", "stn", "mstn"), budgets=(5, 10, 15, 20, 25), seeds=(0, 1, 2),
        iterations=50, workers=2, model=dict(size="small"),
        data=dict(variant="40x40", source="embedded"),
        train=dict(batch_size=200, lr=2e-3, schedule="constant", eval_every=1),
    ),
    # Seconds, for tests.
    "smoke": dict(
        models=("cnn", "stn", "mstn"), budgets=(1, 2), seeds=(0, 1),
        model=dict(size="small"), data=dict(sizes=(200, 100, 100)),
        train=dict(batch_size=100, lr=2e-3, eval_every=1),
    ),
}  # fmt: skip


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``over``, one level into sub-tables."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in base.items()}
    for k, v in over.items():
        out[k] = {**out[k], **v} if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _check_keys(values: dict[str, Any], cls: type, where: str) -> None:
    known = sorted(f.name for f in fields(cls))
    for key in values:
        require(key in known, f"unknown key {key!r} in {where}; known: {', '.join(known)}")


def from_dict(values: dict[str, Any], name: str = "custom") -> ExperimentConfig:
    """A config from nested plain values; a ``preset = "NAME"`` key starts from that preset."""
    values = dict(values)
    base = values.pop("preset", None)
    if base is not None:
        _one_of(base, PRESETS, "preset")
        values = _merge(PRESETS[base], values)
    _check_keys(values, ExperimentConfig, "the config")
    kwargs: dict[str, Any] = {"name": name, **values}
    try:
        for key, cls in (("model", ModelConfig), ("data", DataConfig), ("train", TrainSettings)):
            section = values.get(key, {})
            require(isinstance(section, dict), f"[{key}] must be a table")
            _check_keys(section, cls, f"[{key}]")
            kwargs[key] = cls(**section)
        return ExperimentConfig(**kwargs)
    except TypeError as exc:  # a value of the wrong type met a comparison
        raise ConfigError(f"bad value in the config: {exc}") from None


def preset(name: str, **overrides: Any) -> ExperimentConfig:
    """The named preset (``seed``, ``demo`` or ``smoke``), with any fields overridden."""
    _one_of(name, PRESETS, "preset")
    return from_dict(_merge(PRESETS[name], overrides), name=name)


def load_config(path: str | os.PathLike) -> ExperimentConfig:
    """Read a TOML (or, with PyYAML, YAML) config; relative data paths are from its folder."""
    path = Path(path)
    require(path.is_file(), f"config file {str(path)!r} does not exist")
    text = path.read_text()
    if path.suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise ConfigError("YAML configs need PyYAML (pip install pyyaml)") from None
        parse, errors = yaml.safe_load, (yaml.YAMLError,)
    else:
        try:
            import tomllib
        except ImportError:  # Python 3.10
            try:
                import tomli as tomllib
            except ImportError:
                raise ConfigError("TOML configs need Python 3.11+ or tomli") from None
        parse, errors = tomllib.loads, (tomllib.TOMLDecodeError,)
    try:
        values = parse(text) or {}
    except errors as exc:
        raise ConfigError(f"{path}: {str(exc).splitlines()[0]}") from None
    require(isinstance(values, dict), f"{path}: the config must be a table of keys")
    data = values.get("data")
    for key in ("path", "source_dir", "cache_dir"):
        if isinstance(data, dict) and isinstance(data.get(key), str):
            data[key] = str(path.parent / data[key])
    return from_dict(values, name=str(values.pop("name", path.stem)))
