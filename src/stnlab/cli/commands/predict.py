"""``stnlab predict runs/NAME IMAGE.png ...``: the digit and confidence for your own images."""

from __future__ import annotations

import argparse
from pathlib import Path

from stnlab.config import INVERT
from stnlab.config.errors import CommandError
from stnlab.runs.run_folder import WEIGHTS

HELP = "classify your own images with a trained run (any size and shape, grey-scale)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Attach the predict options."""
    parser.add_argument("run", help="run directory (config.json + weights)")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files (PNG, JPEG, ...)")
    parser.add_argument(
        "--show",
        metavar="PATH",
        help="save a picture of what the transformer looked at: per image, the input with "
        "the sampling grid's outline (a thin-plate spline's warped grid and control points "
        "too) and where the picture lies once padded, and the warped output, with the "
        "sampled area relative to the image and the rotation under it",
    )
    parser.add_argument(
        "--invert",
        choices=INVERT,
        default=INVERT[0],
        help="flip dark-on-light images to MNIST's light-on-dark (auto: by the border)",
    )
    parser.add_argument("--weights", default=WEIGHTS, help="weights file in the run directory")


def run(args: argparse.Namespace) -> int:
    """Print ``IMAGE  digit D  confidence P  what was done to it`` per image (a picture that
    is not of the input's shape is padded, not squeezed); optionally save one picture of all."""
    import torch

    from stnlab import models
    from stnlab.predict import predict, prepare, show

    model = models.load(args.run, args.weights)
    if args.show and not len(model.transformers):
        raise CommandError(f"--show: model {model.config.name!r} has no spatial transformer")
    channels = model.config.in_channels
    pictures = [prepare(n, model.in_size, channels, args.invert) for n in args.images]
    x = torch.cat([p.image for p in pictures])
    for name, pic, p in zip(args.images, pictures, predict(model, x), strict=True):
        print(f"{name}\tdigit {p.label}\tconfidence {p.confidence:.3f}\t{pic.describe()}")
    if args.show:
        names = [Path(n).name for n in args.images]
        path = show(model, x, args.show, names, pictures=pictures)
        print(f"what the transformer looked at: {path}")
    return 0
