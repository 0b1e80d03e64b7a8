"""The lazy dataset reader: discover sequences cheaply, decode one clip's frames on `load`.

A reader subclass implements two things:

- ``_discover() -> list[str]``: the sequence ids (cheap: directory listings, annotations);
- ``sequence(id) -> SequenceRecord``: per-frame file paths, intrinsics and ``cam_to_world``
  (already converted to OpenCV, float64), without decoding any pixels;

and optionally ``_read_depth`` (depth + valid of one frame), ``_select`` (protocol frame
choice) and ``_postprocess`` (protocol crops). `DatasetReader.load` does the rest: frame
selection, decoding, size checks, intrinsics scaling to the actual image size, `Clip` validation.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from vfm3d.clip import Clip, ClipValidationError
from vfm3d.data._parse import image_size, read_mask, read_rgb
from vfm3d.data.cameras import check_intrinsics, scale_intrinsics
from vfm3d.data.errors import DatasetFormatError, SequenceRejected
from vfm3d.data.protocols import load_protocol, select_indices


@dataclass
class FrameRecord:
    """One frame on disk, cameras already in vfm3d convention.

    ``extra["dynamic"]`` (optional) is a mask image of pixels on moving objects (> 0).
    ``intrinsics`` ``[3, 3]`` float64 refers to an image of ``intrinsics_hw`` (H, W); when the
    decoded image has another size, K is scaled by the size ratio (``None``: K is exact for
    the image as stored). ``cam_to_world`` ``[4, 4]`` float64 (OpenCV camera -> world).
    """

    image: Path
    intrinsics: np.ndarray
    cam_to_world: np.ndarray
    depth: Path | None = None
    index: int = 0
    intrinsics_hw: tuple[float, float] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class SequenceRecord:
    """All frames of one sequence plus facts for ``meta`` (JSON-serialisable)."""

    id: str
    frames: list[FrameRecord]
    has_depth: bool
    meta: dict[str, Any] = field(default_factory=dict)


class DatasetReader:
    """Base of every reader: ``ids``, ``len``, iteration and ``load(id) -> Clip``, all lazy.

    Common options: ``protocol`` (``"monst3r"`` / ``"vidfm3d"``: frame rules and sequence lists
    from `vfm3d.data.protocols`), ``sequences`` (restrict to these ids), ``max_frames`` (keep
    the first N frames after the protocol rule), ``stride`` (take every N-th frame before
    ``max_frames``; only without a protocol), ``seed`` (random windows).
    """

    kind: ClassVar[str] = ""
    has_depth: ClassVar[bool] = False

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        protocol: str | None = None,
        sequences: list[str] | tuple[str, ...] | None = None,
        max_frames: int | None = None,
        stride: int = 1,
        seed: int = 0,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetFormatError(f"{self.root}: dataset root is not a directory")
        if max_frames is not None and max_frames < 1:
            raise ValueError(f"max_frames must be >= 1, got {max_frames}")
        if stride < 1:
            raise ValueError(f"stride must be >= 1, got {stride}")
        self.protocol_name = protocol
        self.protocol: dict[str, Any] = load_protocol(protocol, self.kind) if protocol else {}
        self.max_frames = max_frames
        self.stride = stride
        self.seed = seed
        self._cache: dict[str, SequenceRecord] = {}
        self.rejected: list[str] = []
        found = self._discover()
        self.missing_sequences: list[str] = []
        if sequences:
            found = self._filter(found, [str(s) for s in sequences], strict=True)
        elif self.protocol.get("sequences"):
            found = self._filter(found, [str(s) for s in self.protocol["sequences"]], strict=False)
        self._ids = found

    # -------------------------------------------------------------- to implement
    def _discover(self) -> list[str]:
        raise NotImplementedError

    def _sequence(self, clip_id: str) -> SequenceRecord:
        raise NotImplementedError

    def _read_depth(
        self, seq: SequenceRecord, frame: FrameRecord, hw: tuple[int, int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(depth float32 [H, W], valid bool [H, W])`` of one frame."""
        raise NotImplementedError

    def _read_image(self, seq: SequenceRecord, frame: FrameRecord) -> np.ndarray:
        """``[H, W, 3]`` uint8 RGB of one frame."""
        return read_rgb(frame.image)

    def _postprocess(self, clip: Clip, seq: SequenceRecord) -> Clip:
        return clip

    def _clip_hw(self, frame: FrameRecord) -> tuple[int, int]:
        """(H, W) of the clip this frame ends up in, from file headers only (for `describe`)."""
        return image_size(frame.image)

    def _filter(self, found: list[str], wanted: list[str], strict: bool) -> list[str]:
        """Keep ``found`` ids named in ``wanted`` (an id matches itself or ``*_<name>``).

        ``strict``: a wanted name that is absent raises; otherwise (protocol lists) absent
        names are recorded in ``self.missing_sequences``.
        """
        kept = [i for i in found if any(i == w or i.endswith(f"_{w}") for w in wanted)]
        missing = [w for w in wanted if not any(i == w or i.endswith(f"_{w}") for i in found)]
        self.missing_sequences = missing
        if missing and strict:
            raise DatasetFormatError(
                f"{self.root}: sequences not found: {missing} (found {len(found)} sequences)"
            )
        return kept

    # -------------------------------------------------------------- folder layouts
    #: for one-folder-per-sequence layouts: a file or folder that marks a sequence folder
    marker: ClassVar[str] = ""

    def _discover_marked_folders(self) -> list[str]:
        """ROOT itself when it holds `marker`, else every ROOT/<name>/ that holds it."""
        if (self.root / self.marker).exists():
            return [self.root.name]
        found = sorted(p.name for p in self.root.iterdir() if (p / self.marker).exists())
        if not found:
            raise DatasetFormatError(
                f"{self.root}: no sequence folder holding {self.marker} "
                f"(expected ROOT/<sequence>/{self.marker})"
            )
        return found

    def _folder(self, clip_id: str) -> Path:
        """The folder of one sequence in a marked-folder layout."""
        return self.root if (self.root / self.marker).exists() else self.root / clip_id

    # -------------------------------------------------------------- public API
    @property
    def ids(self) -> list[str]:
        """Sequence (clip) ids, sorted."""
        return list(self._ids)

    def __len__(self) -> int:
        return len(self._ids)

    def __iter__(self) -> Iterator[Clip]:
        """Yield the clips in ``ids`` order; sequences a protocol rejects (`SequenceRejected`)
        are skipped and their messages collected in ``self.rejected``."""
        self.rejected = []
        for clip_id in self._ids:
            try:
                clip = self.load(clip_id)
            except SequenceRejected as error:
                self.rejected.append(str(error))
                continue
            yield clip

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root={str(self.root)!r}, sequences={len(self)})"

    def sequence(self, clip_id: str) -> SequenceRecord:
        """The parsed (not decoded) record of one sequence; cached."""
        if clip_id not in self._ids:
            raise KeyError(f"no sequence {clip_id!r} in {self.root} ({self.kind})")
        if clip_id not in self._cache:
            seq = self._sequence(clip_id)
            if not seq.frames:
                raise DatasetFormatError(f"{self.root}: sequence {clip_id!r} has no usable frames")
            self._cache[clip_id] = seq
        return self._cache[clip_id]

    def selected(self, clip_id: str) -> list[int]:
        """Positions (into ``sequence(id).frames``) that `load` decodes."""
        seq = self.sequence(clip_id)
        positions = self._select(seq)
        if self.max_frames is not None:
            positions = positions[: self.max_frames]
        if not positions:
            raise DatasetFormatError(f"{self.root}: the frame rule selects no frame of {clip_id!r}")
        return positions

    def _select(self, seq: SequenceRecord) -> list[int]:
        rule = self.protocol.get("select")
        if rule is None:
            return list(range(0, len(seq.frames), self.stride))
        try:
            return select_indices(len(seq.frames), rule, seed=self.seed)
        except ValueError as error:
            raise DatasetFormatError(f"sequence {seq.id!r}: {error}") from error

    def load(self, clip_id: str) -> Clip:
        """Decode the selected frames of one sequence into a validated `Clip`."""
        seq = self.sequence(clip_id)
        picked = [seq.frames[i] for i in self.selected(clip_id)]
        frames, intrinsics, depths, valids, dynamics = [], [], [], [], []
        with_dynamic = all("dynamic" in f.extra for f in picked)
        size: tuple[int, int] | None = None
        for frame in picked:
            rgb = self._read_image(seq, frame)
            hw = (int(rgb.shape[0]), int(rgb.shape[1]))
            if size is None:
                size = hw
            elif hw != size:
                raise DatasetFormatError(
                    f"{frame.image}: image size {hw} differs from the sequence's first frame {size}"
                )
            k = frame.intrinsics
            if frame.intrinsics_hw is not None:
                ref_h, ref_w = frame.intrinsics_hw
                k = scale_intrinsics(k, hw[1] / ref_w, hw[0] / ref_h)
            check_intrinsics(k, str(frame.image))
            frames.append(rgb)
            intrinsics.append(k)
            if seq.has_depth:
                depth, valid = self._read_depth(seq, frame, hw)
                depths.append(depth)
                valids.append(valid)
            if with_dynamic:
                dynamic = read_mask(frame.extra["dynamic"])
                if dynamic.shape != hw:
                    raise DatasetFormatError(
                        f"{frame.extra['dynamic']}: mask size {dynamic.shape} != image {hw}"
                    )
                dynamics.append(dynamic)
        meta = {
            "id": seq.id,
            "source": self.kind,
            "frame_indices": [int(f.index) for f in picked],
            **({"protocol": self.protocol_name} if self.protocol_name else {}),
            **seq.meta,
        }
        if picked and all("timestamp" in f.extra for f in picked):
            meta["timestamps"] = [float(f.extra["timestamp"]) for f in picked]
        clip = Clip(
            frames=np.stack(frames),
            intrinsics=np.stack(intrinsics).astype(np.float32),
            cam_to_world=np.stack([f.cam_to_world for f in picked]).astype(np.float64),
            depth=np.stack(depths).astype(np.float32) if depths else None,
            valid=np.stack(valids).astype(bool) if valids else None,
            dynamic=np.stack(dynamics) if dynamics else None,
            meta=meta,
        )
        clip = self._postprocess(clip, seq)
        try:
            return clip.validate()
        except ClipValidationError as error:
            raise DatasetFormatError(f"{self.root}: sequence {seq.id!r}: {error}") from error

    def describe(self, clip_id: str) -> dict[str, Any]:
        """Cheap facts for ``vfm3d data info``: frame counts, resolution, ground truth present."""
        seq = self.sequence(clip_id)
        positions = self.selected(clip_id)
        h, w = self._clip_hw(seq.frames[positions[0]])
        return {
            "id": clip_id,
            "frames_total": len(seq.frames),
            "frames_selected": len(positions),
            "resolution_hw": [h, w],
            "depth": bool(seq.has_depth),
            "poses": True,
            "intrinsics": True,
            "dynamic": all("dynamic" in seq.frames[i].extra for i in positions),
        }
