"""Fuzzing the shared decoders: damaged PNGs and gzipped JSON fail with DatasetFormatError."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from vfm3d.data import DatasetFormatError
from vfm3d.data._parse import parse_matrix_text, read_json, read_png_uint16, read_rgb


def _png16() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.arange(48, dtype=np.uint16).reshape(6, 8) * 1000).save(buffer, format="PNG")
    return buffer.getvalue()


PNG16 = _png16()
JGZ = gzip.compress(json.dumps([{"a": 1}]).encode())
_settings = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])


@_settings
@given(st.integers(0, len(PNG16)), st.integers(0, len(PNG16) - 1), st.integers(0, 255))
def test_fuzz_damaged_png(tmp_path: Path, cut: int, position: int, value: int) -> None:
    data = bytearray(PNG16[:cut] if cut < len(PNG16) else PNG16)
    if position < len(data):
        data[position] = value
    path = tmp_path / "d.png"
    path.write_bytes(bytes(data))
    for reader in (read_png_uint16, read_rgb):
        try:
            reader(path)
        except DatasetFormatError as error:
            assert "d.png" in str(error)


def test_png16_roundtrip(tmp_path: Path) -> None:
    path = tmp_path / "d.png"
    path.write_bytes(PNG16)
    np.testing.assert_array_equal(read_png_uint16(path), np.arange(48).reshape(6, 8) * 1000)


@_settings
@given(st.integers(0, len(JGZ)), st.binary(max_size=8))
def test_fuzz_damaged_jgz(tmp_path: Path, cut: int, tail: bytes) -> None:
    path = tmp_path / "f.jgz"
    path.write_bytes(JGZ[:cut] + tail)
    try:
        assert read_json(path) == [{"a": 1}]
    except DatasetFormatError as error:
        assert "f.jgz" in str(error)


@given(st.text(max_size=200))
def test_fuzz_matrix(text: str) -> None:
    try:
        matrix = parse_matrix_text(text, "m.txt", (3, 3))
    except DatasetFormatError as error:
        assert "m.txt" in str(error)
    else:
        assert matrix.shape == (3, 3) and np.isfinite(matrix).all()


def test_missing_file_named(tmp_path: Path) -> None:
    with pytest.raises(DatasetFormatError, match=r"nope\.png: missing image"):
        read_rgb(tmp_path / "nope.png")
