"""The ``stnlab`` command line: :func:`main` and one module per command in ``commands/``."""

from stnlab.cli.app import main

__all__ = ["main"]
