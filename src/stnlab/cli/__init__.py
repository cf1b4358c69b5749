"""The ``stnlab`` command line: :func:`main` and one module per command in ``commands/``."""

from stnlab.cli.main import main

__all__ = ["main"]
