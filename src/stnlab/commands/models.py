"""``stnlab models``: the registered models and their parameter counts per size preset."""

from __future__ import annotations

import argparse

HELP = "list the models and size presets with their parameter counts"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Attach the models options."""
    parser.add_argument(
        "--size", action="append", metavar="SIZE", help="only this size preset (repeatable)"
    )


def run(args: argparse.Namespace) -> int:
    """Print the model × size table: total, classifier and transformer parameters."""
    from stnlab import models
    from stnlab.cli import CommandError

    sizes = args.size or list(models.SIZES)
    unknown = [s for s in sizes if s not in models.SIZES]
    if unknown:
        raise CommandError(f"unknown size {unknown[0]!r}; known: {', '.join(models.SIZES)}")
    print(models.parameter_table(sizes))
    return 0
