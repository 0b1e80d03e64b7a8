"""vfm3d's own clip folders (``index.json`` + one safetensors per clip), e.g. from ``vfm3d world``."""

from __future__ import annotations

import json
from typing import Any

from vfm3d.clip import Clip, ClipFolder
from vfm3d.data._parse import PathLike
from vfm3d.data.base import DatasetReader
from vfm3d.data.errors import DatasetFormatError


class WorldReader(DatasetReader):
    """Reads a clip folder through `ClipFolder`; ``max_frames`` / ``stride`` subset each clip.

    A protocol is not applicable (clips are already cut); passing one raises ``ValueError``.
    """

    kind = "world"

    def __init__(self, root: PathLike, **options: Any) -> None:
        if options.get("protocol"):
            raise ValueError("kind 'world' has no protocols (its clips are already cut)")
        self._folder: ClipFolder | None = None
        super().__init__(root, **options)

    def _discover(self) -> list[str]:
        try:
            self._folder = ClipFolder(self.root)
        except FileNotFoundError as error:
            raise DatasetFormatError(str(error)) from error
        return self._folder.ids

    def load(self, clip_id: str) -> Clip:
        assert self._folder is not None
        if clip_id not in self._ids:
            raise KeyError(f"no clip {clip_id!r} in {self.root}")
        clip = self._folder.load(clip_id)
        positions = list(range(0, clip.num_frames, self.stride))[: self.max_frames]
        if len(positions) == clip.num_frames:
            return clip
        return clip.subset(positions)

    def describe(self, clip_id: str) -> dict[str, Any]:
        from safetensors import safe_open

        assert self._folder is not None
        path = self._folder.path_of(clip_id)
        with safe_open(str(path), framework="numpy") as handle:
            keys = set(handle.keys())
            t, h, w, _ = handle.get_slice("frames").get_shape()
            meta = json.loads((handle.metadata() or {}).get("meta", "{}"))
        selected = len(list(range(0, t, self.stride))[: self.max_frames])
        return {
            "id": clip_id,
            "frames_total": int(t),
            "frames_selected": selected,
            "resolution_hw": [int(h), int(w)],
            "depth": "depth" in keys,
            "poses": True,
            "intrinsics": True,
            "dynamic": "dynamic" in keys,
            "source": meta.get("source", "world"),
        }
