"""Trajectory metrics ATE and RPE (reference: evo, Grupp 2017, `evo.core.metrics.APE` / `RPE`
with `PoseRelation.translation_part` / `rotation_angle_deg`; the MonST3R video-pose protocol).

Protocol (equal to evo to ~1e-12 on the same input; evo is a test-only dependency):
1. align the predicted camera centres to the GT ones with Umeyama (`evo`'s
   `PosePath3D.align(correct_scale=...)`): `"sim3"` with scale, `"se3"` without, `"none"` skip.
   The alignment transforms whole poses: `P_i <- [R_a R_i | s R_a t_i + t_a]`;
2. ATE = RMSE over poses of `|t_pred_i - t_gt_i|` (camera-centre error);
3. RPE over consecutive pairs `(k * delta, (k + 1) * delta)` (evo: delta in frames, `all_pairs`
   off): `E = (Q_i^-1 Q_j)^-1 (P_i^-1 P_j)`; RPE-trans = RMSE of `|t(E)|`, RPE-rot = RMSE of the
   rotation angle of `E` in degrees.
Poses are `cam_to_world` `[N, 4, 4]` (TUM files store cam_to_world).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal

import torch

from vfm3d.geometry._checks import check_finite, check_tail
from vfm3d.geometry.align import umeyama
from vfm3d.geometry.camera import invert_rigid, to_homogeneous
from vfm3d.geometry.rotation import rotation_angle

TrajectoryAlign = Literal["sim3", "se3", "none"]
_ORTHONORMAL_TOL = 1e-4


def _check_trajectories(pred: torch.Tensor, gt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    check_tail("pred_cam_to_world", pred, (None, None, 4))
    check_tail("gt_cam_to_world", gt, (None, None, 4))
    if pred.ndim != 3 or gt.ndim != 3:
        raise ValueError(
            f"trajectories must be [N, 4, 4]; got pred {list(pred.shape)}, gt {list(gt.shape)}"
        )
    if pred.shape[0] != gt.shape[0]:
        raise ValueError(f"length mismatch: pred has {pred.shape[0]} poses, gt has {gt.shape[0]}")
    if pred.shape[0] == 0:
        raise ValueError("empty trajectory")
    check_finite("pred_cam_to_world", pred)
    check_finite("gt_cam_to_world", gt)
    pred = to_homogeneous(pred.double())
    gt = to_homogeneous(gt.double())
    for name, poses in (("pred_cam_to_world", pred), ("gt_cam_to_world", gt)):
        r = poses[:, :3, :3]
        eye = torch.eye(3, dtype=r.dtype, device=r.device)
        off = (r.transpose(-1, -2) @ r - eye).abs().amax(dim=(-1, -2))
        bad = (off > _ORTHONORMAL_TOL) | (torch.det(r) <= 0)
        if bool(bad.any()):
            index = int(torch.nonzero(bad)[0])
            raise ValueError(f"{name}[{index}] has a rotation part that is not a rotation matrix")
    return pred, gt


def align_trajectory(
    pred_cam_to_world: torch.Tensor, gt_cam_to_world: torch.Tensor, align: TrajectoryAlign = "sim3"
) -> tuple[torch.Tensor, float]:
    """Align predicted poses `[N, 4, 4]` to GT by their camera centres -> `(aligned [N, 4, 4], scale)`.

    Umeyama of centres (evo `PosePath3D.align`); rotations are rotated, translations scaled,
    rotated and shifted. `"none"` returns the input (as float64). Needs >= 3 non-collinear
    centres for `"sim3"` / `"se3"`.
    """
    pred, gt = _check_trajectories(pred_cam_to_world, gt_cam_to_world)
    return _align_checked(pred, gt, align)


def _align_checked(pred: torch.Tensor, gt: torch.Tensor, align: str) -> tuple[torch.Tensor, float]:
    if align == "none":
        return pred, 1.0
    if align not in ("sim3", "se3"):
        raise ValueError(f"align must be 'sim3', 'se3' or 'none', got {align!r}")
    if pred.shape[0] < 3:
        raise ValueError(f"{align} alignment needs at least 3 poses, got {pred.shape[0]}")
    scale, rotation, translation = umeyama(
        pred[:, :3, 3], gt[:, :3, 3], with_scale=(align == "sim3")
    )
    aligned = pred.clone()
    aligned[:, :3, :3] = rotation @ pred[:, :3, :3]
    aligned[:, :3, 3] = scale * pred[:, :3, 3] @ rotation.T + translation
    return aligned, float(scale)


def _rmse(values: torch.Tensor) -> float:
    return math.sqrt(float((values**2).mean()))


def _ate_checked(aligned: torch.Tensor, gt: torch.Tensor) -> float:
    return _rmse(torch.linalg.vector_norm(aligned[:, :3, 3] - gt[:, :3, 3], dim=-1))


def _rpe_checked(aligned: torch.Tensor, gt: torch.Tensor, delta: int) -> tuple[float, float, int]:
    if int(delta) != delta or delta < 1:
        raise ValueError(f"delta must be a positive integer number of frames, got {delta}")
    ids = torch.arange(0, gt.shape[0], int(delta))
    if ids.numel() < 2:
        raise ValueError(f"delta = {delta} frames leaves no pair among {gt.shape[0]} poses")
    i, j = ids[:-1], ids[1:]
    gt_rel = invert_rigid(gt[i]) @ gt[j]
    pred_rel = invert_rigid(aligned[i]) @ aligned[j]
    error = invert_rigid(gt_rel) @ pred_rel
    trans = torch.linalg.vector_norm(error[:, :3, 3], dim=-1)
    rot = rotation_angle(error[:, :3, :3], degrees=True)
    return _rmse(trans), _rmse(rot), int(i.numel())


def ate(
    pred_cam_to_world: torch.Tensor, gt_cam_to_world: torch.Tensor, align: TrajectoryAlign = "sim3"
) -> float:
    """Absolute trajectory error: RMSE of camera-centre distances after alignment (evo APE)."""
    pred, gt = _check_trajectories(pred_cam_to_world, gt_cam_to_world)
    aligned, _ = _align_checked(pred, gt, align)
    return _ate_checked(aligned, gt)


def rpe(
    pred_cam_to_world: torch.Tensor,
    gt_cam_to_world: torch.Tensor,
    delta: int = 1,
    align: TrajectoryAlign = "sim3",
) -> tuple[float, float]:
    """Relative pose error over consecutive pairs `delta` frames apart -> `(trans RMSE, rot RMSE deg)`.

    Computed after the same alignment as `ate` (evo RPE with `--align/--correct_scale`).
    """
    pred, gt = _check_trajectories(pred_cam_to_world, gt_cam_to_world)
    aligned, _ = _align_checked(pred, gt, align)
    trans, rot, _ = _rpe_checked(aligned, gt, delta)
    return trans, rot


@dataclass(frozen=True)
class TrajectoryMetrics:
    """ATE and RPE of one trajectory pair (units of the GT; rotation in degrees)."""

    ate: float
    rpe_trans: float
    rpe_rot_deg: float
    align: str
    delta: int
    scale: float
    num_poses: int
    num_pairs: int

    def to_json(self) -> dict[str, float | int | str]:
        """A JSON-serialisable dict of the fields."""
        return asdict(self)


def trajectory_metrics(
    pred_cam_to_world: torch.Tensor,
    gt_cam_to_world: torch.Tensor,
    align: TrajectoryAlign = "sim3",
    delta: int = 1,
) -> TrajectoryMetrics:
    """ATE and RPE with one alignment (what `vfm3d traj-eval` prints)."""
    pred, gt = _check_trajectories(pred_cam_to_world, gt_cam_to_world)
    aligned, scale = _align_checked(pred, gt, align)
    trans, rot, pairs = _rpe_checked(aligned, gt, delta)
    return TrajectoryMetrics(
        ate=_ate_checked(aligned, gt),
        rpe_trans=trans,
        rpe_rot_deg=rot,
        align=align,
        delta=int(delta),
        scale=scale,
        num_poses=int(gt.shape[0]),
        num_pairs=pairs,
    )
