"""Cameras from point maps: focal length from a camera-frame point map, pose by Procrustes.

- `focal_from_points`: DUSt3R `estimate_focal_knowing_depth` (`dust3r/post_process.py`), with
  the principal point at the image centre `(W / 2, H / 2)` and one shared focal (`fx = fy`):
  `"median"` = median of the per-pixel votes `(u - cx) / (x / z)` and `(v - cy) / (y / z)`;
  `"weiszfeld"` = least-squares start then 10 Weiszfeld iterations of the robust L2 fit
  `min_f sum |(u, v) - c - f (x / z, y / z)|`.
- `pose_from_points`: orthogonal Procrustes / Umeyama between a camera-frame point map (e.g.
  from depth and focal) and the world-frame point map of the same pixels.
"""

from __future__ import annotations

from typing import Literal

import torch

from vfm3d.geometry._checks import check_finite, check_mask, check_tail
from vfm3d.geometry.align import umeyama
from vfm3d.geometry.camera import make_rigid, pixel_grid

FocalMethod = Literal["median", "weiszfeld"]


def focal_from_points(
    points_cam: torch.Tensor,
    valid: torch.Tensor | None = None,
    method: FocalMethod = "median",
    principal_point: tuple[float, float] | None = None,
    iterations: int = 10,
) -> torch.Tensor:
    """Focal length in pixels from camera-frame point maps `[..., H, W, 3]` -> `[...]`.

    Pixel `(u, v)` of point `(x, y, z)` satisfies `u - cx = f x / z`, `v - cy = f y / z` for a
    pinhole with one focal `f`. Only `valid` pixels (`[..., H, W]`, default all) with `z > 0` vote.
    `principal_point` `(cx, cy)` defaults to `(W / 2, H / 2)` (DUSt3R / VGGT convention).
    """
    check_tail("points_cam", points_cam, (None, None, 3))
    height, width = points_cam.shape[-3:-1]
    if valid is None:
        valid = torch.ones(points_cam.shape[:-1], dtype=torch.bool, device=points_cam.device)
    valid = check_mask("valid", valid, points_cam.shape[:-1])
    check_finite("points_cam", points_cam, where=valid[..., None])
    if method not in ("median", "weiszfeld"):
        raise ValueError(f"method must be 'median' or 'weiszfeld', got {method!r}")
    cx, cy = principal_point if principal_point is not None else (width / 2.0, height / 2.0)
    centre = torch.tensor([cx, cy], dtype=points_cam.dtype, device=points_cam.device)
    pixels = pixel_grid(height, width, dtype=points_cam.dtype, device=points_cam.device) - centre
    z = points_cam[..., 2:3]
    use = valid & (points_cam[..., 2] > 0)
    if bool((use.flatten(-2).sum(-1) == 0).any()):
        raise ValueError("focal_from_points: an image has no valid pixel with z > 0")
    xy_over_z = points_cam[..., :2] / torch.where(z > 0, z, torch.ones_like(z))
    pixels = pixels.expand_as(xy_over_z)
    lead = points_cam.shape[:-3]
    xy_flat = xy_over_z.reshape(-1, height * width, 2)
    px_flat = pixels.reshape(-1, height * width, 2)
    use_flat = use.reshape(-1, height * width)
    out = []
    for xy, px, m in zip(xy_flat, px_flat, use_flat, strict=True):
        xy, px = xy[m], px[m]
        if method == "median":
            votes = px / xy
            votes = votes[torch.isfinite(votes) & (xy.abs() > 0)]
            if votes.numel() == 0:
                raise ValueError("focal_from_points: no pixel off the principal axes to vote")
            out.append(torch.nanmedian(votes))
        else:
            focal = (xy * px).sum() / (xy * xy).sum()
            for _ in range(iterations):
                distance = torch.linalg.vector_norm(px - focal * xy, dim=-1)
                weight = 1.0 / distance.clamp(min=1e-8)
                focal = (weight * (xy * px).sum(-1)).sum() / (weight * (xy * xy).sum(-1)).sum()
            out.append(focal)
    return torch.stack(out).reshape(lead)


def pose_from_points(
    points_world: torch.Tensor,
    points_cam: torch.Tensor,
    valid: torch.Tensor | None = None,
    with_scale: bool = False,
    weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Camera pose from corresponding point maps `[..., H, W, 3]` -> `(cam_to_world [..., 4, 4], s [...])`.

    Fits `points_world ≈ s R points_cam + t` (Procrustes / Umeyama on `valid` pixels,
    optionally weighted by `weights` `[..., H, W]`, e.g. confidence); `cam_to_world = [R | t]`.
    With `with_scale=True` the scale `s` between the two maps is also returned (1 otherwise).
    Get `points_cam` from depth and intrinsics with `unproject_depth`.
    """
    check_tail("points_world", points_world, (None, None, 3))
    if points_world.shape != points_cam.shape:
        raise ValueError(
            f"points_world {list(points_world.shape)} and points_cam {list(points_cam.shape)} differ"
        )
    if valid is None:
        valid = torch.ones(points_world.shape[:-1], dtype=torch.bool, device=points_world.device)
    valid = check_mask("valid", valid, points_world.shape[:-1])
    w = valid.to(points_world.dtype)
    if weights is not None:
        w = w * weights.to(points_world.dtype)
    clean = valid[..., None]
    src = torch.where(clean, points_cam, torch.zeros_like(points_cam)).flatten(-3, -2)
    dst = torch.where(clean, points_world, torch.zeros_like(points_world)).flatten(-3, -2)
    scale, rotation, translation = umeyama(src, dst, weights=w.flatten(-2), with_scale=with_scale)
    return make_rigid(rotation, translation), scale
