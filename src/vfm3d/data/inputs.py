"""`open_clips`: a user's ``--data PATH`` -> clips, whatever PATH is.

=============================  =====================================================
PATH                            opened as
=============================  =====================================================
folder with ``index.json``      `vfm3d.clip.ClipFolder` (as stored; no input options)
``*.safetensors`` file          `ClipFile` (one clip in vfm3d's format)
video file                      `vfm3d.data.readers.video.VideoReader` (by extension,
                                else if PyAV can open it as a video)
folder of images                `vfm3d.data.readers.images.ImageFolderReader`
=============================  =====================================================

Every result offers ``ids``, ``len``, ``load(id) -> Clip`` and iteration (a `ClipSource`);
`vfm3d.features.runner.extract_to_store` takes any of them and loads one clip at a time.
`add_input_arguments` / `input_options` are the argparse side, shared by every command that
takes ``--data``.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from vfm3d.clip import INDEX_NAME, Clip, ClipFolder, ClipValidationError
from vfm3d.data.errors import DatasetFormatError
from vfm3d.data.readers.images import IMAGE_EXTENSIONS, ImageFolderReader, list_images
from vfm3d.data.readers.video import RESIZE_MODES, VIDEO_EXTENSIONS, VideoReader, import_av
from vfm3d.data.transforms import parse_hw

#: container formats FFmpeg opens that are not videos (text art, single images)
_NOT_VIDEO_FORMATS = frozenset({"tty", "image2", "lrc", "srt", "webvtt", "ass"})


@runtime_checkable
class ClipSource(Protocol):
    """What `open_clips` returns: clip ids, their count, loading by id, iteration."""

    @property
    def ids(self) -> list[str]: ...

    def __len__(self) -> int: ...

    def load(self, clip_id: str) -> Clip: ...

    def __iter__(self) -> Iterator[Clip]: ...


class ClipFile:
    """One ``.safetensors`` clip as a one-clip source; its id is ``meta["id"]`` (else the stem)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        from safetensors import safe_open

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"clip file not found: {self.path}")
        try:
            with safe_open(str(self.path), framework="numpy") as handle:
                metadata = handle.metadata() or {}
                if "frames" not in handle.keys():
                    raise DatasetFormatError(f"{self.path}: not a vfm3d clip (no 'frames' tensor)")
            meta = json.loads(metadata.get("meta", "{}"))
        except DatasetFormatError:
            raise
        except Exception as error:  # safetensors / json raise their own types
            raise DatasetFormatError(
                f"{self.path}: not a readable safetensors clip ({error})"
            ) from error
        self.clip_id = str(meta.get("id") or self.path.stem)

    @property
    def ids(self) -> list[str]:
        return [self.clip_id]

    def __len__(self) -> int:
        return 1

    def load(self, clip_id: str | None = None) -> Clip:
        if clip_id is not None and clip_id != self.clip_id:
            raise KeyError(f"no clip {clip_id!r} in {self.path} (its id is {self.clip_id!r})")
        clip = Clip.load(self.path)
        if not clip.id:
            clip.meta["id"] = self.clip_id
        return clip

    def __iter__(self) -> Iterator[Clip]:
        yield self.load()

    def __repr__(self) -> str:
        return f"ClipFile(path={str(self.path)!r})"


def _is_video(path: Path) -> bool:
    """Probe with PyAV: opens, holds a video stream, and is not an image or text format."""
    av = import_av()
    try:
        with av.open(str(path)) as container:
            names = set(str(container.format.name).split(","))
            return bool(container.streams.video) and not (
                names & _NOT_VIDEO_FORMATS or any(n.endswith("_pipe") for n in names)
            )
    except Exception:
        return False


def open_clips(path: str | os.PathLike[str], **options: Any) -> ClipSource:
    """Open ``path`` as clips (see the module table).

    ``options`` (fps, stride, start, start_frame, max_frames, size, resize_mode, intrinsics, ...)
    go to the video / image-folder reader; a clip folder or clip file takes none.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        DatasetFormatError: a folder with neither ``index.json`` nor images, a file that is
            neither a clip nor a video, or a bad option / unreadable input (message names it).
    """
    source = Path(path)
    given = {k: v for k, v in options.items() if v is not None}
    if not source.exists():
        raise FileNotFoundError(f"input not found: {source}")

    def no_options(what: str) -> None:
        if given:
            raise DatasetFormatError(
                f"{source}: {', '.join(sorted(given))} only apply to videos and image folders; "
                f"a {what} is used as stored"
            )

    if source.is_dir():
        if (source / INDEX_NAME).is_file():
            no_options("clip folder")
            try:
                return ClipFolder(source)
            except ClipValidationError as error:
                raise DatasetFormatError(str(error)) from error
        if list_images(source):
            return ImageFolderReader(source, **given)
        entries = sorted(p.name for p in source.iterdir() if not p.name.startswith("."))
        videos = [n for n in entries if Path(n).suffix.lower() in VIDEO_EXTENSIONS]
        hint = ""
        if videos:
            hint = f"; it holds videos ({', '.join(videos[:3])}): pass one video file"
        elif any(n.endswith(".safetensors") for n in entries):
            hint = "; it holds .safetensors clips but no index.json: pass one clip file"
        raise DatasetFormatError(
            f"{source}: neither a clip folder ({INDEX_NAME}) nor a folder of images "
            f"({', '.join(sorted(e.lstrip('.') for e in IMAGE_EXTENSIONS))}){hint}"
        )
    suffix = source.suffix.lower()
    if suffix == ".safetensors":
        no_options("clip file")
        return ClipFile(source)
    if suffix in VIDEO_EXTENSIONS:
        return VideoReader(source, **given)
    if suffix in IMAGE_EXTENSIONS:
        raise DatasetFormatError(
            f"{source}: a single image is not a clip; put the frames in a folder and pass the folder"
        )
    if source.stat().st_size > 0 and _is_video(source):
        return VideoReader(source, **given)
    raise DatasetFormatError(
        f"{source}: unknown file type {suffix or '(no extension)'!r}: expected a video "
        f"({', '.join(sorted(e.lstrip('.') for e in VIDEO_EXTENSIONS))}), a .safetensors clip, "
        "a clip folder or a folder of images"
    )


class WindowedClips:
    """A video or image folder as consecutive clips of ``window`` frames overlapping by
    ``overlap`` (the reader's `iter_windows`), so a long video is never decoded whole.

    ``ids`` are ``<stem>_w<kkkk>`` (known after one counting pass over the selection);
    ``load(id)`` in id order continues one lazy decode, so a pass over every window decodes the
    video once; out of order it restarts the decode (still one window in memory).
    """

    def __init__(self, reader: Any, window: int, overlap: int = 0) -> None:
        from vfm3d.data.readers.video import check_window

        check_window(getattr(reader, "path", getattr(reader, "root", "")), window, overlap)
        self.reader, self.window, self.overlap = reader, int(window), int(overlap)
        self.frames = int(reader.count_selected())
        step = self.window - self.overlap
        count = 1 if self.frames <= self.window else 1 + -(-(self.frames - self.window) // step)
        parent = reader.ids[0]
        self._ids = [f"{parent}_w{k:04d}" for k in range(count)]
        self._stream: Iterator[Clip] | None = None
        self._next = 0

    @property
    def ids(self) -> list[str]:
        return list(self._ids)

    def __len__(self) -> int:
        return len(self._ids)

    def __iter__(self) -> Iterator[Clip]:
        for clip_id in self._ids:
            yield self.load(clip_id)

    def load(self, clip_id: str) -> Clip:
        """Decode window ``clip_id`` (see the class docstring)."""
        if clip_id not in self._ids:
            raise KeyError(f"no window {clip_id!r}; windows are {self._ids[0]}..{self._ids[-1]}")
        wanted = self._ids.index(clip_id)
        if self._stream is None or wanted < self._next:
            self._stream = self.reader.iter_windows(self.window, self.overlap)
            self._next = 0
        while True:
            clip = next(self._stream)
            self._next += 1
            if self._next - 1 == wanted:
                return clip


# ---------------------------------------------------------------------- argparse
def _size_arg(text: str) -> tuple[int, int]:
    try:
        return parse_hw(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _intrinsics_arg(text: str) -> tuple[float, float, float, float]:
    try:
        values = [float(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        values = []
    if len(values) != 4:
        raise argparse.ArgumentTypeError(
            f"expected fx,fy,cx,cy (4 numbers, pixels of the original video), got {text!r}"
        )
    return values[0], values[1], values[2], values[3]


#: option -> (flags, argparse keywords); dest is the option name
_INPUT_ARGUMENTS: dict[str, tuple[str, dict[str, Any]]] = {
    "fps": (
        "--fps",
        {
            "type": float,
            "help": "video: resample to this rate by timestamps; image folder: the folder's "
            "frame rate (gives timestamps)",
        },
    ),
    "stride": ("--stride", {"type": int, "help": "keep every N-th frame (video: not with --fps)"}),
    "start": ("--start", {"type": float, "help": "skip frames before this time (seconds)"}),
    "start_frame": ("--start-frame", {"type": int, "help": "skip frames before this index"}),
    "max_frames": ("--max-frames", {"type": int, "help": "keep at most N frames"}),
    "size": (
        "--size",
        {"type": _size_arg, "metavar": "HxW", "help": "resize the input frames to HxW"},
    ),
    "resize_mode": (
        "--resize-mode",
        {
            "choices": list(RESIZE_MODES),
            "help": "with --size: crop (cover, centre crop; default), pad (fit, pad), stretch",
        },
    ),
    "intrinsics": (
        "--intrinsics",
        {
            "type": _intrinsics_arg,
            "metavar": "FX,FY,CX,CY",
            "help": "known camera intrinsics in pixels of the original frames "
            "(default: a 60-degree placeholder, flagged unknown)",
        },
    ),
}


def add_input_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """Add the video / image-folder input options (``--fps``, ``--stride``, ``--start``,
    ``--start-frame``, ``--max-frames``, ``--size``, ``--resize-mode``, ``--intrinsics``).

    An option whose flag the parser already defines is left out (that command keeps its own).
    """
    existing = set(getattr(parser, "_option_string_actions", {}))
    group = parser.add_argument_group("input (videos and image folders)")
    for dest, (flag, kwargs) in _INPUT_ARGUMENTS.items():
        if flag in existing:
            continue
        group.add_argument(flag, dest=f"input_{dest}", default=None, **kwargs)


def input_options(args: argparse.Namespace) -> dict[str, Any]:
    """The input options given on the command line, as keywords for `open_clips`."""
    out: dict[str, Any] = {}
    for dest in _INPUT_ARGUMENTS:
        value = getattr(args, f"input_{dest}", None)
        if value is not None:
            out[dest] = value
    return out
