"""``stnlab report``: figures and a self-contained report.html for an experiment folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from stnlab.config import REPORT_SAMPLES
from stnlab.config.errors import CommandError

HELP = "make DIR/report.html and DIR/figures/*.png from an experiment folder"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Attach the report options."""
    p.add_argument("dir", type=Path, metavar="DIR", help="a folder written by `stnlab experiment`")
    p.add_argument(
        "--samples",
        type=int,
        default=REPORT_SAMPLES,
        help=f"test images in the sampled-STN figure (default {REPORT_SAMPLES})",
    )
    p.add_argument(
        "--cell",
        metavar="AXIS=VALUE,...",
        help="with a grid: the cell that the sections after 'Across the grid' show, e.g. "
        "model.size=large (default: the last cell)",
    )


def run(args: argparse.Namespace) -> int:
    """Write the report and print its path."""
    from stnlab.report.html import write_report

    if args.samples < 1:
        raise CommandError(f"--samples must be positive, got {args.samples}")
    path = write_report(args.dir, samples=args.samples, cell=args.cell)
    print(f"report: {path}")
    print(f"figures: {args.dir / 'figures'}")
    return 0
