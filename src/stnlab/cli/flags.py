"""Config fields as command-line flags: declared once in :mod:`stnlab.config`, parsed here."""

from __future__ import annotations

import argparse
import types
import typing
from collections.abc import Sequence
from dataclasses import MISSING, fields
from typing import Any

__all__ = ["add_options", "given"]


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
        kwargs = {
            "metavar": f.metadata.get("metavar") or f.name.upper(),
            **_flag_type(hints[f.name]),
        }
        if f.metadata.get("const") is not None:  # the value may be left out: --flag [VALUE]
            kwargs.update(nargs="?", const=f.metadata["const"])
        parser.add_argument(
            flag, dest=dest, default=argparse.SUPPRESS, help=text.replace("%", "%%"), **kwargs
        )
    parser.set_defaults(_flags=names)


def _dest(cls: type, name: str) -> str:
    """Where a field's flag is parsed to: its config key (``train.lr``)."""
    return f"{cls.SECTION}.{name}" if cls.SECTION else name


def given(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The fields of config class ``cls`` that were given on the command line."""
    found = {f.name: _dest(cls, f.name) for f in fields(cls)}
    return {name: getattr(args, dest) for name, dest in found.items() if hasattr(args, dest)}
