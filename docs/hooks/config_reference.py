"""MkDocs hook: the tables of configuration keys, written from the config dataclasses.

``docs/reference/config.md`` holds the marker ``<!-- stnlab-config -->``; this hook replaces
it with one table per section of an experiment file (the top level, ``[model]``,
``[model.widths]``, ``[data]``, ``[train]``), read from the fields that
:func:`stnlab.config.options.option` declares: the key, its default, whether it decides a
run's result, and its help text (the same text as the flag's ``--help``).
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

MARKER = "<!-- stnlab-config -->"
PAGE = "reference/config.md"


def _config():
    """``stnlab.config`` from the installed package, else from this checkout's src/."""
    try:
        import stnlab.config as config
    except ImportError:
        sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))
        import stnlab.config as config
    return config


def _toml(value) -> str:
    """A default as an experiment file writes it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, str):
        return f'"{value}"'
    return "{}" if value == {} else str(value)


def _default(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    else:
        return "(required)"
    return "not set" if value is None else f"`{_toml(value)}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _table(cls: type, title: str, decided: bool = False) -> str:
    """One section's table; ``decided``: the section as a whole decides the result."""
    summary = (cls.__doc__ or "").strip().split("\n", 1)[0]
    rows = [
        f"### {title}\n",
        f"`{cls.__module__.rsplit('.', 1)[0]}.{cls.__name__}`: {_cell(summary)}\n",
        "| key | default | decides the result | what it does |",
        "|---|---|:-:|---|",
    ]
    for f in dataclasses.fields(cls):
        if "help" not in f.metadata:  # a nested table ([model], [data], [train])
            continue
        help_text = f.metadata["help"]
        if f.metadata.get("choices"):
            help_text += "; one of: " + ", ".join(f.metadata["choices"])
        decides = "yes" if decided or f.metadata.get("decides") else ""
        rows.append(f"| `{f.name}` | {_cell(_default(f))} | {decides} | {_cell(help_text)} |")
    return "\n".join(rows) + "\n"


def config_markdown() -> str:
    c = _config()
    sections = [
        (c.ExperimentConfig, "Top level (an experiment)", False),
        (c.ModelConfig, "`[model]`", False),
        (c.Widths, "`[model.widths]`", True),  # decides as a whole: the model's `widths`
        (c.DataConfig, "`[data]`", False),
        (c.TrainConfig, "`[train]`", False),
    ]
    return "\n".join(_table(*section) for section in sections)


def on_page_markdown(markdown: str, page, config, files) -> str:
    if page.file.src_uri != PAGE:
        return markdown
    if MARKER not in markdown:
        raise ValueError(f"{PAGE} lost its marker {MARKER!r}")
    return markdown.replace(MARKER, config_markdown())
