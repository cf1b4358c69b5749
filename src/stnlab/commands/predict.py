"""``stnlab predict runs/NAME IMAGE.png ...``: the digit and confidence for your own images."""

from __future__ import annotations

import argparse

from stnlab.cli import CommandError

HELP = "classify your own images with a trained run (any size, grey-scale)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Attach the predict options."""
    from stnlab.predict import INVERT

    parser.add_argument("run", help="run directory (config.json + weights)")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files (PNG, JPEG, ...)")
    parser.add_argument(
        "--show",
        metavar="PATH",
        help="save the input with the sampling grid's outline and the warped output "
        "(several images: PATH gets the image's name as suffix)",
    )
    parser.add_argument(
        "--invert",
        choices=INVERT,
        default="auto",
        help="flip dark-on-light images to MNIST's light-on-dark (auto: by the border)",
    )
    parser.add_argument(
        "--weights", default="final.safetensors", help="weights file in the run directory"
    )


def _show_path(show: str, image: str, many: bool) -> str:
    """``--show`` as given for one image; ``out-<image stem>.png`` style for several."""
    from pathlib import Path

    if not many:
        return show
    out = Path(show)
    return str(out.with_name(f"{out.stem}-{Path(image).stem}{out.suffix or '.png'}"))


def run(args: argparse.Namespace) -> int:
    """Print ``IMAGE  digit D  confidence P`` per image; optionally save pictures."""
    from stnlab import models
    from stnlab.predict import load_image, predict, show

    try:
        model = models.load(args.run, args.weights)
    except (FileNotFoundError, ValueError) as exc:
        raise CommandError(str(exc)) from None
    channels = model.config["in_channels"]
    for name in args.images:
        try:
            x = load_image(name, model.in_size, channels, args.invert)
        except (FileNotFoundError, ValueError) as exc:
            raise CommandError(str(exc)) from None
        (p,) = predict(model, x)
        print(f"{name}\tdigit {p.label}\tconfidence {p.confidence:.3f}")
        if args.show:
            out = show(model, x, _show_path(args.show, name, len(args.images) > 1))
            print(f"  what the transformer looked at: {out}")
    return 0
