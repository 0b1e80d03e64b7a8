"""`vfm3d reconstruct`: a user's mp4 in, the field's files out (read back by their tools); clips
with ground truth are scored; bad input is one clear error and writes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.data.test_video_input import write_video
from vfm3d.cli import main as vfm3d_main
from vfm3d.clip import ClipFolderWriter
from vfm3d.world import render_clip


@pytest.fixture(scope="module")
def world_clip():
    return render_clip("object", seed=7, frames=10, height=48, width=64, clip_id="turn")


def test_mp4_to_point_cloud_depth_and_cameras(tmp_path: Path, world_clip, capsys) -> None:
    pycolmap = pytest.importorskip("pycolmap")
    from evo.tools import file_interface

    video = write_video(tmp_path / "turn.mp4", world_clip.frames)
    out = tmp_path / "recon"
    argv = ["reconstruct", str(video), "--out", str(out), "--quiet", "--window", "6"]
    assert vfm3d_main([*argv, "--overlap", "2", "--threads", "1"]) == 0
    folder = out / "turn"
    for name in ("points.ply", "scene.glb", "trajectory_tum.txt", "depth.safetensors"):
        assert (folder / name).is_file(), name
    for name in ("cameras.json", "reconstruction.json", "report.html"):
        assert (folder / name).is_file(), name
    assert len(list((folder / "depth").glob("*.png"))) == 10
    assert not (folder / "metrics.json").exists()  # a video has no ground truth
    model = pycolmap.Reconstruction(str(folder / "colmap"))
    assert model.num_images() == 10 and model.num_points3D() > 0
    traj = file_interface.read_tum_trajectory_file(str(folder / "trajectory_tum.txt"))
    assert traj.num_poses == 10
    cams = json.loads((folder / "cameras.json").read_text())
    c2w = np.array([f["cam_to_world"] for f in cams["frames"]])
    np.testing.assert_allclose(traj.poses_se3, c2w, atol=1e-6)
    info = json.loads((folder / "reconstruction.json").read_text())
    assert info["windows"][1]["frames"] == [4, 10] and info["input_hw"] == [24, 32]
    assert '<script type="application/json"' in (folder / "report.html").read_text()
    assert "s/frame" in capsys.readouterr().out


def test_clip_folder_with_ground_truth_is_scored(tmp_path: Path, world_clip) -> None:
    writer = ClipFolderWriter(tmp_path / "clips")
    writer.add(world_clip)
    out = tmp_path / "recon"
    assert vfm3d_main(["reconstruct", str(tmp_path / "clips"), "--out", str(out), "--quiet"]) == 0
    metrics = json.loads((out / "turn" / "metrics.json").read_text())
    assert {"ate", "rpe_trans", "rpe_rot_deg", "abs_rel", "delta1"} <= set(metrics)
    assert all(np.isfinite(v) for v in metrics.values() if isinstance(v, float))


def test_unreadable_video_is_one_clear_error_and_writes_nothing(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00not a video at all" * 50)
    out = tmp_path / "recon"
    assert vfm3d_main(["reconstruct", str(bad), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "broken.mp4" in err and err.count("\n") == 1
    assert not out.exists()
    assert vfm3d_main(["reconstruct", str(tmp_path / "nope.mp4"), "--out", str(out)]) == 2
    assert "nope.mp4" in capsys.readouterr().err
