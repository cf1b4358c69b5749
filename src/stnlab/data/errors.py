"""The one exception the data package raises for bad files, sources and parameters."""

from __future__ import annotations

from stnlab.errors import DataError

__all__ = ["DataError"]
