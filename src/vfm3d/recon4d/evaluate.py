"""Score a `Reconstruction` against a clip's ground truth (MonST3R's video protocol).

Cameras: ATE / RPE-trans / RPE-rot after a Sim(3) alignment of camera centres (evo's
definitions, `vfm3d.metrics.trajectory_metrics`, delta 1 frame). Depth: AbsRel, delta<1.25, ...
after one median scale per sequence (`vfm3d.metrics.depth_metrics`, ``align="median"``).
The clip must be the one the reconstruction saw (same frames, same resolution). When the
predicted camera centres admit no Sim(3) (all equal, e.g. every pose a fallback), the limit of
that alignment is used (`degenerate_trajectory_metrics`, ``align = "degenerate"``).
"""

from __future__ import annotations

from typing import Any

import torch

from vfm3d.clip import Clip
from vfm3d.recon4d.result import Reconstruction


def score(recon: Reconstruction, clip: Clip, max_depth: float | None = None) -> dict[str, Any]:
    """``{"ate", "rpe_trans", "rpe_rot_deg", "abs_rel", "delta1", ...}`` of ``recon`` vs
    ``clip``; raises ``ValueError`` when the clip has no ground truth or another shape."""
    from vfm3d.metrics import depth_metrics, trajectory_metrics

    if not clip.has_ground_truth:
        raise ValueError(f"clip {clip.id!r} has no ground truth (depth and true cameras) to score")
    if (clip.num_frames, clip.height, clip.width) != tuple(recon.depth.shape):
        raise ValueError(
            f"clip {clip.id!r} is {clip.num_frames}x{clip.height}x{clip.width}, the "
            f"reconstruction {tuple(recon.depth.shape)}: score the clip the model saw"
        )
    from vfm3d.geometry import DegenerateAlignmentError

    out: dict[str, Any] = {}
    if clip.num_frames >= 2:
        pred, gt = torch.from_numpy(recon.cam_to_world), torch.from_numpy(clip.cam_to_world)
        try:
            cams = trajectory_metrics(pred, gt, "sim3", 1).to_json()
            out.update({k: cams[k] for k in ("ate", "rpe_trans", "rpe_rot_deg")})
        except DegenerateAlignmentError:
            out.update(degenerate_trajectory_metrics(pred, gt))
    assert clip.depth is not None and clip.valid is not None
    depth = depth_metrics(
        torch.from_numpy(recon.depth).double(),
        torch.from_numpy(clip.depth).double(),
        torch.from_numpy(clip.valid),
        align="median",
        max_depth=max_depth,
    )
    out.update(depth.to_json())
    return out


def _rebased(cam_to_world: torch.Tensor) -> torch.Tensor:
    from vfm3d.geometry import invert_rigid

    return invert_rigid(cam_to_world[:1]) @ cam_to_world


def degenerate_trajectory_metrics(
    pred_cam_to_world: torch.Tensor, gt_cam_to_world: torch.Tensor
) -> dict[str, Any]:
    """ATE / RPE when the Sim(3) alignment is degenerate (e.g. all predicted centres equal).

    Both trajectories are re-based on their first camera (a rigid change of the GT frame, which
    the Sim(3)-aligned errors do not depend on); the predicted centres ``c`` are aligned by
    ``s (c - mean c) + mean c_gt`` with ``s = max(0, <c - mean, c_gt - mean> / |c - mean|^2)``
    (0 for a single point) and no rotation: the limit of the Sim(3) alignment as the
    predicted centres collapse. Then `vfm3d.metrics.trajectory_metrics` with ``align="none"``.
    """
    from vfm3d.metrics import trajectory_metrics

    pred = _rebased(pred_cam_to_world.double())
    gt = _rebased(gt_cam_to_world.double())
    pc = pred[:, :3, 3] - pred[:, :3, 3].mean(0)
    gc = gt[:, :3, 3] - gt[:, :3, 3].mean(0)
    norm = float((pc * pc).sum())
    scale = max(0.0, float((pc * gc).sum()) / norm) if norm > 1e-24 else 0.0
    aligned = pred.clone()
    aligned[:, :3, 3] = scale * pc + gt[:, :3, 3].mean(0)
    cams = trajectory_metrics(aligned, gt, "none", 1).to_json()
    return {
        "ate": cams["ate"],
        "rpe_trans": cams["rpe_trans"],
        "rpe_rot_deg": cams["rpe_rot_deg"],
        "align": "degenerate",
    }
