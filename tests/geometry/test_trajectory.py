"""TUM files (read/write, malformed lines) and association (equal to evo's)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from evo.core import sync
from evo.tools import file_interface

from vfm3d.geometry import (
    Trajectory,
    TrajectoryFileError,
    associate,
    make_rigid,
    random_rotation,
    read_tum,
    write_tum,
)


def _trajectory(
    n: int, seed: int = 0, stamp0: float = 1305031102.0, step: float = 0.033
) -> Trajectory:
    generator = torch.Generator().manual_seed(seed)
    cam_to_world = make_rigid(
        random_rotation((n,), generator),
        torch.randn(n, 3, generator=generator, dtype=torch.float64),
    )
    return Trajectory(stamp0 + step * torch.arange(n, dtype=torch.float64), cam_to_world)


def test_write_read_round_trip_and_evo_reads_it(tmp_path: Path) -> None:
    trajectory = _trajectory(20)
    path = tmp_path / "traj.txt"
    write_tum(path, trajectory)
    back = read_tum(path)
    assert torch.equal(back.timestamps, trajectory.timestamps)
    assert torch.allclose(back.cam_to_world, trajectory.cam_to_world, atol=1e-14)
    evo_traj = file_interface.read_tum_trajectory_file(str(path))
    assert np.allclose(np.stack(evo_traj.poses_se3), trajectory.cam_to_world.numpy(), atol=1e-14)


def test_read_normalises_quaternions_and_skips_comments(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_text("# comment\n\n1.0 1 2 3 0 0 0 2\n2.0 0 0 0 0 0 3 3\n")
    trajectory = read_tum(path)
    assert len(trajectory) == 2
    assert torch.allclose(
        trajectory.cam_to_world[0],
        make_rigid(
            torch.eye(3, dtype=torch.float64), torch.tensor([1.0, 2, 3], dtype=torch.float64)
        ),
    )
    expected_z90 = torch.tensor([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]], dtype=torch.float64)
    assert torch.allclose(trajectory.cam_to_world[1, :3, :3], expected_z90, atol=1e-15)


@pytest.mark.parametrize(
    ("content", "line", "message"),
    [
        ("1 0 0 0 0 0 0 1\n2 0 0 0 0 0 1\n", 2, "expected 8 values"),
        ("# c\n1 0 0 0 0 0 0 1\n2 0 x 0 0 0 0 1\n", 3, "not a number"),
        ("1 0 0 nan 0 0 0 1\n", 1, "NaN or inf"),
        ("1 0 0 0 0 0 0 0\n", 1, "zero quaternion"),
    ],
)
def test_malformed_line_names_file_and_line(
    tmp_path: Path, content: str, line: int, message: str
) -> None:
    path = tmp_path / "bad.txt"
    path.write_text(content)
    with pytest.raises(TrajectoryFileError, match=rf"bad\.txt:{line}: {message}"):
        read_tum(path)


def test_empty_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.txt"
    path.write_text("# nothing\n")
    with pytest.raises(TrajectoryFileError, match="no poses"):
        read_tum(path)
    with pytest.raises(FileNotFoundError):
        read_tum(tmp_path / "missing.txt")


@pytest.mark.parametrize("offset", [0.0, 0.004])
def test_association_equals_evo(tmp_path: Path, offset: float) -> None:
    rng = np.random.default_rng(5)
    gt = _trajectory(60, seed=1)
    pred = _trajectory(45, seed=2)
    # jittered, partly missing prediction stamps
    keep = np.sort(rng.choice(60, size=45, replace=False))
    pred.timestamps = gt.timestamps[keep] + torch.from_numpy(rng.uniform(-0.012, 0.012, size=45))
    write_tum(tmp_path / "gt.txt", gt)
    write_tum(tmp_path / "pred.txt", pred)
    ours_gt, ours_pred = associate(
        read_tum(tmp_path / "gt.txt"), read_tum(tmp_path / "pred.txt"), 0.01, offset
    )
    evo_gt, evo_pred = sync.associate_trajectories(
        file_interface.read_tum_trajectory_file(str(tmp_path / "gt.txt")),
        file_interface.read_tum_trajectory_file(str(tmp_path / "pred.txt")),
        max_diff=0.01,
        offset_2=offset,
    )
    assert len(ours_gt) == evo_gt.num_poses == len(ours_pred) == evo_pred.num_poses
    assert 0 < len(ours_gt) < 45
    assert np.array_equal(ours_gt.timestamps.numpy(), evo_gt.timestamps)
    assert np.array_equal(ours_pred.timestamps.numpy(), evo_pred.timestamps)


def test_association_without_match_raises() -> None:
    gt = _trajectory(5)
    pred = _trajectory(5, stamp0=0.0)
    with pytest.raises(ValueError, match="no matching timestamps"):
        associate(gt, pred)
