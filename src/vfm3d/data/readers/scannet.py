"""ScanNet v2 exported frames (the ``SensReader`` export layout).

Layout (one folder per scene, under ROOT or ROOT itself)::

    ROOT/scene0000_00/color/<i>.jpg            1296x968 colour
    ROOT/scene0000_00/depth/<i>.png            640x480 uint16 millimetres (0 = invalid)
    ROOT/scene0000_00/pose/<i>.txt             4x4 cam_to_world (some are -inf: skipped)
    ROOT/scene0000_00/intrinsic/intrinsic_depth.txt   4x4 (K in the top-left 3x3)

Depth and colour differ in resolution: vfm3d resizes the colour image to the depth size
(bicubic) and uses the **depth** intrinsics for the clip, so frames, depth and K agree pixel
for pixel. ``meta["color_intrinsics"]`` keeps ``intrinsic_color.txt`` (if present) for
reference. Frames with a non-finite pose are dropped after frame selection and listed in
``meta["skipped_frames"]``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vfm3d.clip import Clip
from vfm3d.data._parse import (
    PathLike,
    check_rotation,
    image_size,
    parse_matrix_text,
    read_png_uint16,
    read_rgb,
    read_text,
)
from vfm3d.data.base import DatasetReader, FrameRecord, SequenceRecord
from vfm3d.data.cameras import check_intrinsics
from vfm3d.data.errors import DatasetFormatError
from vfm3d.data.transforms import resize


def parse_pose(text: str, path: PathLike) -> np.ndarray | None:
    """``pose/<i>.txt`` -> ``[4, 4]`` cam_to_world, or ``None`` for an invalid (-inf) pose."""
    matrix = parse_matrix_text(text, path, (4, 4), finite=False)
    if np.any(np.isnan(matrix)):
        raise DatasetFormatError(f"{path}: NaN in pose")
    if not np.all(np.isfinite(matrix)):
        return None
    if not np.allclose(matrix[3], [0.0, 0.0, 0.0, 1.0], atol=1e-6):
        raise DatasetFormatError(f"{path}: last row of the pose must be [0, 0, 0, 1]")
    check_rotation(matrix[:3, :3], path)
    return matrix


class ScanNetReader(DatasetReader):
    """ScanNet reader (see module docstring). Extra option ``depth_scale`` (1000 per metre)."""

    kind = "scannet"
    has_depth = True
    marker = "color"
    fps = 30.0

    def __init__(self, root: PathLike, *, depth_scale: float = 1000.0, **options: Any) -> None:
        self.depth_scale = float(depth_scale)
        super().__init__(root, **options)

    def _discover(self) -> list[str]:
        return self._discover_marked_folders()

    def _sequence(self, clip_id: str) -> SequenceRecord:
        folder = self._folder(clip_id)
        k_path = folder / "intrinsic" / "intrinsic_depth.txt"
        k = parse_matrix_text(read_text(k_path, "depth intrinsics"), k_path, (4, 4))[:3, :3]
        check_intrinsics(k, str(k_path))
        meta: dict[str, Any] = {"sequence": clip_id, "fps": self.fps}
        color_k_path = folder / "intrinsic" / "intrinsic_color.txt"
        if color_k_path.is_file():
            color_k = parse_matrix_text(read_text(color_k_path), color_k_path, (4, 4))[:3, :3]
            meta["color_intrinsics"] = color_k.tolist()
        stems = []
        for p in (folder / "color").iterdir():
            if p.suffix.lower() in (".jpg", ".jpeg", ".png") and p.stem.isdigit():
                stems.append((int(p.stem), p))
        stems.sort()
        frames = []
        for number, image in stems:
            pose_path = folder / "pose" / f"{number}.txt"
            cam_to_world = parse_pose(read_text(pose_path, "pose file"), pose_path)
            depth = folder / "depth" / f"{number}.png"
            if not depth.is_file():
                raise DatasetFormatError(f"{depth}: missing depth file")
            frames.append(
                FrameRecord(
                    image=image,
                    intrinsics=k,
                    cam_to_world=np.eye(4) if cam_to_world is None else cam_to_world,
                    depth=depth,
                    index=number,
                    extra={"bad_pose": cam_to_world is None},
                )
            )
        return SequenceRecord(id=clip_id, frames=frames, has_depth=True, meta=meta)

    def _select(self, seq: SequenceRecord) -> list[int]:
        return [i for i in super()._select(seq) if not seq.frames[i].extra["bad_pose"]]

    def _postprocess(self, clip: Clip, seq: SequenceRecord) -> Clip:
        chosen = set(clip.meta["frame_indices"])
        rule_positions = DatasetReader._select(self, seq)
        skipped = [
            seq.frames[i].index
            for i in rule_positions
            if seq.frames[i].extra["bad_pose"] and seq.frames[i].index not in chosen
        ]
        clip.meta["skipped_frames"] = skipped
        return clip

    def _clip_hw(self, frame: FrameRecord) -> tuple[int, int]:
        assert frame.depth is not None
        return image_size(frame.depth)

    def _read_image(self, seq: SequenceRecord, frame: FrameRecord) -> np.ndarray:
        assert frame.depth is not None
        rgb = read_rgb(frame.image)
        depth_hw = image_size(frame.depth)
        if rgb.shape[:2] != depth_hw:
            rgb = resize(rgb.shape[:2], depth_hw).warp_image(rgb)
        return rgb

    def _read_depth(
        self, seq: SequenceRecord, frame: FrameRecord, hw: tuple[int, int]
    ) -> tuple[np.ndarray, np.ndarray]:
        assert frame.depth is not None
        raw = read_png_uint16(frame.depth)
        return (raw.astype(np.float64) / self.depth_scale).astype(np.float32), raw > 0
