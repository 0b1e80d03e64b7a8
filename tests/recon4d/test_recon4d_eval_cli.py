"""`vfm3d recon4d eval`: the ground-truth ceiling scores ~0, the floor scores large, dynamic pixels
reported separately, the Sora3R and expert models run through it, the degenerate alignment's
limit, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.recon4d.test_sora3r_reconstruct import save_tiny_model
from vfm3d.cli import main as vfm3d_main
from vfm3d.clip import ClipFolderWriter
from vfm3d.recon4d.eval_cli import (
    evaluate_clip,
    floor_reconstruction,
    gt_reconstruction,
    summarise,
)
from vfm3d.recon4d.evaluate import degenerate_trajectory_metrics
from vfm3d.world import render_clip


@pytest.fixture(scope="module")
def clips():
    return [
        render_clip("dynamic", seed=21, frames=9, height=32, width=32, clip_id="dyn"),
        render_clip("object", seed=22, frames=9, height=32, width=32, clip_id="obj"),
    ]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory, clips) -> Path:
    root = tmp_path_factory.mktemp("eval-data") / "clips"
    writer = ClipFolderWriter(root)
    for clip in clips:
        writer.add(clip)
    return root


def _eval(model: str, data: Path, out: Path, *extra: str) -> dict:
    argv = ["recon4d", "eval", "--model", model, "--data", str(data), "--out", str(out)]
    assert vfm3d_main([*argv, "--quiet", *extra]) == 0
    return json.loads((out / "metrics.json").read_text())


def test_ground_truth_is_the_near_zero_ceiling(data_dir: Path, tmp_path: Path, capsys) -> None:
    record = _eval("gt", data_dir, tmp_path / "gt")
    rows = {r["id"]: r for r in record["sequences"]}
    dyn = rows["dyn"]  # one focal for the clip: the recovery is exact
    assert dyn["ate"] < 1e-5 and dyn["rpe_rot_deg"] < 1e-4 and dyn["abs_rel_median"] < 1e-5
    # the object clips zoom a little (a focal per frame): the shared-focal recovery's residual
    mean = record["mean"]
    assert mean["ate"] < 5e-3 and mean["rpe_trans"] < 5e-3 and mean["rpe_rot_deg"] < 0.02
    assert mean["abs_rel_median"] < 3e-3 and mean["abs_rel_scale_shift"] < 3e-3
    assert mean["delta1_median"] > 0.999
    assert set(rows) == {"dyn", "obj"} and rows["dyn"]["align"] == "sim3"
    assert "dynamic_abs_rel_median" in rows["dyn"] and rows["dyn"]["dynamic_fraction"] > 0
    assert not any(k.startswith("dynamic") for k in rows["obj"])  # static: no dynamic pixels
    assert record["count"]["dynamic_abs_rel_median"] == 1 and record["count"]["ate"] == 2
    assert record["protocol"] == "monst3r" and record["kind"] == "clips"
    csv = (tmp_path / "gt" / "per_sequence.csv").read_text().splitlines()
    assert len(csv) == 3 and csv[0].startswith("id,frames,ate")
    assert "| gt | 2 |" in (tmp_path / "gt" / "summary.md").read_text()
    assert "abs_rel_median" in capsys.readouterr().out


def test_floor_is_far_from_the_truth(data_dir: Path, tmp_path: Path) -> None:
    gt = _eval("gt", data_dir, tmp_path / "gt")["mean"]
    record = _eval("floor", data_dir, tmp_path / "floor")
    floor = record["mean"]
    assert floor["abs_rel_median"] > 0.05 and floor["delta1_median"] < 0.9
    assert floor["ate"] > 1e-2 and floor["ate"] > 20 * gt["ate"]
    assert floor["rpe_rot_deg"] > 20 * gt["rpe_rot_deg"]
    assert all(r["align"] == "degenerate" for r in record["sequences"])
    assert floor["dynamic_abs_rel_median"] > 0.05


def test_models_run_through_the_same_scoring(data_dir: Path, tmp_path: Path) -> None:
    model = save_tiny_model(tmp_path / "sora3r")
    # the tiny model takes 5-frame windows: 9 frames are two chained windows
    sora = _eval(str(model), data_dir, tmp_path / "s", "--steps", "1", "--samples", "2")
    assert sora["sora3r"] == {"steps": 1, "samples": 2, "seed": 0}
    assert all(np.isfinite(sora["mean"][k]) for k in ("ate", "abs_rel_median"))
    expert = _eval("zoo/vggt-mini", data_dir, tmp_path / "v", "--max-clips", "1")
    assert len(expert["sequences"]) == 1 and np.isfinite(expert["mean"]["ate"])
    heads = _eval("zoo/vggt-mini", data_dir, tmp_path / "h", "--max-clips", "1", "--expert-heads")
    assert heads["expert_heads"] and heads["mean"]["ate"] != expert["mean"]["ate"]


def test_depth_alignments_and_the_degenerate_trajectory(clips) -> None:
    clip = clips[0]
    recon = gt_reconstruction(clip)
    recon.depth = np.where(clip.valid, 3.0 * clip.depth, 1.0).astype(np.float32)
    row = evaluate_clip(recon, clip)
    assert row["abs_rel_median"] < 1e-6 and row["abs_rel_scale_shift"] < 1e-6
    recon.depth = np.where(clip.valid, 2.0 * clip.depth + 0.5, 1.0).astype(np.float32)
    row = evaluate_clip(recon, clip)
    assert row["abs_rel_scale_shift"] < 1e-6 and row["abs_rel_median"] > 1e-3
    # a static prediction: ATE = RMS distance of the true centres to their mean
    gt = torch.from_numpy(clip.cam_to_world)
    cams = degenerate_trajectory_metrics(torch.eye(4).repeat(9, 1, 1).double(), gt)
    centres = gt[:, :3, 3]
    expected = float((centres - centres.mean(0)).norm(dim=-1).pow(2).mean().sqrt())
    assert cams["ate"] == pytest.approx(expected, rel=1e-9) and cams["align"] == "degenerate"
    floor = evaluate_clip(floor_reconstruction(clip), clip)
    assert floor["ate"] == pytest.approx(expected, rel=1e-9)
    summary = summarise([{"id": "a", "ate": 1.0}, {"id": "b", "ate": 3.0}, {"id": "c"}])
    assert summary["mean"]["ate"] == 2.0 and summary["count"]["ate"] == 2
    lo, hi = summary["ci95"]["ate"]
    assert 1.0 <= lo <= 2.0 <= hi <= 3.0


def test_bad_inputs_are_clear_errors(
    data_dir: Path, tmp_path: Path, clips, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.data.test_video_input import write_video

    base = ["recon4d", "eval", "--out", str(tmp_path / "o"), "--quiet"]
    assert vfm3d_main([*base, "--model", "nonsense", "--data", str(data_dir)]) == 2
    assert "neither gt, floor" in capsys.readouterr().err
    assert vfm3d_main([*base, "--model", "gt", "--data", str(tmp_path / "nope")]) == 2
    assert "not found" in capsys.readouterr().err
    video = write_video(tmp_path / "v.mp4", clips[0].frames)
    assert vfm3d_main([*base, "--model", "gt", "--data", str(video)]) == 2
    assert "no ground truth" in capsys.readouterr().err
    assert vfm3d_main([*base, "--model", "gt", "--data", str(tmp_path), "--kind", "sintel"]) == 2
    assert "sintel" in capsys.readouterr().err.lower()
    with pytest.raises(SystemExit):
        vfm3d_main([*base, "--model", "gt", "--data", str(data_dir), "--protocol", "x"])
    assert not (tmp_path / "o").exists()
