"""How an experiment is configured: models × epoch budgets × seeds (× any axes), and where its
runs train."""

from __future__ import annotations

import difflib
import itertools
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

from stnlab.config.errors import ConfigError
from stnlab.config.model import ModelConfig, Widths
from stnlab.config.options import Config, flatten, option, plain
from stnlab.config.run import DataConfig, TrainConfig
from stnlab.config.vocabulary import SHARED_FS

__all__ = ["TRANSFORMER_AXES", "Cell", "ExperimentConfig", "label_of", "parse_address"]

# One cell of an experiment's grid: (axis, value) for each axis, in the grid's order.
Cell = tuple[tuple[str, Any], ...]

# The axes only spatial transformers read: a design without one (cnn, fcn, paper-cnn) trains
# the same run whatever their values, so an experiment trains it once for all of them.
TRANSFORMER_AXES = frozenset(
    ["model.transform", "model.steps", "train.loc_lr"]
    + [f"model.{f.name}" for f in fields(Widths) if f.name.startswith("loc_")]
)


def label_of(value: Any) -> str:
    """How an axis value is written in run names and results.csv: ``small``, ``0.0005``,
    ``10000-5000-10000``, ``true``."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "-".join(label_of(v) for v in value)
    return str(value)


def parse_address(address: str) -> tuple[str, Any]:
    """Read a ``--cluster`` value: ``local:N`` → ("local", N); ``tcp://HOST:PORT`` (any
    ``scheme://``) → ("scheduler", address); a path ending in ``.json`` (written by
    ``dask scheduler --scheduler-file``) → ("file", path).

    Example:
        >>> parse_address("local:2")
        ('local', 2)
    """
    if address.startswith("local:"):
        n = address.removeprefix("local:")
        if not n.isdigit() or int(n) < 1:
            raise ConfigError(
                f"cluster {address!r}: local:N needs a positive number of workers", "cluster"
            )
        return "local", int(n)
    if "://" in address:
        return "scheduler", address
    if address.endswith(".json"):
        if not Path(address).is_file():
            raise ConfigError(f"cluster {address!r}: no such scheduler file", "cluster")
        return "file", address
    raise ConfigError(
        f"cluster {address!r}: unknown form; use local:N, tcp://HOST:PORT or a scheduler file "
        "(.json)",
        "cluster",
    )


def _frozen(value: Any) -> Any:
    """Lists as tuples, all the way down, so that a cell can be a key."""
    return tuple(_frozen(v) for v in value) if isinstance(value, (list, tuple)) else value


@dataclass
class ExperimentConfig(Config):
    """Models × epoch budgets × seeds, in every cell of the ``grid``; checked as a whole
    before any training.

    The ``grid`` sweeps any field of the model, data or train tables: ``{"model.size":
    ["small", "large"], "train.weight_decay": [0, 5e-4]}`` gives four cells, each the
    experiment with those values, and the runs are the product of cells, models and seeds.
    ``iterations`` fixes an epoch's optimizer steps whatever the training-set size (the
    study's epoch: 50 steps of 200 images); without it an epoch is one pass.
    """

    # Keys of the run config that the experiment sets itself, and from what.
    SET_HERE: ClassVar[dict[str, dict[str, str]]] = {
        "model": {
            "name": "models",
            "in_channels": "the data",
            "in_size": "the data",
            "num_classes": "the data",
        },
        "train": {
            "epochs": "budgets",
            "seed": "seeds",
            "eval_at": "budgets",
            "iterations": "iterations",
        },
    }

    name: str = option("custom", "the experiment's name (its default folder is runs/NAME)")
    models: tuple[str, ...] = option(
        ("cnn", "stn", "mstn"), "the designs to compare (registered models; checked by the plan)"
    )
    budgets: tuple[int, ...] = option((100, 200, 300, 400, 500), "epoch budgets")
    seeds: tuple[int, ...] = option((0, 1, 2), "one run per seed")
    iterations: int | None = option(
        None,
        "optimizer steps per epoch, whatever the training-set size (default: one pass over "
        "the training split)",
    )
    reuse: bool = option(
        True, "one run per (model, seed), read at every budget, where the learning rate allows it"
    )
    workers: int = option(1, "parallel worker processes")
    grid: dict[str, Any] = option(
        factory=dict,
        cli=False,
        help='axes: a list of values for each swept field, e.g. "model.size" = ["small", '
        '"large"]; the runs are the product of the axes, models and seeds',
    )
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    cluster: str | None = option(
        None,
        "train the runs on a Dask cluster: local:N (N one-thread "
        "workers on this machine), tcp://HOST:PORT (a running "
        "scheduler) or the JSON file of dask scheduler "
        "--scheduler-file; needs stnlab[cluster]",
    )
    shared_fs: str = option(
        "auto",
        "whether the cluster's workers train in this folder in "
        "place (auto: those that see it; yes: a worker that does not is "
        "an error) or send each run folder back (no)",
        choices=SHARED_FS,
        noun="setting",
    )
    runs_per_gpu: int = option(
        1, "runs trained at once on each local GPU, one worker process each (CUDA only)"
    )

    def check(self) -> None:
        self.require(bool(self.models), "models", "must name at least one model")
        self.require(
            len(set(self.models)) == len(self.models), "models", f"repeat: {list(self.models)}"
        )
        self.require(bool(self.budgets), "budgets", "must list at least one epoch count")
        self.require(
            min(self.budgets, default=1) > 0,
            "budgets",
            f"must be positive, got {list(self.budgets)}",
        )
        self.budgets = tuple(sorted(set(self.budgets)))
        self.require(bool(self.seeds), "seeds", "must list at least one seed")
        self.require(min(self.seeds) >= 0, "seeds", f"must be non-negative, got {self.seeds}")
        self.require(
            len(set(self.seeds)) == len(self.seeds), "seeds", f"repeat: {list(self.seeds)}"
        )
        self.positive("workers", "runs_per_gpu", "iterations")
        self.check_cluster()
        self.check_grid()
        for cell in self.cells():
            config = self.at(cell) if cell else self
            path = config.data.path
            where = "data.path" if path == self.data.path else "grid.data.path"
            self.require(path is None or Path(path).is_file(), where, f"{path!r} does not exist")
            if path is None and not config.data.published:
                self.check_train_size(config.data.sizes[0])

    def check_grid(self) -> None:
        """Refuse an axis that names no field of the model, data or train tables, one that
        the experiment sets itself, and an empty or repeating list of values."""
        sections = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig}
        self.grid = flatten(self.grid)  # [grid.model] size = [...] is "model.size"
        for axis, values in self.grid.items():
            section, _, name = axis.partition(".")
            known = [f"{s}.{f.name}" for s, c in sections.items() for f in fields(c)]
            known += [f"model.{f.name}" for f in fields(Widths)]  # one layer size, e.g. conv
            close = difflib.get_close_matches(axis, known, n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            self.require(
                axis in known,
                "grid",
                f": unknown axis {axis!r}; {hint}an axis is a field of the model, data or "
                "train table, such as model.size or train.weight_decay",
            )
            self.require(
                name not in self.SET_HERE.get(section, {}),
                "grid",
                f": {axis} is set by {self.SET_HERE.get(section, {}).get(name)}; not an axis",
            )
            ok = isinstance(values, (list, tuple)) and len(values) > 0
            self.require(ok, f"grid.{axis}", f"must be a non-empty list of values, got {values!r}")
            labels = [label_of(v) for v in values]
            self.require(len(set(labels)) == len(labels), f"grid.{axis}", f"repeats: {labels}")
            self.require(
                not any(isinstance(v, dict) for v in values),
                f"grid.{axis}",
                "takes plain values (numbers, names, lists); sweep one width, e.g. model.conv",
            )
            self.grid[axis] = _frozen(values)
        for cell in self.cells() if self.grid else ():
            self.at(cell)  # each value checked as that field's, naming the axis

    def cells(self) -> list[Cell]:
        """Every combination of the axes' values, the last axis varying fastest; ``[()]``
        for no axes."""
        axes = list(self.grid)
        return [
            tuple(zip(axes, combo, strict=True)) for combo in itertools.product(*self.grid.values())
        ]

    def at(self, cell: Cell) -> ExperimentConfig:
        """The experiment in one cell: the axes' values set, without a grid."""
        values = self.to_dict()
        values["grid"] = {}
        widths = {f.name for f in fields(Widths)}
        for axis, value in cell:
            section, _, name = axis.partition(".")
            if section == "model" and name in widths:
                values["model"].setdefault("widths", {})[name] = value
            else:
                values[section][name] = value
        try:
            return type(self).from_dict(values)
        except ConfigError as exc:
            shown = ", ".join(f"{a} = {label_of(v)}" for a, v in cell)
            raise ConfigError(f"grid ({shown}): {exc}", f"grid.{cell[-1][0]}") from None

    def check_cluster(self) -> None:
        """Refuse a ``cluster`` address of no known form (:func:`parse_address`),
        and GPU runs on ``local:N``, whose workers offer no GPU."""
        if self.cluster is None:
            return
        kind, _ = parse_address(self.cluster)
        self.require(
            kind != "local" or not self.train.device.startswith("cuda"),
            "cluster",
            f"{self.cluster} trains on the CPU; for GPUs on this machine leave out "
            "--cluster (and see --runs-per-gpu)",
        )

    def check_train_size(self, n: int) -> None:
        """Reject a training split too small for a batch."""
        b = self.train.batch_size
        self.require(n >= b, "train.batch_size", f"{b} is more than the {n} training images")

    def steps_per_epoch(self, n: int | None) -> int | None:
        """``train.iterations`` of a run on ``n`` training images: ``iterations``, or None (one
        pass) where that is the same epoch, so runs of earlier releases resume unchanged."""
        if self.iterations is None or self.iterations == (n or 0) // self.train.batch_size:
            return None
        return self.iterations

    def to_dict(self) -> dict[str, Any]:
        """Plain values, without the run keys that the experiment sets itself."""
        d = plain(self)
        for section, keys in self.SET_HERE.items():
            d[section] = {k: v for k, v in d[section].items() if k not in keys}
        return d

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str | None = None) -> ExperimentConfig:
        values = dict(values)
        for section, part in (("model", ModelConfig), ("data", DataConfig), ("train", TrainConfig)):
            table = values.get(section, {})
            if not isinstance(table, dict):
                raise ConfigError(f"[{section}] must be a table of keys")
            for k in cls.SET_HERE.get(section, {}):
                if k in table:
                    raise ConfigError(
                        f"{section}.{k} is set by {cls.SET_HERE[section][k]}; leave it out",
                        f"{section}.{k}",
                    )
            values[section] = part.from_dict(table, f"[{section}]")
        return super().from_dict(values, where or "the config")
