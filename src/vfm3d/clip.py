"""The `Clip` record, its validation, and its public on-disk format.

A clip is T frames of one video with its cameras and (optionally) exact depth.

Fields (numpy arrays; conventions of DESIGN.md):
- ``frames``       uint8   ``[T, H, W, 3]`` RGB.
- ``intrinsics``   float32 ``[T, 3, 3]`` pinhole K in pixels, OpenCV, pixel centres at integers.
- ``cam_to_world`` float64 ``[T, 4, 4]`` maps OpenCV camera coordinates (x right, y down,
  z forward) to world coordinates.
- ``depth``        float32 ``[T, H, W]`` z-depth along the optical axis (optional).
- ``valid``        bool    ``[T, H, W]`` where ``depth`` is meaningful (present iff ``depth`` is).
- ``dynamic``      bool    ``[T, H, W]`` pixels on moving objects (optional).
- ``meta``         JSON-serialisable dict: ``id``, ``source``, ``fps``, ``frame_indices``, and
  scene facts (e.g. ``objects`` with class, box centre, size, yaw, colour).

Clips read from a user's video or image folder carry no ground truth: ``depth`` is absent, and
``intrinsics`` / ``cam_to_world`` are placeholders (a documented guess of K, identity poses)
flagged by ``meta["intrinsics_known"] = False`` / ``meta["poses_known"] = False``. Check
`Clip.intrinsics_known` / `Clip.poses_known` before scoring against them (absent keys mean
known, so every dataset clip is unaffected).

On disk: ``<id>.safetensors`` holding the arrays under those names, ``meta`` as JSON in the
safetensors metadata under key ``"meta"``. A dataset folder holds ``index.json``:
``{"clips": [{"id": ..., "path": ...}, ...]}`` with paths relative to the folder.
Both are readable with ``safetensors.numpy`` and ``json`` alone.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vfm3d.utils.atomic import atomic_path, atomic_write_json

INDEX_NAME = "index.json"
_ARRAY_FIELDS = ("frames", "depth", "valid", "intrinsics", "cam_to_world", "dynamic")
_ROTATION_TOL = 1e-4


class ClipValidationError(ValueError):
    """A clip does not satisfy the documented format; the message names the field."""


@dataclass
class Clip:
    """One video clip with cameras and optional depth. See the module docstring for fields."""

    frames: np.ndarray
    intrinsics: np.ndarray
    cam_to_world: np.ndarray
    depth: np.ndarray | None = None
    valid: np.ndarray | None = None
    dynamic: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ properties
    @property
    def id(self) -> str:
        """The clip id (``meta["id"]``)."""
        return str(self.meta.get("id", ""))

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def height(self) -> int:
        return int(self.frames.shape[1])

    @property
    def width(self) -> int:
        return int(self.frames.shape[2])

    @property
    def has_depth(self) -> bool:
        return self.depth is not None

    @property
    def intrinsics_known(self) -> bool:
        """False when ``intrinsics`` is a placeholder guess (a video without calibration)."""
        return bool(self.meta.get("intrinsics_known", True))

    @property
    def poses_known(self) -> bool:
        """False when ``cam_to_world`` is a placeholder (identity poses of a user's video)."""
        return bool(self.meta.get("poses_known", True))

    @property
    def has_ground_truth(self) -> bool:
        """Depth and true cameras present: the clip can be scored, not only predicted on."""
        return self.has_depth and self.poses_known and self.intrinsics_known

    def world_to_cam(self) -> np.ndarray:
        """``[T, 4, 4]`` float64 inverse of ``cam_to_world`` (rigid inverse)."""
        rot = self.cam_to_world[:, :3, :3]
        trans = self.cam_to_world[:, :3, 3]
        out = np.zeros_like(self.cam_to_world)
        out[:, :3, :3] = np.swapaxes(rot, 1, 2)
        out[:, :3, 3] = -np.einsum("tji,tj->ti", rot, trans)
        out[:, 3, 3] = 1.0
        return out

    def subset(self, indices: Sequence[int]) -> Clip:
        """A new clip with the frames ``indices`` (in that order); the per-frame meta lists
        ``frame_indices`` and ``timestamps`` follow."""
        idx = np.asarray(list(indices), dtype=np.int64)
        if idx.size == 0:
            raise ClipValidationError("subset: indices must not be empty")
        if idx.min() < 0 or idx.max() >= self.num_frames:
            raise ClipValidationError(
                f"subset: indices must lie in [0, {self.num_frames - 1}], got {idx.tolist()}"
            )
        meta = dict(self.meta)
        source_idx = meta.get("frame_indices")
        if isinstance(source_idx, list) and len(source_idx) == self.num_frames:
            meta["frame_indices"] = [source_idx[i] for i in idx.tolist()]
        else:
            meta["frame_indices"] = idx.tolist()
        stamps = meta.get("timestamps")
        if isinstance(stamps, list) and len(stamps) == self.num_frames:
            meta["timestamps"] = [stamps[i] for i in idx.tolist()]

        def pick(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[idx]

        return Clip(
            frames=self.frames[idx],
            intrinsics=self.intrinsics[idx],
            cam_to_world=self.cam_to_world[idx],
            depth=pick(self.depth),
            valid=pick(self.valid),
            dynamic=pick(self.dynamic),
            meta=meta,
        )

    # ------------------------------------------------------------------ validation
    def validate(self) -> Clip:
        """Check dtypes, shapes, finiteness and camera sanity; raise `ClipValidationError`.

        Returns ``self`` so that ``Clip(...).validate()`` can be chained.
        """
        _check_array("frames", self.frames, np.uint8, 4)
        if self.frames.shape[-1] != 3:
            raise ClipValidationError(
                f"frames: last axis must be 3 (RGB), got shape {self.frames.shape}"
            )
        t, h, w = self.frames.shape[:3]
        if t < 1:
            raise ClipValidationError("frames: a clip needs at least one frame (T >= 1)")
        _check_array("intrinsics", self.intrinsics, np.float32, 3, (t, 3, 3))
        _check_array("cam_to_world", self.cam_to_world, np.float64, 3, (t, 4, 4))
        for name in ("depth", "valid", "dynamic"):
            arr = getattr(self, name)
            if arr is None:
                continue
            dtype = np.float32 if name == "depth" else np.bool_
            _check_array(name, arr, dtype, 3, (t, h, w))
        if (self.depth is None) != (self.valid is None):
            raise ClipValidationError("valid: must be present exactly when depth is present")
        if not np.all(np.isfinite(self.intrinsics)):
            raise ClipValidationError("intrinsics: contains NaN or Inf")
        if not np.all(np.isfinite(self.cam_to_world)):
            raise ClipValidationError("cam_to_world: contains NaN or Inf")
        fx, fy = self.intrinsics[:, 0, 0], self.intrinsics[:, 1, 1]
        if np.any(fx <= 0) or np.any(fy <= 0):
            raise ClipValidationError("intrinsics: focal lengths fx, fy must be positive")
        bottom = self.intrinsics[:, 2, :]
        if not np.allclose(bottom, np.array([0.0, 0.0, 1.0], dtype=np.float32), atol=1e-6):
            raise ClipValidationError("intrinsics: last row must be [0, 0, 1]")
        last_row = self.cam_to_world[:, 3, :]
        if not np.allclose(last_row, np.array([0.0, 0.0, 0.0, 1.0]), atol=1e-9):
            raise ClipValidationError("cam_to_world: last row must be [0, 0, 0, 1]")
        rot = self.cam_to_world[:, :3, :3]
        gram = np.einsum("tji,tjk->tik", rot, rot)
        if not np.allclose(gram, np.eye(3)[None], atol=_ROTATION_TOL):
            raise ClipValidationError("cam_to_world: rotation part is not orthonormal")
        if np.any(np.linalg.det(rot) <= 0):
            raise ClipValidationError("cam_to_world: rotation part must have determinant +1")
        if self.depth is not None and self.valid is not None:
            d = self.depth[self.valid]
            if not np.all(np.isfinite(d)) or np.any(d <= 0):
                raise ClipValidationError("depth: valid pixels must have finite, positive depth")
        if not isinstance(self.meta, dict):
            raise ClipValidationError("meta: must be a dict")
        try:
            json.dumps(self.meta)
        except (TypeError, ValueError) as error:
            raise ClipValidationError(f"meta: not JSON-serialisable ({error})") from error
        return self

    # ------------------------------------------------------------------ disk format
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Validate, then write ``path`` (a ``.safetensors`` file) atomically."""
        from safetensors.numpy import save_file

        self.validate()
        tensors = {
            name: np.ascontiguousarray(getattr(self, name))
            for name in _ARRAY_FIELDS
            if getattr(self, name) is not None
        }
        target = Path(path)
        with atomic_path(target) as tmp:
            save_file(tensors, str(tmp), metadata={"meta": json.dumps(self.meta)})
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str], validate: bool = True) -> Clip:
        """Read a clip written by `save` (or by any tool following the format)."""
        from safetensors import safe_open

        source = Path(path)
        if not source.is_file():
            raise FileNotFoundError(f"clip file not found: {source}")
        try:
            with safe_open(str(source), framework="numpy") as handle:
                metadata = handle.metadata() or {}
                arrays = {key: handle.get_tensor(key) for key in handle.keys()}
        except Exception as error:  # safetensors raises its own error types
            raise ClipValidationError(
                f"{source}: not a readable safetensors clip ({error})"
            ) from error
        unknown = set(arrays) - set(_ARRAY_FIELDS)
        if unknown:
            raise ClipValidationError(f"{source}: unknown tensors {sorted(unknown)}")
        for required in ("frames", "intrinsics", "cam_to_world"):
            if required not in arrays:
                raise ClipValidationError(f"{source}: missing tensor {required!r}")
        try:
            meta = json.loads(metadata.get("meta", "{}"))
        except json.JSONDecodeError as error:
            raise ClipValidationError(f"{source}: metadata 'meta' is not JSON ({error})") from error
        clip = cls(meta=meta, **arrays)
        if validate:
            try:
                clip.validate()
            except ClipValidationError as error:
                raise ClipValidationError(f"{source}: {error}") from error
        return clip


def _check_array(
    name: str,
    arr: Any,
    dtype: type,
    ndim: int,
    shape: tuple[int, ...] | None = None,
) -> None:
    if not isinstance(arr, np.ndarray):
        raise ClipValidationError(f"{name}: must be a numpy array, got {type(arr).__name__}")
    if arr.dtype != np.dtype(dtype):
        raise ClipValidationError(f"{name}: dtype must be {np.dtype(dtype)}, got {arr.dtype}")
    if arr.ndim != ndim:
        raise ClipValidationError(f"{name}: must have {ndim} dimensions, got shape {arr.shape}")
    if shape is not None and tuple(arr.shape) != shape:
        raise ClipValidationError(
            f"{name}: shape must be {shape} (T, H, W from frames), got {tuple(arr.shape)}"
        )


# ---------------------------------------------------------------------- dataset folders
class ClipFolder:
    """A dataset folder: ``index.json`` plus one safetensors file per clip. Lazy: clips load on access."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)
        index_path = self.root / INDEX_NAME
        if not index_path.is_file():
            raise FileNotFoundError(f"not a clip folder (no {INDEX_NAME}): {self.root}")
        try:
            index = json.loads(index_path.read_text())
            entries = index["clips"]
            self._entries: list[dict[str, str]] = [
                {"id": str(e["id"]), "path": str(e["path"])} for e in entries
            ]
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise ClipValidationError(f"{index_path}: malformed index ({error})") from error
        self._by_id = {e["id"]: e for e in self._entries}
        if len(self._by_id) != len(self._entries):
            raise ClipValidationError(f"{index_path}: duplicate clip ids")
        self.info: dict[str, Any] = {k: v for k, v in index.items() if k != "clips"}

    @property
    def ids(self) -> list[str]:
        return [e["id"] for e in self._entries]

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, clip_id: object) -> bool:
        return clip_id in self._by_id

    def path_of(self, clip_id: str) -> Path:
        if clip_id not in self._by_id:
            raise KeyError(f"clip id {clip_id!r} not in {self.root}")
        return self.root / self._by_id[clip_id]["path"]

    def load(self, clip_id: str) -> Clip:
        return Clip.load(self.path_of(clip_id))

    def __getitem__(self, i: int) -> Clip:
        return self.load(self._entries[i]["id"])

    def __iter__(self) -> Iterator[Clip]:
        for entry in self._entries:
            yield self.load(entry["id"])


class ClipFolderWriter:
    """Write clips into a dataset folder; ``index.json`` is rewritten atomically after each clip.

    A crash leaves a consistent folder holding every clip written so far.
    """

    def __init__(self, root: str | os.PathLike[str], info: dict[str, Any] | None = None):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.info = dict(info or {})
        self._entries: list[dict[str, str]] = []
        if (self.root / INDEX_NAME).is_file():
            existing = ClipFolder(self.root)
            self._entries = [{"id": i, "path": existing._by_id[i]["path"]} for i in existing.ids]
            self.info = {**existing.info, **self.info}

    @property
    def ids(self) -> list[str]:
        return [e["id"] for e in self._entries]

    def add(self, clip: Clip) -> Path:
        clip_id = clip.id
        if not clip_id:
            raise ClipValidationError("meta: a clip written to a folder needs meta['id']")
        if any(c in clip_id for c in "/\\") or clip_id.startswith("."):
            raise ClipValidationError(f"meta: id {clip_id!r} is not a valid file name")
        rel = f"{clip_id}.safetensors"
        path = clip.save(self.root / rel)
        self._entries = [e for e in self._entries if e["id"] != clip_id]
        self._entries.append({"id": clip_id, "path": rel})
        self._write_index()
        return path

    def _write_index(self) -> None:
        atomic_write_json(self.root / INDEX_NAME, {**self.info, "clips": self._entries})


def write_clip_folder(
    root: str | os.PathLike[str], clips: Iterable[Clip], info: dict[str, Any] | None = None
) -> ClipFolder:
    """Write all ``clips`` into ``root`` and return the folder reader."""
    writer = ClipFolderWriter(root, info=info)
    for clip in clips:
        writer.add(clip)
    return ClipFolder(root)
