"""Score a `Reconstruction` against a clip's ground truth (MonST3R's video protocol).

Cameras: ATE / RPE-trans / RPE-rot after a Sim(3) alignment of camera centres (evo's
definitions, `vfm3d.metrics.trajectory_metrics`, delta 1 frame). Depth: AbsRel, delta<1.25, ...
after one median scale per sequence (`vfm3d.metrics.depth_metrics`, ``align="median"``).
The clip must be the one the reconstruction saw (same frames, same resolution).
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
    out: dict[str, Any] = {}
    if clip.num_frames >= 2:
        cams = trajectory_metrics(
            torch.from_numpy(recon.cam_to_world), torch.from_numpy(clip.cam_to_world), "sim3", 1
        )
        out.update({k: cams.to_json()[k] for k in ("ate", "rpe_trans", "rpe_rot_deg")})
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
