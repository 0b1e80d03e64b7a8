"""RealEstate10K: one camera text file per clip, frames extracted by the user.

Layout::

    ROOT/<split>/<clip>.txt      (or ROOT/<clip>.txt; as published: train/ and test/)
    FRAMES/<clip>/<timestamp>.png|jpg     (FRAMES defaults to ROOT/frames)

Camera file: line 1 is the video URL; every further line is
``timestamp_us fx fy cx cy k1 k2 r11 r12 r13 t1 r21 r22 r23 t2 r31 r32 r33 t3`` where fx, cx are
normalised by the image width, fy, cy by the height (``k1 k2`` are zeros), and the 12 numbers
are the row-major 3x4 **world_to_cam** (OpenCV axes). Poses come from SLAM + bundle adjustment
(scale-free). Frames are matched to lines by the timestamp in the file name; when the names
are not timestamps, the sorted files are matched in order (their count must equal the lines).
Camera only: clips have ``depth=None``. Reference: Fast3R / pixelSplat RE10K loaders.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from vfm3d.data._parse import PathLike, check_rotation, data_lines, parse_float, read_text
from vfm3d.data.base import DatasetReader, FrameRecord, SequenceRecord
from vfm3d.data.cameras import intrinsics_matrix, rigid_inverse
from vfm3d.data.errors import DatasetFormatError

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def parse_camera_file(
    text: str, path: PathLike
) -> tuple[str, list[tuple[int, np.ndarray, np.ndarray]]]:
    """-> ``(url, [(timestamp_us, K_normalised [3, 3], world_to_cam [4, 4])])``."""
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise DatasetFormatError(f"{path}:1: expected the video URL on the first line")
    url = lines[0].strip()
    rows: list[tuple[int, np.ndarray, np.ndarray]] = []
    for number, tokens in data_lines("\n".join(["#", *lines[1:]])):
        if len(tokens) != 19:
            raise DatasetFormatError(
                f"{path}:{number}: expected 19 fields (timestamp, fx fy cx cy, k1 k2, 3x4 "
                f"world_to_cam), got {len(tokens)}"
            )
        try:
            stamp = int(tokens[0])
        except ValueError as error:
            raise DatasetFormatError(
                f"{path}:{number}: timestamp must be an integer (microseconds), got {tokens[0]!r}"
            ) from error
        values = [parse_float(t, path, number) for t in tokens[1:]]
        fx, fy, cx, cy = values[:4]
        if fx <= 0 or fy <= 0:
            raise DatasetFormatError(f"{path}:{number}: focal lengths must be positive")
        world_to_cam = np.eye(4)
        world_to_cam[:3, :] = np.asarray(values[6:], dtype=np.float64).reshape(3, 4)
        check_rotation(world_to_cam[:3, :3], path, number)
        rows.append((stamp, intrinsics_matrix(fx, fy, cx, cy), world_to_cam))
    if not rows:
        raise DatasetFormatError(f"{path}: no camera lines after the URL")
    return url, rows


class RealEstate10KReader(DatasetReader):
    """RealEstate10K reader. Extra option ``frames_root`` (default ``ROOT/frames``)."""

    kind = "re10k"
    has_depth = False

    def __init__(self, root: PathLike, *, frames_root: PathLike | None = None, **options: Any):
        self.frames_root = Path(frames_root) if frames_root else Path(root) / "frames"
        self._files: dict[str, Path] = {}
        super().__init__(root, **options)

    def _discover(self) -> list[str]:
        for path in sorted(self.root.rglob("*.txt")):
            if self.frames_root in path.parents:
                continue
            if path.stem in self._files:
                raise DatasetFormatError(
                    f"{path}: clip id {path.stem!r} appears twice under {self.root}"
                )
            self._files[path.stem] = path
        if not self._files:
            raise DatasetFormatError(f"{self.root}: no camera .txt files found")
        return sorted(self._files)

    def _sequence(self, clip_id: str) -> SequenceRecord:
        cam_path = self._files[clip_id]
        url, rows = parse_camera_file(read_text(cam_path, "camera file"), cam_path)
        folder = self.frames_root / clip_id
        if not folder.is_dir():
            raise DatasetFormatError(f"{folder}: missing frames folder for clip {clip_id!r}")
        images = sorted(p for p in folder.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
        by_stamp = {int(p.stem): p for p in images if p.stem.isdigit()}
        if all(stamp in by_stamp for stamp, _, _ in rows):
            paths = [by_stamp[stamp] for stamp, _, _ in rows]
        elif len(images) == len(rows):
            paths = images
        else:
            raise DatasetFormatError(
                f"{folder}: cannot match {len(images)} images to the {len(rows)} lines of "
                f"{cam_path} (name frames <timestamp>.png or provide one image per line)"
            )
        frames = [
            FrameRecord(
                image=path,
                intrinsics=k,
                cam_to_world=rigid_inverse(world_to_cam),
                index=position,
                intrinsics_hw=(1.0, 1.0),
                extra={"timestamp": stamp * 1e-6},
            )
            for position, (path, (stamp, k, world_to_cam)) in enumerate(zip(paths, rows))
        ]
        return SequenceRecord(id=clip_id, frames=frames, has_depth=False, meta={"url": url})
