"""Camera trajectory as a TUM file: `timestamp tx ty tz qx qy qz qw` per line, cam_to_world.

A thin entry over `vfm3d.geometry.trajectory` (`Trajectory`, `write_tum`, `read_tum`), which
defines the format: `(t, q)` is the camera centre and orientation in the world (cam_to_world),
quaternion in XYZW order, as evo's `file_interface.read_tum_trajectory_file` reads it. Note that
MonST3R's `pred_traj.txt` orders the quaternion w first; this file does not.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from vfm3d.geometry.trajectory import Trajectory, read_tum, write_tum
from vfm3d.report.export._validate import (
    as_numpy,
    check_cam_to_world,
    check_timestamps,
    default_timestamps,
)


def write_trajectory_tum(
    path: str | os.PathLike[str],
    cam_to_world: np.ndarray,
    timestamps: np.ndarray | None = None,
    fps: float | None = None,
) -> Path:
    """Write poses `cam_to_world` `[T, 4, 4]` as a TUM trajectory file (atomically).

    `timestamps` `[T]` in seconds; default: frame index / `fps`, or the frame index when `fps`
    is None. Returns the path.
    """
    poses = as_numpy("cam_to_world", cam_to_world, np.float64)
    check_cam_to_world("cam_to_world", poses)
    if timestamps is None:
        stamps = default_timestamps(poses.shape[0], fps)
    else:
        stamps = check_timestamps("timestamps", timestamps, poses.shape[0])
    target = Path(path)
    write_tum(target, Trajectory(torch.from_numpy(stamps), torch.from_numpy(poses)))
    return target


def read_trajectory_tum(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Read a TUM trajectory file -> `(timestamps [T] float64, cam_to_world [T, 4, 4] float64)`."""
    trajectory = read_tum(path)
    return trajectory.timestamps.numpy(), trajectory.cam_to_world.numpy()
