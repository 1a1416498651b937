"""The one exception type users see: a one-line message naming the file and the problem."""

from __future__ import annotations

from pathlib import Path


class PlenopackError(Exception):
    """A user-facing error. The CLI prints ``error: <message>`` and exits with status 2.

    Build messages as ``f"{path}: what is wrong"`` so the offending file is always named.
    """

    def __init__(self, message: str, path: str | Path | None = None):
        text = f"{path}: {message}" if path is not None else message
        super().__init__(text.replace("\n", " "))
