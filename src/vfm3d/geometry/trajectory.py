"""TUM trajectory files and timestamp association.

Format (TUM RGB-D benchmark, as read by evo's `file_interface.read_tum_trajectory_file`): one
pose per line, `timestamp tx ty tz qx qy qz qw`, separated by spaces; `(t, q)` is
**cam_to_world** (camera centre and orientation in the world), quaternion in **XYZW** order
(normalised on reading, as evo does). Lines starting with `#` and blank lines are skipped.

Association (evo `evo.core.sync.associate_trajectories` with `SyncMethod.nearest_time`): for each
pose of the trajectory with fewer poses, the nearest timestamp of the other within `max_diff`
seconds (default 0.01, evo's default), after adding `offset` to the second trajectory's stamps.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vfm3d.geometry.camera import make_rigid
from vfm3d.geometry.rotation import quaternion_xyzw_to_rotation, rotation_to_quaternion_xyzw
from vfm3d.utils.atomic import atomic_write_text


class TrajectoryFileError(ValueError):
    """A trajectory file is malformed; the message names the file and line."""


@dataclass
class Trajectory:
    """Timed camera poses: `timestamps` float64 `[N]`, `cam_to_world` float64 `[N, 4, 4]`."""

    timestamps: torch.Tensor
    cam_to_world: torch.Tensor

    def __post_init__(self) -> None:
        if self.timestamps.ndim != 1:
            raise ValueError(f"timestamps must be [N], got {list(self.timestamps.shape)}")
        if tuple(self.cam_to_world.shape) != (self.timestamps.shape[0], 4, 4):
            raise ValueError(
                f"cam_to_world must be [{self.timestamps.shape[0]}, 4, 4], "
                f"got {list(self.cam_to_world.shape)}"
            )

    def __len__(self) -> int:
        return int(self.timestamps.shape[0])

    def subset(self, index: torch.Tensor | list[int]) -> Trajectory:
        """The poses at `index` (in that order)."""
        idx = torch.as_tensor(index, dtype=torch.long)
        return Trajectory(self.timestamps[idx], self.cam_to_world[idx])


def read_tum(path: str | os.PathLike[str]) -> Trajectory:
    """Read a TUM trajectory file -> `Trajectory` (float64).

    Raises `TrajectoryFileError` naming `file:line` for a line without 8 numbers, a non-finite
    value or a zero quaternion, and for a file without poses; FileNotFoundError if missing.
    """
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"trajectory file not found: {file}")
    rows: list[list[float]] = []
    text = file.read_text(encoding="utf-8-sig")
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        fields = stripped.replace(",", " ").split()
        if len(fields) != 8:
            raise TrajectoryFileError(
                f"{file}:{number}: expected 8 values 'timestamp tx ty tz qx qy qz qw', "
                f"got {len(fields)}: {stripped[:80]!r}"
            )
        try:
            values = [float(f) for f in fields]
        except ValueError as error:
            raise TrajectoryFileError(f"{file}:{number}: not a number ({error})") from None
        if not all(math.isfinite(v) for v in values):
            raise TrajectoryFileError(f"{file}:{number}: NaN or inf value")
        if all(v == 0.0 for v in values[4:]):
            raise TrajectoryFileError(f"{file}:{number}: zero quaternion (qx qy qz qw all 0)")
        rows.append(values)
    if not rows:
        raise TrajectoryFileError(f"{file}: no poses (empty or only comments)")
    data = torch.tensor(rows, dtype=torch.float64)
    rotation = quaternion_xyzw_to_rotation(data[:, 4:8])
    return Trajectory(timestamps=data[:, 0], cam_to_world=make_rigid(rotation, data[:, 1:4]))


def format_tum(trajectory: Trajectory) -> str:
    """TUM text of a trajectory (full float precision, `repr` round-trips exactly)."""
    quaternion = rotation_to_quaternion_xyzw(trajectory.cam_to_world[:, :3, :3].double())
    translation = trajectory.cam_to_world[:, :3, 3].double()
    lines = ["# timestamp tx ty tz qx qy qz qw (cam_to_world, quaternion XYZW)"]
    for stamp, t, q in zip(
        trajectory.timestamps.tolist(), translation.tolist(), quaternion.tolist(), strict=True
    ):
        lines.append(" ".join(repr(float(v)) for v in (stamp, *t, *q)))
    return "\n".join(lines) + "\n"


def write_tum(path: str | os.PathLike[str], trajectory: Trajectory) -> None:
    """Write a TUM trajectory file atomically (see `format_tum`)."""
    atomic_write_text(path, format_tum(trajectory))


def matching_time_indices(
    stamps_1: np.ndarray, stamps_2: np.ndarray, max_diff: float = 0.01, offset_2: float = 0.0
) -> tuple[list[int], list[int]]:
    """For each stamp of `stamps_1`, the nearest of `stamps_2 + offset_2` within `max_diff`.

    Same rule as evo's `matching_time_indices` (sorted: binary search, ties to the earlier
    stamp; unsorted: linear search) -> `(indices into 1, indices into 2)`.
    """
    s2 = np.asarray(stamps_2, dtype=np.float64) + offset_2
    s1 = np.asarray(stamps_1, dtype=np.float64)
    out_1: list[int] = []
    out_2: list[int] = []
    if len(s2) == 0:
        return out_1, out_2
    if not np.all(np.diff(s2) >= 0):
        for i, stamp in enumerate(s1):
            diffs = np.abs(s2 - stamp)
            j = int(np.argmin(diffs))
            if diffs[j] <= max_diff:
                out_1.append(i)
                out_2.append(j)
        return out_1, out_2
    upper = np.minimum(np.searchsorted(s2, s1, side="right"), len(s2) - 1)
    for i, (stamp, j) in enumerate(zip(s1, upper, strict=True)):
        if stamp < s2[0] - max_diff or stamp > s2[-1] + max_diff:
            continue
        diff_ub = s2[j] - stamp
        diff_lb = stamp - s2[j - 1] if j > 0 else math.inf
        if diff_ub <= max_diff and diff_ub < diff_lb:
            best = int(j)
        elif diff_lb <= max_diff and diff_lb <= diff_ub:
            best = int(j) - 1
        else:
            continue
        out_1.append(i)
        out_2.append(best)
    return out_1, out_2


def associate(
    first: Trajectory, second: Trajectory, max_diff: float = 0.01, offset: float = 0.0
) -> tuple[Trajectory, Trajectory]:
    """Keep the poses of both trajectories whose timestamps match -> `(first', second')`, equal length.

    Starts from the trajectory with fewer poses, as evo does; `offset` is added to `second`'s
    stamps. Raises ValueError when no timestamps match.
    """
    if max_diff < 0:
        raise ValueError(f"max_diff must be >= 0, got {max_diff}")
    second_longer = len(second) > len(first)
    short, long = (first, second) if second_longer else (second, first)
    idx_short, idx_long = matching_time_indices(
        short.timestamps.numpy(),
        long.timestamps.numpy(),
        max_diff,
        offset if second_longer else -offset,
    )
    if not idx_short:
        raise ValueError(
            f"no matching timestamps between the trajectories with max difference {max_diff} s "
            f"and offset {offset} s"
        )
    short, long = short.subset(idx_short), long.subset(idx_long)
    return (short, long) if second_longer else (long, short)
