"""DL3DV-10K scenes in nerfstudio ``transforms.json`` form.

Layout (scenes found up to three folders deep; the folder path joined by ``_`` is the id)::

    ROOT/<batch>/<hash>/transforms.json
    ROOT/<batch>/<hash>/images/frame_00001.png   (also images_2, images_4, images_8)

``transforms.json``: ``fl_x fl_y cx cy w h`` (+ ``k1 k2 p1 p2``, ``camera_model``) at the top
level or per frame, and ``frames[{file_path, transform_matrix}]`` with ``transform_matrix`` the
4x4 cam_to_world in OpenGL axes (x right, y up, z back). vfm3d negates the rotation's columns 1
and 2 (OpenCV axes) and scales the intrinsics from ``w x h`` to the size of the image actually
read (``image_folder="images_4"`` replaces the first component of every ``file_path``; left
unset, the published path is used when it exists, else the first of ``images_2``, ``images_4``,
``images_8`` that holds the first frame; the choice is in ``meta["image_folder"]``).
Distortion is not undone (recorded in ``meta["distortion"]``). Camera only: ``depth=None``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from vfm3d.data._parse import PathLike, check_rotation, read_json
from vfm3d.data.base import DatasetReader, FrameRecord, SequenceRecord
from vfm3d.data.cameras import intrinsics_matrix, opengl_to_opencv_cam_to_world
from vfm3d.data.errors import DatasetFormatError

_INTRINSIC_KEYS = ("fl_x", "fl_y", "cx", "cy", "w", "h")
_DISTORTION_KEYS = ("k1", "k2", "k3", "k4", "p1", "p2")
_FALLBACK_FOLDERS = ("images_2", "images_4", "images_8")


def _number(obj: dict[str, Any], key: str, where: str) -> float:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise DatasetFormatError(f"{where}: '{key}' must be a finite number, got {value!r}")
    return float(value)


def parse_transforms(
    obj: Any, path: PathLike
) -> list[tuple[str, np.ndarray, tuple[float, float], np.ndarray]]:
    """Parsed ``transforms.json`` -> ``[(file_path, K [3,3], (h, w) of K, cam_to_world OpenCV)]``."""
    if not isinstance(obj, dict) or not isinstance(obj.get("frames"), list):
        raise DatasetFormatError(f"{path}: expected an object with a 'frames' list")
    out = []
    for i, frame in enumerate(obj["frames"]):
        where = f"{path}: frames[{i}]"
        if not isinstance(frame, dict):
            raise DatasetFormatError(f"{where}: expected an object")
        file_path = frame.get("file_path")
        if not isinstance(file_path, str) or not file_path:
            raise DatasetFormatError(f"{where}: 'file_path' must be a non-empty string")
        source = {**obj, **frame}
        fx, fy, cx, cy, w, h = (_number(source, key, where) for key in _INTRINSIC_KEYS)
        if fx <= 0 or fy <= 0 or w <= 0 or h <= 0:
            raise DatasetFormatError(f"{where}: fl_x, fl_y, w, h must be positive")
        try:
            matrix = np.asarray(frame.get("transform_matrix"), dtype=np.float64)
        except (TypeError, ValueError) as error:
            raise DatasetFormatError(f"{where}: 'transform_matrix' is not numeric") from error
        if matrix.shape == (3, 4):
            matrix = np.vstack([matrix, [0.0, 0.0, 0.0, 1.0]])
        if matrix.shape != (4, 4):
            raise DatasetFormatError(f"{where}: 'transform_matrix' must be 4x4, got {matrix.shape}")
        if not np.all(np.isfinite(matrix)):
            raise DatasetFormatError(f"{where}: non-finite pose")
        check_rotation(matrix[:3, :3], where)
        k = intrinsics_matrix(fx, fy, cx, cy)
        out.append((file_path, k, (h, w), opengl_to_opencv_cam_to_world(matrix)))
    if not out:
        raise DatasetFormatError(f"{path}: 'frames' is empty")
    return out


class Dl3dvReader(DatasetReader):
    """DL3DV reader. Extra option ``image_folder`` (e.g. ``"images_4"``)."""

    kind = "dl3dv"
    has_depth = False

    def __init__(self, root: PathLike, *, image_folder: str | None = None, **options: Any):
        self.image_folder = image_folder
        self._scenes: dict[str, Path] = {}
        super().__init__(root, **options)

    def _discover(self) -> list[str]:
        if (self.root / "transforms.json").is_file():
            self._scenes[self.root.name] = self.root
        else:
            for pattern in ("*/transforms.json", "*/*/transforms.json", "*/*/*/transforms.json"):
                for path in sorted(self.root.glob(pattern)):
                    scene = path.parent
                    self._scenes["_".join(scene.relative_to(self.root).parts)] = scene
        if not self._scenes:
            raise DatasetFormatError(
                f"{self.root}: no transforms.json found (ROOT/**/transforms.json)"
            )
        return sorted(self._scenes)

    @staticmethod
    def _image_path(scene: Path, file_path: str, folder: str | None) -> Path:
        parts = Path(file_path).parts
        if folder and len(parts) > 1:
            parts = (folder, *parts[1:])
        return scene.joinpath(*parts)

    def _choose_folder(self, scene: Path, first_file: str) -> str | None:
        if self.image_folder or self._image_path(scene, first_file, None).is_file():
            return self.image_folder
        for folder in _FALLBACK_FOLDERS:
            if self._image_path(scene, first_file, folder).is_file():
                return folder
        return None  # the missing published path is then reported by name

    def _sequence(self, clip_id: str) -> SequenceRecord:
        scene = self._scenes[clip_id]
        path = scene / "transforms.json"
        obj = read_json(path, "transforms.json")
        parsed = sorted(parse_transforms(obj, path), key=lambda row: row[0])
        folder = self._choose_folder(scene, parsed[0][0])
        frames = [
            FrameRecord(
                image=self._image_path(scene, file_path, folder),
                intrinsics=k,
                cam_to_world=cam_to_world,
                index=position,
                intrinsics_hw=k_hw,
            )
            for position, (file_path, k, k_hw, cam_to_world) in enumerate(parsed)
        ]
        meta: dict[str, Any] = {"sequence": clip_id, "image_folder": folder}
        if isinstance(obj, dict):
            distortion = {
                k: obj[k] for k in _DISTORTION_KEYS if isinstance(obj.get(k), (int, float))
            }
            if distortion:
                meta["distortion"] = distortion
            if isinstance(obj.get("camera_model"), str):
                meta["camera_model"] = obj["camera_model"]
        return SequenceRecord(id=clip_id, frames=frames, has_depth=False, meta=meta)
