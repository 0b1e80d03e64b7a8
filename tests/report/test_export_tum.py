"""TUM export: evo reads back the same positions, quaternions and timestamps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from evo.tools import file_interface

from vfm3d.geometry import make_rigid, random_rotation, rotation_to_quaternion_xyzw
from vfm3d.report.export.tum import read_trajectory_tum, write_trajectory_tum


def _poses(n: int = 6, seed: int = 0) -> np.ndarray:
    generator = torch.Generator().manual_seed(seed)
    rotation = random_rotation((n,), generator)
    translation = torch.randn(n, 3, generator=generator, dtype=torch.float64)
    return make_rigid(rotation, translation).numpy()


def _same_quaternion(a: np.ndarray, b: np.ndarray) -> None:
    sign = np.sign(np.sum(a * b, axis=-1, keepdims=True))
    np.testing.assert_allclose(a, sign * b, atol=1e-12)


def test_evo_reads_same_positions_and_quaternions(tmp_path) -> None:
    cam_to_world = _poses()
    path = write_trajectory_tum(tmp_path / "traj.txt", cam_to_world)
    trajectory = file_interface.read_tum_trajectory_file(str(path))
    np.testing.assert_allclose(trajectory.timestamps, np.arange(6.0))
    np.testing.assert_allclose(trajectory.positions_xyz, cam_to_world[:, :3, 3], atol=1e-12)
    q_xyzw = rotation_to_quaternion_xyzw(torch.from_numpy(cam_to_world[:, :3, :3])).numpy()
    q_wxyz = np.concatenate([q_xyzw[:, 3:], q_xyzw[:, :3]], axis=1)
    _same_quaternion(trajectory.orientations_quat_wxyz, q_wxyz)
    np.testing.assert_allclose(trajectory.poses_se3, cam_to_world, atol=1e-12)


def test_timestamps_fps_and_explicit(tmp_path) -> None:
    cam_to_world = _poses(4)
    write_trajectory_tum(tmp_path / "a.txt", cam_to_world, fps=10.0)
    stamps, back = read_trajectory_tum(tmp_path / "a.txt")
    np.testing.assert_allclose(stamps, [0.0, 0.1, 0.2, 0.3])
    np.testing.assert_allclose(back, cam_to_world, atol=1e-12)
    given = np.array([1305031102.175304, 1305031102.211214, 1305031102.243211, 1305031102.27])
    write_trajectory_tum(tmp_path / "b.txt", cam_to_world, timestamps=given)
    assert np.array_equal(read_trajectory_tum(tmp_path / "b.txt")[0], given)
    first = (tmp_path / "b.txt").read_text().splitlines()[1].split()
    assert len(first) == 8 and float(first[0]) == given[0]


def test_errors(tmp_path) -> None:
    cam_to_world = _poses(3)
    with pytest.raises(ValueError, match=r"cam_to_world must have shape \[T, 4, 4\]"):
        write_trajectory_tum(tmp_path / "x.txt", cam_to_world[:, :3])
    with pytest.raises(ValueError, match=r"timestamps must have shape \[T\]"):
        write_trajectory_tum(tmp_path / "x.txt", cam_to_world, timestamps=np.zeros(2))
    bad = cam_to_world.copy()
    bad[1, 0, 0] = np.nan
    with pytest.raises(ValueError, match="cam_to_world must be finite"):
        write_trajectory_tum(tmp_path / "x.txt", bad)
    scaled = cam_to_world.copy()
    scaled[2, :3, :3] *= 2.0
    with pytest.raises(ValueError, match="must be a rotation"):
        write_trajectory_tum(tmp_path / "x.txt", scaled)
    with pytest.raises(ValueError, match="fps must be"):
        write_trajectory_tum(tmp_path / "x.txt", cam_to_world, fps=0.0)
    assert not (tmp_path / "x.txt").exists()
