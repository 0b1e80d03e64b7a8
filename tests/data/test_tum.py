"""TUM RGB-D and Bonn readers on fixtures written in the exact published layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.data.scene import (
    Truth,
    assert_reads_back,
    make_truth,
    save_png,
    save_png16,
    tum_quaternion_xyzw,
)
from vfm3d.data import DatasetFormatError, read
from vfm3d.data.readers.tum import associate, parse_file_list, parse_trajectory

FR3 = (535.4, 539.2, 320.1, 247.6)
BONN = (542.822841, 542.576870, 315.593520, 237.756098)
HEADER = "# comment\n# comment\n# timestamp filename\n"


def write_tum(folder: Path, truth: Truth, gt_offsets=None, no_depth=(), extra_gt=()) -> dict:
    """Write rgb/, depth/, rgb.txt, depth.txt, groundtruth.txt. Returns expected raw depth."""
    n = len(truth.frames)
    stamps = [100.0 + 0.1 * i for i in range(n)]
    offsets = gt_offsets or [0.005] * n
    rgb_lines, depth_lines, gt_lines = [HEADER], [HEADER], ["# timestamp tx ty tz qx qy qz qw\n"]
    raw_depths = []
    for i, stamp in enumerate(stamps):
        name = f"rgb/{stamp:.6f}.png"
        save_png(folder / name, truth.frames[i])
        rgb_lines.append(f"{stamp:.6f} {name}\n")
        raw = np.round(truth.depth[i] * 5000).astype(np.uint16)
        raw[0, 0] = 0  # an invalid pixel
        raw_depths.append(raw)
        if i not in no_depth:
            dname = f"depth/{stamp + 0.003:.6f}.png"
            save_png16(folder / dname, raw)
            depth_lines.append(f"{stamp + 0.003:.6f} {dname}\n")
        if offsets[i] is not None:
            pose = truth.cam_to_world[i]
            q = tum_quaternion_xyzw(pose[:3, :3])
            values = [stamp + offsets[i], *pose[:3, 3], *q]
            gt_lines.append(" ".join(f"{v:.9f}" for v in values) + "\n")
    gt_lines.extend(extra_gt)
    (folder / "rgb.txt").write_text("".join(rgb_lines))
    (folder / "depth.txt").write_text("".join(depth_lines))
    (folder / "groundtruth.txt").write_text("".join(gt_lines))
    return {"raw": np.stack(raw_depths), "stamps": stamps}


@pytest.fixture
def tum_root(tmp_path: Path) -> tuple[Path, Truth, dict]:
    truth = make_truth(5, seed=1, intrinsics=FR3)
    seq = tmp_path / "rgbd_dataset_freiburg3_walking_xyz"
    # frame 3's pose is 0.015 s away (kept at 0.02, dropped at 0.01); frame 4 has none.
    info = write_tum(
        seq,
        truth,
        gt_offsets=[0.005, 0.005, 0.005, 0.015, None],
        no_depth=(2,),
        extra_gt=["100.450000 9 9 9 0 0 0 1\n"],  # 0.05 s from frame 4: never associated
    )
    return tmp_path, truth, info


def test_tum_reads_cameras_depth_and_marker(tum_root) -> None:
    root, truth, info = tum_root
    reader = read("tum", root)
    assert reader.ids == ["rgbd_dataset_freiburg3_walking_xyz"]
    clip = reader.load(reader.ids[0])
    expected = info["raw"][:4].astype(np.float64) / 5000
    expected[2] = 0.0  # frame 2 has no depth within the association limit
    assert_reads_back(clip, truth, frame_ids=[0, 1, 2, 3], depth=expected.astype(np.float32))
    assert clip.valid[2].sum() == 0
    assert not clip.valid[0, 0, 0] and clip.valid[0, 1, 1]
    np.testing.assert_allclose(
        clip.depth[0][clip.valid[0]], truth.depth[0][clip.valid[0]], atol=1e-4
    )
    assert clip.meta["frame_indices"] == [0, 1, 2, 3]
    np.testing.assert_allclose(clip.meta["timestamps"], info["stamps"][:4])


def test_tum_association_limit_is_an_option(tum_root) -> None:
    root, truth, _ = tum_root
    clip = read("tum", root, association_max_diff=0.01).load("rgbd_dataset_freiburg3_walking_xyz")
    assert clip.meta["frame_indices"] == [0, 1, 2]
    np.testing.assert_allclose(clip.cam_to_world, truth.cam_to_world[:3], atol=1e-6)


def test_tum_protocol_and_max_frames(tum_root) -> None:
    root, _, _ = tum_root
    seq = "rgbd_dataset_freiburg3_walking_xyz"
    assert read("tum", root, protocol="monst3r").load(seq).meta["frame_indices"] == [0, 3]
    assert read("tum", root, max_frames=2).load(seq).num_frames == 2
    with pytest.raises(DatasetFormatError, match="freiburg"):
        (root / "oddname").mkdir()
        (root / seq / "rgb.txt").rename(root / "oddname" / "rgb.txt")
        read("tum", root).load("oddname")


def test_tum_intrinsics_override(tum_root) -> None:
    root, _, _ = tum_root
    clip = read("tum", root, intrinsics=(1.0, 2.0, 3.0, 4.0)).load(read("tum", root).ids[0])
    np.testing.assert_allclose(clip.intrinsics[0], [[1, 0, 3], [0, 2, 4], [0, 0, 1]])


def test_bonn_intrinsics_protocol_and_sequences(tmp_path: Path) -> None:
    truth = make_truth(34, seed=2, intrinsics=BONN)
    write_tum(tmp_path / "rgbd_bonn_balloon2", truth)
    write_tum(tmp_path / "rgbd_bonn_other", make_truth(2, seed=3, intrinsics=BONN))
    reader = read("bonn", tmp_path, protocol="monst3r")
    assert reader.ids == ["rgbd_bonn_balloon2"]  # MonST3R's 5 sequences only
    clip = reader.load("rgbd_bonn_balloon2")
    assert clip.meta["frame_indices"] == [30, 31, 32, 33]  # frames[30:140]
    assert_reads_back(clip, truth, frame_ids=[30, 31, 32, 33])
    assert len(read("bonn", tmp_path)) == 2


def test_associate_matches_bruteforce_tum_rule() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        a = np.sort(rng.uniform(0, 1, 15))
        b = np.sort(rng.uniform(0, 1, 12))
        pairs = sorted(
            (abs(x - y), x, y, i, j)
            for i, x in enumerate(a)
            for j, y in enumerate(b)
            if abs(x - y) < 0.05
        )
        used_a, used_b, expected = set(), set(), []
        for _, _, _, i, j in pairs:
            if i not in used_a and j not in used_b:
                used_a.add(i)
                used_b.add(j)
                expected.append((i, j))
        assert associate(a, b, 0.05) == sorted(expected)


# ---------------------------------------------------------------- malformed input
def test_missing_groundtruth_names_the_file(tum_root) -> None:
    root, _, _ = tum_root
    seq = root / "rgbd_dataset_freiburg3_walking_xyz"
    (seq / "groundtruth.txt").unlink()
    with pytest.raises(DatasetFormatError, match=r"groundtruth\.txt"):
        read("tum", root).load(seq.name)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("100.0 1 2 3 0 0 0\n", r"groundtruth\.txt:3: expected 8 numbers"),
        ("100.0 1 2 nan 0 0 0 1\n", r"groundtruth\.txt:3: non-finite"),
        ("100.0 1 2 3 0 0 0 0\n", r"groundtruth\.txt:3: .*zero"),
        ("100.0 1 2 3 0 0 x 1\n", r"groundtruth\.txt:3: not a number"),
    ],
)
def test_malformed_groundtruth_line(tum_root, line: str, message: str) -> None:
    root, _, _ = tum_root
    gt = root / "rgbd_dataset_freiburg3_walking_xyz" / "groundtruth.txt"
    lines = gt.read_text().splitlines(keepends=True)
    lines.insert(2, line)
    gt.write_text("".join(lines))
    with pytest.raises(DatasetFormatError, match=message):
        read("tum", root).load(gt.parent.name)


def test_truncated_images_name_the_file(tum_root) -> None:
    root, _, _ = tum_root
    seq = root / "rgbd_dataset_freiburg3_walking_xyz"
    depth = sorted((seq / "depth").glob("*.png"))[1]
    depth.write_bytes(depth.read_bytes()[:40])
    with pytest.raises(DatasetFormatError, match=depth.name):
        read("tum", root).load(seq.name)
    rgb = sorted((seq / "rgb").glob("*.png"))[0]
    rgb.unlink()
    with pytest.raises(DatasetFormatError, match=rf"{rgb.name}: missing"):
        read("tum", root).load(seq.name)


def test_eight_bit_depth_is_rejected(tum_root) -> None:
    root, truth, _ = tum_root
    seq = root / "rgbd_dataset_freiburg3_walking_xyz"
    depth = sorted((seq / "depth").glob("*.png"))[0]
    save_png(depth, truth.frames[0])
    with pytest.raises(DatasetFormatError, match="16-bit"):
        read("tum", root).load(seq.name)


# ---------------------------------------------------------------- fuzzing
@given(st.text(max_size=300))
def test_fuzz_file_list(text: str) -> None:
    try:
        rows = parse_file_list(text, "rgb.txt")
    except DatasetFormatError as error:
        assert "rgb.txt" in str(error)
    else:
        assert all(np.isfinite(t) for t, _ in rows)


@given(st.text(alphabet="0123456789.-+eE naif#\n\t,", max_size=300))
def test_fuzz_trajectory(text: str) -> None:
    try:
        rows = parse_trajectory(text, "groundtruth.txt")
    except DatasetFormatError as error:
        assert "groundtruth.txt" in str(error)
    else:
        for _, pose in rows:
            np.testing.assert_allclose(pose[:3, :3] @ pose[:3, :3].T, np.eye(3), atol=1e-9)
