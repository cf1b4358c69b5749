"""``stnlab models``: the registered models and their parameter counts per size preset."""

from __future__ import annotations

import argparse

from stnlab.config import SIZES

HELP = "list the models and size presets with their parameter counts"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Attach the models options."""
    parser.add_argument(
        "--size",
        action="append",
        metavar="SIZE",
        help=f"only this size preset (repeatable; one of: {', '.join(SIZES)})",
    )


def run(args: argparse.Namespace) -> int:
    """Print the model × size table: total, classifier and transformer parameters."""
    from stnlab import models
    from stnlab.config import ModelConfig

    sizes = args.size or list(SIZES)
    for size in sizes:
        ModelConfig(size=size)  # an unknown size is refused by name
    print(models.parameter_table(sizes))
    return 0
