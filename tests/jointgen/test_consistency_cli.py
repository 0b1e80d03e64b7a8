"""`vfm3d consistency`: JSON schema, the table, videos through the default expert, and one
clear error for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from vfm3d.cli import main as vfm3d_main
from vfm3d.clip import ClipFolderWriter
from vfm3d.geometry import make_rigid
from vfm3d.geometry.rotation import axis_angle_to_rotation
from vfm3d.jointgen.consistency import corrupt
from vfm3d.world import render_clip


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("clips") / "world"
    writer = ClipFolderWriter(root)
    clean = render_clip("scene", seed=1, frames=6, height=32, width=32, clip_id="clean")
    other = render_clip("object", seed=5, frames=6, height=32, width=32)
    writer.add(clean)
    spliced = corrupt(clean, "splice", 1.0, other=other)
    spliced.meta["id"] = "spliced"
    writer.add(spliced)
    return root


def _json(capsys) -> dict:
    out = capsys.readouterr().out
    return json.loads(out)


def test_json_schema_and_scores_on_clips_with_ground_truth(clip_folder: Path, capsys) -> None:
    argv = ["consistency", str(clip_folder), "--geometry", "gt", "--json", "--quiet"]
    assert vfm3d_main([*argv, "--threads", "1"]) == 0
    data = _json(capsys)
    assert set(data) == {"videos", "settings"}
    videos = {v["id"]: v for v in data["videos"]}
    assert set(videos) == {"clean", "spliced"}
    for video in videos.values():
        assert video["path"] == str(clip_folder)
        assert isinstance(video["score"], float) and len(video["pairs"]) == 5
        assert video["num_frames"] == 6 and video["size"] == [32, 32]
        assert video["geometry"] == "gt" and video["features"] == "zoo/dinov2-mini"
        for k, pair in enumerate(video["pairs"]):
            assert pair["frames"] == [k, k + 1] and pair["flag"] is None
            assert 0.0 <= pair["score"] <= 2.0 and 0.0 < pair["overlap"] <= 1.0
            assert set(pair) == {"frames", "score", "overlap", "coverage_1", "coverage_2", "flag"}
        assert video["score"] == pytest.approx(np.mean([p["score"] for p in video["pairs"]]))
    assert videos["clean"]["score"] < 0.05 < 0.3 < videos["spliced"]["score"]
    assert data["settings"]["points_per_pixel"] == 10 and data["settings"]["feature_shifts"] == 2


def test_video_with_the_default_expert_prints_a_table(tmp_path: Path, capsys) -> None:
    pytest.importorskip("av")
    from tests.data.test_video_input import write_video

    clip = render_clip("object", seed=3, frames=6, height=48, width=48)
    video = write_video(tmp_path / "turn.mp4", clip.frames)
    assert vfm3d_main(["consistency", str(video), "--quiet", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["video", "score", "pairs"]
    row = lines[1].split()
    assert row[0].endswith("turn.mp4") and float(row[1]) < 0.2 and row[2] == "5"
    assert "32x32" in lines[1]  # the expert's input size
    assert vfm3d_main(["consistency", str(video), "--json", "--quiet", "--max-frames", "3"]) == 0
    data = _json(capsys)
    assert len(data["videos"][0]["pairs"]) == 2 and data["settings"]["expert_window"] == 9


def test_ground_truth_geometry_on_a_video_is_one_clear_error(tmp_path: Path, capsys) -> None:
    pytest.importorskip("av")
    from tests.data.test_video_input import write_video

    clip = render_clip("object", seed=3, frames=4, height=32, width=32)
    video = write_video(tmp_path / "v.mp4", clip.frames)
    assert vfm3d_main(["consistency", str(video), "--geometry", "gt", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "--geometry gt needs clips with depth" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["/nowhere/video.mp4"], "input not found"),
        (["{clips}", "--geometry", "/nowhere/vggt"], "model folder not found"),
        (["{clips}", "--features", "zoo/videomae-mini"], "not an image backbone"),
        (["{clips}", "--feature-shifts", "3"], "divide the patch size"),
        (["{clips}", "--render-size", "30x30"], "multiples of its patch size"),
    ],
)
def test_bad_input_is_one_clear_line(clip_folder: Path, capsys, argv, message) -> None:
    argv = [a.replace("{clips}", str(clip_folder)) for a in argv]
    assert vfm3d_main(["consistency", *argv, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_a_video_whose_frames_share_no_view_has_no_score(tmp_path: Path, capsys) -> None:
    clip = render_clip("scene", seed=1, frames=2, height=32, width=32, clip_id="away")
    axis = torch.tensor([0.0, np.pi, 0.0], dtype=torch.float64)
    turn = make_rigid(axis_angle_to_rotation(axis), torch.zeros(3, dtype=torch.float64)).numpy()
    clip.cam_to_world = clip.cam_to_world.copy()
    clip.cam_to_world[1] = clip.cam_to_world[0] @ turn
    path = tmp_path / "away.safetensors"
    clip.save(path)
    argv = ["consistency", str(path), "--geometry", "gt", "--json", "--quiet"]
    assert vfm3d_main(argv) == 1
    captured = capsys.readouterr()
    video = json.loads(captured.out)["videos"][0]
    assert video["score"] is None and video["flagged_pairs"] == 1
    assert video["pairs"][0]["flag"] == "no shared view"
    assert "no frame pair shares a view" in captured.err
