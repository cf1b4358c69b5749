"""The ``stnlab`` command line: one subcommand per module in ``stnlab.cli.commands``.

Each command module defines ``HELP`` (one line), ``add_arguments(parser)`` and
``run(args) -> int``. Modules are found automatically, so adding a command touches
only its own file. Config options become flags with :func:`add_options`, from the
declarations in :mod:`stnlab.config`. A :class:`~stnlab.config.errors.UserError` is printed
as one line (no traceback) with exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

from stnlab import __version__
from stnlab.cli import commands
from stnlab.config.errors import ConfigError, UserError

__all__ = ["build_parser", "main"]


def _command_modules() -> dict[str, object]:
    """Import every module of ``stnlab.cli.commands``, keyed by command name."""
    found = {}
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"stnlab.cli.commands.{info.name}")
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


def _message(exc: UserError, args: argparse.Namespace) -> str:
    """The error's line; a config key given as a flag is named by its flag instead."""
    text = str(exc)
    flag = getattr(args, "_flags", {}).get(getattr(exc, "key", None))
    if isinstance(exc, ConfigError) and flag and exc.key in vars(args) and text.startswith(exc.key):
        return flag + text[len(exc.key) :]
    return text


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, a batch system's time limit) raised where Ctrl-C would be, so that
    it stops a command the same clean way: workers ended, folders left resumable."""


def _terminate(signum: int, frame: Any) -> None:
    raise Terminated


def _sigterm_as_interrupt() -> Any:
    """Route SIGTERM to :class:`Terminated` (main thread only); returns the old handler."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _terminate)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen subcommand; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "_run"):
        parser.print_help()
        return 0
    previous = _sigterm_as_interrupt()
    try:
        return _run(args)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _run(args: argparse.Namespace) -> int:
    """Run the parsed command: a user error or an interrupt becomes one line and a status."""
    try:
        status = int(args._run(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
        return status
    except UserError as exc:
        print(f"stnlab {args.command}: error: {_message(exc, args)}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and the like, which stopped reading
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 0
    except KeyboardInterrupt as exc:
        if isinstance(exc, Terminated):
            print(f"stnlab {args.command}: terminated (SIGTERM)", file=sys.stderr)
            return 128 + signal.SIGTERM
        print(f"stnlab {args.command}: interrupted", file=sys.stderr)
        return 130
