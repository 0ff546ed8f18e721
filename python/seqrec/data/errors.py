"""The error of malformed input data."""

from __future__ import annotations


class DataFormatError(ValueError):
    """Malformed input: the message names the file and, where there is one, the line."""
