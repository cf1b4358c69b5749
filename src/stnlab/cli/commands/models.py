"""``stnlab models``: the registered models, their parameter counts per size preset, and the
transform families their spatial transformers can use."""

from __future__ import annotations

import argparse

from stnlab.config import SIZES

HELP = "list the models and size presets with their parameter counts, and the transform families"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Attach the models options."""
    parser.add_argument(
        "--size",
        action="append",
        metavar="SIZE",
        help=f"only this size preset (repeatable; one of: {', '.join(SIZES)})",
    )


def run(args: argparse.Namespace) -> int:
    """Print the model × size table (total, classifier and transformer parameters), then the
    2D transform families that ``--transform`` takes, with the length of their θ."""
    from stnlab import models
    from stnlab import transforms as T
    from stnlab.config import ModelConfig

    sizes = args.size or list(SIZES)
    for size in sizes:
        ModelConfig(size=size)  # an unknown size is refused by name
    print(models.parameter_table(sizes))
    families = [f"{name} ({T.get(name, dims=2).num_params})" for name in T.names(dims=2)]
    print(f"\ntransform families (--transform; θ's length): {', '.join(families)}")
    return 0
