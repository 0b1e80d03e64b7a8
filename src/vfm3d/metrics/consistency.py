"""3D consistency of a frame pair (the idea of MEt3R, Asim et al. CVPR 2025: "MEt3R: Measuring
Multi-View Consistency in Generated Images").

Both frames' point maps (already in one world frame, e.g. from a reconstruction) are rendered
into the first camera with a z-buffer (nearest pixel, nearest point wins), each carrying its own
per-pixel features; the score is `mean(1 - cosine(f_1, f_2))` over pixels both renderings cover.
0 means perfectly consistent, 1 uncorrelated, 2 opposite. MEt3R itself uses DUSt3R point maps,
DINO/FeatUp features and a differentiable rasteriser; this is the same measure with a plain
nearest-pixel splat, for any features and point maps.
"""

from __future__ import annotations

import torch

from vfm3d.geometry._checks import check_finite, check_mask, check_tail
from vfm3d.geometry.camera import project, transform_points


def splat_features(
    points_world: torch.Tensor,
    features: torch.Tensor,
    valid: torch.Tensor,
    world_to_cam: torch.Tensor,
    intrinsics: torch.Tensor,
    image_hw: tuple[int, int],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Render per-point features into a camera: points `[H', W', 3]`, features `[H', W', C]`.

    Each valid point in front of the camera lands on its nearest pixel; where several land on
    one pixel the one with the smallest z-depth wins. Returns `(rendered [H, W, C], covered
    [H, W] bool)` for `image_hw = (H, W)`; uncovered pixels hold 0.
    """
    check_tail("points_world", points_world, (None, None, 3))
    check_tail("world_to_cam", world_to_cam, (4, 4))
    check_tail("intrinsics", intrinsics, (3, 3))
    if features.shape[:-1] != points_world.shape[:-1]:
        raise ValueError(
            f"features {list(features.shape)} must match points_world {list(points_world.shape)} "
            "except the last dim"
        )
    valid = check_mask("valid", valid, points_world.shape[:-1])
    check_finite("points_world", points_world, where=valid[..., None])
    height, width = image_hw
    dtype = points_world.dtype
    uv, z = project(transform_points(world_to_cam.to(dtype), points_world), intrinsics.to(dtype))
    u = torch.round(uv[..., 0])
    v = torch.round(uv[..., 1])
    keep = valid & (z > 0) & (u >= 0) & (u < width) & (v >= 0) & (v < height)
    keep = keep & torch.isfinite(uv).all(dim=-1)
    pixel = (v[keep] * width + u[keep]).long()
    depth = z[keep]
    feats = features[keep]
    nearest = torch.full((height * width,), torch.inf, dtype=dtype, device=points_world.device)
    nearest = nearest.scatter_reduce(0, pixel, depth, reduce="amin")
    front = depth <= nearest[pixel]
    rendered = torch.zeros(
        height * width, features.shape[-1], dtype=features.dtype, device=features.device
    )
    rendered[pixel[front]] = feats[front]
    covered = torch.zeros(height * width, dtype=torch.bool, device=points_world.device)
    covered[pixel[front]] = True
    return rendered.reshape(height, width, -1), covered.reshape(height, width)


def consistency_3d(
    features_1: torch.Tensor,
    features_2: torch.Tensor,
    points_world_1: torch.Tensor,
    points_world_2: torch.Tensor,
    valid_1: torch.Tensor,
    valid_2: torch.Tensor,
    world_to_cam_1: torch.Tensor,
    intrinsics_1: torch.Tensor,
) -> float:
    """MEt3R-style inconsistency of a frame pair -> float in [0, 2] (lower is more consistent).

    `features_k` `[H, W, C]` and `points_world_k` `[H, W, 3]` (with `valid_k` `[H, W]`) belong to
    frame k; both are rendered into camera 1 (`world_to_cam_1` `[4, 4]`, `intrinsics_1`
    `[3, 3]`, image size of frame 1) with `splat_features`, and `1 - cosine` is averaged over
    pixels both cover. Raises ValueError when no pixel is covered by both.
    """
    hw = (int(points_world_1.shape[-3]), int(points_world_1.shape[-2]))
    render_1, cover_1 = splat_features(
        points_world_1, features_1, valid_1, world_to_cam_1, intrinsics_1, hw
    )
    render_2, cover_2 = splat_features(
        points_world_2, features_2, valid_2, world_to_cam_1, intrinsics_1, hw
    )
    both = cover_1 & cover_2
    if not bool(both.any()):
        raise ValueError("consistency_3d: the two frames share no covered pixel in camera 1")
    cosine = torch.nn.functional.cosine_similarity(
        render_1[both].double(), render_2[both].double(), dim=-1, eps=1e-12
    )
    return float((1.0 - cosine).mean())
