"""The one exception the data package raises for bad files, sources and parameters."""

from __future__ import annotations


class DataError(ValueError):
    """A data set, source file or download that cannot be used, with a one-line reason."""
