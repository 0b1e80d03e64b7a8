"""Cameras of a reconstruction as JSON (`cameras.json`).

Layout::

    {"convention": "OpenCV ...", "version": 1,
     "frames": [{"index": 0, "timestamp": 0.0, "width": W, "height": H,
                 "K": [[fx, s, cx], [0, fy, cy], [0, 0, 1]],
                 "cam_to_world": [[...4 numbers...], x4]}, ...]}

Conventions (DESIGN.md): OpenCV cameras (x right, y down, z forward); pixel centres at integer
coordinates (the top-left pixel's centre is (0, 0); COLMAP's would be (0.5, 0.5)); `K` in
pixels; `cam_to_world` maps camera coordinates to world coordinates (column vectors). Numbers
are written with full float64 precision, so the round trip is exact.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vfm3d.report.export._validate import (
    as_numpy,
    check_cam_to_world,
    check_image_size,
    check_intrinsics,
    check_timestamps,
    default_timestamps,
)
from vfm3d.utils.atomic import atomic_write_json

CAMERAS_CONVENTION = (
    "OpenCV: x right, y down, z forward; pixel centres at integer coordinates; K in pixels; "
    "cam_to_world maps camera coordinates to world coordinates (4x4, column vectors)"
)
CAMERAS_VERSION = 1


@dataclass
class Cameras:
    """Cameras read from `cameras.json`: `timestamps` `[T]` float64, `widths` / `heights` `[T]`
    int64, `intrinsics` `[T, 3, 3]` float64, `cam_to_world` `[T, 4, 4]` float64."""

    timestamps: np.ndarray
    widths: np.ndarray
    heights: np.ndarray
    intrinsics: np.ndarray
    cam_to_world: np.ndarray

    def __len__(self) -> int:
        return int(self.timestamps.shape[0])


def write_cameras_json(
    path: str | os.PathLike[str],
    intrinsics: np.ndarray,
    cam_to_world: np.ndarray,
    width: int,
    height: int,
    timestamps: np.ndarray | None = None,
) -> Path:
    """Write `intrinsics` `[T, 3, 3]` and `cam_to_world` `[T, 4, 4]` of `width` x `height` frames as JSON.

    `timestamps` `[T]` default to the frame index. Written atomically; returns the path.
    """
    k = as_numpy("intrinsics", intrinsics, np.float64)
    check_intrinsics("intrinsics", k)
    poses = as_numpy("cam_to_world", cam_to_world, np.float64)
    check_cam_to_world("cam_to_world", poses, k.shape[0])
    w, h = check_image_size(width, height)
    if timestamps is None:
        stamps = default_timestamps(k.shape[0])
    else:
        stamps = check_timestamps("timestamps", timestamps, k.shape[0])
    frames = [
        {
            "index": index,
            "timestamp": float(stamps[index]),
            "width": w,
            "height": h,
            "K": k[index].tolist(),
            "cam_to_world": poses[index].tolist(),
        }
        for index in range(k.shape[0])
    ]
    target = Path(path)
    atomic_write_json(
        target, {"convention": CAMERAS_CONVENTION, "version": CAMERAS_VERSION, "frames": frames}
    )
    return target


def read_cameras_json(path: str | os.PathLike[str]) -> Cameras:
    """Read a `cameras.json` written by `write_cameras_json` -> `Cameras` (frames in file order).

    Raises ValueError when the convention is not OpenCV or a frame lacks a field.
    """
    file = Path(path)
    data = json.loads(file.read_text(encoding="utf-8"))
    if not str(data.get("convention", "")).startswith("OpenCV"):
        raise ValueError(f"{file}: convention must be OpenCV, got {data.get('convention')!r}")
    frames = data.get("frames")
    if not isinstance(frames, list):
        raise ValueError(f"{file}: 'frames' must be a list")
    fields = ("timestamp", "width", "height", "K", "cam_to_world")
    for number, frame in enumerate(frames):
        missing = [f for f in fields if f not in frame]
        if missing:
            raise ValueError(f"{file}: frame {number} lacks {missing}")
    intrinsics = np.array([f["K"] for f in frames], dtype=np.float64).reshape(-1, 3, 3)
    cam_to_world = np.array([f["cam_to_world"] for f in frames], dtype=np.float64)
    cam_to_world = cam_to_world.reshape(-1, 4, 4)
    return Cameras(
        timestamps=np.array([f["timestamp"] for f in frames], dtype=np.float64),
        widths=np.array([f["width"] for f in frames], dtype=np.int64),
        heights=np.array([f["height"] for f in frames], dtype=np.int64),
        intrinsics=intrinsics,
        cam_to_world=cam_to_world,
    )
