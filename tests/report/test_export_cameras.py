"""cameras.json: exact round trip, layout, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vfm3d.geometry import make_rigid, random_rotation
from vfm3d.report.export.cameras import read_cameras_json, write_cameras_json


def _cameras(n: int = 4) -> tuple[np.ndarray, np.ndarray]:
    generator = torch.Generator().manual_seed(3)
    cam_to_world = make_rigid(
        random_rotation((n,), generator), torch.randn(n, 3, generator=generator).double()
    ).numpy()
    k = np.tile(np.array([[60.0, 0.0, 15.5], [0.0, 61.0, 11.5], [0.0, 0.0, 1.0]]), (n, 1, 1))
    k[:, 0, 0] += np.arange(n) * 0.1
    return k.astype(np.float32), cam_to_world


def test_round_trip_exact(tmp_path) -> None:
    k, cam_to_world = _cameras()
    stamps = np.array([0.0, 0.04, 0.08, 0.12])
    path = write_cameras_json(tmp_path / "cameras.json", k, cam_to_world, 32, 24, stamps)
    data = json.loads(path.read_text())
    assert data["convention"].startswith("OpenCV")
    assert "integer" in data["convention"] and "cam_to_world" in data["convention"]
    frame = data["frames"][2]
    assert frame["index"] == 2 and frame["width"] == 32 and frame["height"] == 24
    assert np.array(frame["K"]).shape == (3, 3) and np.array(frame["cam_to_world"]).shape == (4, 4)
    cameras = read_cameras_json(path)
    assert len(cameras) == 4
    np.testing.assert_array_equal(cameras.intrinsics, k.astype(np.float64))
    np.testing.assert_array_equal(cameras.cam_to_world, cam_to_world)
    np.testing.assert_array_equal(cameras.timestamps, stamps)
    assert (cameras.widths == 32).all() and (cameras.heights == 24).all()


def test_default_timestamps_are_frame_indices(tmp_path) -> None:
    k, cam_to_world = _cameras(3)
    write_cameras_json(tmp_path / "c.json", k, cam_to_world, 32, 24)
    np.testing.assert_array_equal(read_cameras_json(tmp_path / "c.json").timestamps, [0, 1, 2])


def test_errors(tmp_path) -> None:
    k, cam_to_world = _cameras()
    with pytest.raises(ValueError, match=r"intrinsics must have shape \[T, 3, 3\]"):
        write_cameras_json(tmp_path / "x.json", k[:, :2], cam_to_world, 32, 24)
    with pytest.raises(ValueError, match=r"cam_to_world must have shape \[T, 4, 4\] = \[4, 4, 4\]"):
        write_cameras_json(tmp_path / "x.json", k, cam_to_world[:3], 32, 24)
    bad = k.copy()
    bad[1, 1, 2] = np.inf
    with pytest.raises(ValueError, match="intrinsics must be finite"):
        write_cameras_json(tmp_path / "x.json", bad, cam_to_world, 32, 24)
    with pytest.raises(ValueError, match="width and height must be positive"):
        write_cameras_json(tmp_path / "x.json", k, cam_to_world, 0, 24)
    assert not (tmp_path / "x.json").exists()
    (tmp_path / "gl.json").write_text(json.dumps({"convention": "OpenGL", "frames": []}))
    with pytest.raises(ValueError, match="convention must be OpenCV"):
        read_cameras_json(tmp_path / "gl.json")
