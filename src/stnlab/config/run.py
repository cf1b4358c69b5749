"""How one run is configured: its data, how it trains, and the two with the model."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from stnlab.config.errors import ConfigError
from stnlab.config.model import ModelConfig
from stnlab.config.options import Config, flatten, option
from stnlab.config.vocabulary import DEFAULT_SIZES, OPTIMIZERS, SCHEDULES, SOURCES, VARIANTS

__all__ = ["DataConfig", "RunConfig", "TrainConfig"]


@dataclass
class DataConfig(Config):
    """The data: a saved ``.npz`` (``path``), or else generated from ``variant`` and ``source``."""

    SECTION: ClassVar[str] = "data"

    path: str | None = option(
        None, "a data file written by `stnlab data make`", decides=True, flag="data"
    )
    variant: str = option(
        "40x40",
        "Cluttered MNIST layout to generate",
        decides=True,
        choices=VARIANTS,
        noun="variant",
    )
    source: str = option(
        "embedded",
        "digits to generate from (embedded: offline)",
        decides=True,
        choices=SOURCES,
        noun="source",
    )
    seed: int = option(0, "seed of a generated data set", decides=True, flag="data-seed")
    sizes: tuple[int, int, int] = option(
        DEFAULT_SIZES, "train, valid and test canvases", decides=True
    )
    source_dir: str | None = option(None, "folder holding the four MNIST IDX files")
    cache_dir: str | None = option(None, "where downloaded files (MNIST, published sets) are kept")
    published: str = option(
        "",
        "a published data set by name, downloaded once and checked "
        "(stnlab data fetch --list); `path` wins over it, and "
        "generating needs it unset or empty",
        decides=True,
    )
    # (Its name is checked where the file is fetched: stnlab.data.published's registry.)

    def check(self) -> None:
        self.require(
            min(self.sizes) > 0,
            "sizes",
            f"must be 3 positive counts (train, valid, test), got {list(self.sizes)}",
        )


@dataclass
class TrainConfig(Config):
    """How a model trains: the optimizer on batches, evaluations, the device it runs on."""

    SECTION: ClassVar[str] = "train"

    epochs: int = option(100, "passes over the training set", decides=True)
    batch_size: int = option(
        200,
        "images per step over all processes (10,000 images at batch 200: 50 steps per epoch)",
        decides=True,
    )
    iterations: int | None = option(
        None,
        "steps per epoch, taken in turn from a stream of shuffled passes over the training "
        "set (default: one pass; an experiment: its iterations)",
        decides=True,
    )
    optimizer: str = option(
        "adam",
        "adam, or sgd (plain stochastic gradient descent, no momentum: the STN paper's)",
        decides=True,
        choices=OPTIMIZERS,
        noun="optimizer",
    )
    lr: float = option(1e-3, "the optimizer's learning rate", decides=True)
    loc_lr: float | None = option(
        None, "learning rate of the localization networks (default: --lr)", decides=True
    )
    # Chosen on validation accuracy (full-MNIST 40×40, default size, 30 epochs, seed 0):
    # with the zoomed stn, 5e-4 was the best of the decays tried from 0 to 2e-3, and it left
    # the cnn unchanged. The measurements: docs/results.md, "How the defaults were chosen".
    weight_decay: float = option(5e-4, "the optimizer's L2 penalty", decides=True)
    label_smoothing: float = option(
        0.0,
        "mix each target with the uniform distribution by this much (0: plain cross-entropy)",
        decides=True,
    )
    schedule: str = option(
        "constant",
        "how the learning rate changes over the run: cosine "
        "falls to 0, step is x0.1 at 50% and 75%, thirds x0.1 at 1/3 and 2/3 (the STN "
        "paper's: 150,000 iterations, /10 every 50,000)",
        decides=True,
        choices=SCHEDULES,
        noun="schedule",
    )
    seed: int = option(
        0, "seeds the initial weights, each epoch's shuffle and dropout", decides=True
    )
    eval_every: int = option(
        0,
        "evaluate valid and test every N epochs besides the last "
        "(0: the last only; an experiment: about 50 per run)",
    )
    eval_at: tuple[int, ...] = option(
        (), "more epochs to evaluate after (an experiment's budgets)", cli=False
    )
    device: str = option("auto", "auto (CUDA when there is a GPU), cpu, cuda or cuda:N")
    # None is auto too: older experiment files and experiment.json wrote it (then: off).
    amp: bool | str | None = option(
        "auto",
        "mixed precision: auto trains in bfloat16 autocast where it is native and pays "
        "(CPUs with AMX), float32 elsewhere (CUDA too: faster for these small models); "
        "--amp forces autocast (bfloat16; float16 with loss scaling on GPUs without "
        "bfloat16), --no-amp float32; a resumed run keeps the precision it recorded",
    )
    compile: bool = option(False, "torch.compile the model (pays off for long runs)")
    threads: int | None = option(None, "CPU threads of this process (default: torch's)")
    theta_images: int = option(
        200,
        "after each epoch, record every transformer's θ statistics "
        "on the first N validation images and warn once when one looks "
        "collapsed (0: neither)",
    )
    stop_on_collapse: bool = option(
        False,
        "end the run after the epoch in which a transformer "
        "looks collapsed; its checkpoint is kept and --resume "
        "goes on",
    )
    tensorboard: str | None = option(
        None,
        "write TensorBoard logs (per-epoch scalars, "
        "transformer outputs) to DIR/RUN_NAME; no DIR (or auto): "
        "to the run folder's tensorboard/",
        const="auto",
        metavar="DIR",
    )
    checkpoint_every: float = option(
        60.0,
        "seconds between checkpoints; one is also written "
        "after each of eval_at's epochs and the last (0: after "
        "every epoch)",
    )

    def check(self) -> None:
        self.positive("epochs", "batch_size", "iterations", "lr", "loc_lr", "threads")
        self.require(
            self.checkpoint_every >= 0,
            "checkpoint_every",
            f"must be 0 or positive, got {self.checkpoint_every:g}",
        )
        self.require(
            self.weight_decay >= 0, "weight_decay", f"must be non-negative, got {self.weight_decay}"
        )
        self.require(
            0 <= self.label_smoothing < 1,
            "label_smoothing",
            f"must be in [0, 1), got {self.label_smoothing}",
        )
        self.require(
            self.eval_every >= 0, "eval_every", f"must be 0 or positive, got {self.eval_every}"
        )
        self.require(
            self.theta_images >= 0,
            "theta_images",
            f"must be 0 or positive, got {self.theta_images}",
        )
        self.require(
            self.theta_images > 0 or not self.stop_on_collapse,
            "stop_on_collapse",
            "needs the θ statistics (theta_images > 0)",
        )
        self.require(self.tensorboard != "", "tensorboard", "needs a folder name or none")
        if self.amp is None:
            object.__setattr__(self, "amp", "auto")
        self.require(
            self.amp in (True, False, "auto"),
            "amp",
            f"must be auto, true or false, got {self.amp!r}",
        )
        bad = [e for e in self.eval_at if not 1 <= e <= self.epochs]
        self.require(not bad, "eval_at", f"must lie in 1..{self.epochs}, got {bad}")
        device = self.device.split(":")
        ok = device[0] in ("auto", "cpu", "cuda") and (
            len(device) == 1 or (device[0] == "cuda" and len(device) == 2 and device[1].isdigit())
        )
        self.require(ok, "device", f"must be auto, cpu, cuda or cuda:N, got {self.device!r}")

    def eval_epochs(self) -> tuple[int, ...]:
        """Epochs after which valid and test are evaluated: every ``eval_every``, ``eval_at``
        and the last."""
        every = range(self.eval_every, self.epochs + 1, self.eval_every) if self.eval_every else ()
        return tuple(sorted({*every, *self.eval_at, self.epochs}))


@dataclass
class RunConfig(Config):
    """One training run: the model, how it trains, and the data it learns from."""

    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.to_dict(),
            "train": self.train.to_dict(),
            "data": self.data.to_dict(),
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str | None = None) -> RunConfig:
        missing = [f.name for f in fields(cls) if not isinstance(values.get(f.name), dict)]
        if missing:
            raise ConfigError(f"{where or 'the run config'} has no {missing[0]!r} table")
        return cls(
            ModelConfig.from_dict(values["model"]),
            TrainConfig.from_dict(values["train"]),
            DataConfig.from_dict(values["data"]),
        )

    def differences(self, saved: dict[str, Any]) -> list[str]:
        """``key: saved -> now`` for each field that decides a result and differs from ``saved``
        (a :meth:`to_dict` of another run)."""
        before = flatten(RunConfig.from_dict(saved).decisive())
        now = flatten(self.decisive())
        return [f"{k}: {before.get(k)!r} -> {v!r}" for k, v in now.items() if before.get(k) != v]
