"""A soft, z-buffered point splat in pure torch (the point rasteriser + alpha compositor that
MEt3R uses from PyTorch3D, without PyTorch3D).

Exact form (one image, ``H x W`` pixels, pixel centres at integer ``(u, v)`` as everywhere in
vfm3d):

1. Every valid point ``X`` (world frame) is moved into the camera, ``x = world_to_cam X``, and
   projected with ``K``: ``(u_i, v_i) = (K x)[:2] / z_i``. Points with ``z_i <= 0`` or a
   non-finite projection are dropped.
2. Point ``i`` reaches pixel ``p`` when the squared image distance from ``p``'s centre is
   below the squared radius: ``d2_ip = (u_p - u_i)^2 + (v_p - v_i)^2 < r^2 (1 - 1e-6)`` (``r``
   in pixels; the margin keeps rounding from deciding points exactly on the rim). Its opacity there is ``alpha_ip = 1 - d2_ip / r^2`` (1 at the centre, 0 at the
   rim), MEt3R's weight.
3. At each pixel the ``K`` reaching points with the smallest z-depth are kept, ordered front to
   back (ties: the lower point index first), as PyTorch3D's ``rasterize_points`` does with
   ``points_per_pixel = K``.
4. They are composited front to back (PyTorch3D's ``AlphaCompositor``)::

       w_k = alpha_k * prod_{j < k} (1 - alpha_j)        F(p) = sum_k w_k f_k

   ``F`` is *not* divided by ``sum_k w_k`` (= ``1 - prod_k (1 - alpha_k)``, returned as
   ``alpha``): a cosine between renders is the same either way; divide by ``alpha`` for a
   weighted mean.
5. A pixel is ``covered`` when at least one point reaches it (MEt3R's background test).

Radius: MEt3R renders with PyTorch3D's default ``radius = 0.01`` in NDC units, where the shorter
image side spans 2, i.e. ``0.005 * min(H, W)`` pixels (1.28 px at its 256 x 256). `default_radius`
uses that but at least 1 pixel: below about 0.71 px a point map seen from its own camera would
leave holes between pixel centres, and vfm3d renders at 32-64 px.

Cost: ``N (2 ceil(r) + 1)^2`` candidate (point, pixel) pairs, two stable sorts and a scatter;
differentiable with respect to the features (and through ``alpha`` to the point positions).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from vfm3d.geometry._checks import check_finite, check_tail
from vfm3d.geometry.camera import project, transform_points

#: MEt3R's rasteriser radius (PyTorch3D default) in NDC units (shorter image side = 2)
MET3R_RADIUS_NDC = 0.01
#: MEt3R's points kept per pixel
MET3R_POINTS_PER_PIXEL = 10
#: relative margin inside the radius: a point exactly one radius away (a pixel lattice seen with
#: r = 1) reaches nothing, whatever the rounding of d^2
RIM_TOLERANCE = 1e-6

__all__ = [
    "MET3R_POINTS_PER_PIXEL",
    "MET3R_RADIUS_NDC",
    "SplatResult",
    "default_radius",
    "soft_splat",
]


def default_radius(image_hw: tuple[int, int]) -> float:
    """MEt3R's radius in pixels for an ``(H, W)`` image, at least 1 px (module docstring)."""
    return max(1.0, MET3R_RADIUS_NDC * min(int(image_hw[0]), int(image_hw[1])) / 2.0)


@dataclass
class SplatResult:
    """A rendered image; every field is ``[H, W, ...]``.

    - ``features`` ``[H, W, C]``: front-to-back composite ``sum_k w_k f_k`` (0 where uncovered).
    - ``alpha`` ``[H, W]``: accumulated opacity ``sum_k w_k = 1 - prod_k (1 - alpha_k)``.
    - ``covered`` ``[H, W]`` bool: at least one point within the radius.
    - ``depth`` ``[H, W]``: z-depth of the nearest blended point (``inf`` where uncovered).
    - ``count`` ``[H, W]`` int64: points blended (at most ``points_per_pixel``).
    """

    features: torch.Tensor
    alpha: torch.Tensor
    covered: torch.Tensor
    depth: torch.Tensor
    count: torch.Tensor


def soft_splat(
    points_world: torch.Tensor,
    features: torch.Tensor,
    valid: torch.Tensor | None,
    world_to_cam: torch.Tensor,
    intrinsics: torch.Tensor,
    image_hw: tuple[int, int],
    radius: float | None = None,
    points_per_pixel: int = MET3R_POINTS_PER_PIXEL,
) -> SplatResult:
    """Render per-point features into one camera with the soft z-buffered splat above.

    Args:
        points_world: ``[..., 3]`` points in the world frame (any leading shape, e.g. a point
            map ``[H', W', 3]``).
        features: ``[..., C]`` one feature vector per point (same leading shape).
        valid: ``[...]`` bool, points to render (None: all).
        world_to_cam: ``[4, 4]`` the rendering camera's pose (world -> camera, OpenCV).
        intrinsics: ``[3, 3]`` its ``K`` in pixels.
        image_hw: ``(H, W)`` of the rendered image.
        radius: splat radius in pixels (default `default_radius`).
        points_per_pixel: ``K``, nearest-in-depth points blended per pixel.

    Returns:
        `SplatResult` (fields ``[H, W, ...]``).
    """
    check_tail("points_world", points_world, (3,))
    check_tail("world_to_cam", world_to_cam, (4, 4))
    check_tail("intrinsics", intrinsics, (3, 3))
    if world_to_cam.ndim != 2 or intrinsics.ndim != 2:
        raise ValueError("soft_splat renders one camera: world_to_cam [4, 4], intrinsics [3, 3]")
    lead = tuple(points_world.shape[:-1])
    if features.ndim < 1 or tuple(features.shape[:-1]) != lead:
        raise ValueError(
            f"features {list(features.shape)} must match points_world {list(points_world.shape)} "
            "except the last dim"
        )
    if valid is None:
        valid = torch.ones(lead, dtype=torch.bool, device=points_world.device)
    if tuple(valid.shape) != lead or valid.dtype != torch.bool:
        raise ValueError(
            f"valid must be a bool tensor of shape {list(lead)}, got {valid.dtype} "
            f"{list(valid.shape)}"
        )
    check_finite("points_world", points_world, where=valid[..., None])
    height, width = int(image_hw[0]), int(image_hw[1])
    if height < 1 or width < 1:
        raise ValueError(f"image_hw must be positive, got {image_hw}")
    r = default_radius((height, width)) if radius is None else float(radius)
    if not r > 0 or not math.isfinite(r):
        raise ValueError(f"radius must be a positive number of pixels, got {radius}")
    k_max = int(points_per_pixel)
    if k_max < 1:
        raise ValueError(f"points_per_pixel must be >= 1, got {points_per_pixel}")

    device, dtype = points_world.device, points_world.dtype
    channels = int(features.shape[-1])
    flat_points = points_world.reshape(-1, 3)
    flat_feats = features.reshape(-1, channels)
    flat_valid = valid.reshape(-1)
    uv, z = project(transform_points(world_to_cam.to(dtype), flat_points), intrinsics.to(dtype))
    keep = flat_valid & (z > 0) & torch.isfinite(uv).all(dim=-1) & torch.isfinite(z)
    # points farther than the radius from the image cannot reach any pixel
    keep &= (uv[:, 0] > -r) & (uv[:, 0] < width - 1 + r)
    keep &= (uv[:, 1] > -r) & (uv[:, 1] < height - 1 + r)
    index = torch.nonzero(keep).reshape(-1)
    uv, z = uv[index], z[index]

    # candidate pixels: a (2R+1)^2 window around the nearest pixel centre
    reach = math.ceil(r)
    steps = torch.arange(-reach, reach + 1, device=device)
    dv, du = torch.meshgrid(steps, steps, indexing="ij")
    base = torch.round(uv).long()
    pu = base[:, None, 0] + du.reshape(1, -1)
    pv = base[:, None, 1] + dv.reshape(1, -1)
    d2 = (pu.to(dtype) - uv[:, None, 0]) ** 2 + (pv.to(dtype) - uv[:, None, 1]) ** 2
    rim = r * r * (1.0 - RIM_TOLERANCE)
    hit = (d2 < rim) & (pu >= 0) & (pu < width) & (pv >= 0) & (pv < height)
    point_of = torch.arange(index.numel(), device=device)[:, None].expand_as(hit)[hit]
    pixel = (pv * width + pu)[hit]
    alpha = 1.0 - d2[hit] / (r * r)
    depth = z[point_of]

    # order by (pixel, depth, point): stable sort by depth, then stable sort by pixel
    order = torch.sort(depth, stable=True).indices
    order = order[torch.sort(pixel[order], stable=True).indices]
    pixel, alpha, depth, point_of = pixel[order], alpha[order], depth[order], point_of[order]
    num_pixels = height * width
    count_all = torch.bincount(pixel, minlength=num_pixels)
    starts = torch.cumsum(count_all, 0) - count_all
    rank = torch.arange(pixel.numel(), device=device) - starts[pixel]
    front = rank < k_max
    pixel, alpha, depth, point_of, rank = (
        pixel[front],
        alpha[front],
        depth[front],
        point_of[front],
        rank[front],
    )

    # front-to-back compositing on a dense [HW, K] opacity table
    table = torch.zeros(num_pixels, k_max, dtype=dtype, device=device)
    table[pixel, rank] = alpha
    through = torch.cumprod(1.0 - table, dim=1)
    transmit = torch.cat([torch.ones_like(through[:, :1]), through[:, :-1]], dim=1)
    weight = alpha * transmit[pixel, rank]
    feats = flat_feats[index[point_of]]
    rendered = torch.zeros(num_pixels, channels, dtype=feats.dtype, device=device)
    rendered = rendered.index_add(0, pixel, weight.to(feats.dtype)[:, None] * feats)
    count = torch.bincount(pixel, minlength=num_pixels)
    nearest = torch.full((num_pixels,), torch.inf, dtype=dtype, device=device)
    nearest[pixel[rank == 0]] = depth[rank == 0]
    return SplatResult(
        features=rendered.reshape(height, width, channels),
        alpha=(1.0 - through[:, -1]).reshape(height, width),
        covered=(count > 0).reshape(height, width),
        depth=nearest.reshape(height, width),
        count=count.reshape(height, width),
    )
