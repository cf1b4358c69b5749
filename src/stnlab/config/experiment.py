"""How an experiment is configured: models × epoch budgets × seeds, and where its runs train."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from stnlab.config.errors import ConfigError
from stnlab.config.model import ModelConfig
from stnlab.config.options import Config, option, plain
from stnlab.config.run import DataConfig, TrainConfig
from stnlab.config.vocabulary import SHARED_FS

__all__ = ["ExperimentConfig", "parse_address"]


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


@dataclass
class ExperimentConfig(Config):
    """Models × epoch budgets × seeds on one data set; checked as a whole before any training.

    ``iterations`` (per epoch) is a check, not a knob: an epoch is one pass over the
    training split in full batches, so it must equal train size // batch size.
    """

    # Keys of the run config that the experiment sets itself, and from what.
    SET_HERE: ClassVar[dict[str, dict[str, str]]] = {
        "model": {
            "name": "models",
            "in_channels": "the data",
            "in_size": "the data",
            "num_classes": "the data",
        },
        "train": {"epochs": "budgets", "seed": "seeds", "eval_at": "budgets"},
    }

    name: str = option("custom", "the experiment's name (its default folder is runs/NAME)")
    models: tuple[str, ...] = option(
        ("cnn", "stn", "mstn"), "the designs to compare (registered models; checked by the plan)"
    )
    budgets: tuple[int, ...] = option((100, 200, 300, 400, 500), "epoch budgets")
    seeds: tuple[int, ...] = option((0, 1, 2), "one run per seed")
    iterations: int | None = option(None, "a check: training steps per epoch")
    reuse: bool = option(
        True, "one run per (model, seed), read at every budget, where the learning rate allows it"
    )
    workers: int = option(1, "parallel worker processes")
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
        self.positive("workers", "runs_per_gpu")
        self.check_cluster()
        path = self.data.path
        self.require(path is None or Path(path).is_file(), "data.path", f"{path!r} does not exist")
        if path is None and not self.data.published:
            self.check_train_size(self.data.sizes[0])

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
        """Reject a training split too small for a batch, or not ``iterations`` batches long."""
        b = self.train.batch_size
        self.require(n >= b, "train.batch_size", f"{b} is more than the {n} training images")
        self.require(
            self.iterations is None or n // b == self.iterations,
            "iterations",
            f"must be train size // batch size = {n} // {b} = {n // b}, got "
            f"{self.iterations} iterations per epoch",
        )

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
