"""`vfm3d traj-eval`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from vfm3d.cli import main
from vfm3d.geometry import Trajectory, make_rigid, random_rotation, write_tum
from vfm3d.metrics import trajectory_metrics


def _files(tmp_path: Path) -> tuple[Path, Path, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    n = 20
    rotation = random_rotation((n,), generator)
    centres = torch.cumsum(torch.randn(n, 3, generator=generator, dtype=torch.float64), 0)
    gt = make_rigid(rotation, centres)
    pred = make_rigid(
        rotation, 0.5 * centres + 0.05 * torch.randn(n, 3, generator=generator, dtype=torch.float64)
    )
    stamps = torch.arange(n, dtype=torch.float64)
    write_tum(tmp_path / "gt.txt", Trajectory(stamps, gt))
    write_tum(tmp_path / "pred.txt", Trajectory(stamps, pred))
    return tmp_path / "gt.txt", tmp_path / "pred.txt", pred, gt


def test_traj_eval_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gt_path, pred_path, pred, gt = _files(tmp_path)
    assert (
        main(
            [
                "traj-eval",
                "--gt",
                str(gt_path),
                "--pred",
                str(pred_path),
                "--align",
                "se3",
                "--delta",
                "2",
                "--json",
            ]
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    expected = trajectory_metrics(pred, gt, align="se3", delta=2)
    assert out["align"] == "se3" and out["delta"] == 2 and out["num_poses"] == 20
    assert (
        abs(out["ate"] - expected.ate) < 1e-12
        and abs(out["rpe_trans"] - expected.rpe_trans) < 1e-12
    )


def test_traj_eval_text_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gt_path, pred_path, _, _ = _files(tmp_path)
    assert main(["traj-eval", "--gt", str(gt_path), "--pred", str(pred_path)]) == 0
    text = capsys.readouterr().out
    assert "ATE (RMSE)" in text and "RPE rot" in text
    bad = tmp_path / "bad.txt"
    bad.write_text("0 1 2 3 0 0 0 1\n1 2 3\n")
    assert main(["traj-eval", "--gt", str(gt_path), "--pred", str(bad)]) == 2
    assert "bad.txt:2" in capsys.readouterr().err
