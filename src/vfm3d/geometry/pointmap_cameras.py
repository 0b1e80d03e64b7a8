"""Cameras and depth from point maps in one world frame (Sora3R / DUSt3R / MonST3R recipe).

Input: point maps `points [T, H, W, 3]` of every frame, all in ONE world frame = frame 0's
camera coordinates (OpenCV: x right, y down, z forward; any global scale), e.g. a diffusion
model's decoded point maps, a 3D expert's, or the probe's. Output: intrinsics, `cam_to_world`
and z-depth of every frame (`PointmapCameras`).

Method:
1. Focal length (pixels, `fx = fy = f`) from frame 0's point map, with the principal point at
   the image centre `c = ((W - 1) / 2, (H - 1) / 2)` (pixel centres at integer coordinates):
   Weiszfeld iterations (DUSt3R `estimate_focal_knowing_depth`) for the robust fit
   `min_f sum_i w_i |(u_i, v_i) - c - f (x_i / z_i, y_i / z_i)|` over valid pixels with `z > 0`
   (`w` = confidence, or 1), started from the median of the per-pixel votes. One focal is
   shared by all frames unless `intrinsics` is given (then it is used as is).
2. Frame 0's camera is the identity. Frames 1..T-1: PnP between the pixel grid and the frame's
   3D points (`cv2.solvePnPRansac` with `SOLVEPNP_SQPNP`, then `cv2.solvePnPRefineLM` on the
   inliers, re-selected at the inliers' own error scale and refined again), on at most
   `max_points` correspondences (the most confident, else a seeded random subset). A frame
   with too few points or a failed PnP keeps the previous frame's pose and is flagged in
   `fallback`; so is a frame whose PnP pose has a median reprojection error on its
   correspondences (points behind the camera counting as infinite) over twice that of the
   previous frame's pose: a guard against the wrong minima PnP can reach on small, noisy point
   maps (seen on 32x32 Sora3R samples: most points put behind the camera).
3. Depth: each frame's point map mapped into its recovered camera; `depth = z` there, valid
   where the input was valid and `z > 0` (0 elsewhere).

OpenCV (`opencv-python-headless`, extra `vfm3d[geometry]`) is imported on first use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from vfm3d.geometry._checks import check_finite, check_mask, check_tail
from vfm3d.geometry.camera import invert_rigid, pixel_grid, project, transform_points

_WEISZFELD_EPS = 1e-8
_REFINE_ROUNDS = 4
#: A PnP pose whose median reprojection error exceeds this multiple of the previous frame's
#: pose's (on the same correspondences) is a wrong minimum, not a better fit.
_GROSS_FAILURE = 2.0


@dataclass(frozen=True)
class PointmapCameras:
    """Cameras and depth recovered from point maps (`cameras_from_pointmaps`).

    Fields (T frames of H x W; on the device of the input points):
    - `intrinsics` float32 `[T, 3, 3]`: K in pixels (OpenCV, principal point at the centre
      unless given).
    - `cam_to_world` float64 `[T, 4, 4]`: camera-to-world, world = frame 0's camera
      (`cam_to_world[0]` is the identity), in the scale of the input points.
    - `depth` float32 `[T, H, W]`: z-depth in each recovered camera, 0 where not valid.
    - `valid` bool `[T, H, W]`: input valid and `z > 0` in the recovered camera.
    - `inlier_ratio` float32 `[T]`: fraction of the frame's valid pixels that reproject within
      `reprojection_px` of their pixel under the recovered camera (0 for a frame with none).
    - `fallback` bool `[T]`: True where the pose could not be estimated (or PnP's pose reprojected
      its correspondences over twice as badly as the previous frame's, by the median) and the previous frame's `cam_to_world`
      was kept.
    """

    intrinsics: torch.Tensor
    cam_to_world: torch.Tensor
    depth: torch.Tensor
    valid: torch.Tensor
    inlier_ratio: torch.Tensor
    fallback: torch.Tensor

    @property
    def focal(self) -> torch.Tensor:
        """Focal lengths `(fx, fy)` per frame `[T, 2]`."""
        return torch.stack([self.intrinsics[:, 0, 0], self.intrinsics[:, 1, 1]], dim=-1)


def _import_cv2() -> Any:
    try:
        import cv2
    except ImportError as error:
        raise ImportError(
            "cameras_from_pointmaps needs OpenCV: pip install 'vfm3d[geometry]' "
            "(or opencv-python-headless>=4.8)"
        ) from error
    return cv2


def _weiszfeld_focal(
    points_cam: torch.Tensor,
    use: torch.Tensor,
    weights: torch.Tensor,
    centre: tuple[float, float],
    iterations: int,
) -> float:
    """Robust shared focal of one camera-frame point map `[H, W, 3]` (float64) -> pixels."""
    height, width = points_cam.shape[:2]
    grid = pixel_grid(height, width, dtype=torch.float64)
    pixels = (grid - torch.tensor(centre, dtype=torch.float64))[use]  # [N, 2]
    xyz = points_cam[use]
    rays = xyz[:, :2] / xyz[:, 2:3]  # [N, 2] = (x / z, y / z)
    w = weights[use]
    # Start: median of the per-coordinate votes (robust to outliers, unlike least squares).
    votes = pixels / rays
    votes = votes[torch.isfinite(votes) & (rays.abs() > 1e-12) & (pixels.abs() > 0.5)]
    votes = votes[votes > 0]
    if votes.numel() > 0:
        focal = float(votes.median())
    else:
        focal = float((w[:, None] * rays * pixels).sum() / (w[:, None] * rays * rays).sum())
    for _ in range(iterations):
        distance = torch.linalg.vector_norm(pixels - focal * rays, dim=-1)
        irls = w / distance.clamp(min=_WEISZFELD_EPS)
        new = float((irls * (rays * pixels).sum(-1)).sum() / (irls * (rays * rays).sum(-1)).sum())
        converged = abs(new - focal) <= 1e-12 * max(abs(focal), 1.0)
        focal = new
        if converged:
            break
    if not np.isfinite(focal) or focal <= 0:
        raise ValueError(
            f"cameras_from_pointmaps: focal estimate from frame 0 is not positive ({focal}); "
            "are the points in frame 0's camera coordinates (z forward)?"
        )
    return focal


def _check_inputs(
    points: torch.Tensor,
    conf: torch.Tensor | None,
    valid: torch.Tensor | None,
    intrinsics: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    check_tail("points", points, (None, None, 3))
    if points.ndim != 4:
        raise ValueError(f"points must have shape [T, H, W, 3], got {list(points.shape)}")
    if points.shape[0] < 1:
        raise ValueError("points must hold at least one frame (T >= 1)")
    if not points.is_floating_point():
        raise ValueError(f"points must be a floating tensor, got {points.dtype}")
    grid_shape = points.shape[:-1]
    if valid is None:
        valid = torch.ones(grid_shape, dtype=torch.bool, device=points.device)
    valid = check_mask("valid", valid, grid_shape)
    check_finite("points", points, where=valid[..., None])
    if conf is not None:
        if not isinstance(conf, torch.Tensor):
            raise TypeError(f"conf must be a torch.Tensor, got {type(conf).__name__}")
        if tuple(conf.shape) != tuple(grid_shape):
            raise ValueError(f"conf must have shape {list(grid_shape)}, got {list(conf.shape)}")
        check_finite("conf", conf, where=valid)
        if bool((conf[valid] < 0).any()):
            raise ValueError("conf must be non-negative where valid")
    if intrinsics is not None:
        check_tail("intrinsics", intrinsics, (3, 3))
        if intrinsics.ndim == 2:
            intrinsics = intrinsics.expand(points.shape[0], 3, 3)
        if intrinsics.ndim != 3 or intrinsics.shape[0] != points.shape[0]:
            raise ValueError(
                f"intrinsics must have shape [3, 3] or [T={points.shape[0]}, 3, 3], "
                f"got {list(intrinsics.shape)}"
            )
        check_finite("intrinsics", intrinsics)
        if bool((intrinsics[:, 0, 0] <= 0).any() or (intrinsics[:, 1, 1] <= 0).any()):
            raise ValueError("intrinsics must have positive focal lengths")
    return valid, intrinsics


def _select(
    index: np.ndarray, conf: np.ndarray | None, max_points: int, rng: np.random.Generator
) -> np.ndarray:
    """At most `max_points` of the flat pixel indices `index`: the most confident, else random."""
    if index.size <= max_points:
        return index
    if conf is not None:
        order = np.argsort(-conf[index], kind="stable")[:max_points]
        return np.sort(index[order])
    return np.sort(rng.choice(index, size=max_points, replace=False))


def _median_error(
    world_to_cam: np.ndarray, object_points: np.ndarray, image_points: np.ndarray, k: np.ndarray
) -> float:
    """Median reprojection error (pixels) of correspondences ``[N, 3]`` / ``[N, 2]`` under
    camera ``world_to_cam`` ``[4, 4]`` (K ``[3, 3]``); points behind the camera count as
    infinitely wrong."""
    cam = object_points @ world_to_cam[:3, :3].T + world_to_cam[:3, 3]
    z = cam[:, 2]
    front = z > 1e-12
    uv = cam[:, :2] / np.where(front, z, 1.0)[:, None] * np.diag(k)[:2] + k[:2, 2]
    error = np.where(front, np.linalg.norm(uv - image_points, axis=-1), np.inf)
    return float(np.median(error))


def _solve_pnp(
    cv2: Any,
    object_points: np.ndarray,
    image_points: np.ndarray,
    k: np.ndarray,
    ransac: bool,
    reprojection_px: float,
    iterations: int,
    min_points: int,
) -> np.ndarray | None:
    """world_to_cam `[4, 4]` from 3D-2D correspondences, or None when PnP fails."""
    try:
        if ransac:
            ok, rvec, tvec, inliers = cv2.solvePnPRansac(
                object_points,
                image_points,
                k,
                None,
                iterationsCount=iterations,
                reprojectionError=float(reprojection_px),
                confidence=0.999,
                flags=cv2.SOLVEPNP_SQPNP,
            )
            if not ok or inliers is None or len(inliers) < min_points:
                return None
            keep = inliers.reshape(-1)
        else:
            ok, rvec, tvec = cv2.solvePnP(
                object_points, image_points, k, None, flags=cv2.SOLVEPNP_SQPNP
            )
            if not ok:
                return None
            keep = np.arange(len(object_points))
        # Refine (Levenberg-Marquardt) on the inliers, then re-select the inliers under the
        # refined pose with a threshold that shrinks to the inliers' own error scale
        # (4 x median, ~4.7 sigma for Gaussian pixel noise) and refine again: outliers that
        # happen to fall inside `reprojection_px` no longer bias the pose.
        for _ in range(_REFINE_ROUNDS):
            rvec, tvec = cv2.solvePnPRefineLM(
                object_points[keep], image_points[keep], k, None, rvec, tvec
            )
            if not ransac:
                break
            projected, _ = cv2.projectPoints(object_points, rvec, tvec, k, None)
            error = np.linalg.norm(projected.reshape(-1, 2) - image_points, axis=-1)
            threshold = min(reprojection_px, max(4.0 * float(np.median(error[keep])), 1e-6))
            refreshed = np.flatnonzero(error < threshold)
            if len(refreshed) < min_points or np.array_equal(refreshed, keep):
                break
            keep = refreshed
    except cv2.error:
        return None
    rotation, _ = cv2.Rodrigues(rvec)
    world_to_cam = np.eye(4)
    world_to_cam[:3, :3] = rotation
    world_to_cam[:3, 3] = tvec.reshape(3)
    if not np.isfinite(world_to_cam).all():
        return None
    return world_to_cam


def cameras_from_pointmaps(
    points: torch.Tensor,
    conf: torch.Tensor | None = None,
    valid: torch.Tensor | None = None,
    intrinsics: torch.Tensor | None = None,
    *,
    ransac: bool = True,
    reprojection_px: float = 5.0,
    seed: int = 0,
    max_points: int = 4096,
    min_points: int = 16,
    ransac_iterations: int = 100,
    focal_iterations: int = 100,
) -> PointmapCameras:
    """Intrinsics, `cam_to_world` and depth of every frame from point maps in frame 0's camera.

    Args:
        points: `[T, H, W, 3]` point maps of all frames in one world frame = frame 0's camera
            coordinates (OpenCV, any scale); finite where `valid`.
        conf: optional `[T, H, W]` non-negative confidence: weights of the focal fit and the
            ranking used to subsample PnP correspondences.
        valid: optional bool `[T, H, W]` (default all True); invalid pixels are ignored.
        intrinsics: optional K `[3, 3]` or `[T, 3, 3]` in pixels, used as is (no focal fit).
        ransac: PnP with RANSAC (default) or plain SQPnP + refinement on all points.
        reprojection_px: RANSAC inlier threshold in pixels (MonST3R / DUSt3R `fast_pnp` use 5;
            also defines `inlier_ratio`).
        seed: seed of the random correspondence subset (used only without `conf`).
        max_points: correspondences per frame given to PnP (top-`conf`, else random).
        min_points: fewer valid points (or RANSAC inliers) in a frame -> fallback pose; fewer in
            frame 0 (when the focal is estimated) -> ValueError.
        ransac_iterations, focal_iterations: iteration caps of RANSAC and of Weiszfeld.

    Returns:
        `PointmapCameras` (`intrinsics [T, 3, 3]` float32, `cam_to_world [T, 4, 4]` float64 with
        `cam_to_world[0] = I`, `depth [T, H, W]` float32, `valid [T, H, W]`, `inlier_ratio [T]`,
        `fallback [T]`).

    Raises:
        ValueError: bad shapes or dtypes, NaN/inf in valid points, too few valid points with
            `z > 0` in frame 0 to estimate the focal length.
        ImportError: OpenCV is missing (install the `geometry` extra).
    """
    valid, intrinsics = _check_inputs(points, conf, valid, intrinsics)
    if reprojection_px <= 0:
        raise ValueError(f"reprojection_px must be positive, got {reprojection_px}")
    if max_points < 4 or min_points < 4:
        raise ValueError(
            f"max_points and min_points must be >= 4, got {max_points} and {min_points}"
        )
    num_frames, height, width = points.shape[:3]
    device = points.device
    cv2 = _import_cv2()

    valid_cpu = valid.detach().cpu()
    pts = torch.where(
        valid_cpu[..., None],
        points.detach().cpu().to(torch.float64),
        torch.zeros((), dtype=torch.float64),
    )
    weights = (
        torch.ones(valid_cpu.shape, dtype=torch.float64)
        if conf is None
        else torch.where(valid_cpu, conf.detach().cpu().to(torch.float64), 0.0)
    )

    # 1. Intrinsics.
    if intrinsics is None:
        use = valid_cpu[0] & (pts[0, ..., 2] > 0) & (weights[0] > 0)
        if int(use.sum()) < min_points:
            raise ValueError(
                f"cameras_from_pointmaps: frame 0 has {int(use.sum())} valid points with z > 0 "
                f"(and conf > 0); at least {min_points} are needed to estimate the focal length"
            )
        centre = ((width - 1) / 2.0, (height - 1) / 2.0)
        focal = _weiszfeld_focal(pts[0], use, weights[0], centre, focal_iterations)
        k64 = torch.tensor(
            [[focal, 0.0, centre[0]], [0.0, focal, centre[1]], [0.0, 0.0, 1.0]],
            dtype=torch.float64,
        ).expand(num_frames, 3, 3)
    else:
        k64 = intrinsics.detach().cpu().to(torch.float64)
    source = k64 if intrinsics is None else intrinsics.detach().cpu()
    k_out = source.to(torch.float32).contiguous().clone()  # given K: returned as is (float32)

    # 2. Poses: frame 0 = identity, others by PnP.
    grid = pixel_grid(height, width, dtype=torch.float64).reshape(-1, 2).numpy()
    rng = np.random.default_rng(seed)
    conf_np = None if conf is None else weights.reshape(num_frames, -1).numpy()
    world_to_cam = np.tile(np.eye(4), (num_frames, 1, 1))
    fallback = np.zeros(num_frames, dtype=bool)
    flat_points = pts.reshape(num_frames, -1, 3).numpy()
    flat_valid = (valid_cpu & (weights > 0)).reshape(num_frames, -1).numpy()  # conf 0: unused
    for t in range(1, num_frames):
        index = np.flatnonzero(flat_valid[t])
        estimate = None
        if index.size >= min_points:
            chosen = _select(index, None if conf_np is None else conf_np[t], max_points, rng)
            obj = np.ascontiguousarray(flat_points[t, chosen])
            img = np.ascontiguousarray(grid[chosen])
            k_t = np.ascontiguousarray(k64[t].numpy())
            estimate = _solve_pnp(
                cv2, obj, img, k_t, ransac, reprojection_px, ransac_iterations, min_points
            )
            if estimate is not None and _median_error(
                estimate, obj, img, k_t
            ) > _GROSS_FAILURE * _median_error(world_to_cam[t - 1], obj, img, k_t):
                estimate = None  # a wrong minimum: the previous pose explains the frame better
        if estimate is None:
            world_to_cam[t] = world_to_cam[t - 1]
            fallback[t] = True
        else:
            world_to_cam[t] = estimate
    world_to_cam_t = torch.from_numpy(world_to_cam)
    cam_to_world = invert_rigid(world_to_cam_t)
    cam_to_world[0] = torch.eye(4, dtype=torch.float64)

    # 3. Depth in each recovered camera, and inlier ratios.
    points_cam = transform_points(world_to_cam_t, pts)  # [T, H, W, 3]
    z = points_cam[..., 2]
    valid_out = valid_cpu & (z > 0)
    uv, _ = project(points_cam, k64)
    pixels = pixel_grid(height, width, dtype=torch.float64)
    error = torch.linalg.vector_norm(uv - pixels, dim=-1)
    inliers = (valid_out & (error < reprojection_px)).flatten(1).sum(-1)
    counts = valid_cpu.flatten(1).sum(-1)
    inlier_ratio = torch.where(counts > 0, inliers / counts.clamp(min=1), 0.0)
    depth = torch.where(valid_out, z, 0.0)

    return PointmapCameras(
        intrinsics=k_out.to(device),
        cam_to_world=cam_to_world.to(device),
        depth=depth.to(torch.float32).to(device),
        valid=valid_out.to(device),
        inlier_ratio=inlier_ratio.to(torch.float32).to(device),
        fallback=torch.from_numpy(fallback).to(device),
    )
