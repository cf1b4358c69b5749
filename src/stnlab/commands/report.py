"""``stnlab report``: figures and a self-contained report.html for an experiment folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from stnlab.cli import CommandError

HELP = "make DIR/report.html and DIR/figures/*.png from an experiment folder"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Attach the report options."""
    p.add_argument("dir", type=Path, metavar="DIR", help="a folder written by `stnlab experiment`")
    p.add_argument("--samples", type=int, default=8, help="test images in the sampled-STN figure")


def run(args: argparse.Namespace) -> int:
    """Write the report and print its path."""
    from stnlab.report import ReportError, write_report

    if args.samples < 1:
        raise CommandError(f"--samples must be positive, got {args.samples}")
    try:
        path = write_report(args.dir, samples=args.samples)
    except ReportError as exc:
        raise CommandError(str(exc)) from None
    print(f"report: {path}")
    print(f"figures: {args.dir / 'figures'}")
    return 0
