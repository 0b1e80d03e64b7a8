"""MPI-Sintel (complete, training split): ``.cam`` and ``.dpt`` binaries.

Layout::

    ROOT/training/{final,clean}/<seq>/frame_0001.png
    ROOT/training/depth/<seq>/frame_0001.dpt
    ROOT/training/camdata_left/<seq>/frame_0001.cam

(``ROOT`` may also be the ``training`` folder itself.) Both binaries are little-endian and start
with the float32 tag 202021.25. ``.dpt``: int32 width, int32 height, then width*height float32
z-depth, row-major. Optional ``training/dynamic_label_perfect/<seq>/frame_0001.png`` (the
moving-object masks MonST3R derives) fill ``clip.dynamic`` (pixel > 0). ``.cam``: 9 float64 (K, row-major) then 12 float64 (3x4 world_to_cam, so a
pixel is ``K @ [R|t] @ X``; OpenCV axes). Reference: the Sintel SDK ``sintel_io.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from vfm3d.data._parse import PathLike, check_rotation, read_bytes
from vfm3d.data.base import DatasetReader, FrameRecord, SequenceRecord
from vfm3d.data.cameras import check_intrinsics, rigid_inverse
from vfm3d.data.errors import DatasetFormatError

TAG_FLOAT = 202021.25
_CAM_BYTES = 4 + 9 * 8 + 12 * 8
_MAX_SIDE = 1 << 16


def _check_tag(data: bytes, path: PathLike) -> None:
    if len(data) < 4:
        raise DatasetFormatError(f"{path}: truncated file ({len(data)} bytes, no tag)")
    tag = float(np.frombuffer(data[:4], dtype="<f4")[0])
    if tag != TAG_FLOAT:
        raise DatasetFormatError(
            f"{path}: wrong tag {tag!r} (expected {TAG_FLOAT}); not a Sintel file"
        )


def parse_dpt(data: bytes, path: PathLike) -> np.ndarray:
    """``.dpt`` bytes -> ``[H, W]`` float32 depth."""
    _check_tag(data, path)
    if len(data) < 12:
        raise DatasetFormatError(f"{path}: truncated header ({len(data)} bytes, need 12)")
    width, height = (int(v) for v in np.frombuffer(data[4:12], dtype="<i4"))
    if not (0 < width < _MAX_SIDE and 0 < height < _MAX_SIDE):
        raise DatasetFormatError(f"{path}: implausible size width={width} height={height}")
    expected = 12 + 4 * width * height
    if len(data) != expected:
        raise DatasetFormatError(
            f"{path}: {'truncated' if len(data) < expected else 'trailing bytes'}: "
            f"{len(data)} bytes, expected {expected} for {width}x{height}"
        )
    return np.frombuffer(data[12:], dtype="<f4").reshape(height, width).astype(np.float32)


def parse_cam(data: bytes, path: PathLike) -> tuple[np.ndarray, np.ndarray]:
    """``.cam`` bytes -> ``(K [3, 3], world_to_cam [4, 4])`` float64."""
    _check_tag(data, path)
    if len(data) != _CAM_BYTES:
        raise DatasetFormatError(
            f"{path}: {'truncated' if len(data) < _CAM_BYTES else 'trailing bytes'}: "
            f"{len(data)} bytes, expected {_CAM_BYTES}"
        )
    values = np.frombuffer(data[4:], dtype="<f8").astype(np.float64)
    k = values[:9].reshape(3, 3)
    world_to_cam = np.eye(4)
    world_to_cam[:3, :] = values[9:].reshape(3, 4)
    if not np.all(np.isfinite(values)):
        raise DatasetFormatError(f"{path}: non-finite camera values")
    check_intrinsics(k, str(path))
    if not np.allclose(k[2], [0.0, 0.0, 1.0]):
        raise DatasetFormatError(f"{path}: intrinsics last row must be [0, 0, 1]")
    check_rotation(world_to_cam[:3, :3], path)
    return k, world_to_cam


class SintelReader(DatasetReader):
    """Sintel reader. Extra option ``pass_name``: ``"final"`` (default) or ``"clean"``."""

    kind = "sintel"
    has_depth = True
    fps = 24.0

    def __init__(self, root: PathLike, *, pass_name: str | None = None, **options: Any) -> None:
        self._pass_option = pass_name
        base = Path(root)
        self.training = base / "training" if (base / "training").is_dir() else base
        super().__init__(root, **options)

    @property
    def pass_name(self) -> str:
        name = self._pass_option or self.protocol.get("pass_name") or "final"
        if name not in ("final", "clean"):
            raise ValueError(f"pass_name must be 'final' or 'clean', got {name!r}")
        return name

    def _discover(self) -> list[str]:
        images = self.training / self.pass_name
        if not images.is_dir():
            raise DatasetFormatError(
                f"{images}: missing Sintel image folder (training/{self.pass_name})"
            )
        return sorted(p.name for p in images.iterdir() if p.is_dir())

    def _sequence(self, clip_id: str) -> SequenceRecord:
        images = sorted((self.training / self.pass_name / clip_id).glob("frame_*.png"))
        has_depth = (self.training / "depth" / clip_id).is_dir()
        dynamic_dir = self.training / "dynamic_label_perfect" / clip_id
        frames = []
        for position, image in enumerate(images):
            cam_path = self.training / "camdata_left" / clip_id / f"{image.stem}.cam"
            k, world_to_cam = parse_cam(read_bytes(cam_path, "camera file"), cam_path)
            depth = self.training / "depth" / clip_id / f"{image.stem}.dpt"
            frames.append(
                FrameRecord(
                    image=image,
                    intrinsics=k,
                    cam_to_world=rigid_inverse(world_to_cam),
                    depth=depth if has_depth else None,
                    index=position,
                    extra={"dynamic": dynamic_dir / image.name} if dynamic_dir.is_dir() else {},
                )
            )
        return SequenceRecord(
            id=clip_id,
            frames=frames,
            has_depth=has_depth,
            meta={"sequence": clip_id, "pass": self.pass_name, "fps": self.fps},
        )

    def _read_depth(
        self, seq: SequenceRecord, frame: FrameRecord, hw: tuple[int, int]
    ) -> tuple[np.ndarray, np.ndarray]:
        assert frame.depth is not None
        depth = parse_dpt(read_bytes(frame.depth, "depth file"), frame.depth)
        if depth.shape != hw:
            raise DatasetFormatError(
                f"{frame.depth}: depth size {depth.shape} differs from the image {hw}"
            )
        valid = np.isfinite(depth) & (depth > 0)
        return np.where(valid, depth, 0.0).astype(np.float32), valid
