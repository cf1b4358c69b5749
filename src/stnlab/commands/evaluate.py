"""``stnlab evaluate``: accuracy of a trained run on any compatible data file."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from stnlab.cli import CommandError

HELP = "evaluate a trained run on a data file (accuracy, loss, per-class accuracy)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR", help="a directory written by `stnlab train`")
    p.add_argument("--data", required=True, metavar="PATH.npz", help="data file to evaluate on")
    p.add_argument("--split", default="test", choices=("test", "valid", "train"))
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object")


def run(args: argparse.Namespace) -> int:
    from stnlab import models
    from stnlab.data import DataError, load
    from stnlab.training import evaluate, resolve_device

    if args.batch_size <= 0:
        raise CommandError(f"--batch-size must be positive, got {args.batch_size}")
    if not Path(args.data).is_file():
        raise CommandError(f"no data file {args.data!r}")
    try:
        device = resolve_device(args.device)
        model = models.load(args.run_dir).to(device)
        data = load(args.data)
    except (FileNotFoundError, ValueError, DataError) as exc:
        raise CommandError(str(exc)) from None
    x, y = data.split(args.split)
    expected = model.config["in_size"]
    expected = list(expected) if isinstance(expected, list) else [expected, expected]
    if list(x.shape[1:]) != [model.config["in_channels"], *expected]:
        raise CommandError(
            f"{args.data} has images {tuple(x.shape[1:])}, but the model takes "
            f"({model.config['in_channels']}, {expected[0]}, {expected[1]})"
        )
    if len(x) == 0:
        raise CommandError(f"the {args.split} split of {args.data} is empty")
    ev = evaluate(model, x, y, batch_size=args.batch_size)
    if args.json:
        print(json.dumps({"split": args.split, "n": len(y), **ev.to_dict()}))
        return 0
    print(f"{args.split}: {len(y)} images, accuracy {ev.accuracy:.2%}, loss {ev.loss:.4f}")
    print("per class: " + "  ".join(
        f"{k}:{'-' if a != a else f'{a:.1%}'}" for k, a in enumerate(ev.per_class_accuracy)
    ))  # fmt: skip
    return 0
