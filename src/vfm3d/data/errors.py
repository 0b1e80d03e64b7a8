"""The one error type every dataset reader raises for malformed input."""

from __future__ import annotations

import os


class DatasetFormatError(ValueError):
    """A dataset file is missing, truncated or malformed.

    The message always names the file (and the 1-based line for text files), e.g.
    ``groundtruth.txt:12: expected 8 numbers, got 7``.
    """


def where(path: str | os.PathLike[str], line: int | None = None) -> str:
    """``"path"`` or ``"path:line"`` for error messages (``line`` is 1-based)."""
    return f"{path}" if line is None else f"{path}:{line}"


class SequenceRejected(ValueError):
    """A well-formed sequence that a protocol's acceptance rule rejects (e.g. VidFM3D's CO3D
    crop truncation test). `vfm3d data convert` skips such sequences and counts them."""
