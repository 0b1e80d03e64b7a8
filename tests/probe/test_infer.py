"""`vfm3d probe eval --data my.mp4`: a trained probe on a user's video (no ground truth) writes
predictions with the standard exports instead of metrics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.data.test_video_input import write_video
from vfm3d.cli import main as vfm3d_main
from vfm3d.probe import ProbeConfig
from vfm3d.probe.infer import spread_frames
from vfm3d.world import generate_dataset, render_clip


def test_spread_frames() -> None:
    assert spread_frames(10, 4) == [0, 3, 6, 9]
    assert spread_frames(100, 4, first_n=76) == [0, 25, 50, 75]
    with pytest.raises(ValueError, match="needs 4 frames"):
        spread_frames(3, 4)


def test_probe_eval_on_a_video_writes_predictions(tmp_path: Path, capsys) -> None:
    data = tmp_path / "world"
    generate_dataset(
        data, kind="object", clips=2, frames=9, height=32, width=32, seed=5, progress=False
    )
    common = ["--backbone", "random", "--layers", "0", "--no-progress"]
    assert (
        vfm3d_main(["extract", "--data", str(data), "--out", str(tmp_path / "cache"), *common]) == 0
    )
    cfg = ProbeConfig.cpu_small(first_n=9, min_gap=1, num_frames=3, output_size=(16, 16))
    (tmp_path / "probe.json").write_text(json.dumps(cfg.to_dict()))
    run = tmp_path / "run"
    args = ["probe", "train", "--data", str(data), "--features", str(tmp_path / "cache")]
    args += ["--backbone", "random", "--layer", "0", "--out", str(run), "--quiet", "--steps", "2"]
    args += ["--preset", "cpu-small", "--config", str(tmp_path / "probe.json"), "--threads", "1"]
    assert vfm3d_main(args) == 0

    clip = render_clip("object", seed=77, frames=9, height=32, width=32)
    video = write_video(tmp_path / "mine.mp4", clip.frames)
    vcache = tmp_path / "vcache"
    assert vfm3d_main(["extract", "--data", str(video), "--out", str(vcache), *common]) == 0
    capsys.readouterr()
    ev = ["probe", "eval", "--run", str(run), "--data", str(video), "--features", str(vcache)]
    assert vfm3d_main(ev) == 0
    assert "no ground truth" in capsys.readouterr().out
    out = run / "predictions" / "mine"
    cams = json.loads((out / "cameras.json").read_text())
    assert len(cams["frames"]) == 3 and cams["frames"][0]["width"] == 16
    assert json.loads((out / "prediction.json").read_text())["frames"] == [0, 4, 8]
    assert (out / "points.ply").is_file() and (out / "trajectory_tum.txt").is_file()
    assert not (run / "metrics.json").exists()
    # features of another input are a clear error naming the fix
    other = write_video(tmp_path / "other.mp4", clip.frames)
    assert vfm3d_main([*ev[:5], str(other), "--features", str(vcache)]) == 2
    assert "vfm3d extract" in capsys.readouterr().err
    assert np.isfinite(np.array([f["cam_to_world"] for f in cams["frames"]])).all()
