"""VideoReader: a world clip through mp4 and back, selection, resize + intrinsics, VFR, windows,
truncated and broken files."""

from __future__ import annotations

import fractions
import math
import tracemalloc
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av")

from vfm3d.clip import Clip  # noqa: E402
from vfm3d.data import DatasetFormatError, read  # noqa: E402
from vfm3d.data.readers.video import (  # noqa: E402
    TruncatedVideoWarning,
    VideoReader,
    placeholder_intrinsics,
)
from vfm3d.world import render_clip  # noqa: E402


def write_video(
    path: Path,
    frames: np.ndarray,
    fps: int = 30,
    codec: str = "libx264",
    pts_ms: Sequence[int] | None = None,
    rotation: int = 0,
    container_options: dict[str, str] | None = None,
) -> Path:
    """Encode uint8 RGB ``[T, H, W, 3]`` (yuv420p, crf 10); ``pts_ms`` gives each frame's
    presentation time in milliseconds (a variable-frame-rate stream)."""
    with av.open(str(path), "w", options=container_options or {}) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "10"} if codec == "libx264" else {"qscale": "2"}
        if pts_ms is not None:
            stream.codec_context.time_base = fractions.Fraction(1, 1000)
        if rotation:
            stream.set_display_rotation(rotation)
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            if pts_ms is not None:
                frame.pts = int(pts_ms[i])
                frame.time_base = fractions.Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture(scope="module")
def world() -> Clip:
    return render_clip("scene", 3, 12, 64, 64, clip_id="walk")


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory, world: Clip) -> Path:
    return write_video(tmp_path_factory.mktemp("video") / "walk.mp4", world.frames)


@pytest.fixture(scope="module")
def wide(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """48x64 (H x W) gradient video, 12 frames."""
    yy, xx = np.mgrid[0:48, 0:64]
    frames = np.stack(
        [np.stack([xx * 4, yy * 5, np.full_like(xx, 20 * t)], -1) for t in range(12)]
    ).astype(np.uint8)
    return write_video(tmp_path_factory.mktemp("wide") / "wide.mp4", frames)


# ---------------------------------------------------------------------- round trip
def test_world_clip_round_trip(video: Path, world: Clip) -> None:
    reader = read("video", video)
    assert isinstance(reader, VideoReader)
    assert reader.ids == ["walk"] and len(reader) == 1
    clip = reader.load("walk")
    assert clip.frames.shape == (12, 64, 64, 3) and clip.frames.dtype == np.uint8
    diff = np.abs(clip.frames.astype(np.int16) - world.frames.astype(np.int16)).mean()
    assert diff < 8.0, diff
    meta = clip.meta
    assert meta["id"] == "walk" and meta["source"] == "video" and meta["path"] == str(video)
    assert meta["fps"] == pytest.approx(30.0)
    assert meta["frame_indices"] == list(range(12))
    np.testing.assert_allclose(meta["timestamps"], np.arange(12) / 30.0, atol=1e-6)
    assert not clip.intrinsics_known and not clip.poses_known and not clip.has_ground_truth
    assert clip.depth is None
    np.testing.assert_array_equal(clip.cam_to_world, np.tile(np.eye(4), (12, 1, 1)))
    focal = 32.0 / math.tan(math.radians(30.0))  # 60-degree horizontal FoV
    expected = np.array([[focal, 0, 31.5], [0, focal, 31.5], [0, 0, 1]], np.float32)
    np.testing.assert_allclose(clip.intrinsics, np.tile(expected, (12, 1, 1)), rtol=1e-6)
    assert next(iter(reader)).num_frames == 12


def test_probe_and_describe_are_container_facts(video: Path) -> None:
    reader = VideoReader(video, stride=5)
    info = reader.probe()
    assert (info.frames, info.height, info.width) == (12, 64, 64)
    assert info.fps == pytest.approx(30.0)
    assert info.duration_s == pytest.approx(12 / 30, abs=0.02)
    row = reader.describe("walk")
    assert row["frames_total"] == 12 and row["frames_selected"] == 3
    assert row["resolution_hw"] == [64, 64]
    assert not row["depth"] and not row["poses"] and not row["intrinsics"]
    assert reader.stats.decoded == 0  # nothing decoded beyond the probe


# ---------------------------------------------------------------------- selection
@pytest.mark.parametrize(
    ("options", "indices"),
    [
        ({"stride": 4}, [0, 4, 8]),
        ({"start_frame": 5}, list(range(5, 12))),
        ({"start": 0.2}, list(range(6, 12))),
        ({"max_frames": 5}, [0, 1, 2, 3, 4]),
        ({"stride": 2, "start_frame": 3, "max_frames": 3}, [3, 5, 7]),
        ({"fps": 10}, [0, 3, 6, 9]),
        ({"fps": 15, "start": 0.1}, [3, 5, 7, 9, 11]),
        ({"fps": 60}, list(range(12))),  # above the stream's rate: every frame, none repeated
    ],
)
def test_frame_selection(video: Path, options: dict, indices: list[int]) -> None:
    clip = VideoReader(video, **options).load()
    assert clip.meta["frame_indices"] == indices
    np.testing.assert_allclose(clip.meta["timestamps"], np.array(indices) / 30.0, atol=1e-6)
    assert clip.num_frames == len(indices)


def test_max_frames_stops_decoding(video: Path) -> None:
    reader = VideoReader(video, max_frames=2)
    reader.load()
    assert reader.stats.decoded < 12


# ---------------------------------------------------------------------- resize + K
def _k(fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    return np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], np.float64)


def test_crop_resizes_short_side_and_moves_the_principal_point(wide: Path) -> None:
    clip = VideoReader(wide, size=(32, 32), resize_mode="crop").load()
    assert clip.frames.shape == (12, 32, 32, 3)
    # 48x64 -> scale 2/3 -> 32x43 (round) -> centre crop 32x32 at left (43-32)//2 = 5
    sx, sy, left = 43 / 64, 32 / 48, 5
    f0 = placeholder_intrinsics((48, 64))[0, 0]
    expected = _k(sx * f0, sy * f0, sx * (31.5 + 0.5) - 0.5 - left, sy * (23.5 + 0.5) - 0.5)
    np.testing.assert_allclose(clip.intrinsics[0], expected, rtol=1e-5)
    assert clip.meta["transform"]["in_hw"] == [48, 64]
    assert clip.meta["transform"]["out_hw"] == [32, 32]
    assert clip.meta["resize_mode"] == "crop" and clip.meta["original_hw"] == [48, 64]


def test_pad_keeps_everything_and_known_intrinsics_follow(wide: Path) -> None:
    plain = VideoReader(wide, max_frames=2).load()
    clip = VideoReader(
        wide, size=(64, 64), resize_mode="pad", intrinsics=(50.0, 52.0, 30.0, 22.0), max_frames=2
    ).load()
    assert clip.frames.shape == (2, 64, 64, 3)
    assert clip.intrinsics_known
    # long side already 64: no scaling, 8 rows of black above and below
    assert not clip.frames[:, :8].any() and not clip.frames[:, 56:].any()
    np.testing.assert_array_equal(clip.frames[:, 8:56], plain.frames)
    np.testing.assert_allclose(clip.intrinsics[0], _k(50, 52, 30, 30), rtol=1e-6)


def test_stretch_scales_each_axis(video: Path) -> None:
    clip = VideoReader(video, size="32x16", resize_mode="stretch", max_frames=1).load()
    assert clip.frames.shape == (1, 32, 16, 3)
    f0 = placeholder_intrinsics((64, 64))[0, 0]
    expected = _k(0.25 * f0, 0.5 * f0, 0.25 * 32 - 0.5, 0.5 * 32 - 0.5)
    np.testing.assert_allclose(clip.intrinsics[0], expected, rtol=1e-5)


# ---------------------------------------------------------------------- VFR
PTS_MS = [0, 33, 66, 200, 233, 500, 533, 566, 900, 933, 966, 1000]


def _nearest_reference(times: Sequence[float], fps: float) -> list[int]:
    """Brute force: nearest frame to each target t0 + k / fps <= last time; ties earlier; unique."""
    picked: list[int] = []
    k = 0
    while times[0] + k / fps <= times[-1] + 1e-9:
        target = times[0] + k / fps
        best = min(range(len(times)), key=lambda i: (abs(times[i] - target), i))
        if best not in picked:
            picked.append(best)
        k += 1
    return picked


def test_variable_frame_rate_uses_timestamps(tmp_path: Path, world: Clip) -> None:
    path = write_video(tmp_path / "vfr.mp4", world.frames, pts_ms=PTS_MS)
    clip = VideoReader(path).load()
    times = np.array(PTS_MS) / 1000.0
    np.testing.assert_allclose(clip.meta["timestamps"], times, atol=1e-3)
    for fps in (10.0, 4.0, 2.5):
        resampled = VideoReader(path, fps=fps).load()
        expected = _nearest_reference(list(times), fps)
        assert resampled.meta["frame_indices"] == expected, fps
        np.testing.assert_allclose(resampled.meta["timestamps"], times[expected], atol=1e-3)
    assert VideoReader(path, fps=10).load().meta["frame_indices"] == [0, 2, 3, 4, 5, 7, 8, 11]
    late = VideoReader(path, start=0.45).load()
    assert late.meta["frame_indices"][0] == 5


# ---------------------------------------------------------------------- windows
def test_windows_cover_all_frames_and_hold_one_window(video: Path) -> None:
    reader = VideoReader(video)
    windows = list(reader.iter_windows(5, overlap=2))
    assert [w.meta["frame_indices"] for w in windows] == [
        [0, 1, 2, 3, 4],
        [3, 4, 5, 6, 7],
        [6, 7, 8, 9, 10],
        [9, 10, 11],
    ]
    assert [w.id for w in windows] == ["walk_w0000", "walk_w0001", "walk_w0002", "walk_w0003"]
    assert all(w.meta["parent_id"] == "walk" for w in windows)
    assert reader.stats.peak_buffered <= 5
    whole = reader.load()
    np.testing.assert_array_equal(windows[1].frames, whole.frames[3:8])
    # lazy: the first window comes before the whole file is decoded
    lazy = VideoReader(video)
    next(lazy.iter_windows(3))
    assert lazy.stats.decoded < 12


def test_windows_follow_the_selection(video: Path) -> None:
    reader = VideoReader(video, stride=2, size=(32, 32))
    windows = list(reader.iter_windows(4))
    assert [w.meta["frame_indices"] for w in windows] == [[0, 2, 4, 6], [8, 10]]
    assert all(w.frames.shape[1:3] == (32, 32) for w in windows)


def test_window_memory_stays_bounded(tmp_path: Path) -> None:
    t, h, w = 48, 96, 96
    yy, xx = np.mgrid[0:h, 0:w]
    frames = np.stack([np.stack([xx + i, yy, (xx * yy) % 255], -1) % 256 for i in range(t)])
    path = write_video(tmp_path / "long.mp4", frames.astype(np.uint8))
    total_bytes = t * h * w * 3
    reader = VideoReader(path, threads=1)
    tracemalloc.start()
    try:
        count = sum(clip.num_frames for clip in reader.iter_windows(4))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == t
    assert reader.stats.peak_buffered == 4
    assert peak < 0.4 * total_bytes, (peak, total_bytes)


# ---------------------------------------------------------------------- other containers
def test_rotated_phone_video_is_shown_upright(tmp_path: Path) -> None:
    frames = np.zeros((3, 32, 64, 3), np.uint8)
    frames[:, :8, :8] = 255  # white block at the top-left
    path = write_video(tmp_path / "phone.mp4", frames, rotation=90)
    reader = VideoReader(path)
    assert (reader.probe().height, reader.probe().width) == (64, 32)
    clip = reader.load()
    assert clip.frames.shape == (3, 64, 32, 3) and clip.meta["rotation_deg"] == 90
    # a 90-degree counter-clockwise turn takes the top-left corner to the bottom-left
    assert clip.frames[0, -4, 4].mean() > 200 and clip.frames[0, 4, 4].mean() < 50
    assert clip.intrinsics[0, 0, 2] == pytest.approx(15.5)
    assert VideoReader(path, autorotate=False).load().frames.shape == (3, 32, 64, 3)


def test_mkv_and_gif(tmp_path: Path, world: Clip) -> None:
    mkv = write_video(tmp_path / "walk.mkv", world.frames)
    assert VideoReader(mkv).load().num_frames == 12
    gif = tmp_path / "walk.gif"
    with av.open(str(gif), "w") as container:
        stream = container.add_stream("gif", rate=10)
        stream.height, stream.width, stream.pix_fmt = 64, 64, "rgb8"
        for image in world.frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    clip = read("video", gif).load()
    assert clip.frames.shape == (12, 64, 64, 3)
    np.testing.assert_allclose(clip.meta["timestamps"], np.arange(12) / 10.0, atol=1e-6)


# ---------------------------------------------------------------------- bad input
def test_missing_garbage_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"video not found: .*nothing\.mp4"):
        VideoReader(tmp_path / "nothing.mp4")
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(DatasetFormatError, match=r"garbage\.mp4: not a readable video"):
        VideoReader(garbage)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(DatasetFormatError, match=r"empty\.mp4: the file is empty"):
        VideoReader(empty)


def _noise_video(path: Path, frames: int = 40, **kwargs: object) -> Path:
    rng = np.random.default_rng(1)
    data = rng.integers(0, 256, (frames, 32, 32, 3), dtype=np.uint8)
    return write_video(path, data, **kwargs)  # type: ignore[arg-type]


def _cut_in_half(path: Path) -> Path:
    data = path.read_bytes()
    cut = path.with_name(f"cut_{path.name}")
    cut.write_bytes(data[: len(data) // 2])
    return cut


def test_truncated_video_keeps_the_good_frames_and_says_so(tmp_path: Path) -> None:
    # index at the front (faststart): the first half of the frames stays decodable
    path = _noise_video(tmp_path / "fast.mp4", container_options={"movflags": "+faststart"})
    cut = _cut_in_half(path)
    with pytest.warns(TruncatedVideoWarning, match=r"cut_fast\.mp4: truncated .*last good frame"):
        clip = VideoReader(cut).load()
    info = clip.meta["truncated"]
    assert 0 < clip.num_frames < 40
    assert info["last_good_frame"] == clip.meta["frame_indices"][-1]
    assert info["frames_decoded"] == clip.num_frames and info["frames_expected"] == 40
    with pytest.raises(DatasetFormatError, match="truncated or damaged video"):
        VideoReader(cut, strict=True).load()
    # windows: the warning and meta come with the last window
    with pytest.warns(TruncatedVideoWarning):
        windows = list(VideoReader(cut).iter_windows(8))
    assert "truncated" in windows[-1].meta and "truncated" not in windows[0].meta
    # a streamable container (mkv) cut short: caught by its duration
    mkv = _cut_in_half(_noise_video(tmp_path / "walk.mkv"))
    with pytest.warns(TruncatedVideoWarning, match="duration"):
        assert 0 < VideoReader(mkv).load().num_frames < 40
    # a whole file raises no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert "truncated" not in VideoReader(path).load().meta


def test_mp4_cut_before_its_index_raises(tmp_path: Path) -> None:
    cut = _cut_in_half(_noise_video(tmp_path / "plain.mp4"))
    with pytest.raises(DatasetFormatError, match=r"cut_plain\.mp4: .*no 'moov' index box"):
        VideoReader(cut)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"fps": 10, "stride": 2}, "fps and stride cannot both be given"),
        ({"fps": 0}, "fps must be a positive number, got 0"),
        ({"fps": -5}, "fps must be a positive number"),
        ({"stride": 0}, "stride must be a positive integer, got 0"),
        ({"max_frames": 0}, "max_frames must be a positive integer"),
        ({"start": -1.0}, r"start must be >= 0 seconds"),
        ({"start_frame": -1}, r"start_frame must be an integer >= 0"),
        ({"start": 1.0, "start_frame": 2}, "start .* and start_frame .* cannot both"),
        ({"size": (0, 32)}, "size must be a positive integer"),
        ({"size": "32by32"}, "size must look like HxW"),
        ({"size": (32, 32), "resize_mode": "zoom"}, "resize_mode must be one of crop, pad"),
        ({"resize_mode": "pad"}, r"resize_mode='pad' needs size"),
        ({"intrinsics": (0.0, 50.0, 31.5, 31.5)}, "focal lengths fx, fy must be positive"),
        ({"intrinsics": (1.0, 2.0)}, "intrinsics must be 4 finite numbers"),
        ({"protocol": "monst3r"}, "applies to benchmark datasets"),
    ],
)
def test_bad_options_name_file_and_rule(video: Path, options: dict, message: str) -> None:
    with pytest.raises(DatasetFormatError, match=rf"walk\.mp4: .*{message}"):
        VideoReader(video, **options)


def test_zero_frames_selected(video: Path) -> None:
    with pytest.raises(DatasetFormatError, match=r"walk\.mp4: zero frames selected: start=5\.0 s"):
        VideoReader(video, start=5.0).load()
    with pytest.raises(DatasetFormatError, match="zero frames selected: start_frame=12"):
        list(VideoReader(video, start_frame=12).iter_windows(4))
    with pytest.raises(
        DatasetFormatError, match=r"overlap must be an integer in \[0, window - 1\]"
    ):
        list(VideoReader(video).iter_windows(4, overlap=4))
    with pytest.raises(KeyError, match="its id is 'walk'"):
        VideoReader(video).load("other")
