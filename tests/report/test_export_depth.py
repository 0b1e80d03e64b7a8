"""Depth export: 16-bit PNG round trip within scale / 2, depth_scale.json, safetensors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from safetensors.numpy import load_file

from vfm3d.report.export.depth import (
    MAX_UINT16,
    read_depth_png,
    read_depth_safetensors,
    write_depth_png,
    write_depth_safetensors,
)


def _depth(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    depth = rng.uniform(0.3, 12.0, size=(3, 8, 10)).astype(np.float32)
    valid = rng.random(size=depth.shape) > 0.2
    depth[~valid] = np.nan
    return depth, valid


def test_png_round_trip_within_half_a_step(tmp_path) -> None:
    depth, valid = _depth()
    folder = write_depth_png(tmp_path / "depth", depth, valid)
    assert sorted(p.name for p in folder.glob("*.png")) == [
        "000000.png",
        "000001.png",
        "000002.png",
    ]
    meta = json.loads((folder / "depth_scale.json").read_text())
    scale = meta["metres_per_unit"]
    assert scale == pytest.approx(float(depth[valid].max()) / MAX_UINT16)
    assert "z-depth" in meta["convention"] and meta["invalid_value"] == 0
    with Image.open(folder / "000001.png") as image:
        assert image.mode == "I;16" and image.size == (10, 8)
        raw = np.asarray(image)
    assert raw.dtype == np.uint16 and raw.max() <= MAX_UINT16
    assert ((raw == 0) == ~valid[1]).all()
    back, back_valid = read_depth_png(folder)
    assert back.dtype == np.float32 and back.shape == depth.shape
    np.testing.assert_array_equal(back_valid, valid)
    error = np.abs(back[valid].astype(np.float64) - depth[valid])
    assert error.max() <= scale / 2 + 1e-6 * depth[valid].max()
    assert (back[~valid] == 0).all()


def test_given_scale_tiny_depth_and_too_small_scale(tmp_path) -> None:
    depth = np.full((1, 2, 2), 2.0, dtype=np.float32)
    depth[0, 0, 0] = 0.0002  # below scale / 2: kept valid as 1 unit
    write_depth_png(tmp_path / "d", depth, scale=0.001)
    back, valid = read_depth_png(tmp_path / "d")
    assert valid.all()
    np.testing.assert_allclose(back[0, 1], [2.0, 2.0], atol=0.0005)
    assert back[0, 0, 0] == pytest.approx(0.001)
    with pytest.raises(ValueError, match="scale 1e-05 is too small"):
        write_depth_png(tmp_path / "e", depth, scale=1e-5)


def test_safetensors_round_trip(tmp_path) -> None:
    depth, valid = _depth(1)
    path = write_depth_safetensors(tmp_path / "depth.safetensors", depth, valid)
    tensors = load_file(str(path))
    assert tensors["depth"].dtype == np.float32 and tensors["valid"].dtype == np.bool_
    np.testing.assert_array_equal(tensors["valid"], valid)
    back, back_valid = read_depth_safetensors(path)
    np.testing.assert_array_equal(back[valid], depth[valid])
    np.testing.assert_array_equal(back_valid, valid)


def test_errors(tmp_path) -> None:
    depth, valid = _depth()
    with pytest.raises(ValueError, match="depth must be finite at valid pixels"):
        write_depth_png(tmp_path / "x", depth, np.ones_like(valid))
    negative = np.where(valid, depth, 1.0)
    negative[0, 0, 0] = -1.0
    with pytest.raises(ValueError, match="depth must be > 0 at valid pixels"):
        write_depth_safetensors(tmp_path / "x.safetensors", negative, np.ones_like(valid))
    with pytest.raises(ValueError, match=r"valid must have shape \[T, H, W\]"):
        write_depth_png(tmp_path / "x", depth, valid[:2])
    with pytest.raises(ValueError, match="valid must be a bool array"):
        write_depth_png(tmp_path / "x", depth, valid.astype(np.uint8))
    with pytest.raises(ValueError, match=r"depth must have shape \[T, H, W\]"):
        write_depth_safetensors(tmp_path / "x.safetensors", depth[0])
    assert not (tmp_path / "x.safetensors").exists()
