"""Subcommands of the ``stnlab`` CLI, one module each (see :mod:`stnlab.cli.app`)."""
