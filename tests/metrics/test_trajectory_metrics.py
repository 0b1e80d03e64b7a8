"""ATE / RPE equal to evo (sim3, se3, none; from a TUM file), closed-form cases, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from evo.core import metrics, sync, trajectory
from evo.tools import file_interface

from vfm3d.geometry import (
    Trajectory,
    associate,
    axis_angle_to_rotation,
    make_rigid,
    random_rotation,
    read_tum,
    write_tum,
)
from vfm3d.metrics import ate, rpe, trajectory_metrics


def _random_pair(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    rotation = random_rotation((n,), generator)
    centres = torch.cumsum(torch.randn(n, 3, generator=generator, dtype=torch.float64), 0)
    gt = make_rigid(rotation, centres)
    noise = axis_angle_to_rotation(
        0.05 * torch.randn(n, 3, generator=generator, dtype=torch.float64)
    )
    pred = make_rigid(
        noise @ rotation,
        0.4 * centres + 0.2 * torch.randn(n, 3, generator=generator, dtype=torch.float64),
    )
    return pred, gt


def _evo(
    ref: trajectory.PosePath3D, est: trajectory.PosePath3D, align: str, delta: int
) -> list[float]:
    if align != "none":
        est.align(ref, correct_scale=(align == "sim3"))
    rmse = metrics.StatisticsType.rmse
    ape = metrics.APE(metrics.PoseRelation.translation_part)
    ape.process_data((ref, est))
    rpe_t = metrics.RPE(metrics.PoseRelation.translation_part, delta, metrics.Unit.frames)
    rpe_t.process_data((ref, est))
    rpe_r = metrics.RPE(metrics.PoseRelation.rotation_angle_deg, delta, metrics.Unit.frames)
    rpe_r.process_data((ref, est))
    return [ape.get_statistic(rmse), rpe_t.get_statistic(rmse), rpe_r.get_statistic(rmse)]


@pytest.mark.parametrize("align", ["sim3", "se3", "none"])
@pytest.mark.parametrize(("seed", "delta"), [(0, 1), (1, 3)])
def test_equals_evo_on_random_trajectories(align: str, seed: int, delta: int) -> None:
    pred, gt = _random_pair(80, seed)
    ref = trajectory.PosePath3D(poses_se3=list(gt.numpy()))
    est = trajectory.PosePath3D(poses_se3=list(pred.numpy()))
    expected = _evo(ref, est, align, delta)
    ours = [ate(pred, gt, align), *rpe(pred, gt, delta, align)]  # type: ignore[arg-type]
    assert np.allclose(ours, expected, rtol=0, atol=1e-6)
    assert np.allclose(ours, expected, rtol=1e-10, atol=1e-10)  # in fact to rounding


def test_equals_evo_from_tum_files(tmp_path: Path) -> None:
    pred, gt = _random_pair(50, 7)
    stamps = 1000.0 + 0.05 * torch.arange(50, dtype=torch.float64)
    write_tum(tmp_path / "gt.txt", Trajectory(stamps, gt))
    write_tum(tmp_path / "pred.txt", Trajectory(stamps[5:] + 0.002, pred[5:]))
    ours_gt, ours_pred = associate(read_tum(tmp_path / "gt.txt"), read_tum(tmp_path / "pred.txt"))
    result = trajectory_metrics(ours_pred.cam_to_world, ours_gt.cam_to_world, align="sim3")
    ref, est = sync.associate_trajectories(
        file_interface.read_tum_trajectory_file(str(tmp_path / "gt.txt")),
        file_interface.read_tum_trajectory_file(str(tmp_path / "pred.txt")),
    )
    expected = _evo(ref, est, "sim3", 1)
    assert result.num_poses == 45 and result.num_pairs == 44
    assert np.allclose(
        [result.ate, result.rpe_trans, result.rpe_rot_deg], expected, rtol=0, atol=1e-6
    )


def test_similarity_of_truth_has_zero_ate() -> None:
    _, gt = _random_pair(30, 3)
    change = make_rigid(
        random_rotation((), torch.Generator().manual_seed(1)),
        torch.tensor([3.0, -1.0, 2.0], dtype=torch.float64),
    )
    pred = change @ gt
    pred[:, :3, 3] *= 0.25
    assert ate(pred, gt, "sim3") < 1e-12
    trans, rot = rpe(pred, gt, align="sim3")
    assert trans < 1e-12 and rot < 1e-6
    assert ate(pred, gt, "se3") > 1.0  # scale is wrong without Sim(3)


def test_known_rpe_values() -> None:
    # GT moves 1 m along x per frame; prediction moves 1.5 m and yaws 2 degrees per frame
    n = 6
    gt = make_rigid(
        torch.eye(3, dtype=torch.float64).expand(n, 3, 3),
        torch.arange(n, dtype=torch.float64)[:, None]
        * torch.tensor([1.0, 0, 0], dtype=torch.float64),
    )
    yaw = torch.deg2rad(2.0 * torch.arange(n, dtype=torch.float64))
    pred_rot = axis_angle_to_rotation(yaw[:, None] * torch.tensor([0, 0, 1.0], dtype=torch.float64))
    pred = make_rigid(pred_rot, 1.5 * gt[:, :3, 3])
    trans, rot = rpe(pred, gt, align="none")
    assert abs(rot - 2.0) < 1e-9
    # relative translation of the prediction in frame i: R_i^T (1.5, 0, 0); error vs (1, 0, 0)
    expected = [
        np.linalg.norm(np.array([1.5 * np.cos(a), -1.5 * np.sin(a), 0.0]) - np.array([1.0, 0, 0]))
        for a in yaw[:-1].numpy()
    ]
    assert abs(trans - float(np.sqrt(np.mean(np.square(expected))))) < 1e-12


def test_bad_input() -> None:
    pred, gt = _random_pair(10, 0)
    with pytest.raises(ValueError, match="length mismatch"):
        ate(pred[:9], gt)
    with pytest.raises(ValueError, match="at least 3 poses"):
        ate(pred[:2], gt[:2], "sim3")
    same = gt.clone()
    same[:, :3, 3] = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    with pytest.raises(ValueError, match="degenerate"):
        ate(same, gt, "sim3")
    nan = pred.clone()
    nan[4, 0, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        rpe(nan, gt)
    with pytest.raises(ValueError, match="align"):
        ate(pred, gt, "affine")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="delta"):
        rpe(pred, gt, delta=0)
    with pytest.raises(ValueError, match="no pair"):
        rpe(pred, gt, delta=10)
    skewed = pred.clone()
    skewed[2, :3, :3] *= 2.0
    with pytest.raises(ValueError, match=r"pred_cam_to_world\[2\].*not a rotation"):
        ate(skewed, gt)
