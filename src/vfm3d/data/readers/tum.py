"""TUM RGB-D and Bonn RGB-D Dynamic (same layout).

Layout (one folder per sequence, under ROOT or ROOT itself)::

    ROOT/rgbd_dataset_freiburg3_walking_xyz/      (Bonn: ROOT/rgbd_bonn_balloon2/)
        rgb.txt  depth.txt  groundtruth.txt  rgb/<t>.png  depth/<t>.png

``rgb.txt`` / ``depth.txt``: ``#`` comment lines, then ``timestamp filename``.
``groundtruth.txt``: ``timestamp tx ty tz qx qy qz qw`` = camera-to-world of the colour
camera, quaternion scalar-last. Frames are the rgb entries associated with a groundtruth pose
by nearest timestamp (TUM ``associate.py``: greedy on the smallest difference, strictly below
``association_max_diff`` seconds, default 0.02 as TUM's tools; evo uses 0.01). Depth is
associated to each frame the same way; a frame with no depth within the limit gets
``valid`` all False. Depth PNG: uint16, metres = value / 5000, 0 = invalid.
Intrinsics default by sequence name: freiburg1 517.3 516.5 318.6 255.3, freiburg2 520.9 521.0
325.1 249.7, freiburg3 535.4 539.2 320.1 247.6 (fr1/fr2 images are distorted; not undistorted
here); Bonn 542.822841 542.576870 315.593520 237.756098. Override with ``intrinsics=(fx, fy,
cx, cy)``. *Unverified on real files:* Bonn's groundtruth frame (its README describes a fixed
marker-to-camera offset that is not applied here; alignment-based metrics are unaffected).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from vfm3d.data._parse import (
    PathLike,
    data_lines,
    parse_float,
    read_png_uint16,
    read_text,
)
from vfm3d.data.base import DatasetReader, FrameRecord, SequenceRecord
from vfm3d.data.cameras import homogeneous, intrinsics_matrix, quaternion_xyzw_to_matrix
from vfm3d.data.errors import DatasetFormatError
from vfm3d.data.protocols import select_indices

TUM_INTRINSICS: dict[str, tuple[float, float, float, float]] = {
    "freiburg1": (517.3, 516.5, 318.6, 255.3),
    "freiburg2": (520.9, 521.0, 325.1, 249.7),
    "freiburg3": (535.4, 539.2, 320.1, 247.6),
}
BONN_INTRINSICS = (542.822841, 542.576870, 315.593520, 237.756098)
DEFAULT_MAX_DIFF = 0.02


def parse_file_list(text: str, path: PathLike) -> list[tuple[float, str]]:
    """``rgb.txt`` / ``depth.txt`` -> ``[(timestamp, relative filename)]`` in file order."""
    out: list[tuple[float, str]] = []
    for number, tokens in data_lines(text):
        if len(tokens) != 2:
            raise DatasetFormatError(
                f"{path}:{number}: expected 'timestamp filename', got {len(tokens)} fields"
            )
        out.append((parse_float(tokens[0], path, number), tokens[1]))
    return out


def parse_trajectory(text: str, path: PathLike) -> list[tuple[float, np.ndarray]]:
    """``groundtruth.txt`` -> ``[(timestamp, cam_to_world [4, 4] float64)]``.

    Each line: ``timestamp tx ty tz qx qy qz qw`` (quaternion XYZW, normalised here).
    """
    out: list[tuple[float, np.ndarray]] = []
    for number, tokens in data_lines(text):
        if len(tokens) != 8:
            raise DatasetFormatError(
                f"{path}:{number}: expected 8 numbers 'timestamp tx ty tz qx qy qz qw', "
                f"got {len(tokens)}"
            )
        values = [parse_float(t, path, number) for t in tokens]
        try:
            rotation = quaternion_xyzw_to_matrix(np.asarray(values[4:8]))
        except ValueError as error:
            raise DatasetFormatError(f"{path}:{number}: {error}") from error
        out.append((values[0], homogeneous(rotation, np.asarray(values[1:4]))))
    return out


def associate(
    first: np.ndarray, second: np.ndarray, max_diff: float, offset: float = 0.0
) -> list[tuple[int, int]]:
    """Match timestamps as TUM's ``associate.py``: candidate pairs with
    ``|a - (b + offset)| < max_diff``, taken greedily from the smallest difference, each stamp
    used once. Returns ``(index into first, index into second)`` sorted by the first index."""
    a = np.asarray(first, dtype=np.float64)
    b = np.asarray(second, dtype=np.float64) + offset
    order = np.argsort(b, kind="stable")
    b_sorted = b[order]
    candidates: list[tuple[float, float, float, int, int]] = []
    for i, stamp in enumerate(a):
        lo = int(np.searchsorted(b_sorted, stamp - max_diff, side="left"))
        hi = int(np.searchsorted(b_sorted, stamp + max_diff, side="right"))
        for k in range(lo, hi):
            diff = abs(stamp - b_sorted[k])
            if diff < max_diff:
                candidates.append((diff, float(stamp), float(b_sorted[k]), i, int(order[k])))
    candidates.sort()
    used_a: set[int] = set()
    used_b: set[int] = set()
    matches: list[tuple[int, int]] = []
    for _, _, _, i, j in candidates:
        if i not in used_a and j not in used_b:
            used_a.add(i)
            used_b.add(j)
            matches.append((i, j))
    matches.sort()
    return matches


class TumReader(DatasetReader):
    """TUM RGB-D reader (see module docstring). Extra options: ``intrinsics``,
    ``association_max_diff`` (seconds), ``depth_scale`` (raw units per metre, 5000)."""

    kind = "tum"
    has_depth = True
    marker = "rgb.txt"
    fps = 30.0

    def __init__(
        self,
        root: PathLike,
        *,
        intrinsics: tuple[float, float, float, float] | None = None,
        association_max_diff: float | None = None,
        depth_scale: float = 5000.0,
        **options: Any,
    ) -> None:
        self.intrinsics = intrinsics
        self._max_diff_option = association_max_diff
        self.depth_scale = float(depth_scale)
        super().__init__(root, **options)
        protocol_diff = self.protocol.get("association_max_diff")
        self.max_diff = float(
            association_max_diff
            if association_max_diff is not None
            else protocol_diff
            if protocol_diff is not None
            else DEFAULT_MAX_DIFF
        )

    def _discover(self) -> list[str]:
        return self._discover_marked_folders()

    def default_intrinsics(self, clip_id: str) -> tuple[float, float, float, float]:
        """Published intrinsics for a sequence name (``freiburgN`` / ``fr N``)."""
        if self.intrinsics is not None:
            return tuple(float(v) for v in self.intrinsics)  # type: ignore[return-value]
        match = re.search(r"(?:freiburg|fr)([123])", clip_id)
        if match is None:
            raise DatasetFormatError(
                f"{self._folder(clip_id)}: cannot tell freiburg1/2/3 from the sequence name; "
                f"pass intrinsics=(fx, fy, cx, cy)"
            )
        return TUM_INTRINSICS[f"freiburg{match.group(1)}"]

    def _select(self, seq: SequenceRecord) -> list[int]:
        if self.protocol.get("index_space") == "rgb":  # already applied to the rgb list
            return list(range(len(seq.frames)))
        return super()._select(seq)

    def _sequence(self, clip_id: str) -> SequenceRecord:
        folder = self._folder(clip_id)
        k = intrinsics_matrix(*self.default_intrinsics(clip_id))
        rgb_path, depth_path, gt_path = (
            folder / "rgb.txt",
            folder / "depth.txt",
            folder / "groundtruth.txt",
        )
        rgb = parse_file_list(read_text(rgb_path, "rgb.txt"), rgb_path)
        rgb_positions = list(range(len(rgb)))
        rule = self.protocol.get("select")
        if rule is not None and self.protocol.get("index_space") == "rgb":
            rgb_positions = [p for p in select_indices(len(rgb), rule, self.seed) if p < len(rgb)]
        poses = parse_trajectory(read_text(gt_path, "groundtruth.txt"), gt_path)
        depth = (
            parse_file_list(read_text(depth_path, "depth.txt"), depth_path)
            if depth_path.is_file()
            else []
        )
        rgb_stamps = np.array([rgb[p][0] for p in rgb_positions])
        pose_match = associate(rgb_stamps, np.array([t for t, _ in poses]), self.max_diff)
        matched = [rgb_positions[i] for i, _ in pose_match]
        depth_of: dict[int, int] = {}
        if depth:
            stamps = np.array([rgb[p][0] for p in matched])
            for i, j in associate(stamps, np.array([t for t, _ in depth]), self.max_diff):
                depth_of[matched[i]] = j
        frames = []
        for (_, pose_index), position in zip(pose_match, matched):
            stamp, name = rgb[position]
            extra: dict[str, Any] = {"timestamp": stamp}
            depth_file = None
            if position in depth_of:
                depth_file = folder / depth[depth_of[position]][1]
            frames.append(
                FrameRecord(
                    image=folder / name,
                    intrinsics=k,
                    cam_to_world=poses[pose_index][1],
                    depth=depth_file,
                    index=position,
                    extra=extra,
                )
            )
        return SequenceRecord(
            id=clip_id,
            frames=frames,
            has_depth=bool(depth),
            meta={"sequence": clip_id, "fps": self.fps, "association_max_diff": self.max_diff},
        )

    def _read_depth(
        self, seq: SequenceRecord, frame: FrameRecord, hw: tuple[int, int]
    ) -> tuple[np.ndarray, np.ndarray]:
        if frame.depth is None:
            return np.zeros(hw, np.float32), np.zeros(hw, bool)
        raw = read_png_uint16(frame.depth)
        if raw.shape != hw:
            raise DatasetFormatError(
                f"{frame.depth}: depth size {raw.shape} differs from the colour image {hw}"
            )
        return (raw.astype(np.float64) / self.depth_scale).astype(np.float32), raw > 0


class BonnReader(TumReader):
    """Bonn RGB-D Dynamic: TUM layout, fixed intrinsics, folders ``rgbd_bonn_<name>``."""

    kind = "bonn"

    def default_intrinsics(self, clip_id: str) -> tuple[float, float, float, float]:
        if self.intrinsics is not None:
            return tuple(float(v) for v in self.intrinsics)  # type: ignore[return-value]
        return BONN_INTRINSICS
