"""Cameras and rigid transforms (torch, batched over leading dims, float64-safe, differentiable).

Conventions (DESIGN.md): OpenCV cameras (x right, y down, z forward); pixel centres at integer
coordinates (pixel `(u, v)` = column `u`, row `v`); intrinsics `K` `[..., 3, 3]` in pixels;
poses are 4x4 (or 3x4) matrices acting on column vectors and always named by direction:
`cam_to_world` maps camera coordinates to world coordinates, `world_to_cam` the reverse.
Depth is z-depth along the optical axis.

Broadcasting rule of `transform_points`, `project` and `unproject_depth`: the leading dims of
the matrix (`T.shape[:-2]`) are matched against the *leading* dims of the points; the points may
have any number of extra middle dims (a `[B, 4, 4]` pose with `[B, H, W, 3]` points transforms
every pixel of batch item `b` with pose `b`). Ordinary broadcasting applies after this alignment.
"""

from __future__ import annotations

import itertools
from typing import Literal

import torch

from vfm3d.geometry._checks import check_tail

RelativeConvention = Literal["vggt", "camera"]


def to_homogeneous(transform: torch.Tensor) -> torch.Tensor:
    """`[..., 3, 4]` or `[..., 4, 4]` rigid/similarity transforms -> `[..., 4, 4]`."""
    check_tail("transform", transform, (None, 4))
    if transform.shape[-2] == 4:
        return transform
    if transform.shape[-2] != 3:
        raise ValueError(
            f"transform must be [..., 3, 4] or [..., 4, 4], got {list(transform.shape)}"
        )
    bottom = torch.zeros(
        *transform.shape[:-2], 1, 4, dtype=transform.dtype, device=transform.device
    )
    bottom[..., 0, 3] = 1.0
    return torch.cat([transform, bottom], dim=-2)


def make_rigid(rotation: torch.Tensor, translation: torch.Tensor) -> torch.Tensor:
    """Rotation `[..., 3, 3]` and translation `[..., 3]` -> 4x4 transform `[..., 4, 4]`."""
    check_tail("rotation", rotation, (3, 3))
    check_tail("translation", translation, (3,))
    top = torch.cat([rotation, translation[..., None]], dim=-1)
    return to_homogeneous(top)


def invert_rigid(transform: torch.Tensor) -> torch.Tensor:
    """Closed-form inverse of rigid transforms `[..., 4, 4]` (or `[..., 3, 4]`) -> `[..., 4, 4]`.

    `(R, t)^-1 = (R^T, -R^T t)`; exact for rotations, unlike a general matrix inverse
    (VGGT's `closed_form_inverse_se3`). `invert_rigid(cam_to_world)` is `world_to_cam`.
    """
    check_tail("transform", transform, (None, 4))
    rotation = transform[..., :3, :3]
    translation = transform[..., :3, 3]
    rotation_t = rotation.transpose(-1, -2)
    return make_rigid(rotation_t, -(rotation_t @ translation[..., None])[..., 0])


def _align_leading(matrix: torch.Tensor, tail_dims: int, points: torch.Tensor) -> torch.Tensor:
    """Insert singleton dims after the leading dims of `matrix` so it broadcasts with `points`.

    `matrix` has `tail_dims` trailing matrix dims; `points` has one trailing vector dim.
    """
    lead = matrix.ndim - tail_dims
    extra = points.ndim - 1 - lead
    if extra <= 0:
        return matrix
    shape = (*matrix.shape[:lead], *([1] * extra), *matrix.shape[lead:])
    return matrix.reshape(shape)


def transform_points(transform: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Apply 4x4 (or 3x4) transforms `[L..., 4, 4]` to points `[L..., M..., 3]` -> `[L..., M..., 3]`.

    `x' = A x + b` with `A = T[:3, :3]` (rotation, possibly scaled) and `b = T[:3, 3]`; the
    bottom row is ignored (no projective division). See the module docstring for broadcasting.
    """
    check_tail("transform", transform, (None, 4))
    check_tail("points", points, (3,))
    linear = _align_leading(transform[..., :3, :3], 2, points)
    offset = _align_leading(transform[..., :3, 3], 1, points)
    return torch.einsum("...ij,...j->...i", linear, points) + offset


def transform_points_grid(transform: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Alias of `transform_points` for point maps: `[B..., 4, 4]` with `[B..., H, W, 3]`."""
    return transform_points(transform, points)


def project(
    points_cam: torch.Tensor, intrinsics: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Project camera-frame points `[L..., M..., 3]` with `K` `[L..., 3, 3]` -> `(uv [..., 2], z [...])`.

    `uv = (K p)[:2] / z` in pixels (integer = pixel centre); `z` is the z-depth. Points with
    `z <= 0` give meaningless `uv` (inf at 0): mask them with `z > 0`.
    """
    check_tail("intrinsics", intrinsics, (3, 3))
    check_tail("points_cam", points_cam, (3,))
    k = _align_leading(intrinsics, 2, points_cam)
    homogeneous = torch.einsum("...ij,...j->...i", k, points_cam)
    z = points_cam[..., 2]
    uv = homogeneous[..., :2] / homogeneous[..., 2:3]
    return uv, z


def pixel_grid(
    height: int, width: int, dtype: torch.dtype = torch.float64, device: torch.device | None = None
) -> torch.Tensor:
    """Pixel-centre coordinates `[H, W, 2]` as `(u, v)` = (column, row), integers."""
    v, u = torch.meshgrid(
        torch.arange(height, dtype=dtype, device=device),
        torch.arange(width, dtype=dtype, device=device),
        indexing="ij",
    )
    return torch.stack([u, v], dim=-1)


def unproject_depth(depth: torch.Tensor, intrinsics: torch.Tensor) -> torch.Tensor:
    """Z-depth maps `[L..., H, W]` and `K` `[L..., 3, 3]` -> camera-frame point maps `[L..., H, W, 3]`.

    Pixel `(u, v)` with depth `d` maps to `d * K^-1 (u, v, 1)` (upper-triangular K with optional
    skew). Invalid pixels give whatever their depth gives: keep the `valid` mask alongside.
    """
    check_tail("intrinsics", intrinsics, (3, 3))
    if depth.ndim < 2:
        raise ValueError(f"depth must have shape [..., H, W], got {list(depth.shape)}")
    height, width = depth.shape[-2:]
    grid = pixel_grid(height, width, dtype=depth.dtype, device=depth.device)
    k = intrinsics.to(depth.dtype)[..., None, None, :, :]  # [L..., 1, 1, 3, 3]
    fx, skew, cx = k[..., 0, 0], k[..., 0, 1], k[..., 0, 2]
    fy, cy = k[..., 1, 1], k[..., 1, 2]
    y_n = (grid[..., 1] - cy) / fy
    x_n = (grid[..., 0] - cx - skew * y_n) / fx
    x = x_n * depth
    return torch.stack([x, y_n * depth, depth.expand_as(x)], dim=-1)


def depth_to_world_points(
    depth: torch.Tensor, intrinsics: torch.Tensor, cam_to_world: torch.Tensor
) -> torch.Tensor:
    """Depth `[L..., H, W]`, `K` `[L..., 3, 3]`, `cam_to_world` `[L..., 4, 4]` -> world points `[L..., H, W, 3]`."""
    check_tail("cam_to_world", cam_to_world, (None, 4))
    points_cam = unproject_depth(depth, intrinsics)
    return transform_points(cam_to_world.to(points_cam.dtype), points_cam)


def world_points_to_depth(points_world: torch.Tensor, world_to_cam: torch.Tensor) -> torch.Tensor:
    """World point maps `[L..., H, W, 3]` seen by `world_to_cam` `[L..., 4, 4]` -> z-depth `[L..., H, W]`."""
    return transform_points(world_to_cam.to(points_world.dtype), points_world)[..., 2]


def pair_indices(
    num_frames: int, device: torch.device | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """All pairs `i < j` of `num_frames` frames in `itertools.combinations` order -> `(i [P], j [P])`."""
    pairs = list(itertools.combinations(range(num_frames), 2))
    if not pairs:
        raise ValueError(f"need at least 2 frames to form a pair, got {num_frames}")
    index = torch.tensor(pairs, dtype=torch.long, device=device)
    return index[:, 0], index[:, 1]


def relative_poses(
    cam_to_world: torch.Tensor,
    index_i: torch.Tensor | None = None,
    index_j: torch.Tensor | None = None,
    convention: RelativeConvention = "vggt",
) -> torch.Tensor:
    """Relative transforms of frame pairs: `cam_to_world` `[..., N, 4, 4]` -> `[..., P, 4, 4]`.

    Pairs default to all `i < j` (`itertools.combinations` order, see `pair_indices`).
    - `convention="vggt"` (default, VGGT / VidFM3D evaluation code): `inverse(world_to_cam_i) @
      world_to_cam_j` = `cam_to_world_i @ world_to_cam_j`. Note this is *not* the usual
      camera-to-camera transform; it is kept for comparability with published numbers.
    - `convention="camera"`: `world_to_cam_i @ cam_to_world_j`, the pose of camera j in camera
      i's coordinates (maps camera-j coordinates to camera-i coordinates).
    """
    check_tail("cam_to_world", cam_to_world, (None, 4))
    transform = to_homogeneous(cam_to_world)
    if index_i is None or index_j is None:
        index_i, index_j = pair_indices(transform.shape[-3], device=transform.device)
    pose_i = transform[..., index_i, :, :]
    pose_j = transform[..., index_j, :, :]
    if convention == "vggt":
        return pose_i @ invert_rigid(pose_j)
    if convention == "camera":
        return invert_rigid(pose_i) @ pose_j
    raise ValueError(f"convention must be 'vggt' or 'camera', got {convention!r}")
