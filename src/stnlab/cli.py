"""The ``stnlab`` command line: one subcommand per module in ``stnlab.commands``.

Each command module defines ``HELP`` (one line), ``add_arguments(parser)`` and
``run(args) -> int``. Modules are found automatically, so adding a command touches
only its own file. Config options become flags with :func:`add_options`, from the
declarations in :mod:`stnlab.config`. A :class:`~stnlab.errors.UserError` is printed
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
import types
import typing
from collections.abc import Sequence
from dataclasses import MISSING, fields
from typing import Any

from stnlab import __version__
from stnlab.errors import CommandError, ConfigError, UserError

# CommandError is re-exported for command modules that raise it (from stnlab.cli import ...).
__all__ = ["CommandError", "add_options", "build_parser", "given", "main"]


def _flag_type(hint: Any) -> dict[str, Any]:
    """argparse keywords for a field of type ``hint`` (bool: --x/--no-x; tuples: lists)."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        hint = args[0]  # X | None: a flag of X, absent by default
        args = list(typing.get_args(hint))
    if hint is bool:
        return {"action": argparse.BooleanOptionalAction, "metavar": None}
    if typing.get_origin(hint) is tuple:
        return {"type": args[0], "nargs": "+" if args[-1] is Ellipsis else len(args)}
    return {"type": hint}


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return " ".join(map(str, value)) if isinstance(value, tuple) else str(value)


def add_options(
    parser: argparse.ArgumentParser,
    cls: type,
    *,
    only: Sequence[str] | None = None,
    skip: Sequence[str] = (),
    flags: dict[str, str] | None = None,
    show_default: bool = True,
) -> None:
    """Add one flag per command-line field of the config dataclass ``cls``.

    The help text, type, known names and default come from the field's declaration
    (:func:`stnlab.config.option`). A flag the user leaves out is absent from the parsed
    namespace, so the dataclass's default applies: read the given ones with :func:`given`.
    ``only``/``skip`` pick fields; ``flags`` renames flags (field -> flag without dashes);
    ``show_default=False`` words the help for flags that override a config file's value.
    """
    hints = typing.get_type_hints(cls)
    names: dict[str, str] = parser.get_default("_flags") or {}
    for f in fields(cls):
        if not f.metadata.get("cli", False) or f.name in skip or (only and f.name not in only):
            continue
        flag = "--" + ((flags or {}).get(f.name) or f.metadata["flag"] or f.name).replace("_", "-")
        text = f.metadata["help"]
        if named := [c for c in f.metadata["choices"] if c]:  # "" stands for "none"
            text += f"; one of: {', '.join(named)}"
        if not show_default:
            text += " (default: the config's)"
        elif f.default is not MISSING and f.default is not None and f.default != "":
            text += f" (default: {_shown(f.default)})"
        dest = _dest(cls, f.name)
        names[dest] = flag
        kwargs = {"metavar": f.metadata.get("metavar") or f.name.upper(),
                  **_flag_type(hints[f.name])}  # fmt: skip
        if f.metadata.get("const") is not None:  # the value may be left out: --flag [VALUE]
            kwargs.update(nargs="?", const=f.metadata["const"])
        parser.add_argument(flag, dest=dest, default=argparse.SUPPRESS,
                            help=text.replace("%", "%%"), **kwargs)  # fmt: skip
    parser.set_defaults(_flags=names)


def _dest(cls: type, name: str) -> str:
    """Where a field's flag is parsed to: its config key (``train.lr``)."""
    return f"{cls.SECTION}.{name}" if cls.SECTION else name


def given(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The fields of config class ``cls`` that were given on the command line."""
    found = {f.name: _dest(cls, f.name) for f in fields(cls)}
    return {name: getattr(args, dest) for name, dest in found.items() if hasattr(args, dest)}


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
