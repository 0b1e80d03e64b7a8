"""The demo's 4D-reconstruction step: one held-out dynamic clip through a (tiny) Sora3R model,
its files and report, the sweep report it is linked from, and the aligned 3D view."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from tests.recon4d.test_sora3r_reconstruct import save_tiny_model
from vfm3d.recon4d.example import reconstruct_example
from vfm3d.recon4d.report import camera_alignment, scene_view
from vfm3d.recon4d.result import Reconstruction
from vfm3d.world import render_clip


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("sora3r-example") / "model")


def test_reconstruct_example_writes_scored_report(model_dir: Path, tmp_path: Path) -> None:
    result = reconstruct_example(tmp_path / "recon", model=str(model_dir), seed=3)
    out = tmp_path / "recon"
    for name in ("report.html", "metrics.json", "trajectory_tum.txt", "points.ply"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics == result["metrics"]
    for key in ("ate", "rpe_trans", "rpe_rot_deg", "abs_rel", "delta1"):
        assert math.isfinite(metrics[key]), key
    assert result["clip"] == "dynamic-s3-000000" and result["frames"] == 5
    html = (out / "report.html").read_text()
    assert "dynamic-s3-000000" in html


def test_demo_step_links_the_reconstruction(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vfm3d import demo
    from vfm3d.recon4d import example

    monkeypatch.setattr(example, "shipped_sora3r", lambda name="sora3r-mini": True)
    original = example.reconstruct_example
    monkeypatch.setattr(
        example,
        "reconstruct_example",
        lambda out_dir: original(out_dir, model=str(model_dir), seed=4),
    )
    step = demo.add_reconstruction(tmp_path)
    assert step is not None and (tmp_path / "reconstruction" / "report.html").is_file()
    assert step.links == [("4D reconstruction (Sora3R): report", "reconstruction/report.html")]
    assert "ATE" in step.notes[0] and "dynamic-s4-000000" in step.notes[0]
    assert step.result["clip"] == "dynamic-s4-000000"


def test_demo_step_skipped_without_the_model(tmp_path: Path, monkeypatch) -> None:
    from vfm3d import demo
    from vfm3d.recon4d import example

    monkeypatch.setattr(example, "shipped_sora3r", lambda name="sora3r-mini": False)
    assert demo.add_reconstruction(tmp_path) is None
    assert not (tmp_path / "reconstruction").exists()


def _recon_from_truth(clip, scale: float, rot: np.ndarray, shift: np.ndarray) -> Reconstruction:
    """The clip's true cameras moved by an arbitrary similarity (what a model's frame is)."""
    cams = clip.cam_to_world.astype(np.float64).copy()
    moved = cams.copy()
    moved[:, :3, :3] = rot @ cams[:, :3, :3]
    moved[:, :3, 3] = scale * cams[:, :3, 3] @ rot.T + shift
    t, h, w = clip.depth.shape
    return Reconstruction(
        frames=clip.frames,
        depth=clip.depth,
        depth_conf=np.ones((t, h, w), np.float32),
        points=np.zeros((t, h, w, 3), np.float32),
        points_conf=np.ones((t, h, w), np.float32),
        intrinsics=clip.intrinsics.astype(np.float64),
        cam_to_world=moved,
        timestamps=np.arange(t, dtype=np.float64),
        meta={"clip_id": clip.id, "model": "test"},
    )


def test_scene_view_aligns_prediction_to_true_cameras() -> None:
    clip = render_clip("dynamic", seed=2, frames=6, height=16, width=16)
    angle = 0.7
    rot = np.array(
        [[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1.0]]
    )
    recon = _recon_from_truth(clip, 0.3, rot, np.array([1.0, -2.0, 0.5]))
    view = scene_view(recon, clip)
    assert view.aligned and view.gt_cam_to_world is not None
    np.testing.assert_allclose(view.pred_cam_to_world, clip.cam_to_world, atol=1e-6)


def test_camera_alignment_degenerate_is_none() -> None:
    cams = np.repeat(np.eye(4)[None], 4, 0)
    assert camera_alignment(cams, cams) is None
