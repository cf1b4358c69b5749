"""``stnlab evaluate``: accuracy of a trained run on any compatible data file."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from stnlab.cli.flags import add_options, given
from stnlab.config import EVAL_BATCH, SPLITS, TrainConfig
from stnlab.config.errors import CommandError, DataError

HELP = "evaluate a trained run on a data file (accuracy, loss, per-class accuracy)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR", help="a directory written by `stnlab train`")
    p.add_argument("--data", required=True, metavar="PATH.npz", help="data file to evaluate on")
    p.add_argument("--split", default="test", choices=SPLITS)
    add_batch_size(p)
    add_options(p, TrainConfig, only=["device"])
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object")


def add_batch_size(p: argparse.ArgumentParser) -> None:
    """``--batch-size``, shared with ``stnlab inspect``; its default is the device's."""
    default = ", ".join(f"{n} on {kind}" for kind, n in EVAL_BATCH.items())
    p.add_argument("--batch-size", type=int, help=f"images per forward pass (default: {default})")


def batch_size(args: argparse.Namespace, device) -> int:
    """``--batch-size``, checked, or :data:`EVAL_BATCH` for ``device``."""
    from stnlab.train.evaluation import eval_batch

    if args.batch_size is not None and args.batch_size <= 0:
        raise CommandError(f"--batch-size must be positive, got {args.batch_size}")
    return eval_batch(device) if args.batch_size is None else args.batch_size


def load_split(path: str, split: str, model) -> tuple:
    """Images and labels of ``split`` in the data file ``path``, checked against the model's
    input; a :class:`DataError` naming the file otherwise."""
    from stnlab.data import load

    if not Path(path).is_file():
        raise DataError(f"no data file {path!r}")
    x, y = load(path).split(split)
    expected = (model.config.in_channels, *model.in_size)
    if tuple(x.shape[1:]) != expected:
        raise DataError(f"{path} has images {tuple(x.shape[1:])}, but the model takes {expected}")
    if len(x) == 0:
        raise DataError(f"the {split} split of {path} is empty")
    return x, y


def run(args: argparse.Namespace) -> int:
    from stnlab import models
    from stnlab.train.loop import evaluate, resolve_device

    device = resolve_device(TrainConfig(**given(args, TrainConfig)).device)
    size = batch_size(args, device)
    model = models.load(args.run_dir).to(device)
    x, y = load_split(args.data, args.split, model)
    ev = evaluate(model, x, y, batch_size=size)
    if args.json:
        print(json.dumps({"split": args.split, "n": len(y), **ev.to_dict()}))
        return 0
    print(f"{args.split}: {len(y)} images, accuracy {ev.accuracy:.2%}, loss {ev.loss:.4f}")
    print(
        "per class: "
        + "  ".join(
            f"{k}:{'-' if a != a else f'{a:.1%}'}" for k, a in enumerate(ev.per_class_accuracy)
        )
    )
    return 0
