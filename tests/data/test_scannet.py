"""ScanNet reader: exported color/depth/pose/intrinsic folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.data.scene import Truth, assert_reads_back, make_truth, save_jpg, save_png16
from vfm3d.data import DatasetFormatError, read
from vfm3d.data.readers.scannet import parse_pose


def matrix_text(m: np.ndarray) -> str:
    return "\n".join(" ".join(f"{v:.12g}" for v in row) for row in m) + "\n"


def write_scene(folder: Path, truth: Truth, bad_pose=()) -> np.ndarray:
    """Colour at twice the depth resolution (as ScanNet's 1296x968 vs 640x480)."""
    k4 = np.eye(4)
    k4[:3, :3] = truth.intrinsics[0]
    (folder / "intrinsic").mkdir(parents=True)
    (folder / "intrinsic" / "intrinsic_depth.txt").write_text(matrix_text(k4))
    (folder / "intrinsic" / "intrinsic_color.txt").write_text(matrix_text(k4 * 2))
    raws = []
    for i in range(len(truth.frames)):
        big = truth.frames[i].repeat(2, axis=0).repeat(2, axis=1)
        save_jpg(folder / "color" / f"{i}.jpg", big)
        raw = np.round(truth.depth[i] * 1000).astype(np.uint16)
        raw[-1, -1] = 0
        raws.append(raw)
        save_png16(folder / "depth" / f"{i}.png", raw)
        pose = np.full((4, 4), -np.inf) if i in bad_pose else truth.cam_to_world[i]
        (folder / "pose").mkdir(exist_ok=True)
        (folder / "pose" / f"{i}.txt").write_text(matrix_text(pose))
    return np.stack(raws)


@pytest.fixture
def scannet(tmp_path: Path) -> tuple[Path, Truth, np.ndarray]:
    truth = make_truth(5, seed=6, blob=1)
    raws = write_scene(tmp_path / "scene0000_00", truth, bad_pose=(3,))
    return tmp_path, truth, raws


def test_scannet_reads_back_and_skips_inf_poses(scannet) -> None:
    root, truth, raws = scannet
    reader = read("scannet", root)
    assert reader.ids == ["scene0000_00"]
    clip = reader.load("scene0000_00")
    kept = [0, 1, 2, 4]
    assert clip.meta["frame_indices"] == kept and clip.meta["skipped_frames"] == [3]
    assert clip.frames.shape == (4, 16, 24, 3)  # colour resized to the depth size
    assert_reads_back(clip, truth, frame_ids=kept, depth=(raws[kept] / 1000).astype(np.float32))
    assert not clip.valid[:, -1, -1].any() and clip.valid[:, 0, 0].all()
    np.testing.assert_allclose(clip.meta["color_intrinsics"], truth.intrinsics[0] * 2)


def test_scannet_protocol_and_scene_root(scannet) -> None:
    root, _, _ = scannet
    clip = read("scannet", root, protocol="monst3r").load("scene0000_00")
    assert clip.meta["frame_indices"] == [0] and clip.meta["skipped_frames"] == [3]
    assert read("scannet", root / "scene0000_00").ids == ["scene0000_00"]
    assert read("scannet", root).describe("scene0000_00")["resolution_hw"] == [16, 24]


def test_malformed_pose_and_missing_depth(scannet) -> None:
    root, _, _ = scannet
    pose = root / "scene0000_00" / "pose" / "1.txt"
    pose.write_text("1 0 0\n0 1 0\n")
    with pytest.raises(DatasetFormatError, match=r"1\.txt: expected a 4x4"):
        read("scannet", root).load("scene0000_00")
    pose.write_text(matrix_text(np.full((4, 4), np.nan)))
    with pytest.raises(DatasetFormatError, match=r"1\.txt: NaN"):
        read("scannet", root).load("scene0000_00")
    pose.write_text(matrix_text(np.eye(4)))
    (root / "scene0000_00" / "depth" / "2.png").unlink()
    with pytest.raises(DatasetFormatError, match=r"2\.png: missing"):
        read("scannet", root).load("scene0000_00")


def test_truncated_colour_names_the_file(scannet) -> None:
    root, _, _ = scannet
    jpg = root / "scene0000_00" / "color" / "4.jpg"
    jpg.write_bytes(jpg.read_bytes()[:50])
    with pytest.raises(DatasetFormatError, match=r"4\.jpg: cannot decode"):
        read("scannet", root).load("scene0000_00")


@given(st.text(alphabet="0123456789.-+eE infa\n\t", max_size=200))
def test_fuzz_pose(text: str) -> None:
    try:
        pose = parse_pose(text, "pose/0.txt")
    except DatasetFormatError as error:
        assert "pose/0.txt" in str(error)
    else:
        assert pose is None or np.all(np.isfinite(pose))
