"""MkDocs hook: the command-line reference, written from the parser that `stnlab` runs.

``docs/reference/cli.md`` holds the marker ``<!-- stnlab-cli -->``; this hook replaces it
with the ``--help`` text of ``stnlab`` and of every command and subcommand, walked from
:func:`stnlab.cli.app.build_parser`. The options of ``train`` and ``experiment`` come from
the field declarations in ``stnlab.config``, so the page cannot fall out of step with them.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from pathlib import Path

MARKER = "<!-- stnlab-cli -->"
PAGE = "reference/cli.md"
WIDTH = "96"  # the help's line width, fixed so the page does not depend on the terminal


def _import_build_parser():
    """`build_parser` from the installed package, else from this checkout's src/."""
    try:
        from stnlab.cli.app import build_parser
    except ImportError:
        sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))
        from stnlab.cli.app import build_parser
    return build_parser


def _walk(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """The parser, then each subcommand's parser, depth first in the order they were added."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):  # aliases share a parser
                yield from _walk(sub)


def _help(parser: argparse.ArgumentParser) -> str:
    """The parser's --help text at a fixed width."""
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = WIDTH  # argparse reads the width when it formats
    try:
        return parser.format_help().rstrip()
    finally:
        if old is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = old


def cli_markdown() -> str:
    """One section per command: its name as a heading and its help as a text block."""
    sections = []
    for parser in _walk(_import_build_parser()()):
        level = "#" * (2 + max(0, parser.prog.count(" ") - 1))  # commands h2, subcommands h3
        sections.append(f"{level} `{parser.prog}`\n\n```text\n{_help(parser)}\n```\n")
    return "\n".join(sections)


def on_page_markdown(markdown: str, page, config, files) -> str:
    if page.file.src_uri != PAGE:
        return markdown
    if MARKER not in markdown:
        raise ValueError(f"{PAGE} lost its marker {MARKER!r}")
    return markdown.replace(MARKER, cli_markdown())
