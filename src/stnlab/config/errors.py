"""The user-error family: problems a user can fix, shown by the CLI as one line (exit status 2).

Library code raises a subclass of :class:`UserError` for bad input (a config value, a
data file, a damaged run folder); :func:`stnlab.cli.app.main` catches the family once.
Everything else is a bug and keeps its traceback.
"""

from __future__ import annotations

__all__ = [
    "CommandError",
    "ConfigError",
    "DataError",
    "ReportError",
    "RunFolderError",
    "TrainingDivergedError",
    "TransformerCollapsedError",
    "UserError",
]


class UserError(Exception):
    """A problem with the user's input, with a one-line message that says what to do."""


class ConfigError(UserError, ValueError):
    """A configuration value that cannot run; ``key`` names it (``train.lr``) when known.

    The message starts with the key, so the CLI can put the flag in its place.
    """

    def __init__(self, message: str, key: str | None = None):
        super().__init__(message)
        self.key = key


class DataError(UserError, ValueError):
    """A data set, source file, image or download that cannot be used."""


class RunFolderError(UserError):
    """A run or experiment folder whose files are missing, damaged or of another run."""


class ReportError(UserError):
    """An experiment folder that a report cannot be made from."""


class TrainingDivergedError(UserError):
    """The training loss became NaN or infinite; the last good checkpoint is kept."""


class TransformerCollapsedError(UserError):
    """A transformer collapsed and the run was asked to stop on collapse; its checkpoint is kept."""


class CommandError(UserError):
    """Command-line arguments that do not fit together."""
