"""A user's video file (mp4, mov, webm, mkv, gif, ... anything PyAV opens) -> `Clip`.

One file is one clip whose id is the file stem. Decoding goes through PyAV (``pip install
vfm3d[video]``; FFmpeg is bundled, no system ffmpeg needed), imported on first use.

Frame selection (all optional; applied in this order):

- ``start`` (seconds, from the first frame's timestamp) or ``start_frame`` (index of the
  decoded frame, 0-based) skips the beginning; not both.
- ``fps``: resample by **timestamps** to this rate: for each target time ``t0 + k / fps`` (``t0``
  = the first kept frame's time, up to the last frame's time) the decoded frame nearest to it is
  kept (ties: the earlier one); a frame is never repeated, so ``fps`` above the stream's rate
  keeps every frame. Variable-frame-rate streams are handled by their timestamps; no constant
  rate is ever assumed.
- ``stride``: every N-th decoded frame (exclusive with ``fps``).
- ``max_frames``: stop after N kept frames (decoding stops there too).

Then ``size=(H, W)`` with ``resize_mode`` ``"crop"`` (scale to cover, centre crop; default),
``"pad"`` (scale to fit, centre pad with black) or ``"stretch"`` (scale each axis) resamples the
frames; the map is a `vfm3d.data.transforms.PixelTransform` recorded in ``meta["transform"]``
and applied to the intrinsics, so K stays exact.

Cameras: ``intrinsics=(fx, fy, cx, cy)`` in pixels of the original (upright) video when known
(``meta["intrinsics_known"] = True``); otherwise a placeholder: square pixels, the focal length
of a ``fov_deg`` (default 60) degree horizontal field of view, ``f = (W / 2) / tan(fov / 2)``,
principal point at the centre ``((W - 1) / 2, (H - 1) / 2)`` (pixel centres at integers) and
``meta["intrinsics_known"] = False``. ``cam_to_world`` is identity with
``meta["poses_known"] = False``. There is no depth.

Rotation: a stream's display matrix (phone videos) is applied in multiples of 90 degrees
(``autorotate=True``), as players show it; sizes and ``intrinsics`` refer to the upright frames.

Truncated files: frames up to the damage are decoded and returned; a `TruncatedVideoWarning`
names the file and the last good frame, and ``meta["truncated"]`` records it (``strict=True``
raises `DatasetFormatError` instead). An mp4/mov cut before its index (``moov`` box) cannot be
decoded at all and raises. See ``docs/io.md``.

``meta``: ``id``, ``source="video"``, ``path``, ``fps`` (the stream's average rate),
``timestamps`` (seconds since the first decoded frame, from each frame's pts),
``frame_indices`` (positions in decode order, 0-based), ``time_offset_s`` (pts of the first
frame), ``original_hw``, ``sampling``, ``intrinsics_known``, ``poses_known``, and when resized
``transform`` / ``resize_mode``.

The pieces shared with `vfm3d.data.readers.images` (option checks, placeholder K, resize
transforms, windows) live here too.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from vfm3d.clip import Clip, ClipValidationError
from vfm3d.data.errors import DatasetFormatError
from vfm3d.data.transforms import PixelTransform, center_crop, pad, parse_hw, resize

#: file extensions opened as videos without probing (others are probed with PyAV)
VIDEO_EXTENSIONS: frozenset[str] = frozenset(
    {".mp4", ".m4v", ".mov", ".webm", ".mkv", ".gif", ".avi", ".mpg", ".mpeg", ".ts", ".mts"}
    | {".m2ts", ".flv", ".wmv", ".ogv", ".3gp"}
)
RESIZE_MODES: tuple[str, ...] = ("crop", "pad", "stretch")
#: horizontal field of view (degrees) of the placeholder intrinsics
PLACEHOLDER_FOV_DEG = 60.0
_EPS_S = 1e-6  # timestamp tolerance (seconds)

T = TypeVar("T")


class TruncatedVideoWarning(UserWarning):
    """A video ended early (damaged or cut short); the frames before the damage were kept."""


def import_av() -> Any:
    """Import PyAV, or raise an ImportError that says how to install it."""
    try:
        import av
    except ImportError as error:  # pragma: no cover - av is installed in the test environment
        raise ImportError(
            "reading videos needs PyAV: pip install vfm3d[video] (or pip install av)"
        ) from error
    return av


# ====================================================================== shared options
@dataclass(frozen=True)
class FrameOptions:
    """Checked frame-selection and resize options (see the module docstring for meanings).

    ``size`` is (H, W); ``intrinsics`` (fx, fy, cx, cy) in pixels of the original frames.
    """

    fps: float | None = None
    stride: int | None = None
    start: float | None = None
    start_frame: int | None = None
    max_frames: int | None = None
    size: tuple[int, int] | None = None
    resize_mode: str = "crop"
    intrinsics: tuple[float, float, float, float] | None = None
    fov_deg: float = PLACEHOLDER_FOV_DEG

    @classmethod
    def parse(
        cls,
        source: str | os.PathLike[str],
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
        fps_excludes_stride: bool = True,
    ) -> FrameOptions:
        """Check every option; a bad one raises `DatasetFormatError` naming ``source`` and the rule."""

        def bad(rule: str) -> DatasetFormatError:
            return DatasetFormatError(f"{source}: {rule}")

        if fps is not None:
            fps = _number(fps, "fps", bad)
            if not math.isfinite(fps) or fps <= 0:
                raise bad(f"fps must be a positive number, got {fps}")
        if stride is not None:
            stride = _positive_int(stride, "stride", bad)
        if fps_excludes_stride and fps is not None and stride is not None:
            raise bad(
                "fps and stride cannot both be given (fps resamples by timestamps, stride keeps "
                "every N-th decoded frame); pass one"
            )
        if start is not None and start_frame is not None:
            raise bad("start (seconds) and start_frame (index) cannot both be given; pass one")
        if start is not None:
            start = _number(start, "start", bad)
            if not math.isfinite(start) or start < 0:
                raise bad(f"start must be >= 0 seconds, got {start}")
        if start_frame is not None:
            start_frame = _positive_int(start_frame, "start_frame", bad, minimum=0)
        if max_frames is not None:
            max_frames = _positive_int(max_frames, "max_frames", bad)
        hw: tuple[int, int] | None = None
        if size is not None:
            if isinstance(size, str):
                try:
                    hw = parse_hw(size)
                except ValueError as error:
                    raise bad(str(error)) from None
            else:
                values = list(size)
                if len(values) != 2:
                    raise bad(f"size must be (H, W), got {size!r}")
                h, w = (_positive_int(v, "size", bad) for v in values)
                hw = (h, w)
        if resize_mode is not None and size is None:
            raise bad(f"resize_mode={resize_mode!r} needs size=(H, W)")
        mode = "crop" if resize_mode is None else str(resize_mode)
        if mode not in RESIZE_MODES:
            raise bad(f"resize_mode must be one of {', '.join(RESIZE_MODES)}, got {mode!r}")
        k: tuple[float, float, float, float] | None = None
        if intrinsics is not None:
            arr = np.asarray(intrinsics, dtype=np.float64)
            if arr.shape == (3, 3):
                arr = np.array([arr[0, 0], arr[1, 1], arr[0, 2], arr[1, 2]])
            if arr.shape != (4,) or not np.all(np.isfinite(arr)):
                raise bad(f"intrinsics must be 4 finite numbers fx, fy, cx, cy, got {intrinsics!r}")
            if arr[0] <= 0 or arr[1] <= 0:
                raise bad(f"intrinsics: focal lengths fx, fy must be positive, got {arr.tolist()}")
            k = (float(arr[0]), float(arr[1]), float(arr[2]), float(arr[3]))
        fov = _number(fov_deg, "fov_deg", bad)
        if not 0.0 < fov < 180.0:
            raise bad(f"fov_deg must lie in (0, 180), got {fov}")
        return cls(fps, stride, start, start_frame, max_frames, hw, mode, k, fov)

    def sampling(self) -> dict[str, Any]:
        """The selection options as a JSON dict (``meta["sampling"]``)."""
        keys = ("fps", "stride", "start", "start_frame", "max_frames")
        return {k: v for k, v in asdict(self).items() if k in keys and v is not None}


def _positive_int(value: Any, name: str, bad: Callable[[str], Exception], minimum: int = 1) -> int:
    rule = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise bad(f"{name} must be {rule}, got {value!r}") from None
    if isinstance(value, bool) or number != value or number < minimum:
        raise bad(f"{name} must be {rule}, got {value!r}")
    return number


def _number(value: Any, name: str, bad: Callable[[str], Exception]) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise bad(f"{name} must be a number, got {value!r}") from None


def placeholder_intrinsics(hw: tuple[int, int], fov_deg: float = PLACEHOLDER_FOV_DEG) -> np.ndarray:
    """``[3, 3]`` float64 guess for an uncalibrated image of ``hw`` (H, W): square pixels,
    ``f = (W / 2) / tan(fov_deg / 2)``, principal point ``((W - 1) / 2, (H - 1) / 2)``."""
    h, w = hw
    focal = (w / 2.0) / math.tan(math.radians(fov_deg) / 2.0)
    return np.array(
        [[focal, 0.0, (w - 1) / 2.0], [0.0, focal, (h - 1) / 2.0], [0.0, 0.0, 1.0]],
        dtype=np.float64,
    )


def base_intrinsics(options: FrameOptions, hw: tuple[int, int]) -> tuple[np.ndarray, bool]:
    """(K ``[3, 3]`` float64 of the original frames, known?) from ``options``."""
    if options.intrinsics is None:
        return placeholder_intrinsics(hw, options.fov_deg), False
    fx, fy, cx, cy = options.intrinsics
    k = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=np.float64)
    return k, True


def fit_transform(
    in_hw: tuple[int, int], size: tuple[int, int] | None, mode: str = "crop"
) -> PixelTransform | None:
    """The pixel map from ``in_hw`` frames to ``size`` (H, W), or None when nothing changes.

    ``"crop"``: scale (keeping the aspect ratio) so the image covers ``size``, then crop the
    centre; ``"pad"``: scale so it fits inside, then pad the borders (centred, black);
    ``"stretch"``: scale each axis to ``size``.
    """
    if size is None:
        return None
    h, w = in_hw
    out_h, out_w = size
    if mode == "stretch":
        total = resize(in_hw, size)
    elif mode == "crop":
        s = max(out_h / h, out_w / w)
        mid = (max(out_h, round(h * s)), max(out_w, round(w * s)))
        total = resize(in_hw, mid).then(center_crop(mid, size))
    elif mode == "pad":
        s = min(out_h / h, out_w / w)
        mid = (max(1, min(out_h, round(h * s))), max(1, min(out_w, round(w * s))))
        top, left = (out_h - mid[0]) // 2, (out_w - mid[1]) // 2
        total = resize(in_hw, mid).then(
            pad(mid, top, out_h - mid[0] - top, left, out_w - mid[1] - left)
        )
    else:
        raise ValueError(f"resize_mode must be one of {RESIZE_MODES}, got {mode!r}")
    if total.scale == (1.0, 1.0) and total.offset == (0.0, 0.0) and total.out_hw == total.in_hw:
        return None
    return total


def build_clip(
    frames: Sequence[np.ndarray],
    base_k: np.ndarray,
    transform: PixelTransform | None,
    meta: dict[str, Any],
    source: str | os.PathLike[str],
) -> Clip:
    """Stack ``frames`` (uint8 ``[H, W, 3]`` each) into a validated camera-less `Clip`.

    ``base_k`` (``[3, 3]`` of the original frames) and the frames follow ``transform``;
    ``cam_to_world`` is identity. ``meta`` must already say ``intrinsics_known`` etc.
    """
    array = np.stack(frames)
    k = base_k
    meta = dict(meta)
    if transform is not None:
        array = transform.warp_image(array)
        k = transform.apply_intrinsics(base_k)
        meta["transform"] = transform.to_dict()
    n = array.shape[0]
    clip = Clip(
        frames=np.ascontiguousarray(array, dtype=np.uint8),
        intrinsics=np.repeat(k.astype(np.float32)[None], n, axis=0),
        cam_to_world=np.repeat(np.eye(4, dtype=np.float64)[None], n, axis=0),
        meta=meta,
    )
    try:
        return clip.validate()
    except ClipValidationError as error:
        raise DatasetFormatError(f"{source}: {error}") from error


class WindowStats:
    """Counters of the last decode: frames decoded, kept, and most frames held at once."""

    def __init__(self) -> None:
        self.decoded = 0
        self.kept = 0
        self.peak_buffered = 0

    def to_dict(self) -> dict[str, int]:
        return {"decoded": self.decoded, "kept": self.kept, "peak_buffered": self.peak_buffered}


def check_window(source: str | os.PathLike[str], window: int, overlap: int) -> None:
    """``window >= 1`` and ``0 <= overlap < window``, else `DatasetFormatError`."""
    if isinstance(window, bool) or int(window) != window or window < 1:
        raise DatasetFormatError(f"{source}: window must be a positive integer, got {window!r}")
    if isinstance(overlap, bool) or int(overlap) != overlap or not 0 <= overlap < window:
        raise DatasetFormatError(
            f"{source}: overlap must be an integer in [0, window - 1] = [0, {window - 1}], "
            f"got {overlap!r}"
        )


def windowed(
    items: Iterable[T],
    window: int,
    overlap: int,
    stats: WindowStats,
    convert: Callable[[T], Any] = lambda item: item,
) -> Iterator[tuple[int, list[Any], bool]]:
    """``(first position, converted items, is_last)`` windows of ``window`` consecutive items,
    each starting ``window - overlap`` after the previous; the last may be shorter; every item
    lands in some window. At most ``window`` converted items are held (``convert`` runs when an
    item enters a window, e.g. decoding to RGB); one raw item is looked at ahead to know
    whether a window is the last."""
    end = object()
    source = iter(items)
    buffer: list[Any] = []
    first = 0
    fresh = 0
    upcoming: Any = next(source, end)
    while upcoming is not end:
        buffer.append(convert(upcoming))
        fresh += 1
        stats.peak_buffered = max(stats.peak_buffered, len(buffer))
        upcoming = next(source, end)
        if len(buffer) == window:
            yield first, list(buffer), upcoming is end
            step = window - overlap
            buffer = buffer[step:]
            first += step
            fresh = 0
    if fresh:
        yield first, buffer, True


def resample_nearest(items: Iterable[T], time_of: Callable[[T], float], fps: float) -> Iterator[T]:
    """Keep, for each target time ``t0 + k / fps`` up to the last item's time, the item nearest
    to it (ties: earlier), never the same item twice. Items arrive in time order; one whose time
    does not increase is skipped. Streams: holds one item of look-back."""
    period = 1.0 / fps
    prev: T | None = None
    prev_t = -math.inf
    last: T | None = None
    t0: float | None = None
    k = 0
    for item in items:
        t = time_of(item)
        if t <= prev_t:
            continue
        if t0 is None:
            t0 = t
        while t0 + k * period <= t + _EPS_S:
            target = t0 + k * period
            choice = prev if prev is not None and target - prev_t <= t - target + _EPS_S else item
            k += 1
            if choice is not last:
                last = choice
                yield choice
        prev, prev_t = item, t


# ====================================================================== the reader
@dataclass(frozen=True)
class VideoInfo:
    """Container facts of a video (`VideoReader.probe`): no full decode.

    ``frames`` is the container's count (None when it has none, e.g. mkv/webm); ``frames_estimate``
    = ``frames`` or ``round(duration_s * fps)``. ``height``/``width`` are of upright frames.
    """

    path: str
    format: str
    codec: str
    frames: int | None
    frames_estimate: int | None
    fps: float | None
    duration_s: float | None
    height: int
    width: int
    rotation_deg: int
    pix_fmt: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Decoded:
    index: int
    time: float  # seconds since the first decoded frame
    frame: Any  # av.VideoFrame


class VideoReader:
    """One video file as a one-clip dataset: ``ids`` (the file stem), ``len``, iteration,
    ``load(id)``, lazy ``iter_windows``, cheap ``probe`` / ``describe``.

    Options (keyword): ``fps``, ``stride``, ``start`` (seconds), ``start_frame``, ``max_frames``,
    ``size`` (H, W) or ``"HxW"``, ``resize_mode`` (crop / pad / stretch), ``intrinsics``
    (fx, fy, cx, cy), ``fov_deg`` (placeholder FoV, default 60), ``autorotate`` (True),
    ``threads`` (decoder threads; None = FFmpeg's choice), ``strict`` (raise on a truncated
    file instead of warning). ``sequences`` (must name the stem) and ``seed`` (unused) are
    accepted for `vfm3d.data.read` compatibility; ``protocol`` is refused.
    """

    kind = "video"
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
        autorotate: bool = True,
        threads: int | None = None,
        strict: bool = False,
        sequences: Sequence[str] | None = None,
        protocol: str | None = None,
        seed: int = 0,
    ) -> None:
        self.path = Path(root)
        self.root = self.path
        if not self.path.exists():
            raise FileNotFoundError(f"video not found: {self.path}")
        if not self.path.is_file():
            raise DatasetFormatError(f"{self.path}: a video must be a file (got a folder)")
        if protocol:
            raise DatasetFormatError(
                f"{self.path}: protocol {protocol!r} applies to benchmark datasets, not to a video"
            )
        self.options = FrameOptions.parse(
            self.path,
            fps=fps,
            stride=stride,
            start=start,
            start_frame=start_frame,
            max_frames=max_frames,
            size=size,
            resize_mode=resize_mode,
            intrinsics=intrinsics,
            fov_deg=fov_deg,
        )
        if threads is not None and (isinstance(threads, bool) or int(threads) < 0):
            raise DatasetFormatError(f"{self.path}: threads must be >= 0, got {threads!r}")
        self.autorotate = bool(autorotate)
        self.threads = threads
        self.strict = bool(strict)
        self.seed = seed
        self.clip_id = self.path.stem
        if sequences and self.clip_id not in [str(s) for s in sequences]:
            raise DatasetFormatError(f"{self.path}: sequences not found: {list(sequences)}")
        self.missing_sequences: list[str] = []
        self.rejected: list[str] = []
        #: ``meta["truncated"]`` of the last decode that reached a damaged end, else None
        self.truncated: dict[str, Any] | None = None
        self.stats = WindowStats()
        self._time_offset = 0.0  # absolute pts (s) of the first decoded frame
        self._info: VideoInfo | None = None
        self.probe()  # fail early on unreadable files

    # -------------------------------------------------------------- dataset interface
    @property
    def ids(self) -> list[str]:
        """``[file stem]``."""
        return [self.clip_id]

    def __len__(self) -> int:
        return 1

    def __iter__(self) -> Iterator[Clip]:
        yield self.load(self.clip_id)

    def __repr__(self) -> str:
        return f"VideoReader(path={str(self.path)!r})"

    def _check_id(self, clip_id: str | None) -> None:
        if clip_id is not None and clip_id != self.clip_id:
            raise KeyError(f"no clip {clip_id!r} in {self.path} (its id is {self.clip_id!r})")

    # -------------------------------------------------------------- metadata
    def _open(self) -> Any:
        av = import_av()
        if self.path.stat().st_size == 0:
            raise DatasetFormatError(f"{self.path}: the file is empty (0 bytes), not a video")
        try:
            container = av.open(str(self.path), mode="r")
        except av.error.FFmpegError as error:
            raise DatasetFormatError(
                f"{self.path}: not a readable video ({error}){_mp4_hint(self.path)}"
            ) from error
        if not container.streams.video:
            container.close()
            raise DatasetFormatError(f"{self.path}: the file holds no video stream")
        return container

    def probe(self) -> VideoInfo:
        """Frame count, fps, duration, size from the container (decodes at most one frame,
        for its rotation). Cached."""
        if self._info is not None:
            return self._info
        av = import_av()
        container = self._open()
        try:
            stream = container.streams.video[0]
            ctx = stream.codec_context
            rate = stream.average_rate or stream.guessed_rate
            fps = float(rate) if rate else None
            frames = int(stream.frames or 0) or None
            duration: float | None = None
            if stream.duration and stream.time_base:
                duration = float(stream.duration * stream.time_base)
            elif container.duration:
                duration = float(container.duration) / 1e6
            rotation = 0
            h, w = int(ctx.height), int(ctx.width)
            try:
                for frame in container.decode(stream):
                    rotation = _quarter_turns(frame) * 90 if self.autorotate else 0
                    h, w = int(frame.height), int(frame.width)
                    break
            except av.error.FFmpegError as error:
                raise DatasetFormatError(
                    f"{self.path}: cannot decode the first frame ({error}){_mp4_hint(self.path)}"
                ) from error
            if rotation % 180:
                h, w = w, h
            if h < 1 or w < 1:
                raise DatasetFormatError(f"{self.path}: the video stream has no frame size")
            estimate = frames
            if estimate is None and duration and fps:
                estimate = round(duration * fps)
            self._info = VideoInfo(
                path=str(self.path),
                format=str(container.format.name),
                codec=str(ctx.name),
                frames=frames,
                frames_estimate=estimate,
                fps=fps,
                duration_s=duration,
                height=h,
                width=w,
                rotation_deg=rotation % 360,
                pix_fmt=None if ctx.pix_fmt is None else str(ctx.pix_fmt),
            )
        finally:
            container.close()
        return self._info

    def describe(self, clip_id: str | None = None) -> dict[str, Any]:
        """Cheap facts for ``vfm3d data info`` (container metadata; ``frames_selected`` is an
        estimate from the container's count and rate, exact only after decoding)."""
        self._check_id(clip_id)
        info = self.probe()
        opts = self.options
        total = info.frames_estimate
        selected: int | None = None
        if total is not None:
            first = opts.start_frame or 0
            if opts.start is not None and info.fps:
                first = math.ceil(opts.start * info.fps - 1e-6)
            remaining = max(0, total - first)
            if opts.fps is not None and info.fps:
                selected = min(remaining, math.floor((remaining - 1) / info.fps * opts.fps) + 1)
                selected = max(selected, 0)
            else:
                selected = math.ceil(remaining / (opts.stride or 1))
            if opts.max_frames is not None:
                selected = min(selected, opts.max_frames)
        hw = opts.size or (info.height, info.width)
        return {
            "id": self.clip_id,
            "frames_total": total,
            "frames_selected": selected,
            "resolution_hw": [int(hw[0]), int(hw[1])],
            "depth": False,
            "poses": False,
            "intrinsics": opts.intrinsics is not None,
            "dynamic": False,
            "fps": info.fps,
            "duration_s": info.duration_s,
            "original_hw": [info.height, info.width],
            "codec": info.codec,
        }

    # -------------------------------------------------------------- decoding
    def _decode(self) -> Iterator[_Decoded]:
        """Every decodable frame in presentation order, with its time; records truncation."""
        av = import_av()
        info = self.probe()
        stats = self.stats
        container = self._open()
        index = 0
        first_abs: float | None = None
        last: _Decoded | None = None
        period = 1.0 / info.fps if info.fps else 1.0 / 30.0
        error: Exception | None = None
        try:
            stream = container.streams.video[0]
            if self.threads is None:
                stream.thread_type = "AUTO"
            else:
                stream.codec_context.thread_count = int(self.threads)
            packets = container.demux(stream)
            while True:
                flushing = False
                try:
                    packet = next(packets)
                    frames = stream.decode(packet)
                except StopIteration:
                    break
                except av.error.FFmpegError as exc:
                    error = exc
                    flushing = True
                    try:  # frames still buffered in the decoder
                        frames = stream.decode(None)
                    except av.error.FFmpegError:
                        frames = []
                for frame in frames:
                    t_abs = frame.time
                    if t_abs is None or not math.isfinite(t_abs):  # no pts: one period on
                        t_abs = (
                            0.0
                            if first_abs is None or last is None
                            else first_abs + last.time + period
                        )
                    if first_abs is None:
                        first_abs = float(t_abs)
                        self._time_offset = first_abs
                    last = _Decoded(index, float(t_abs) - first_abs, frame)
                    stats.decoded += 1
                    index += 1
                    yield last
                if flushing:
                    break
        finally:
            container.close()
        self._finish(info, index, last, error)

    def _finish(
        self, info: VideoInfo, decoded: int, last: _Decoded | None, error: Exception | None
    ) -> None:
        """After a decode that reached the end: detect a damaged or cut-short file."""
        reason = None
        if decoded == 0:
            why = f" ({error})" if error is not None else ""
            raise DatasetFormatError(f"{self.path}: no decodable frame{why}{_mp4_hint(self.path)}")
        assert last is not None
        if error is not None:
            reason = f"decoding failed after frame {last.index} ({error})"
        elif info.frames is not None and decoded < info.frames:
            reason = f"the container lists {info.frames} frames, only {decoded} decode"
        elif (
            info.frames is None
            and info.duration_s
            and info.fps
            and info.format != "gif"
            and last.time < info.duration_s - max(2.5 / info.fps, 0.25)
        ):
            reason = (
                f"the container's duration is {info.duration_s:.3f} s, the last frame is at "
                f"{last.time:.3f} s"
            )
        if reason is None:
            self.truncated = None
            return
        self.truncated = {
            "reason": reason,
            "frames_decoded": decoded,
            "frames_expected": info.frames or info.frames_estimate,
            "last_good_frame": last.index,
            "last_good_time_s": round(last.time, 6),
        }
        message = (
            f"{self.path}: truncated or damaged video: {reason}; kept frames 0..{last.index} "
            f"(last good frame {last.index} at {last.time:.3f} s)"
        )
        if self.strict:
            raise DatasetFormatError(message)
        warnings.warn(message, TruncatedVideoWarning, stacklevel=2)

    def _to_rgb(self, frame: Any) -> np.ndarray:
        rgb = frame.to_ndarray(format="rgb24")
        turns = _quarter_turns(frame) if self.autorotate else 0
        if turns:
            rgb = np.rot90(rgb, turns)
        return np.ascontiguousarray(rgb)

    def _selected(self) -> Iterator[_Decoded]:
        """The kept frames (not yet converted to RGB), decoded lazily."""
        opts = self.options
        self.truncated = None
        self._time_offset = 0.0
        decoded = self._decode()
        frames: Iterator[_Decoded] = decoded
        if opts.start is not None:
            frames = (d for d in frames if d.time >= opts.start - _EPS_S)
        elif opts.start_frame is not None:
            frames = (d for d in frames if d.index >= opts.start_frame)
        if opts.fps is not None:
            frames = resample_nearest(frames, lambda d: d.time, opts.fps)
        elif opts.stride is not None and opts.stride > 1:
            frames = _every(frames, opts.stride)
        kept = 0
        try:
            for item in frames:
                kept += 1
                self.stats.kept = kept
                yield item
                if opts.max_frames is not None and kept >= opts.max_frames:
                    return
        finally:
            decoded.close()  # closes the container when stopped early

    def _convert(self, item: _Decoded) -> tuple[int, float, np.ndarray]:
        """``(frame index, time s, rgb uint8 [H, W, 3])`` of one kept frame (upright)."""
        info = self.probe()
        rgb = self._to_rgb(item.frame)
        if rgb.shape[:2] != (info.height, info.width):
            raise DatasetFormatError(
                f"{self.path}: frame {item.index} is {rgb.shape[0]}x{rgb.shape[1]}, the first "
                f"frame is {info.height}x{info.width} (a size change inside one stream is "
                "not supported)"
            )
        return item.index, item.time, rgb

    def _empty_error(self) -> DatasetFormatError:
        opts = self.options
        where = (
            f"start={opts.start} s" if opts.start is not None else f"start_frame={opts.start_frame}"
        )
        return DatasetFormatError(
            f"{self.path}: zero frames selected: {where} is beyond the end of the video "
            f"({self.stats.decoded} frames decoded)"
        )

    def _meta(self, indices: list[int], times: list[float]) -> dict[str, Any]:
        info = self.probe()
        meta: dict[str, Any] = {
            "id": self.clip_id,
            "source": "video",
            "path": str(self.path),
            "fps": info.fps,
            "timestamps": [round(t, 9) for t in times],
            "frame_indices": indices,
            "time_offset_s": round(self._time_offset, 9),
            "original_hw": [info.height, info.width],
            "sampling": self.options.sampling(),
            "intrinsics_known": self.options.intrinsics is not None,
            "poses_known": False,
        }
        if info.rotation_deg:
            meta["rotation_deg"] = info.rotation_deg
        if self.options.size is not None:
            meta["resize_mode"] = self.options.resize_mode
        return meta

    def _clip(self, items: list[tuple[int, float, np.ndarray]], meta: dict[str, Any]) -> Clip:
        info = self.probe()
        hw = (info.height, info.width)
        base_k, _ = base_intrinsics(self.options, hw)
        transform = fit_transform(hw, self.options.size, self.options.resize_mode)
        return build_clip([rgb for _, _, rgb in items], base_k, transform, meta, self.path)

    def load(self, clip_id: str | None = None) -> Clip:
        """Decode the whole selection (mind ``max_frames`` on long videos) into one `Clip`."""
        self._check_id(clip_id)
        self.stats = WindowStats()
        items = [self._convert(item) for item in self._selected()]
        self.stats.peak_buffered = len(items)
        if not items:
            raise self._empty_error()
        meta = self._meta([i for i, _, _ in items], [t for _, t, _ in items])
        if self.truncated is not None:
            meta["truncated"] = self.truncated
        return self._clip(items, meta)

    def count_selected(self) -> int:
        """How many frames the selection keeps (decodes the stream once, converts nothing)."""
        self.stats = WindowStats()
        count = sum(1 for _ in self._selected())
        if not count:
            raise self._empty_error()
        return count

    def iter_windows(
        self, window: int, overlap: int = 0, clip_id: str | None = None
    ) -> Iterator[Clip]:
        """Decode lazily and yield clips of ``window`` consecutive selected frames, each starting
        ``window - overlap`` frames after the previous (the last may be shorter); at most one
        window of decoded frames is held. Window ``k`` has id ``<stem>_w<kkkk>``,
        ``meta["parent_id"]`` = the stem and ``meta["window"]`` = index / first / size / overlap
        (``first`` counts selected frames). A truncation is reported on the last window."""
        self._check_id(clip_id)
        check_window(self.path, window, overlap)
        self.stats = WindowStats()
        empty = True
        for k, (first, items, last) in enumerate(
            windowed(self._selected(), window, overlap, self.stats, self._convert)
        ):
            empty = False
            yield self._window_clip(k, first, items, window, overlap, last)
        if empty:
            raise self._empty_error()

    def _window_clip(
        self,
        k: int,
        first: int,
        items: list[tuple[int, float, np.ndarray]],
        window: int,
        overlap: int,
        last: bool = False,
    ) -> Clip:
        meta = self._meta([i for i, _, _ in items], [t for _, t, _ in items])
        meta["id"] = f"{self.clip_id}_w{k:04d}"
        meta["parent_id"] = self.clip_id
        meta["window"] = {"index": k, "first": first, "size": window, "overlap": overlap}
        if last and self.truncated is not None:
            meta["truncated"] = self.truncated
        return self._clip(items, meta)


def _every(items: Iterable[_Decoded], stride: int) -> Iterator[_Decoded]:
    for n, item in enumerate(items):
        if n % stride == 0:
            yield item


def _quarter_turns(frame: Any) -> int:
    """Counter-clockwise quarter turns a player applies (the display matrix), 0 if none or
    not a multiple of 90 degrees."""
    rotation = getattr(frame, "rotation", 0) or 0
    turns = round(float(rotation) / 90.0)
    if abs(float(rotation) - 90.0 * turns) > 1.0:
        return 0
    return turns % 4


def _mp4_hint(path: Path) -> str:
    """For an mp4/mov without its index box: say the file was cut short."""
    if path.suffix.lower() not in (".mp4", ".m4v", ".mov", ".3gp"):
        return ""
    boxes = _top_level_boxes(path)
    if boxes and boxes[0] == "ftyp" and "moov" not in boxes:
        return (
            "; the file has no 'moov' index box: an mp4/mov cut short (interrupted download or "
            "recording) before its index cannot be decoded"
        )
    return ""


def _top_level_boxes(path: Path, limit: int = 64) -> list[str]:
    """Types of the top-level ISO-BMFF boxes (reads 16 bytes per box)."""
    out: list[str] = []
    size_total = path.stat().st_size
    with open(path, "rb") as handle:
        offset = 0
        while offset + 8 <= size_total and len(out) < limit:
            handle.seek(offset)
            header = handle.read(16)
            size = int.from_bytes(header[:4], "big")
            kind = header[4:8].decode("latin-1")
            if size == 1 and len(header) >= 16:
                size = int.from_bytes(header[8:16], "big")
            elif size == 0:
                size = size_total - offset
            if size < 8 or not kind.isprintable():
                break
            out.append(kind)
            offset += size
    return out
