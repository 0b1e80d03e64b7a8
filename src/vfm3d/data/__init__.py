"""Dataset readers that yield `Clip`s, evaluation protocols as data, and resize/crop transforms.

    from vfm3d.data import read
    reader = read("tum", "/data/tum", protocol="monst3r")   # lazy: nothing decoded yet
    print(len(reader), reader.ids[:3])
    clip = reader.load(reader.ids[0])                      # one sequence decoded -> Clip

Every reader converts cameras to vfm3d's convention (OpenCV, K in pixels, ``cam_to_world``
float64) and raises `DatasetFormatError` naming the file (and line) on malformed input.
Kinds: see `KINDS`; options per kind are documented on each reader class.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from vfm3d.data.base import DatasetReader, FrameRecord, SequenceRecord
from vfm3d.data.errors import DatasetFormatError, SequenceRejected

# kind -> (module, class); imported on use
KINDS: dict[str, tuple[str, str]] = {
    "world": ("vfm3d.data.readers.world", "WorldReader"),
    "co3d": ("vfm3d.data.readers.co3d", "Co3dReader"),
    "dl3dv": ("vfm3d.data.readers.dl3dv", "Dl3dvReader"),
    "re10k": ("vfm3d.data.readers.re10k", "RealEstate10KReader"),
    "tum": ("vfm3d.data.readers.tum", "TumReader"),
    "bonn": ("vfm3d.data.readers.tum", "BonnReader"),
    "sintel": ("vfm3d.data.readers.sintel", "SintelReader"),
    "scannet": ("vfm3d.data.readers.scannet", "ScanNetReader"),
    # a user's input without ground truth (root is a file / a folder of images)
    "video": ("vfm3d.data.readers.video", "VideoReader"),
    "images": ("vfm3d.data.readers.images", "ImageFolderReader"),
}


def reader_class(kind: str) -> type[DatasetReader]:
    """The reader class of a dataset kind."""
    if kind not in KINDS:
        raise ValueError(f"unknown dataset kind {kind!r}; choose one of {sorted(KINDS)}")
    module, name = KINDS[kind]
    return getattr(importlib.import_module(module), name)


def read(kind: str, root: str | os.PathLike[str], **options: Any) -> DatasetReader:
    """Open a dataset lazily: a reader with ``len``, ``ids``, iteration and ``load(id)``.

    ``options`` go to the reader (common: ``protocol``, ``sequences``, ``max_frames``,
    ``stride``, ``seed``; per kind, e.g. TUM ``association_max_diff``, Sintel ``pass_name``).
    """
    return reader_class(kind)(root, **options)


__all__ = [
    "KINDS",
    "DatasetFormatError",
    "DatasetReader",
    "FrameRecord",
    "SequenceRecord",
    "SequenceRejected",
    "read",
    "reader_class",
]
