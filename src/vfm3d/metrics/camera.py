"""Camera metrics over frame pairs: relative rotation/translation errors, RRA/RTA, AUC.

Reference: VGGT evaluation code (`evaluation/test_co3d.py`: `se3_to_relative_pose_error`,
`rotation_angle`, `translation_angle`, `compare_translation_by_angle`, `calculate_auc_np`),
copied by VidFM3D (`vidfm3d/utils/metrics.py`, `vidfm3d/utils/loss.py::camera_loss`).

Pairs are every `i < j` in `itertools.combinations` order. The relative pose of a pair is
`inverse(world_to_cam_i) @ world_to_cam_j` (VGGT's definition, `convention="vggt"`); the usual
camera-to-camera transform `world_to_cam_i @ cam_to_world_j` is `convention="camera"`.

AUC modes (both give 1 for perfect poses; they differ in bin width):
- `"vggt"` (VGGT `calculate_auc_np`): `hist = np.histogram(max_err, bins=arange(k + 1))[0] /
  n_pairs`, bins 1 degree wide, AUC@k = `mean(cumsum(hist))`, one histogram per threshold k.
- `"vidfm3d"` (VidFM3D `calculate_auc` + `camera_loss`, used by the paper's table): one
  `torch.histc(max_err, bins=31, min=0, max=30) / n_pairs` (bins 30/31 degree wide),
  AUC@k = `mean(cumsum(hist[:k]))`; the paper computes it per evaluation batch (pairs pooled over
  the batch's sequences) and averages over batches, see `auc_from_errors`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch

from vfm3d.geometry._checks import check_finite, check_tail
from vfm3d.geometry.camera import RelativeConvention, relative_poses, to_homogeneous
from vfm3d.geometry.rotation import rotation_to_quaternion_xyzw

AucMode = Literal["vggt", "vidfm3d"]
_EPS = 1e-15
_DEFAULT_TRANSLATION_ERROR_RAD = 1e6


def _check_pose_pair(pred: torch.Tensor, gt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    check_tail("pred_cam_to_world", pred, (None, None, 4))
    check_tail("gt_cam_to_world", gt, (None, None, 4))
    if pred.shape[:-2] != gt.shape[:-2]:
        raise ValueError(
            f"length mismatch: pred_cam_to_world {list(pred.shape)} vs gt_cam_to_world "
            f"{list(gt.shape)}"
        )
    check_finite("pred_cam_to_world", pred)
    check_finite("gt_cam_to_world", gt)
    if pred.shape[-3] < 2:
        raise ValueError(f"need at least 2 poses to form a pair, got {pred.shape[-3]}")
    return to_homogeneous(pred), to_homogeneous(gt)


def relative_pose_errors(
    pred_cam_to_world: torch.Tensor,
    gt_cam_to_world: torch.Tensor,
    convention: RelativeConvention = "vggt",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pair relative rotation and translation-direction errors in degrees.

    Inputs `[..., N, 4, 4]` (or `[..., N, 3, 4]`); pairs are formed within each sequence and
    pooled over leading dims -> `(rot_err_deg [P], trans_err_deg [P])`, `P = prod(...) * N(N-1)/2`
    (VidFM3D `batched_se3_to_relative_pose_error` order).
    - rotation: `arccos(1 - 2 * clamp(1 - <q_pred, q_gt>^2, min=1e-15))` (so a perfect pair gives
      ~3.6e-6 degrees, as the reference does);
    - translation: angle between relative translations as directions, sign-ambiguous
      (`arccos(sqrt(1 - clamp(1 - cos^2, min=1e-15)))`), non-finite -> 1e6 rad (VGGT default).
    Only the translation direction counts, so the result is invariant to a global scale.
    """
    pred, gt = _check_pose_pair(pred_cam_to_world, gt_cam_to_world)
    rel_pred = relative_poses(pred, convention=convention).reshape(-1, 4, 4)
    rel_gt = relative_poses(gt, convention=convention).reshape(-1, 4, 4)
    q_pred = rotation_to_quaternion_xyzw(rel_pred[:, :3, :3])
    q_gt = rotation_to_quaternion_xyzw(rel_gt[:, :3, :3])
    loss_q = (1.0 - (q_pred * q_gt).sum(dim=-1) ** 2).clamp(min=_EPS)
    rot_err = torch.arccos(1.0 - 2.0 * loss_q) * (180.0 / math.pi)

    t_pred = rel_pred[:, :3, 3]
    t_gt = rel_gt[:, :3, 3]
    t_pred = t_pred / (torch.linalg.vector_norm(t_pred, dim=-1, keepdim=True) + _EPS)
    t_gt = t_gt / (torch.linalg.vector_norm(t_gt, dim=-1, keepdim=True) + _EPS)
    loss_t = torch.clamp_min(1.0 - (t_pred * t_gt).sum(dim=-1) ** 2, _EPS)
    err_t = torch.acos(torch.sqrt(1.0 - loss_t))
    err_t = torch.where(
        torch.isfinite(err_t), err_t, torch.full_like(err_t, _DEFAULT_TRANSLATION_ERROR_RAD)
    )
    trans_err = err_t * (180.0 / math.pi)
    trans_err = torch.minimum(trans_err, (180.0 - trans_err).abs())
    return rot_err, trans_err


def rra_rta(
    rot_err: torch.Tensor, trans_err: torch.Tensor, thresholds: Sequence[float] = (5, 15, 30)
) -> dict[str, float]:
    """Fractions of pairs with error strictly below each threshold (degrees).

    Returns `{"RRA@t": ..., "RTA@t": ...}` for each `t` (VGGT `Racc_t` / `Tacc_t`, `err < t`).
    """
    if rot_err.shape != trans_err.shape or rot_err.ndim != 1 or rot_err.numel() == 0:
        raise ValueError(
            f"rot_err and trans_err must be non-empty 1-D of equal length, got "
            f"{list(rot_err.shape)} and {list(trans_err.shape)}"
        )
    out: dict[str, float] = {}
    for t in thresholds:
        out[f"RRA@{t:g}"] = float((rot_err < t).double().mean())
        out[f"RTA@{t:g}"] = float((trans_err < t).double().mean())
    return out


def auc_from_errors(
    rot_err: torch.Tensor,
    trans_err: torch.Tensor,
    thresholds: Sequence[int] = (3, 5, 10, 30),
    mode: AucMode = "vggt",
) -> dict[str, float]:
    """AUC@k of `max(rot_err, trans_err)` (degrees, `[P]`) -> `{"AUC@k": float}`.

    See the module docstring for the two modes. In `"vidfm3d"` mode thresholds must be at most
    30 (the histogram covers [0, 30]); call this once per evaluation batch and average the dicts
    over batches to reproduce the paper's numbers.
    """
    if rot_err.shape != trans_err.shape or rot_err.ndim != 1 or rot_err.numel() == 0:
        raise ValueError(
            f"rot_err and trans_err must be non-empty 1-D of equal length, got "
            f"{list(rot_err.shape)} and {list(trans_err.shape)}"
        )
    max_err_native = torch.maximum(rot_err, trans_err)
    max_err = max_err_native.double()
    n_pairs = float(max_err.numel())
    out: dict[str, float] = {}
    if mode == "vggt":
        for k in thresholds:
            if int(k) != k or k < 1:
                raise ValueError(f"AUC thresholds must be positive integers, got {k}")
            edges = torch.arange(int(k) + 1, dtype=torch.float64, device=max_err.device)
            hist = _histogram_np_style(max_err, edges) / n_pairs
            out[f"AUC@{int(k)}"] = float(torch.cumsum(hist, 0).mean())
    elif mode == "vidfm3d":
        hist = torch.histc(max_err_native, bins=31, min=0, max=30).double() / n_pairs
        for k in thresholds:
            if int(k) != k or not 1 <= k <= 31:
                raise ValueError(f"vidfm3d AUC thresholds must be integers in [1, 31], got {k}")
            out[f"AUC@{int(k)}"] = float(torch.cumsum(hist[: int(k)], 0).mean())
    else:
        raise ValueError(f"mode must be 'vggt' or 'vidfm3d', got {mode!r}")
    return out


def _histogram_np_style(values: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """`np.histogram(values, bins=edges)[0]`: half-open bins, the last one closed, outliers dropped."""
    inside = (values >= edges[0]) & (values <= edges[-1])
    index = torch.bucketize(values[inside], edges, right=True) - 1
    index = index.clamp(max=edges.numel() - 2)  # the right edge belongs to the last bin
    return torch.bincount(index, minlength=edges.numel() - 1).double()


def camera_auc(
    pred_cam_to_world: torch.Tensor,
    gt_cam_to_world: torch.Tensor,
    thresholds: Sequence[int] = (3, 5, 10, 30),
    mode: AucMode = "vggt",
    convention: RelativeConvention = "vggt",
) -> dict[str, float]:
    """AUC@k of the relative pose errors of `[..., N, 4, 4]` poses -> `{"AUC@k": float}`.

    `relative_pose_errors` then `auc_from_errors`; pairs of all sequences in the leading dims are
    pooled into one histogram (one evaluation batch in `"vidfm3d"` mode).
    """
    rot_err, trans_err = relative_pose_errors(pred_cam_to_world, gt_cam_to_world, convention)
    return auc_from_errors(rot_err, trans_err, thresholds, mode)
