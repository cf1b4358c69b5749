"""The ``stnlab`` command line: one subcommand per module in ``stnlab.commands``.

Each command module defines ``HELP`` (one line), ``add_arguments(parser)`` and
``run(args) -> int``. Modules are found automatically, so adding a command
touches only its own file. Expected failures raise :class:`CommandError`, which
is printed as one line (no traceback) with exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from stnlab import __version__


class CommandError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


def _command_modules() -> dict[str, object]:
    """Import every module of ``stnlab.commands``, keyed by command name."""
    import stnlab.commands as pkg

    found = {}
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"stnlab.commands.{info.name}")
        found[getattr(module, "NAME", info.name)] = module
    return found


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand attached."""
    parser = argparse.ArgumentParser(
        prog="stnlab",
        description="Spatial Transformer Networks and the Cluttered MNIST study.",
    )
    parser.add_argument("--version", action="version", version=f"stnlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in _command_modules().items():
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen subcommand; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "_run"):
        parser.print_help()
        return 0
    try:
        return int(args._run(args) or 0)
    except CommandError as exc:
        print(f"stnlab {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"stnlab {args.command}: interrupted", file=sys.stderr)
        return 130
