"""`vfm3d data info/convert` end to end, and the `world` reader over our own clip folders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.data.scene import make_truth
from tests.data.test_tum import FR3, write_tum
from vfm3d.cli import main as vfm3d_main
from vfm3d.clip import Clip, ClipFolder, write_clip_folder
from vfm3d.data import read
from vfm3d.data.protocols import load_protocol, select_indices


@pytest.fixture
def tum_two(tmp_path: Path) -> Path:
    root = tmp_path / "tum"
    write_tum(root / "rgbd_dataset_freiburg3_sitting_xyz", make_truth(4, seed=13, intrinsics=FR3))
    write_tum(root / "rgbd_dataset_freiburg1_desk", make_truth(3, seed=14, intrinsics=FR3))
    return root


def test_info_table_and_json(tum_two: Path, capsys) -> None:
    assert vfm3d_main(["data", "info", "tum", str(tum_two)]) == 0
    out = capsys.readouterr().out
    assert "2 sequences" in out and "rgbd_dataset_freiburg1_desk" in out and "16x24" in out
    assert vfm3d_main(["data", "info", "tum", str(tum_two), "--json", "--limit", "1"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["sequences"] == 2 and len(info["described"]) == 1
    row = info["described"][0]
    assert row["frames_total"] == 3 and row["depth"] and row["resolution_hw"] == [16, 24]


def test_convert_resize_and_resume(tum_two: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "clips"
    argv = ["data", "convert", "tum", str(tum_two), "--out", str(out), "--max-frames", "2"]
    assert (
        vfm3d_main([*argv, "--resize", "8x12", "--sequences", "rgbd_dataset_freiburg1_desk"]) == 0
    )
    folder = ClipFolder(out)
    clip = folder.load("rgbd_dataset_freiburg1_desk")
    assert clip.frames.shape == (2, 8, 12, 3) and clip.depth.shape == (2, 8, 12)
    original = read("tum", tum_two, max_frames=2).load("rgbd_dataset_freiburg1_desk")
    # fr1 intrinsics halved with the pixel-centre convention (x' = 0.5 x - 0.25)
    np.testing.assert_allclose(
        clip.intrinsics[:, 0, 0], original.intrinsics[:, 0, 0] / 2, rtol=1e-6
    )
    np.testing.assert_allclose(
        clip.intrinsics[:, 0, 2], original.intrinsics[:, 0, 2] / 2 - 0.25, rtol=1e-6
    )
    assert clip.meta["transform"]["out_hw"] == [8, 12]
    capsys.readouterr()
    assert vfm3d_main(argv) == 0  # resumes: only the missing sequence is written
    printed = capsys.readouterr().out
    assert "wrote 1 clips" in printed and "(1 already there" in printed
    assert sorted(ClipFolder(out).ids) == [
        "rgbd_dataset_freiburg1_desk",
        "rgbd_dataset_freiburg3_sitting_xyz",
    ]


def test_convert_errors_are_one_line(tum_two: Path, tmp_path: Path, capsys) -> None:
    (tum_two / "rgbd_dataset_freiburg1_desk" / "groundtruth.txt").write_text("1 2 3\n")
    argv = ["data", "convert", "tum", str(tum_two), "--out", str(tmp_path / "o")]
    assert vfm3d_main(argv) == 2
    assert "groundtruth.txt:1: expected 8 numbers" in capsys.readouterr().err
    assert vfm3d_main([*argv, "--skip-errors"]) == 0
    assert ClipFolder(tmp_path / "o").ids == ["rgbd_dataset_freiburg3_sitting_xyz"]
    assert vfm3d_main(["data", "info", "tum", str(tmp_path / "missing")]) == 2


def test_world_reader(tmp_path: Path) -> None:
    truth = make_truth(4, seed=15)
    clip = Clip(
        frames=truth.frames,
        intrinsics=truth.intrinsics.astype(np.float32),
        cam_to_world=truth.cam_to_world,
        depth=truth.depth.astype(np.float32),
        valid=np.ones(truth.depth.shape, bool),
        meta={"id": "w0", "source": "world"},
    )
    write_clip_folder(tmp_path / "w", [clip])
    reader = read("world", tmp_path / "w", max_frames=3)
    assert reader.ids == ["w0"] and len(reader) == 1
    loaded = next(iter(reader))
    assert loaded.num_frames == 3
    np.testing.assert_array_equal(loaded.depth, clip.depth[:3])
    assert reader.describe("w0")["frames_selected"] == 3 and reader.describe("w0")["depth"]
    with pytest.raises(ValueError, match="no protocols"):
        read("world", tmp_path / "w", protocol="monst3r")


def test_protocol_rules() -> None:
    assert select_indices(300, load_protocol("monst3r", "tum")["select"]) == list(range(0, 270, 3))
    assert select_indices(200, load_protocol("monst3r", "bonn")["select"]) == list(range(30, 140))
    assert len(load_protocol("monst3r", "sintel")["sequences"]) == 14
    rule = load_protocol("vidfm3d", "dl3dv")["select"]
    a, b = select_indices(400, rule, seed=1), select_indices(400, rule, seed=1)
    assert a == b and len(a) == 150 and a == list(range(a[0], a[0] + 150))
    with pytest.raises(ValueError, match="no rule for dataset"):
        load_protocol("vidfm3d", "tum")
    with pytest.raises(ValueError, match="protocol must be one of"):
        load_protocol("nope", "tum")
