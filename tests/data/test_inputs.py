"""open_clips on every kind of --data PATH, its errors, the argparse helpers, and
`vfm3d extract --data video.mp4` end to end."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("av")

from tests.data.test_image_folder_input import write_pngs
from tests.data.test_video_input import write_video
from vfm3d.cli import main as vfm3d_main
from vfm3d.clip import Clip, ClipFolder, write_clip_folder
from vfm3d.data import DatasetFormatError
from vfm3d.data.inputs import (
    ClipFile,
    ClipSource,
    add_input_arguments,
    input_options,
    open_clips,
)
from vfm3d.data.readers.images import ImageFolderReader
from vfm3d.data.readers.video import VideoReader
from vfm3d.features import FeatureStore
from vfm3d.world import render_clip


@pytest.fixture(scope="module")
def world() -> Clip:
    return render_clip("scene", 7, 12, 64, 64, clip_id="hall")


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory, world: Clip) -> Path:
    return write_video(tmp_path_factory.mktemp("inputs") / "hall.mp4", world.frames)


def test_every_kind_of_path(tmp_path: Path, world: Clip, video: Path) -> None:
    folder = write_clip_folder(tmp_path / "clips", [world])
    assert isinstance(open_clips(folder.root), ClipFolder)
    one = open_clips(tmp_path / "clips" / "hall.safetensors")
    assert isinstance(one, ClipFile) and one.ids == ["hall"] and len(one) == 1
    np.testing.assert_array_equal(one.load("hall").frames, world.frames)
    source = open_clips(video, stride=2, size=(32, 32))
    assert isinstance(source, VideoReader) and isinstance(source, ClipSource)
    clip = next(iter(source))
    assert clip.frames.shape == (6, 32, 32, 3)
    unknown_suffix = tmp_path / "hall.video"
    shutil.copy(video, unknown_suffix)
    assert isinstance(open_clips(unknown_suffix), VideoReader)  # found by probing
    images = write_pngs(tmp_path / "frames", world.frames[:4])
    reader = open_clips(images, max_frames=2)
    assert isinstance(reader, ImageFolderReader) and reader.load().num_frames == 2


def test_clear_errors(tmp_path: Path, world: Clip, video: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"input not found: .*nowhere"):
        open_clips(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetFormatError, match=r"empty: neither a clip folder \(index.json\)"):
        open_clips(empty)
    videos = tmp_path / "videos"
    videos.mkdir()
    shutil.copy(video, videos / "a.mp4")
    with pytest.raises(DatasetFormatError, match=r"it holds videos \(a\.mp4\): pass one video"):
        open_clips(videos)
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    with pytest.raises(DatasetFormatError, match=r"notes\.txt: unknown file type '\.txt'"):
        open_clips(text)
    garbage = tmp_path / "broken.mp4"
    garbage.write_bytes(b"\x00\x01garbage" * 100)
    with pytest.raises(DatasetFormatError, match=r"broken\.mp4: not a readable video"):
        open_clips(garbage)
    write_clip_folder(tmp_path / "clips", [world])
    with pytest.raises(DatasetFormatError, match="fps only apply to videos and image folders"):
        open_clips(tmp_path / "clips", fps=5.0)
    with pytest.raises(DatasetFormatError, match="a single image is not a clip"):
        open_clips(write_pngs(tmp_path / "one", world.frames[:1]) / "frame_1.png")


def test_argparse_helpers() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-frames", type=int)  # a command's own flag is kept
    add_input_arguments(parser)
    given = ["--fps", "12.5", "--start", "1.5", "--size", "256x320", "--resize-mode", "pad"]
    args = parser.parse_args([*given, "--intrinsics", "500,510,160,128", "--max-frames", "3"])
    assert input_options(args) == {
        "fps": 12.5,
        "start": 1.5,
        "size": (256, 320),
        "resize_mode": "pad",
        "intrinsics": (500.0, 510.0, 160.0, 128.0),
    }
    assert input_options(parser.parse_args([])) == {}
    with pytest.raises(SystemExit):
        parser.parse_args(["--intrinsics", "1,2,3"])
    with pytest.raises(SystemExit):
        parser.parse_args(["--size", "big"])


def test_extract_from_a_video_end_to_end(tmp_path: Path, video: Path, capsys) -> None:
    out = tmp_path / "cache"
    args = ["extract", "--data", str(video), "--backbone", "random", "--tiny", "--layers", "0"]
    assert vfm3d_main([*args, "--out", str(out), "--no-progress"]) == 0
    assert "1 clips: 1 entries computed" in capsys.readouterr().out
    keys = FeatureStore(out).keys()
    assert [k.clip_id for k in keys] == ["hall"] and keys[0].input_size == (12, 64, 64)
    # input options shape what the model sees; a rerun with the same options skips
    small = ["--out", str(tmp_path / "small"), "--no-progress", "--fps", "10", "--size", "32x32"]
    assert vfm3d_main([*args, *small]) == 0
    key = FeatureStore(tmp_path / "small").keys()[0]
    assert key.input_size == (4, 32, 32)
    capsys.readouterr()
    assert vfm3d_main([*args, *small]) == 0
    assert "0 entries computed, 1 skipped" in capsys.readouterr().out


def test_extract_splits_a_long_video_into_windows(tmp_path: Path, video: Path, capsys) -> None:
    out = tmp_path / "cache"
    args = ["extract", "--data", str(video), "--backbone", "random", "--tiny", "--layers", "0"]
    args += ["--out", str(out), "--no-progress", "--window", "5", "--window-overlap", "1"]
    assert vfm3d_main(args) == 0
    keys = sorted(FeatureStore(out).keys(), key=lambda k: k.clip_id)
    # 12 frames, windows of 5 starting every 4: [0, 5), [4, 9), [8, 12)
    assert [k.clip_id for k in keys] == ["hall_w0000", "hall_w0001", "hall_w0002"]
    assert [k.input_size[0] for k in keys] == [5, 5, 4]
    assert vfm3d_main([*args[:-4], "--window", "0"]) == 2
    assert "window must be a positive integer" in capsys.readouterr().err


def test_windowed_clips_decode_in_order_and_out_of_order(video: Path) -> None:
    from vfm3d.data.inputs import WindowedClips

    windows = WindowedClips(open_clips(video), 5, 1)
    assert windows.ids == ["hall_w0000", "hall_w0001", "hall_w0002"] and windows.frames == 12
    last = windows.load("hall_w0002")
    first = windows.load("hall_w0000")  # restarts the decode
    assert last.meta["frame_indices"] == [8, 9, 10, 11]
    assert first.meta["frame_indices"] == [0, 1, 2, 3, 4]
    assert [c.num_frames for c in windows] == [5, 5, 4]
    with pytest.raises(KeyError, match="no window"):
        windows.load("hall")


def test_extract_takes_an_image_folder(tmp_path: Path, world: Clip) -> None:
    images = write_pngs(tmp_path / "walk", world.frames[:5])
    out = tmp_path / "cache"
    argv = ["extract", "--data", str(images), "--backbone", "random", "--tiny", "--layers", "0"]
    assert vfm3d_main([*argv, "--out", str(out), "--no-progress"]) == 0
    assert [k.clip_id for k in FeatureStore(out).keys()] == ["walk"]
