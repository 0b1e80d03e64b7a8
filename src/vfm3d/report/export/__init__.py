"""Exports of a reconstruction in the field's file formats, one small module per format.

`export_reconstruction` writes the standard set into one folder:

| file | module | content |
|---|---|---|
| `points.ply` | `ply` | coloured world points (+ per-vertex `confidence` when `conf` is given) |
| `scene.glb` | `glb` | the point cloud and one frustum per camera (needs trimesh) |
| `colmap/` | `colmap` | `cameras.txt`, `images.txt`, `points3D.txt` (PINHOLE, cx/cy + 0.5) |
| `trajectory_tum.txt` | `tum` | `timestamp tx ty tz qx qy qz qw`, cam_to_world |
| `depth/` | `depth` | 16-bit PNG per frame + `depth_scale.json` |
| `depth.safetensors` | `depth` | `depth` float32 `[T, H, W]`, `valid` bool `[T, H, W]` |
| `cameras.json` | `cameras` | OpenCV `K` and `cam_to_world` per frame |

Conventions (DESIGN.md): OpenCV cameras (x right, y down, z forward), pixel centres at integer
coordinates, `K` in pixels, `cam_to_world` maps camera to world coordinates, z-depth with a
separate `valid` mask. Every file is written atomically (`vfm3d.utils.atomic`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from vfm3d.geometry import depth_to_world_points
from vfm3d.report.export._validate import (
    as_numpy,
    check_cam_to_world,
    check_finite,
    check_intrinsics,
    check_shape,
    check_timestamps,
    default_timestamps,
    subsample_indices,
)
from vfm3d.report.export.cameras import Cameras, read_cameras_json, write_cameras_json
from vfm3d.report.export.colmap import (
    COLMAP_PIXEL_OFFSET,
    intrinsics_from_colmap,
    intrinsics_to_colmap,
    world_to_cam_quaternion_wxyz,
    write_colmap_text,
)
from vfm3d.report.export.depth import (
    choose_depth_scale,
    quantize_depth,
    read_depth_png,
    read_depth_safetensors,
    write_depth_png,
    write_depth_safetensors,
)
from vfm3d.report.export.glb import (
    OPENCV_TO_GLTF,
    frustum_node_name,
    frustum_vertices,
    require_trimesh,
    write_glb,
)
from vfm3d.report.export.ply import PointCloud, read_ply, read_point_cloud, write_ply
from vfm3d.report.export.tum import read_trajectory_tum, write_trajectory_tum

__all__ = [
    "COLMAP_PIXEL_OFFSET",
    "OPENCV_TO_GLTF",
    "Cameras",
    "PointCloud",
    "choose_depth_scale",
    "export_reconstruction",
    "frustum_node_name",
    "frustum_vertices",
    "intrinsics_from_colmap",
    "intrinsics_to_colmap",
    "quantize_depth",
    "read_cameras_json",
    "read_depth_png",
    "read_depth_safetensors",
    "read_ply",
    "read_point_cloud",
    "read_trajectory_tum",
    "require_trimesh",
    "world_to_cam_quaternion_wxyz",
    "write_cameras_json",
    "write_colmap_text",
    "write_depth_png",
    "write_depth_safetensors",
    "write_glb",
    "write_ply",
    "write_trajectory_tum",
]


def export_reconstruction(
    out_dir: str | os.PathLike[str],
    frames: np.ndarray,
    depth: np.ndarray,
    intrinsics: np.ndarray,
    cam_to_world: np.ndarray,
    points: np.ndarray | None = None,
    conf: np.ndarray | None = None,
    valid: np.ndarray | None = None,
    timestamps: np.ndarray | None = None,
    max_points: int | None = 200_000,
    fps: float | None = None,
    depth_scale: float | None = None,
    glb: bool = True,
) -> dict[str, Path]:
    """Write the standard files of a reconstruction into `out_dir` (table in the module docstring).

    Inputs (numpy arrays or CPU torch tensors): `frames` uint8 `[T, H, W, 3]`; `depth` float
    `[T, H, W]` z-depth; `intrinsics` `[T, 3, 3]` (pixels, centres at integers); `cam_to_world`
    `[T, 4, 4]`; optional world `points` `[T, H, W, 3]` (default: `depth` back-projected with
    `intrinsics` and `cam_to_world`), `conf` `[T, H, W]` (written to the PLY), `valid` bool
    `[T, H, W]` (default: depth finite and > 0, and the point finite), `timestamps` `[T]`
    seconds (default: frame index / `fps`, or the frame index). The point cloud (PLY, GLB,
    COLMAP `points3D.txt`) holds the valid pixels, at most `max_points` of them (uniform random
    subsample, seeded; None = all). `depth_scale` fixes the PNG step (default: max depth maps
    to 65535). `glb=False` skips `scene.glb` (which needs trimesh; checked before any file is
    written).

    Returns `{file name: path}` for `points.ply`, `scene.glb` (if written), `colmap`,
    `trajectory_tum.txt`, `depth`, `depth.safetensors`, `cameras.json`. Raises ValueError naming
    the argument and the rule for bad shapes, dtypes or NaN/inf.
    """
    if glb:
        require_trimesh()
    rgb = as_numpy("frames", frames)
    if rgb.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 [T, H, W, 3], got dtype {rgb.dtype}")
    check_shape("frames", rgb, (None, None, None, 3), "T, H, W, 3")
    num_frames, height, width = rgb.shape[:3]
    grid = (num_frames, height, width)
    dep = as_numpy("depth", depth, np.float32)
    check_shape("depth", dep, grid, "T, H, W")
    k = as_numpy("intrinsics", intrinsics, np.float64)
    check_intrinsics("intrinsics", k, num_frames)
    poses = as_numpy("cam_to_world", cam_to_world, np.float64)
    check_cam_to_world("cam_to_world", poses, num_frames)
    if valid is None:
        mask = np.isfinite(dep) & (dep > 0)
    else:
        mask = as_numpy("valid", valid)
        if mask.dtype != np.bool_:
            raise ValueError(f"valid must be a bool array [T, H, W], got dtype {mask.dtype}")
        check_shape("valid", mask, grid, "T, H, W")
        check_finite("depth", dep, where=mask)
        if bool((dep[mask] <= 0).any()):
            raise ValueError("depth must be > 0 at valid pixels (z-depth of a visible point)")
    if points is None:
        world = depth_to_world_points(
            torch.from_numpy(np.where(mask, dep, 0.0).astype(np.float64)),
            torch.from_numpy(k),
            torch.from_numpy(poses),
        ).numpy()
    else:
        world = as_numpy("points", points, np.float64)
        check_shape("points", world, (*grid, 3), "T, H, W, 3")
        if valid is not None:
            check_finite("points", world, where=mask)
    mask = mask & np.isfinite(world).all(axis=-1)
    confidence = None
    if conf is not None:
        confidence = as_numpy("conf", conf, np.float32)
        check_shape("conf", confidence, grid, "T, H, W")
        check_finite("conf", confidence, where=mask)
    if timestamps is None:
        stamps = default_timestamps(num_frames, fps)
    else:
        stamps = check_timestamps("timestamps", timestamps, num_frames)

    pick = subsample_indices(int(mask.sum()), max_points)
    cloud_points = world[mask][pick]
    cloud_colors = rgb[mask][pick]
    cloud_conf = None if confidence is None else confidence[mask][pick]

    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    written["points.ply"] = write_ply(
        folder / "points.ply", cloud_points, cloud_colors, confidence=cloud_conf
    )
    if glb:
        written["scene.glb"] = write_glb(
            folder / "scene.glb",
            cloud_points,
            cloud_colors,
            cam_to_world=poses,
            intrinsics=k,
            image_size=(width, height),
        )
    written["colmap"] = write_colmap_text(
        folder / "colmap",
        k,
        poses,
        width,
        height,
        points=cloud_points,
        colors=cloud_colors,
        max_points=None,
    )
    written["trajectory_tum.txt"] = write_trajectory_tum(
        folder / "trajectory_tum.txt", poses, timestamps=stamps
    )
    written["depth"] = write_depth_png(folder / "depth", dep, mask, scale=depth_scale)
    written["depth.safetensors"] = write_depth_safetensors(folder / "depth.safetensors", dep, mask)
    written["cameras.json"] = write_cameras_json(
        folder / "cameras.json", k, poses, width, height, timestamps=stamps
    )
    return written
