"""`vfm3d data pseudo-gt` on a clip folder with a saved tiny VGGT: writes, then skips on rerun."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from vfm3d.cli import main as cli_main
from vfm3d.clip import Clip, write_clip_folder
from vfm3d.data.pseudo_gt import read_pseudo_gt
from vfm3d.models.vggt import VGGT, VGGTConfig


def test_pseudo_gt_command(tmp_path: Path, capsys) -> None:
    model = VGGT.random(VGGTConfig.tiny(enable_track=False, init_values=1.0), seed=0).eval()
    with torch.no_grad():
        model.camera_head.pose_branch.fc2.bias[7:] = 0.5
    model.save_pretrained(tmp_path / "vggt")
    rng = np.random.default_rng(0)
    k = np.array([[28.0, 0, 13.5], [0, 28.0, 6.5], [0, 0, 1]], dtype=np.float32)
    clip = Clip(
        frames=rng.integers(0, 256, size=(2, 14, 28, 3), dtype=np.uint8),
        intrinsics=np.repeat(k[None], 2, axis=0),
        cam_to_world=np.repeat(np.eye(4)[None], 2, axis=0),
        meta={"id": "c0", "source": "test"},
    )
    write_clip_folder(tmp_path / "clips", [clip])
    args = ["data", "pseudo-gt", str(tmp_path / "clips"), "--weights", str(tmp_path / "vggt")]
    assert cli_main(args) == 0
    assert "1 clips written" in capsys.readouterr().out
    arrays, info = read_pseudo_gt(tmp_path / "clips" / "c0.pseudo_gt.safetensors")
    assert arrays["depth"].shape == (2, 14, 28) and arrays["points"].shape == (2, 14, 28, 3)
    assert info["clip_id"] == "c0"
    assert cli_main(args) == 0
    assert "0 clips written, 1 already done" in capsys.readouterr().out
    missing = ["data", "pseudo-gt", str(tmp_path / "clips"), "--weights", str(tmp_path / "nope")]
    assert cli_main(missing) == 2
