"""Small, strict parsers shared by the readers: text tables, binary blobs, images, JSON.

Every function raises `DatasetFormatError` naming the file (and line) on bad input; nothing
leaks a bare decoder traceback. Parsers that take ``text``/``data`` are pure (no I/O) so that
tests can fuzz them.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from vfm3d.data.errors import DatasetFormatError, where

PathLike = str | os.PathLike[str]


# ---------------------------------------------------------------------------- files
def require_file(path: PathLike, what: str = "file") -> Path:
    """Return ``Path(path)`` or raise `DatasetFormatError` if it is not a file."""
    p = Path(path)
    if not p.is_file():
        raise DatasetFormatError(f"{p}: missing {what}")
    return p


def read_text(path: PathLike, what: str = "file") -> str:
    """Read a UTF-8 text file (errors name the file)."""
    p = require_file(path, what)
    try:
        return p.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise DatasetFormatError(f"{p}: not UTF-8 text ({error})") from error


def read_bytes(path: PathLike, what: str = "file") -> bytes:
    return require_file(path, what).read_bytes()


def read_json(path: PathLike, what: str = "JSON file") -> Any:
    """Read ``.json`` or gzipped JSON (``.jgz`` / ``.gz``)."""
    p = require_file(path, what)
    try:
        raw = p.read_bytes()
        if p.suffix in (".jgz", ".gz"):
            raw = gzip.decompress(raw)
        return json.loads(raw.decode("utf-8"))
    except (OSError, EOFError, zlib.error, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DatasetFormatError(f"{p}: cannot parse JSON ({error})") from error


# ---------------------------------------------------------------------------- numbers
def parse_float(token: str, path: PathLike, line: int | None = None, finite: bool = True) -> float:
    """One float; ``finite=True`` rejects NaN / Inf."""
    try:
        value = float(token)
    except ValueError as error:
        raise DatasetFormatError(f"{where(path, line)}: not a number: {token!r}") from error
    if finite and not math.isfinite(value):
        raise DatasetFormatError(f"{where(path, line)}: non-finite value {token!r}")
    return value


def data_lines(text: str) -> list[tuple[int, list[str]]]:
    """Non-empty, non-comment (``#``) lines as ``(line_number, tokens)``; commas count as spaces."""
    out: list[tuple[int, list[str]]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        out.append((number, stripped.replace(",", " ").split()))
    return out


def parse_matrix_text(
    text: str, path: PathLike, shape: tuple[int, int], finite: bool = True
) -> np.ndarray:
    """A whitespace-separated matrix of exactly ``shape`` (float64), e.g. ScanNet ``pose/0.txt``."""
    values: list[float] = []
    for number, tokens in data_lines(text):
        values.extend(parse_float(t, path, number, finite=finite) for t in tokens)
    expected = shape[0] * shape[1]
    if len(values) != expected:
        raise DatasetFormatError(
            f"{path}: expected a {shape[0]}x{shape[1]} matrix ({expected} numbers), "
            f"got {len(values)} numbers"
        )
    return np.asarray(values, dtype=np.float64).reshape(shape)


# ---------------------------------------------------------------------------- images
def _open_image(path: PathLike) -> Any:
    from PIL import Image

    p = require_file(path, "image")
    try:
        image = Image.open(p)
        image.load()
    except Exception as error:  # PIL raises OSError, SyntaxError, ValueError, ...
        raise DatasetFormatError(f"{p}: cannot decode image ({error})") from error
    return image


def read_rgb(path: PathLike) -> np.ndarray:
    """``[H, W, 3]`` uint8 RGB from any PIL-readable image (grey / RGBA are converted)."""
    image = _open_image(path)
    if image.mode not in ("RGB", "RGBA", "L", "P", "LA", "CMYK", "YCbCr"):
        raise DatasetFormatError(
            f"{path}: unsupported image mode {image.mode!r} for a colour frame"
        )
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def read_png_uint16(path: PathLike) -> np.ndarray:
    """``[H, W]`` uint16 from a 16-bit single-channel PNG (TUM / Bonn / ScanNet depth, CO3D)."""
    image = _open_image(path)
    if image.mode not in ("I;16", "I;16B", "I;16L", "I"):
        raise DatasetFormatError(
            f"{path}: expected a 16-bit single-channel PNG, got image mode {image.mode!r}"
        )
    arr = np.asarray(image)
    if arr.ndim != 2:
        raise DatasetFormatError(f"{path}: expected one channel, got shape {arr.shape}")
    if arr.dtype != np.uint16:
        if arr.min(initial=0) < 0 or arr.max(initial=0) > 65535:
            raise DatasetFormatError(f"{path}: values outside the 16-bit range")
        arr = arr.astype(np.uint16)
    return np.ascontiguousarray(arr)


def read_mask(path: PathLike) -> np.ndarray:
    """``[H, W]`` bool (pixel > 0) from an 8- or 16-bit single-channel image."""
    image = _open_image(path)
    arr = np.asarray(image.convert("L") if image.mode in ("RGB", "RGBA", "P", "LA") else image)
    if arr.ndim != 2:
        raise DatasetFormatError(f"{path}: expected a single-channel mask, got shape {arr.shape}")
    return arr > 0


def image_size(path: PathLike) -> tuple[int, int]:
    """``(H, W)`` from the image header only (cheap)."""
    from PIL import Image

    p = require_file(path, "image")
    try:
        with Image.open(p) as image:
            w, h = image.size
    except Exception as error:
        raise DatasetFormatError(f"{p}: cannot read image header ({error})") from error
    return int(h), int(w)


# ---------------------------------------------------------------------------- checks
def check_rotation(rotation: np.ndarray, path: PathLike, line: int | None = None) -> None:
    """Reject a rotation block that is not orthonormal with det +1 (tolerance 1e-4)."""
    if not np.all(np.isfinite(rotation)):
        raise DatasetFormatError(f"{where(path, line)}: non-finite pose")
    if np.abs(rotation).max() > 1.0 + 1e-4:
        raise DatasetFormatError(f"{where(path, line)}: pose rotation is not a proper rotation")
    gram = rotation.T @ rotation
    if not np.allclose(gram, np.eye(3), atol=1e-4) or np.linalg.det(rotation) <= 0:
        raise DatasetFormatError(f"{where(path, line)}: pose rotation is not a proper rotation")
