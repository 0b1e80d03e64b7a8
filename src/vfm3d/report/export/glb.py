"""A coloured point cloud and camera frusta as one binary glTF file (GLB), via `trimesh`.

`trimesh` is an optional dependency (`pip install vfm3d[export]`); it is imported inside the
functions, so the rest of vfm3d works without it.

Scene graph written by `write_glb`:

- root node `vfm3d_world` whose `matrix` maps vfm3d world coordinates to glTF coordinates;
- child node `points`: a `POINTS` primitive, positions and `COLOR_0` (RGBA, alpha 255);
- child nodes `frustum_000000`, ...: a `LINES` primitive per camera, apex at the camera centre,
  four edges to the base corners and the base rectangle. The base lies at z-depth
  `frustum_depth` in the camera, through the image's outer corners, i.e. `K^-1 (u, v, 1)` at
  `(u, v)` = `(-0.5, -0.5)`, `(W - 0.5, -0.5)`, `(W - 0.5, H - 0.5)`, `(-0.5, H - 0.5)` (pixel
  centres at integers, so the image spans `[-0.5, W - 0.5]`).

Axes: all vertex positions are the **vfm3d world coordinates unchanged** (OpenCV convention for a
reconstruction whose world is frame 0's camera: x right, y down, z forward). glTF is y-up, with
cameras looking along -z; so with `y_up=True` (default) the root node carries
`diag(1, -1, -1, 1)` (`OPENCV_TO_GLTF`, a 180 degree turn about x: OpenCV camera axes -> glTF /
OpenGL camera axes), and glTF viewers show the scene upright as seen from frame 0. With
`y_up=False` the root node's matrix is the identity. Tools that read raw node geometry
(`trimesh.load(...).geometry`) get vfm3d coordinates; tools that apply the scene graph
(`scene.dump()`, viewers) get `OPENCV_TO_GLTF` applied.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType

import numpy as np
import torch

from vfm3d.geometry import transform_points
from vfm3d.report.export._validate import (
    as_numpy,
    check_cam_to_world,
    check_image_size,
    check_intrinsics,
    colors_uint8,
)
from vfm3d.utils.atomic import atomic_write_bytes

#: vfm3d (OpenCV) world -> glTF (y up, z backward): a 180 degree rotation about x
OPENCV_TO_GLTF = np.diag([1.0, -1.0, -1.0, 1.0])
ROOT_NODE = "vfm3d_world"
POINTS_NODE = "points"
FRUSTUM_COLOR = (255, 96, 0, 255)


def require_trimesh() -> ModuleType:
    """Import and return `trimesh`, or raise an ImportError saying how to install it."""
    try:
        import trimesh
    except ImportError as error:
        raise ImportError(
            "writing GLB files needs the optional dependency trimesh: pip install vfm3d[export]"
        ) from error
    return trimesh


def frustum_node_name(index: int) -> str:
    """Node (and mesh) name of frame `index`'s frustum: `frustum_000000`, ..."""
    return f"frustum_{index:06d}"


def frustum_vertices(
    intrinsics: np.ndarray,
    cam_to_world: np.ndarray,
    width: int,
    height: int,
    frustum_depth: float,
) -> np.ndarray:
    """World-frame frustum vertices `[T, 5, 3]`: camera centre, then the base corners.

    Corners in image order top-left, top-right, bottom-right, bottom-left, i.e. `K^-1 (u, v, 1)`
    scaled to z-depth `frustum_depth` at the image's outer corners (see the module docstring),
    mapped to the world by `cam_to_world` `[T, 4, 4]`; `intrinsics` `[T, 3, 3]`.
    """
    k = as_numpy("intrinsics", intrinsics, np.float64)
    check_intrinsics("intrinsics", k)
    poses = as_numpy("cam_to_world", cam_to_world, np.float64)
    check_cam_to_world("cam_to_world", poses, k.shape[0])
    w, h = check_image_size(width, height)
    if not (np.isfinite(frustum_depth) and frustum_depth > 0):
        raise ValueError(f"frustum_depth must be a finite number > 0, got {frustum_depth}")
    corners_px = np.array(
        [[-0.5, -0.5, 1.0], [w - 0.5, -0.5, 1.0], [w - 0.5, h - 0.5, 1.0], [-0.5, h - 0.5, 1.0]]
    )
    rays = np.einsum("tij,cj->tci", np.linalg.inv(k), corners_px)  # z component = 1
    cam = np.concatenate([np.zeros((k.shape[0], 1, 3)), rays * frustum_depth], axis=1)
    return transform_points(torch.from_numpy(poses), torch.from_numpy(cam)).numpy()


def default_frustum_depth(points: np.ndarray, cam_to_world: np.ndarray | None) -> float:
    """A frustum size that reads well: 5% of the diagonal of the bounding box of points and camera centres."""
    parts = [points.reshape(-1, 3)]
    if cam_to_world is not None:
        parts.append(np.asarray(cam_to_world, dtype=np.float64)[:, :3, 3])
    allp = np.concatenate(parts, axis=0)
    allp = allp[np.isfinite(allp).all(axis=1)]
    if allp.shape[0] < 2:
        return 0.1
    diagonal = float(np.linalg.norm(allp.max(axis=0) - allp.min(axis=0)))
    return 0.05 * diagonal if diagonal > 0 else 0.1


def write_glb(
    path: str | os.PathLike[str],
    points: np.ndarray,
    colors: np.ndarray | None = None,
    cam_to_world: np.ndarray | None = None,
    intrinsics: np.ndarray | None = None,
    image_size: tuple[int, int] | None = None,
    frustum_depth: float | None = None,
    y_up: bool = True,
) -> Path:
    """Write world `points` `[N, 3]` with `colors` `[N, 3]` and optional camera frusta as a GLB file.

    Frusta are drawn when `cam_to_world` `[T, 4, 4]`, `intrinsics` `[T, 3, 3]` and `image_size`
    `(width, height)` are all given; `frustum_depth` defaults to `default_frustum_depth`.
    Non-finite points are dropped. Axes: see the module docstring (`y_up`). Written atomically;
    raises ImportError without trimesh.
    """
    trimesh = require_trimesh()
    from trimesh.path.entities import Line

    pts = as_numpy("points", points, np.float64)
    if pts.shape[-1:] != (3,):
        raise ValueError(f"points must have shape [N, 3] (or [..., 3]), got {list(pts.shape)}")
    pts = pts.reshape(-1, 3)
    cols = colors_uint8(colors, pts.shape[0])
    keep = np.isfinite(pts).all(axis=1)
    pts, cols = pts[keep], cols[keep]
    camera_args = (cam_to_world, intrinsics, image_size)
    if any(a is not None for a in camera_args) and any(a is None for a in camera_args):
        raise ValueError("frusta need all of cam_to_world, intrinsics and image_size (or none)")

    scene = trimesh.Scene(base_frame="world")
    root = OPENCV_TO_GLTF if y_up else np.eye(4)
    scene.graph.update(frame_from="world", frame_to=ROOT_NODE, matrix=root)
    if pts.shape[0]:
        rgba = np.concatenate([cols, np.full((cols.shape[0], 1), 255, np.uint8)], axis=1)
        cloud = trimesh.PointCloud(pts, colors=rgba)
        scene.add_geometry(
            cloud, node_name=POINTS_NODE, geom_name=POINTS_NODE, parent_node_name=ROOT_NODE
        )
    if cam_to_world is not None and intrinsics is not None and image_size is not None:
        poses = as_numpy("cam_to_world", cam_to_world, np.float64)
        depth = default_frustum_depth(pts, poses) if frustum_depth is None else frustum_depth
        vertices = frustum_vertices(intrinsics, poses, image_size[0], image_size[1], depth)
        for index, frame_vertices in enumerate(vertices):
            entities = [Line(points=[0, c], color=FRUSTUM_COLOR) for c in (1, 2, 3, 4)]
            entities.append(Line(points=[1, 2, 3, 4, 1], color=FRUSTUM_COLOR))
            frustum = trimesh.path.Path3D(entities=entities, vertices=frame_vertices)
            name = frustum_node_name(index)
            scene.add_geometry(frustum, node_name=name, geom_name=name, parent_node_name=ROOT_NODE)
    target = Path(path)
    atomic_write_bytes(target, scene.export(file_type="glb"))
    return target
