"""A run's configuration, torch-free: the study's vocabulary and one dataclass per concern.

Every option is a dataclass field declared once, with :func:`stnlab.options.option`: its
default, its help text (which becomes the CLI's ``--help``) and whether it *decides a
result* (a run with another value computes other numbers). The CLI flags, experiment
files, resume and budget reuse all read these declarations; nothing repeats them.
Importing this module does not import torch, so ``stnlab --help`` stays fast.

Example:
    >>> TrainConfig(lr=-1)
    Traceback (most recent call last):
    ...
    stnlab.errors.ConfigError: train.lr must be positive, got -1
    >>> RunConfig(train=TrainConfig(lr=0.01)).differences(RunConfig().to_dict())
    ['train.lr: 0.001 -> 0.01']
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, ClassVar

from stnlab.errors import ConfigError
from stnlab.options import Config, flatten, option, plain

__all__ = [
    "DEFAULT_SIZES",
    "EVAL_BATCH",
    "INVERT",
    "MIN_OPSET",
    "MODELS",
    "ONNX_OPSET",
    "PLACEMENTS",
    "REPORT_SAMPLES",
    "SCHEDULES",
    "SHARED_FS",
    "SIZES",
    "SOURCES",
    "SPLITS",
    "TRANSFORMS",
    "VARIANTS",
    "DataConfig",
    "ExperimentConfig",
    "ModelConfig",
    "RunConfig",
    "TrainConfig",
    "Widths",
]

# ----------------------------------------------------------------------------- vocabulary

# The built-in designs: name -> the class in stnlab.models that builds it. Names that users
# add with stnlab.models.register are known once their code has run (see _registered).
MODELS: dict[str, str] = {"cnn": "CNN", "stn": "STN", "mstn": "MSTN", "icstn": "ICSTN"}
# The transform families of stnlab.transforms, for --help and torch-free checks; a name
# not listed here is looked up in stnlab.transforms itself before it is refused.
TRANSFORMS: tuple[str, ...] = ("affine", "attention", "projective", "tps")
SCHEDULES: tuple[str, ...] = ("constant", "cosine", "step")
SOURCES: tuple[str, ...] = ("embedded", "mnist")
SPLITS: tuple[str, ...] = ("train", "valid", "test")
DEFAULT_SIZES: tuple[int, int, int] = (10_000, 1_000, 1_000)
PLACEMENTS: tuple[str, ...] = ("published", "uniform", "center")
SHARED_FS: tuple[str, ...] = ("auto", "yes", "no")  # whether cluster workers see the folder

# The named Cluttered/distorted MNIST layouts: fields of stnlab.data.cluttered.Variant.
VARIANTS: dict[str, dict[str, Any]] = {
    # Published 40x40 set (mnist_sequence1_sample_5distortions5x5.npz): 5 patches of 5x5.
    "40x40": {},
    # RAM / STN "translated and cluttered" MNIST (the common 60x60 file has 6 patches).
    "60x60": dict(canvas=60, patches=4, patch_size=8, placement="uniform"),
    # STN paper Table 1 (distortion ranges as stated there; no clutter).
    "rotated": dict(canvas=28, patches=0, distortion="affine", rotation=90.0),
    "rts": dict(
        canvas=42, patches=0, distortion="affine", rotation=45.0, scale=(0.7, 1.2), shift=7.0
    ),
    "projective": dict(
        canvas=28, patches=0, distortion="projective", corner_std=0.15, scale=(0.75, 1.0)
    ),
    "elastic": dict(canvas=28, patches=0, distortion="elastic", elastic_std=1.5),
}

# Other defaults the command line shows before it imports torch.
INVERT: tuple[str, ...] = ("auto", "yes", "no")  # predict: flip dark-on-light images
EVAL_BATCH = 1000  # images per forward pass when evaluating
ONNX_OPSET, MIN_OPSET = 17, 16  # ONNX export; opset 16 is the first with GridSample
REPORT_SAMPLES = 8  # test images in the report's sampled-STN figure


# ----------------------------------------------------------------------------- declaring fields


def _registered_models() -> list[str]:
    """Every model name, user-registered ones included (imports stnlab.models, so torch)."""
    from stnlab import models

    return models.names()


def _known_transforms() -> list[str]:
    from stnlab import transforms

    return transforms.names()


# ----------------------------------------------------------------------------- the model


@dataclass(frozen=True)
class Widths(Config):
    """Layer sizes of a model: the classifier CNN and every localization network."""

    SECTION: ClassVar[str] = "model.widths"

    conv: tuple[int, ...] = option((16, 32, 64), "output channels of each classifier conv block")
    kernel: int = option(3, "conv kernel size ('same' padding)")
    stride: int = option(1, "conv stride")
    pool: int = option(2, "max-pool factor after each conv block (1: none)")
    norm: bool = option(True, "BatchNorm after every classifier conv")
    hidden: int = option(128, "width of the classifier's hidden FC layer")
    dropout: float = option(0.3, "dropout before the last FC layer of the head and of an MLP loc")
    loc_conv: tuple[int, ...] = option(
        (16, 32), "channels of the localization conv blocks (5x5, pool 2); () makes it an MLP"
    )
    loc_hidden: int = option(64, "width of the localization's feature vector")
    loc_pool: int = option(2, "max-pool factor applied to the image before its localization")
    loc_norm: bool = option(False, "BatchNorm in the localization convs too")
    # Chosen on validation accuracy (full-MNIST 40×40, default size, 30 epochs, seed 0):
    # started at the identity, the stn never learns to zoom (the classifier co-adapts to
    # the scale it first sees); started at 0.7 it keeps the zoom, follows the digit and
    # gains ~1 point (97.3 vs 96.2% valid; 0.6: 97.4%). README "Results" has the numbers.
    loc_zoom: float = option(0.7, "the image transformer starts as a centred zoom on this "
                             "part of each side (1: the identity)")  # fmt: skip

    def check(self) -> None:
        self.require(len(self.conv) >= 2, "conv", "needs at least two blocks (mstn places a "
                     f"transformer between), got {list(self.conv)}")  # fmt: skip
        self.require(min(self.conv) >= 1, "conv", f"needs positive widths, got {list(self.conv)}")
        self.positive("kernel", "stride", "pool", "hidden", "loc_hidden", "loc_pool", "loc_zoom")
        self.require(0 <= self.dropout < 1, "dropout", f"must be in [0, 1), got {self.dropout}")


SIZES: dict[str, Widths] = {
    "small": Widths(conv=(8, 16, 32), hidden=64, loc_conv=(8, 16), loc_hidden=32),
    # Measured on the 40×40 set (embedded digits, seed 0; Adam 1e-3, batch 200, 2 CPU
    # cores): stn 97.6% test at epoch 15, cnn 96.6% at 12; (16, 32, 64) trains ~2× faster
    # than (32, 64, 64). BatchNorm in the localization made θ jumpy between train and
    # eval mode (one epoch fell to 91%), so it is off by default.
    "default": Widths(),
    "large": Widths(conv=(32, 64, 128), hidden=256, loc_conv=(32, 64), loc_hidden=128),
    # tensorflow/models research/transformer/cluttered_mnist.py: loc FC 1600→20 (tanh)
    # → dropout → FC 20→6; conv 3×3×16 /2, conv 3×3×16 /2, FC 1600→1024, dropout, FC →10.
    "tf-example": Widths(
        conv=(16, 16), kernel=3, stride=2, pool=1, norm=False, hidden=1024, dropout=0.2,
        loc_conv=(), loc_hidden=20, loc_pool=1, loc_zoom=1.0,
    ),
}  # fmt: skip


@dataclass
class ModelConfig(Config):
    """A model: its design, layer sizes and the images it takes (see :mod:`stnlab.models`)."""

    SECTION: ClassVar[str] = "model"

    name: str = option("stn", "the design", decides=True, choices=MODELS,
                       more=_registered_models, noun="model", flag="model")  # fmt: skip
    size: str = option("default", "layer sizes preset", decides=True, choices=SIZES, noun="size")
    transform: str = option("affine", "transform family of the spatial transformers",
                            decides=True, choices=TRANSFORMS, more=_known_transforms,
                            noun="transform")  # fmt: skip
    widths: dict[str, Any] = option(
        factory=dict,
        decides=True,
        cli=False,
        help="layer sizes that replace the preset's (see Widths)",
    )
    steps: int = option(2, "transformers of icstn, each composing its warp with the last",
                        decides=True)  # fmt: skip
    in_channels: int = option(1, "image channels (set from the data)", decides=True, cli=False)
    in_size: int | tuple[int, int] = option(40, "image size, or (height, width) (set from the "
                                            "data)", decides=True, cli=False)  # fmt: skip
    num_classes: int = option(10, "classes (set from the data)", decides=True, cli=False)

    def check(self) -> None:
        self.positive("steps", "in_channels", "num_classes")
        size = self.in_size if isinstance(self.in_size, tuple) else (self.in_size,) * 2
        self.require(min(size) >= 1, "in_size", f"must be positive, got {self.in_size}")
        self.in_size = size[0] if size[0] == size[1] else size
        known = [f.name for f in fields(Widths)]
        for k in self.widths:
            self.require(k in known, "widths", f": unknown width {k!r}; known: {', '.join(known)}")
        layers = self.layers()  # checks the widths and gives them their types
        self.widths = {k: getattr(layers, k) for k in self.widths}

    def layers(self) -> Widths:
        """The layer sizes: the ``size`` preset with ``widths`` replaced."""
        return replace(SIZES[self.size], **self.widths)

    def decisive(self) -> dict[str, Any]:
        """The fields that decide a result, with the widths as built (a preset may change)."""
        return {**super().decisive(), "widths": plain(self.layers())}

    def to_dict(self) -> dict[str, Any]:
        """Plain values with the widths resolved, so the model can be rebuilt as it was."""
        return {**plain(self), "widths": plain(self.layers())}

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str | None = None) -> ModelConfig:
        """Also reads the flat form of run folders written before the widths had a key."""
        if isinstance(values, dict):
            widths, known = [f.name for f in fields(Widths)], [f.name for f in fields(cls)]
            for k in values:
                if k not in known and k not in widths:
                    raise ConfigError(
                        f"unknown key {k!r} in {where or cls.SECTION}; known: "
                        f"{', '.join(known)}, or a width: {', '.join(widths)}"
                    )
            flat = {k: v for k, v in values.items() if k in widths}
            values = {k: v for k, v in values.items() if k not in flat}
            values = {**values, "widths": {**flat, **values.get("widths", {})}} if flat else values
        return super().from_dict(values, where)


# ----------------------------------------------------------------------------- data and training


@dataclass
class DataConfig(Config):
    """The data: a saved ``.npz`` (``path``), or else generated from ``variant`` and ``source``."""

    SECTION: ClassVar[str] = "data"

    path: str | None = option(None, "a data file written by `stnlab data make`", decides=True,
                              flag="data")  # fmt: skip
    variant: str = option("40x40", "Cluttered MNIST layout to generate", decides=True,
                          choices=VARIANTS, noun="variant")  # fmt: skip
    source: str = option("embedded", "digits to generate from (embedded: offline)",
                         decides=True, choices=SOURCES, noun="source")  # fmt: skip
    seed: int = option(0, "seed of a generated data set", decides=True, flag="data-seed")
    sizes: tuple[int, int, int] = option(DEFAULT_SIZES, "train, valid and test canvases",
                                         decides=True)  # fmt: skip
    source_dir: str | None = option(None, "folder holding the four MNIST IDX files")
    cache_dir: str | None = option(None, "where downloaded files (MNIST, published sets) "
                                   "are kept")  # fmt: skip
    published: str = option("", "a published data set by name, downloaded once and checked "
                            "(stnlab data fetch --list); `path` wins over it, and "
                            "generating needs it unset or empty", decides=True)  # fmt: skip
    # (The names are checked where the file is fetched: the registry imports torch.)

    def check(self) -> None:
        self.require(min(self.sizes) > 0, "sizes", "must be 3 positive counts (train, valid, "
                     f"test), got {list(self.sizes)}")  # fmt: skip

    def dataset(self, **variant: Any):
        """The data set: loaded from ``path``, or else generated (``variant`` replaces fields
        of the named variant). Imports :mod:`stnlab.data`, so torch."""
        from stnlab.data import load, make_dataset

        if (file := self.file()) is not None:
            return load(file)
        return make_dataset(self.variant, self.source, self.seed, self.sizes, self.source_dir,
                            cache_dir=self.cache_dir, **variant)  # fmt: skip

    def file(self) -> str | None:
        """The file this config names: ``path``, or the published set, fetched if need be
        (imports :mod:`stnlab.data`); ``None`` when the data is generated."""
        if self.path is not None or not self.published:
            return self.path
        from stnlab.data import fetch_published

        return str(fetch_published(self.published, self.cache_dir))

    def describe(self) -> str:
        """One line naming the data, for summaries."""
        if self.path is not None:
            return f"the file {self.path}"
        if self.published:
            from stnlab.data.published import get_published

            entry = get_published(self.published)
            return f"the published set {entry.name} ({entry.filename}): {entry.description}"
        sizes = "/".join(map(str, self.sizes))
        return f"{self.variant} Cluttered MNIST from {self.source} digits, {sizes} train/valid/test"


@dataclass
class TrainConfig(Config):
    """How a model trains: Adam on full batches, evaluations, the device it runs on."""

    SECTION: ClassVar[str] = "train"

    epochs: int = option(100, "passes over the training set", decides=True)
    batch_size: int = option(200, "images per step over all processes (10,000 images at "
                             "batch 200: 50 steps per epoch)", decides=True)  # fmt: skip
    lr: float = option(1e-3, "Adam's learning rate", decides=True)
    loc_lr: float | None = option(None, "learning rate of the localization networks "
                                  "(default: --lr)", decides=True)  # fmt: skip
    # Chosen on validation accuracy (full-MNIST 40×40, default size, 30 epochs, seed 0):
    # with the zoomed stn, 0 / 1e-4 / 5e-4 / 1e-3 / 2e-3 gave 97.3 / 97.3 / 97.9 / 97.4 /
    # 96.8% valid; the cnn was unchanged by 5e-4 (96.3 vs 96.3%).
    weight_decay: float = option(5e-4, "Adam's L2 penalty", decides=True)
    label_smoothing: float = option(0.0, "mix each target with the uniform distribution by "
                                    "this much (0: plain cross-entropy)", decides=True)  # fmt: skip
    schedule: str = option("constant", "how the learning rate changes over the run: cosine "
                           "falls to 0, step is x0.1 at 50% and 75%", decides=True,
                           choices=SCHEDULES, noun="schedule")  # fmt: skip
    seed: int = option(0, "seeds the initial weights, each epoch's shuffle and dropout",
                       decides=True)  # fmt: skip
    eval_every: int = option(0, "evaluate valid and test every N epochs besides the last "
                             "(0: the last only; an experiment: about 50 per run)")  # fmt: skip
    eval_at: tuple[int, ...] = option((), "more epochs to evaluate after (an experiment's "
                                      "budgets)", cli=False)  # fmt: skip
    device: str = option("auto", "auto (CUDA when there is a GPU), cpu, cuda or cuda:N")
    amp: bool | None = option(None, "mixed precision (bfloat16 autocast; float16 with loss "
                              "scaling on GPUs without bfloat16); default: off, as these "
                              "small models train faster in float32, on GPUs too")  # fmt: skip
    compile: bool = option(False, "torch.compile the model (pays off for long runs)")
    threads: int | None = option(None, "CPU threads of this process (default: torch's)")
    theta_images: int = option(200, "after each epoch, record every transformer's θ statistics "
                               "on the first N validation images and warn once when one looks "
                               "collapsed (0: neither)")  # fmt: skip
    stop_on_collapse: bool = option(False, "end the run after the epoch in which a transformer "
                                    "looks collapsed; its checkpoint is kept and --resume "
                                    "goes on")  # fmt: skip
    tensorboard: str | None = option(None, "write TensorBoard logs (per-epoch scalars, "
                                     "transformer outputs) to DIR/RUN_NAME; no DIR (or auto): "
                                     "to the run folder's tensorboard/", const="auto",
                                     metavar="DIR")  # fmt: skip
    checkpoint_every: float = option(60.0, "seconds between checkpoints; one is also written "
                                     "after each of eval_at's epochs and the last (0: after "
                                     "every epoch)")  # fmt: skip

    def check(self) -> None:
        self.positive("epochs", "batch_size", "lr", "loc_lr", "threads")
        self.require(self.checkpoint_every >= 0, "checkpoint_every",
                     f"must be 0 or positive, got {self.checkpoint_every:g}")  # fmt: skip
        self.require(self.weight_decay >= 0, "weight_decay",
                     f"must be non-negative, got {self.weight_decay}")  # fmt: skip
        self.require(0 <= self.label_smoothing < 1, "label_smoothing",
                     f"must be in [0, 1), got {self.label_smoothing}")  # fmt: skip
        self.require(self.eval_every >= 0, "eval_every",
                     f"must be 0 or positive, got {self.eval_every}")  # fmt: skip
        self.require(self.theta_images >= 0, "theta_images",
                     f"must be 0 or positive, got {self.theta_images}")  # fmt: skip
        self.require(self.theta_images > 0 or not self.stop_on_collapse, "stop_on_collapse",
                     "needs the θ statistics (theta_images > 0)")  # fmt: skip
        self.require(self.tensorboard != "", "tensorboard", "needs a folder name or none")
        bad = [e for e in self.eval_at if not 1 <= e <= self.epochs]
        self.require(not bad, "eval_at", f"must lie in 1..{self.epochs}, got {bad}")
        device = self.device.split(":")
        ok = device[0] in ("auto", "cpu", "cuda") and (len(device) == 1 or (
            device[0] == "cuda" and len(device) == 2 and device[1].isdigit()))  # fmt: skip
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
        return {"model": self.model.to_dict(), "train": self.train.to_dict(),
                "data": self.data.to_dict()}  # fmt: skip

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str | None = None) -> RunConfig:
        missing = [f.name for f in fields(cls) if not isinstance(values.get(f.name), dict)]
        if missing:
            raise ConfigError(f"{where or 'the run config'} has no {missing[0]!r} table")
        return cls(ModelConfig.from_dict(values["model"]), TrainConfig.from_dict(values["train"]),
                   DataConfig.from_dict(values["data"]))  # fmt: skip

    def differences(self, saved: dict[str, Any]) -> list[str]:
        """``key: saved -> now`` for each field that decides a result and differs from ``saved``
        (a :meth:`to_dict` of another run)."""
        before = flatten(RunConfig.from_dict(saved).decisive())
        now = flatten(self.decisive())
        return [f"{k}: {before.get(k)!r} -> {v!r}" for k, v in now.items() if before.get(k) != v]


# ----------------------------------------------------------------------------- experiments


@dataclass
class ExperimentConfig(Config):
    """Models × epoch budgets × seeds on one data set; checked as a whole before any training.

    ``iterations`` (per epoch) is a check, not a knob: an epoch is one pass over the
    training split in full batches, so it must equal train size // batch size.
    """

    # Keys of the run config that the experiment sets itself, and from what.
    SET_HERE: ClassVar[dict[str, dict[str, str]]] = {
        "model": {"name": "models", "in_channels": "the data", "in_size": "the data",
                  "num_classes": "the data"},
        "train": {"epochs": "budgets", "seed": "seeds", "eval_at": "budgets"},
    }  # fmt: skip

    name: str = option("custom", "the experiment's name (its default folder is runs/NAME)")
    models: tuple[str, ...] = option(
        ("cnn", "stn", "mstn"),
        "the designs to compare",
        choices=MODELS,
        more=_registered_models,
        noun="model",
    )
    budgets: tuple[int, ...] = option((100, 200, 300, 400, 500), "epoch budgets")
    seeds: tuple[int, ...] = option((0, 1, 2), "one run per seed")
    iterations: int | None = option(None, "a check: training steps per epoch")
    reuse: bool = option(True, "one run per (model, seed), read at every budget, where the "
                         "learning rate allows it")  # fmt: skip
    workers: int = option(1, "parallel worker processes")
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    cluster: str | None = option(None, "train the runs on a Dask cluster: local:N (N one-thread "
                                 "workers on this machine), tcp://HOST:PORT (a running "
                                 "scheduler) or the JSON file of dask scheduler "
                                 "--scheduler-file; needs stnlab[cluster]")  # fmt: skip
    shared_fs: str = option("auto", "whether the cluster's workers train in this folder in "
                            "place (auto: those that see it; yes: a worker that does not is "
                            "an error) or send each run folder back (no)",
                            choices=SHARED_FS, noun="setting")  # fmt: skip
    runs_per_gpu: int = option(1, "runs trained at once on each local GPU, one worker process "
                               "each (CUDA only)")  # fmt: skip

    def check(self) -> None:
        self.require(bool(self.models), "models", "must name at least one model")
        self.require(len(set(self.models)) == len(self.models), "models",
                     f"repeat: {list(self.models)}")  # fmt: skip
        self.require(bool(self.budgets), "budgets", "must list at least one epoch count")
        self.require(min(self.budgets, default=1) > 0, "budgets",
                     f"must be positive, got {list(self.budgets)}")  # fmt: skip
        self.budgets = tuple(sorted(set(self.budgets)))
        self.require(bool(self.seeds), "seeds", "must list at least one seed")
        self.require(min(self.seeds) >= 0, "seeds", f"must be non-negative, got {self.seeds}")
        self.require(len(set(self.seeds)) == len(self.seeds), "seeds",
                     f"repeat: {list(self.seeds)}")  # fmt: skip
        self.positive("workers", "runs_per_gpu")
        self.check_cluster()
        path = self.data.path
        self.require(path is None or Path(path).is_file(), "data.path", f"{path!r} does not exist")
        if path is None and not self.data.published:
            self.check_train_size(self.data.sizes[0])

    def check_cluster(self) -> None:
        """Refuse a ``cluster`` address of no known form (see stnlab.cluster.parse_address),
        and GPU runs on ``local:N``, whose workers offer no GPU."""
        if self.cluster is None:
            return
        from stnlab.cluster.client import parse_address  # imports no Dask

        try:
            kind, _ = parse_address(self.cluster)
        except ValueError as exc:
            raise ConfigError(str(exc), "cluster") from None  # "cluster 'x': ..."
        self.require(kind != "local" or not self.train.device.startswith("cuda"), "cluster",
                     f"{self.cluster} trains on the CPU; for GPUs on this machine leave out "
                     "--cluster (and see --runs-per-gpu)")  # fmt: skip

    def check_train_size(self, n: int) -> None:
        """Reject a training split too small for a batch, or not ``iterations`` batches long."""
        b = self.train.batch_size
        self.require(n >= b, "train.batch_size", f"{b} is more than the {n} training images")
        self.require(self.iterations is None or n // b == self.iterations, "iterations",
                     f"must be train size // batch size = {n} // {b} = {n // b}, got "
                     f"{self.iterations} iterations per epoch")  # fmt: skip

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
                    raise ConfigError(f"{section}.{k} is set by {cls.SET_HERE[section][k]}; "
                                      "leave it out", f"{section}.{k}")  # fmt: skip
            values[section] = part.from_dict(table, f"[{section}]")
        return super().from_dict(values, where or "the config")
