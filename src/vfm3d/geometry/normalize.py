"""THE probe-target normalisation (VidFM3D convention; DESIGN.md "Probe targets").

Every consumer (probe training, evaluation, reports) calls `probe_targets`; nothing else
re-implements it. Steps, per sequence:
1. re-base poses so frame 0 is the identity: `cam_to_world'_t = world_to_cam_0 @ cam_to_world_t`
   (the world becomes frame 0's OpenCV camera frame);
2. unproject every frame's z-depth with its intrinsics and move it into that frame;
3. scale everything (points, depth, translations) by `scale = 1 / mean_dist`, where `mean_dist`
   is the mean Euclidean norm of frame 0's valid points, so that afterwards that mean is 1.
Intrinsics are unchanged (scale does not change pixels). Invalid pixels hold 0 in `points` and
`depth`; only `valid` says which entries mean anything.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vfm3d.geometry._checks import check_finite, check_mask, check_tail, float_dtype
from vfm3d.geometry.camera import invert_rigid, to_homogeneous, transform_points, unproject_depth


@dataclass
class ProbeTargets:
    """Normalised targets for one batch of sequences (`...` = leading batch dims, T frames).

    - `points` `[..., T, H, W, 3]`: points in frame-0 camera coordinates, scaled.
    - `depth` `[..., T, H, W]`: z-depth of each frame, scaled.
    - `valid` `[..., T, H, W]` bool.
    - `cam_to_world` / `world_to_cam` `[..., T, 4, 4]`: frame 0 is the identity; translations scaled.
    - `intrinsics` `[..., T, 3, 3]`: unchanged.
    - `scale` `[...]`: the factor applied (`1 / mean distance of frame 0's valid points`).
    """

    points: torch.Tensor
    depth: torch.Tensor
    valid: torch.Tensor
    cam_to_world: torch.Tensor
    world_to_cam: torch.Tensor
    intrinsics: torch.Tensor
    scale: torch.Tensor


def probe_targets(
    depth: torch.Tensor,
    valid: torch.Tensor,
    intrinsics: torch.Tensor,
    cam_to_world: torch.Tensor,
) -> ProbeTargets:
    """Normalise GT of sequences: depth `[..., T, H, W]`, valid, K `[..., T, 3, 3]`, cam_to_world `[..., T, 4, 4]`.

    See the module docstring for the exact steps. Computes and returns float64 if any input is
    float64 (a `Clip`'s float64 `cam_to_world` makes it so), else float32; cast the result for
    training. `intrinsics` is returned as given. Raises ValueError if frame 0 of a sequence has
    no valid pixel, if its valid points all sit at the camera centre, or on NaN/inf in valid depth.
    """
    if depth.ndim < 3:
        raise ValueError(f"depth must have shape [..., T, H, W], got {list(depth.shape)}")
    valid = check_mask("valid", valid, depth.shape)
    check_tail("intrinsics", intrinsics, (depth.shape[-3], 3, 3))
    check_tail("cam_to_world", cam_to_world, (depth.shape[-3], None, 4))
    check_finite("depth", depth, where=valid)
    check_finite("cam_to_world", cam_to_world)
    dtype = float_dtype(depth, intrinsics, cam_to_world)
    depth = torch.where(valid, depth.to(dtype), torch.zeros((), dtype=dtype, device=depth.device))
    cam_to_world = to_homogeneous(cam_to_world.to(dtype))
    world_to_cam0 = invert_rigid(cam_to_world[..., :1, :, :])
    rebased = world_to_cam0 @ cam_to_world  # [..., T, 4, 4], frame 0 = identity
    points = transform_points(rebased, unproject_depth(depth, intrinsics.to(dtype)))
    points = torch.where(valid[..., None], points, torch.zeros_like(points))
    frame0_valid = valid[..., 0, :, :]
    count = frame0_valid.flatten(-2).sum(-1)
    if bool((count == 0).any()):
        raise ValueError(
            "probe_targets: frame 0 has no valid pixel in some sequence; cannot normalise"
        )
    dist_sum = torch.linalg.vector_norm(points[..., 0, :, :, :], dim=-1).flatten(-2).sum(-1)
    mean_dist = dist_sum / count.to(dtype)
    if bool((mean_dist <= 0).any()):
        raise ValueError("probe_targets: frame 0's valid points all sit at the camera centre")
    scale = 1.0 / mean_dist
    s_points = scale[..., None, None, None, None]
    s_frames = scale[..., None, None, None]
    cam_to_world_out = rebased.clone()
    cam_to_world_out[..., :3, 3] = rebased[..., :3, 3] * scale[..., None, None]
    return ProbeTargets(
        points=points * s_points,
        depth=depth * s_frames,
        valid=valid,
        cam_to_world=cam_to_world_out,
        world_to_cam=invert_rigid(cam_to_world_out),
        intrinsics=intrinsics,
        scale=scale,
    )
