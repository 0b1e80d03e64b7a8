"""A folder of images (png, jpg, jpeg, bmp, webp) -> one `Clip`, frames in natural order.

Files are sorted by name with ``natsort.natsorted`` (``frame_2`` before ``frame_10``); hidden
files and other extensions are ignored; the clip id is the folder name. Every image must have
the size of the first one (after EXIF orientation, which is applied as viewers do); otherwise
`DatasetFormatError` names the first offending file, its size and the first file's size.

Options as `vfm3d.data.readers.video.VideoReader`, except that ``fps`` here is the folder's own
frame rate: it gives ``meta["timestamps"] = frame_index / fps`` (and lets ``start`` be given in
seconds); without it there are no timestamps and ``meta["fps"]`` is None. ``stride`` keeps
every N-th image (it may be combined with ``fps``), ``start_frame`` / ``start`` skip the
beginning, ``max_frames`` caps the count, ``size`` / ``resize_mode`` / ``intrinsics`` /
``fov_deg`` resize and set K exactly as for videos (placeholder K when unknown,
``meta["intrinsics_known"] = False``; identity ``cam_to_world``, ``meta["poses_known"] = False``).

``meta``: ``id``, ``source="images"``, ``path`` (the folder), ``files`` (names of the kept
images), ``frame_indices`` (positions in the sorted folder), ``fps``, ``timestamps`` (with
``fps``), ``original_hw``, ``sampling``, ``intrinsics_known``, ``poses_known``, and when resized
``transform`` / ``resize_mode``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vfm3d.clip import Clip
from vfm3d.data.errors import DatasetFormatError
from vfm3d.data.readers.video import (
    PLACEHOLDER_FOV_DEG,
    FrameOptions,
    WindowStats,
    base_intrinsics,
    build_clip,
    check_window,
    fit_transform,
    windowed,
)

#: extensions of the images a folder may hold (case-insensitive)
IMAGE_EXTENSIONS: frozenset[str] = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp"})
_EXIF_ORIENTATION = 0x0112
_SWAPS_AXES = (5, 6, 7, 8)  # EXIF orientations that turn the image by 90 degrees


def list_images(folder: str | os.PathLike[str]) -> list[Path]:
    """The image files of ``folder`` (not recursive) in natural order (``natsort``)."""
    try:
        from natsort import natsorted
    except ImportError as error:  # pragma: no cover - natsort is installed in the tests
        raise ImportError(
            "reading image folders needs natsort: pip install vfm3d[video] (or pip install natsort)"
        ) from error
    root = Path(folder)
    files = [
        p
        for p in root.iterdir()
        if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".") and p.is_file()
    ]
    return natsorted(files, key=lambda p: p.name)


def image_hw(path: Path) -> tuple[int, int]:
    """(H, W) of an image as viewers show it (EXIF orientation applied), from its header."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            w, h = image.size
            orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
    except Exception as error:  # PIL raises OSError, SyntaxError, ValueError, ...
        raise DatasetFormatError(f"{path}: cannot read the image header ({error})") from error
    return (int(w), int(h)) if orientation in _SWAPS_AXES else (int(h), int(w))


def read_image(path: Path) -> np.ndarray:
    """``[H, W, 3]`` uint8 RGB, EXIF orientation applied (grey / RGBA / palette converted)."""
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as image:
            upright = ImageOps.exif_transpose(image)
            rgb = np.asarray(upright.convert("RGB"), dtype=np.uint8)
    except Exception as error:
        raise DatasetFormatError(f"{path}: cannot decode the image ({error})") from error
    return rgb


class ImageFolderReader:
    """A folder of images as a one-clip dataset: ``ids`` (the folder name), ``len``, iteration,
    ``load(id)``, lazy ``iter_windows``, cheap ``probe`` / ``describe``. Options: see the module
    docstring (``sequences`` / ``seed`` accepted for `vfm3d.data.read`, ``protocol`` refused)."""

    kind = "images"
    has_depth = False

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        fps: float | None = None,
        stride: int | None = None,
        start: float | None = None,
        start_frame: int | None = None,
        max_frames: int | None = None,
        size: tuple[int, int] | Sequence[int] | str | None = None,
        resize_mode: str | None = None,
        intrinsics: Sequence[float] | np.ndarray | None = None,
        fov_deg: float = PLACEHOLDER_FOV_DEG,
        sequences: Sequence[str] | None = None,
        protocol: str | None = None,
        seed: int = 0,
    ) -> None:
        self.root = Path(root)
        if not self.root.exists():
            raise FileNotFoundError(f"image folder not found: {self.root}")
        if not self.root.is_dir():
            raise DatasetFormatError(f"{self.root}: an image folder must be a directory")
        if protocol:
            raise DatasetFormatError(
                f"{self.root}: protocol {protocol!r} applies to benchmark datasets, not to images"
            )
        self.options = FrameOptions.parse(
            self.root,
            fps=fps,
            stride=stride,
            start=start,
            start_frame=start_frame,
            max_frames=max_frames,
            size=size,
            resize_mode=resize_mode,
            intrinsics=intrinsics,
            fov_deg=fov_deg,
            fps_excludes_stride=False,
        )
        if self.options.start is not None and self.options.fps is None:
            raise DatasetFormatError(
                f"{self.root}: start is in seconds and needs fps (the folder's frame rate); "
                "or give start_frame"
            )
        self.clip_id = self.root.resolve().name or "images"
        if sequences and self.clip_id not in [str(s) for s in sequences]:
            raise DatasetFormatError(f"{self.root}: sequences not found: {list(sequences)}")
        self.seed = seed
        self.missing_sequences: list[str] = []
        self.rejected: list[str] = []
        self.stats = WindowStats()
        self.files = list_images(self.root)
        if not self.files:
            raise DatasetFormatError(
                f"{self.root}: zero frames: the folder holds no images "
                f"({', '.join(sorted(e.lstrip('.') for e in IMAGE_EXTENSIONS))})"
            )
        self._hw: tuple[int, int] | None = None

    # -------------------------------------------------------------- dataset interface
    @property
    def ids(self) -> list[str]:
        """``[folder name]``."""
        return [self.clip_id]

    def __len__(self) -> int:
        return 1

    def __iter__(self) -> Iterator[Clip]:
        yield self.load(self.clip_id)

    def __repr__(self) -> str:
        return f"ImageFolderReader(root={str(self.root)!r}, images={len(self.files)})"

    def _check_id(self, clip_id: str | None) -> None:
        if clip_id is not None and clip_id != self.clip_id:
            raise KeyError(f"no clip {clip_id!r} in {self.root} (its id is {self.clip_id!r})")

    # -------------------------------------------------------------- selection
    def frame_size(self) -> tuple[int, int]:
        """(H, W) shared by every image (headers only); mixed sizes raise. Cached."""
        if self._hw is None:
            first = image_hw(self.files[0])
            for path in self.files[1:]:
                hw = image_hw(path)
                if hw != first:
                    raise DatasetFormatError(
                        f"{path}: image size {hw[0]}x{hw[1]} differs from the first image "
                        f"{self.files[0].name} ({first[0]}x{first[1]}); every image of a folder "
                        "must have the same size"
                    )
            self._hw = first
        return self._hw

    def selected(self) -> list[int]:
        """Positions (into ``files``) that `load` decodes."""
        opts = self.options
        first = opts.start_frame or 0
        if opts.start is not None and opts.fps is not None:
            first = math.ceil(opts.start * opts.fps - 1e-6)
        positions = list(range(first, len(self.files), opts.stride or 1))
        if opts.max_frames is not None:
            positions = positions[: opts.max_frames]
        if not positions:
            where = f"start={opts.start} s" if opts.start is not None else f"start_frame={first}"
            raise DatasetFormatError(
                f"{self.root}: zero frames selected: {where} is beyond the last image "
                f"({len(self.files)} images)"
            )
        return positions

    def count_selected(self) -> int:
        """How many images the selection keeps."""
        return len(self.selected())

    def probe(self) -> dict[str, Any]:
        """Image count, size, fps and duration (headers only)."""
        h, w = self.frame_size()
        fps = self.options.fps
        return {
            "path": str(self.root),
            "frames": len(self.files),
            "fps": fps,
            "duration_s": None if fps is None else len(self.files) / fps,
            "height": h,
            "width": w,
        }

    def describe(self, clip_id: str | None = None) -> dict[str, Any]:
        """Cheap facts for ``vfm3d data info`` (headers only)."""
        self._check_id(clip_id)
        hw = self.options.size or self.frame_size()
        return {
            "id": self.clip_id,
            "frames_total": len(self.files),
            "frames_selected": len(self.selected()),
            "resolution_hw": [int(hw[0]), int(hw[1])],
            "depth": False,
            "poses": False,
            "intrinsics": self.options.intrinsics is not None,
            "dynamic": False,
            "fps": self.options.fps,
            "original_hw": list(self.frame_size()),
        }

    # -------------------------------------------------------------- decoding
    def _convert(self, position: int) -> tuple[int, np.ndarray]:
        """``(position, rgb uint8 [H, W, 3])`` of one image."""
        hw = self.frame_size()
        rgb = read_image(self.files[position])
        if rgb.shape[:2] != hw:  # header and pixels disagree (broken file)
            raise DatasetFormatError(
                f"{self.files[position]}: decoded size {rgb.shape[0]}x{rgb.shape[1]} differs "
                f"from the folder's {hw[0]}x{hw[1]}"
            )
        self.stats.decoded += 1
        self.stats.kept += 1
        return position, rgb

    def _meta(self, positions: list[int]) -> dict[str, Any]:
        fps = self.options.fps
        meta: dict[str, Any] = {
            "id": self.clip_id,
            "source": "images",
            "path": str(self.root),
            "files": [self.files[i].name for i in positions],
            "fps": fps,
            "frame_indices": list(positions),
            "original_hw": list(self.frame_size()),
            "sampling": self.options.sampling(),
            "intrinsics_known": self.options.intrinsics is not None,
            "poses_known": False,
        }
        if fps is not None:
            meta["timestamps"] = [i / fps for i in positions]
        if self.options.size is not None:
            meta["resize_mode"] = self.options.resize_mode
        return meta

    def _clip(self, items: list[tuple[int, np.ndarray]], meta: dict[str, Any]) -> Clip:
        hw = self.frame_size()
        base_k, _ = base_intrinsics(self.options, hw)
        transform = fit_transform(hw, self.options.size, self.options.resize_mode)
        return build_clip([rgb for _, rgb in items], base_k, transform, meta, self.root)

    def load(self, clip_id: str | None = None) -> Clip:
        """Decode the selected images into one `Clip`."""
        self._check_id(clip_id)
        positions = self.selected()
        self.stats = WindowStats()
        items = [self._convert(i) for i in positions]
        self.stats.peak_buffered = len(items)
        return self._clip(items, self._meta(positions))

    def iter_windows(
        self, window: int, overlap: int = 0, clip_id: str | None = None
    ) -> Iterator[Clip]:
        """Clips of ``window`` consecutive selected images (see `VideoReader.iter_windows`);
        images are decoded lazily, at most one window held."""
        self._check_id(clip_id)
        check_window(self.root, window, overlap)
        positions = self.selected()
        self.stats = WindowStats()
        for k, (first, items, _) in enumerate(
            windowed(positions, window, overlap, self.stats, self._convert)
        ):
            meta = self._meta([i for i, _ in items])
            meta["id"] = f"{self.clip_id}_w{k:04d}"
            meta["parent_id"] = self.clip_id
            meta["window"] = {"index": k, "first": first, "size": window, "overlap": overlap}
            yield self._clip(items, meta)
