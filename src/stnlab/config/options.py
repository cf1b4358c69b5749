"""Declaring config fields once: :func:`option` gives a dataclass field its default, help
text, known names and whether it decides a result; :class:`Config` checks every field's
type and names when a config is made, so messages name the key (``train.lr``).

Torch-free, like :mod:`stnlab.config`, whose dataclasses are built from these.
"""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import MISSING, Field, asdict, field, fields, is_dataclass
from typing import Any, ClassVar

from stnlab.config.errors import ConfigError

__all__ = ["Config", "flatten", "option", "plain"]


def option(
    default: Any = MISSING,
    help: str = "",
    *,
    decides: bool = False,
    choices: Iterable[str] = (),
    more: Callable[[], Iterable[str]] | None = None,
    noun: str | None = None,
    flag: str | None = None,
    cli: bool = True,
    factory: Callable[[], Any] | None = None,
    const: Any = None,
    metavar: str | None = None,
) -> Any:
    """A config field: its default, help text and role, declared once.

    Args:
        default: the default value (or ``factory`` for a mutable one).
        help: one line for ``--help`` and the docs.
        decides: the field decides a run's numbers (resume, reuse and "this folder holds
            another config" compare exactly these fields).
        choices: the known names (every element, for a tuple field); checked when the
            config is made and listed in ``--help``.
        more: names known only at run time (e.g. models registered by the user), asked
            only for a value that is not in ``choices``.
        noun: what a value is called in messages (``unknown schedule 'x'``).
        flag: the CLI flag without dashes when it is not the field name (``data-seed``).
        cli: whether the field is a command-line flag at all.
        const: the value of the flag given without one (``--tensorboard`` alone); ``None``:
            the flag needs its value.
        metavar: how ``--help`` names the flag's value (default: the field's name).
    """
    meta = {
        "help": help,
        "decides": decides,
        "choices": tuple(choices),
        "more": more,
        "noun": noun,
        "flag": flag,
        "cli": cli,
        "const": const,
        "metavar": metavar,
    }
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def _kind(hint: Any) -> str:
    """How a message names the type ``hint``: ``an integer``, ``a list of numbers``..."""
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    if hint in names:
        return names[hint]
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join("none" if a is type(None) else _kind(a) for a in args)
    if typing.get_origin(hint) is tuple:
        n = "" if args[-1] is Ellipsis else f"{len(args)} "
        return f"a list of {n}{_kind(args[0]).split(' ', 1)[-1]}s"
    return "a table" if typing.get_origin(hint) is dict else getattr(hint, "__name__", str(hint))


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """``value`` as type ``hint`` (lists become tuples, ints floats), or a ConfigError."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, key)
            except ConfigError:
                pass
    elif origin is tuple and isinstance(value, (list, tuple)):
        each = [args[0]] * len(value) if args[-1] is Ellipsis else list(args)
        if len(each) == len(value):
            return tuple(_coerce(v, h, key) for v, h in zip(value, each, strict=True))
    elif origin is dict and isinstance(value, dict):
        return dict(value)
    elif hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    elif (
        isinstance(hint, type)
        and isinstance(value, hint)
        and not (
            hint is int and isinstance(value, bool)  # True is no epoch count
        )
    ):
        return value
    raise ConfigError(f"{key} must be {_kind(hint)}, got {value!r}", key)


def _check_choice(value: Any, f: Field, key: str) -> None:
    """Refuse a name that is neither in the field's ``choices`` nor in its ``more()``."""
    choices, more = f.metadata.get("choices"), f.metadata.get("more")
    for name in value if isinstance(value, tuple) else (value,):
        if choices and name not in choices:
            known = list(more()) if more is not None else list(choices)
            if name not in known:
                noun = f.metadata.get("noun") or f.name
                raise ConfigError(f"{key}: unknown {noun} {name!r}; known: {', '.join(known)}", key)


def plain(value: Any) -> Any:
    """JSON/TOML-able values: tuples become lists, dataclasses dicts."""
    return json.loads(json.dumps(asdict(value) if is_dataclass(value) else value))


class Config:
    """Shared by the config dataclasses: types and names checked, then the class's ``check``."""

    SECTION: ClassVar[str] = ""  # how keys are named in messages: train.lr

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in fields(self):
            key = self.key(f.name)
            value = _coerce(getattr(self, f.name), hints[f.name], key)
            _check_choice(value, f, key)
            object.__setattr__(self, f.name, value)
        self.check()

    def check(self) -> None:
        """Rules beyond each field's type and names (override)."""

    def key(self, name: str) -> str:
        return f"{self.SECTION}.{name}" if self.SECTION else name

    def require(self, ok: bool, name: str, problem: str) -> None:
        """Raise ``ConfigError("train.lr must be positive, got -1")`` unless ``ok``."""
        if not ok:
            sep = "" if problem.startswith(":") else " "
            raise ConfigError(f"{self.key(name)}{sep}{problem}", self.key(name))

    def positive(self, *names: str) -> None:
        for name in names:
            value = getattr(self, name)
            if value is not None and not value > 0:
                self.require(False, name, f"must be positive, got {value:g}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values."""
        return plain(self)

    def decisive(self) -> dict[str, Any]:
        """The fields that decide a result, nested configs included, as plain values."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Config):
                out[f.name] = value.decisive()
            elif f.metadata.get("decides"):
                out[f.name] = plain(value)
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str | None = None):
        """A config from plain values; an unknown key is an error naming ``where``."""
        if not isinstance(values, dict):
            raise ConfigError(f"{where or cls.SECTION} must be a table of keys, got {values!r}")
        known = [f.name for f in fields(cls)]
        for k in values:
            if k not in known:
                raise ConfigError(
                    f"unknown key {k!r} in {where or cls.SECTION}; known: {', '.join(known)}"
                )
        return cls(**values)


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out
