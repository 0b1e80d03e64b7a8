"""ImageFolderReader: natural order, exact PNG round trip, selection, resize, windows, errors."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("natsort")

from vfm3d.clip import Clip
from vfm3d.data import DatasetFormatError, read
from vfm3d.data.readers.images import ImageFolderReader
from vfm3d.world import render_clip


@pytest.fixture(scope="module")
def world() -> Clip:
    return render_clip("object", 5, 12, 48, 64, clip_id="orbit")


def write_pngs(folder: Path, frames: np.ndarray, pattern: str = "frame_{}.png") -> Path:
    """``frame_1.png`` .. ``frame_T.png`` (1-based, unpadded: only a natural sort orders them)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(frames, start=1):
        Image.fromarray(image).save(folder / pattern.format(i))
    return folder


@pytest.fixture()
def folder(tmp_path: Path, world: Clip) -> Path:
    return write_pngs(tmp_path / "orbit", world.frames)


def test_natural_order_and_exact_round_trip(folder: Path, world: Clip) -> None:
    (folder / "notes.txt").write_text("not an image")
    (folder / ".hidden.png").write_bytes(b"")
    reader = read("images", folder)
    assert isinstance(reader, ImageFolderReader)
    assert reader.ids == ["orbit"] and len(reader) == 1
    assert [p.name for p in reader.files][:3] == ["frame_1.png", "frame_2.png", "frame_3.png"]
    assert reader.files[-1].name == "frame_12.png"
    clip = reader.load("orbit")
    np.testing.assert_array_equal(clip.frames, world.frames)  # PNG is lossless
    meta = clip.meta
    assert meta["source"] == "images" and meta["frame_indices"] == list(range(12))
    assert meta["files"][9] == "frame_10.png"
    assert meta["fps"] is None and "timestamps" not in meta
    assert not clip.intrinsics_known and not clip.poses_known
    focal = 32.0 / math.tan(math.radians(30.0))
    np.testing.assert_allclose(
        clip.intrinsics[0], [[focal, 0, 31.5], [0, focal, 23.5], [0, 0, 1]], rtol=1e-6
    )


def test_selection_timestamps_and_resize(folder: Path, world: Clip) -> None:
    clip = ImageFolderReader(folder, fps=10, stride=3, start_frame=1, max_frames=3).load()
    assert clip.meta["frame_indices"] == [1, 4, 7]
    np.testing.assert_allclose(clip.meta["timestamps"], [0.1, 0.4, 0.7])
    np.testing.assert_array_equal(clip.frames, world.frames[[1, 4, 7]])
    late = ImageFolderReader(folder, fps=10, start=0.95).load()
    assert late.meta["frame_indices"] == [10, 11]
    # crop 48x64 -> 24x24: scale 1/2 -> 24x32, centre crop at left 4; known K follows
    small = ImageFolderReader(
        folder, size=(24, 24), resize_mode="crop", intrinsics=(60.0, 60.0, 31.5, 23.5)
    ).load()
    assert small.frames.shape == (12, 24, 24, 3) and small.intrinsics_known
    np.testing.assert_allclose(
        small.intrinsics[0], [[30.0, 0, 11.5], [0, 30.0, 11.5], [0, 0, 1]], rtol=1e-6
    )
    row = ImageFolderReader(folder, stride=5, size="24x24").describe()
    assert row["frames_total"] == 12 and row["frames_selected"] == 3
    assert row["resolution_hw"] == [24, 24] and row["original_hw"] == [48, 64]


def test_windows_are_lazy_and_cover_everything(folder: Path, world: Clip) -> None:
    reader = ImageFolderReader(folder)
    windows = reader.iter_windows(5, overlap=1)
    first = next(windows)
    assert reader.stats.decoded <= 6  # one window (+ nothing else decoded yet)
    rest = list(windows)
    got = [first, *rest]
    assert [w.meta["frame_indices"] for w in got] == [
        [0, 1, 2, 3, 4],
        [4, 5, 6, 7, 8],
        [8, 9, 10, 11],
    ]
    assert reader.stats.peak_buffered <= 5
    np.testing.assert_array_equal(got[2].frames, world.frames[8:])
    assert got[1].id == "orbit_w0001" and got[1].meta["window"]["first"] == 4


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    image = np.zeros((16, 32, 3), np.uint8)
    image[:, :4] = 255
    folder = tmp_path / "phone"
    folder.mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to view
    Image.fromarray(image).save(folder / "a.jpg", exif=exif, quality=95)
    clip = ImageFolderReader(folder).load()
    assert clip.frames.shape == (1, 32, 16, 3)
    assert clip.frames[0, :4].mean() > 200  # the left stripe is now at the top


def test_mixed_sizes_name_the_first_offending_file(folder: Path) -> None:
    Image.fromarray(np.zeros((40, 64, 3), np.uint8)).save(folder / "frame_7.png")
    Image.fromarray(np.zeros((30, 30, 3), np.uint8)).save(folder / "frame_9.png")
    reader = ImageFolderReader(folder)
    message = r"frame_7\.png: image size 40x64 differs from the first image frame_1\.png \(48x64\)"
    with pytest.raises(DatasetFormatError, match=message):
        reader.load()
    with pytest.raises(DatasetFormatError, match=message):
        reader.describe()


def test_bad_folders(tmp_path: Path, folder: Path) -> None:
    with pytest.raises(FileNotFoundError, match="image folder not found"):
        ImageFolderReader(tmp_path / "absent")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetFormatError, match=r"empty: zero frames: the folder holds no images"):
        ImageFolderReader(empty)
    with pytest.raises(DatasetFormatError, match="zero frames selected: start_frame=20"):
        ImageFolderReader(folder, start_frame=20).load()
    with pytest.raises(DatasetFormatError, match="start is in seconds and needs fps"):
        ImageFolderReader(folder, start=1.0)
    with pytest.raises(DatasetFormatError, match="stride must be a positive integer, got -2"):
        ImageFolderReader(folder, stride=-2)
    with pytest.raises(DatasetFormatError, match="fps must be a positive number"):
        ImageFolderReader(folder, fps=0)
    (folder / "frame_13.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(DatasetFormatError, match=r"frame_13\.png: cannot read the image header"):
        ImageFolderReader(folder).load()
