"""Cameras, poses and points as a COLMAP text model (`cameras.txt`, `images.txt`, `points3D.txt`).

Files (COLMAP's "Output Format" documentation; readable by `pycolmap.Reconstruction(dir)`):

- `cameras.txt`: `CAMERA_ID MODEL WIDTH HEIGHT fx fy cx cy`, model `PINHOLE`; one camera shared
  by all images when every frame has the same `K` (exactly equal), else one camera per frame
  (camera id = image id).
- `images.txt`: per image two lines: `IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME`, where
  `(Q, T)` is the **world_to_cam** rotation (unit quaternion, **W, X, Y, Z** order, `w >= 0`) and
  translation, then the image's 2D points line, left empty (no feature tracks are exported).
  Image ids are frame index + 1, names `000000.png`, ... unless given.
- `points3D.txt`: `POINT3D_ID X Y Z R G B ERROR TRACK[]` (world frame), at most `max_points`
  (uniform random subsample, seeded), `ERROR` = -1 (COLMAP's "not computed"), empty track.

Pixel convention: COLMAP places the image's top-left *corner* at (0, 0), so the centre of the
top-left pixel is (0.5, 0.5) (COLMAP docs on 2D points; pycolmap's own scripts add 0.5 to pixel
indices before `Camera.cam_from_img`, and `Camera.create` puts the default principal point at
`(width / 2, height / 2)`). vfm3d puts pixel centres at integer coordinates, so
**cx_colmap = cx_vfm3d + 0.5 and cy_colmap = cy_vfm3d + 0.5**; focal lengths are unchanged, and a
point projecting to vfm3d pixel `(u, v)` projects to COLMAP pixel `(u + 0.5, v + 0.5)`.
Both use the OpenCV camera axes (x right, y down, z forward), so poses need no axis change.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from vfm3d.geometry import invert_rigid, rotation_to_quaternion_xyzw
from vfm3d.report.export._validate import (
    as_numpy,
    check_cam_to_world,
    check_image_size,
    check_intrinsics,
    colors_uint8,
    subsample_indices,
)
from vfm3d.utils.atomic import atomic_write_text

#: COLMAP pixel coordinate = vfm3d pixel coordinate + COLMAP_PIXEL_OFFSET (both axes)
COLMAP_PIXEL_OFFSET = 0.5


def intrinsics_to_colmap(intrinsics: np.ndarray) -> np.ndarray:
    """vfm3d `K` `[..., 3, 3]` -> COLMAP PINHOLE params `[..., 4]` = `(fx, fy, cx + 0.5, cy + 0.5)`.

    Raises ValueError for a skewed `K` (PINHOLE has no skew).
    """
    k = np.asarray(intrinsics, dtype=np.float64)
    if bool((k[..., 0, 1] != 0).any()):
        raise ValueError("intrinsics: COLMAP's PINHOLE model has no skew, but K[0, 1] != 0")
    return np.stack(
        [
            k[..., 0, 0],
            k[..., 1, 1],
            k[..., 0, 2] + COLMAP_PIXEL_OFFSET,
            k[..., 1, 2] + COLMAP_PIXEL_OFFSET,
        ],
        axis=-1,
    )


def intrinsics_from_colmap(params: np.ndarray) -> np.ndarray:
    """COLMAP PINHOLE params `[..., 4]` `(fx, fy, cx, cy)` -> vfm3d `K` `[..., 3, 3]` (centres at integers)."""
    p = np.asarray(params, dtype=np.float64)
    k = np.zeros((*p.shape[:-1], 3, 3), dtype=np.float64)
    k[..., 0, 0], k[..., 1, 1] = p[..., 0], p[..., 1]
    k[..., 0, 2] = p[..., 2] - COLMAP_PIXEL_OFFSET
    k[..., 1, 2] = p[..., 3] - COLMAP_PIXEL_OFFSET
    k[..., 2, 2] = 1.0
    return k


def world_to_cam_quaternion_wxyz(cam_to_world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`cam_to_world` `[T, 4, 4]` -> world_to_cam `(quaternion [T, 4] WXYZ with w >= 0, translation [T, 3])`."""
    world_to_cam = invert_rigid(torch.from_numpy(np.asarray(cam_to_world, dtype=np.float64)))
    q_xyzw = rotation_to_quaternion_xyzw(world_to_cam[:, :3, :3]).numpy()
    q_wxyz = np.concatenate([q_xyzw[:, 3:], q_xyzw[:, :3]], axis=1)
    return q_wxyz, world_to_cam[:, :3, 3].numpy()


def _num(value: float) -> str:
    """A float as the shortest text that reads back to the same float64."""
    return repr(float(value))


def write_colmap_text(
    out_dir: str | os.PathLike[str],
    intrinsics: np.ndarray,
    cam_to_world: np.ndarray,
    width: int,
    height: int,
    points: np.ndarray | None = None,
    colors: np.ndarray | None = None,
    image_names: Sequence[str] | None = None,
    max_points: int | None = 100_000,
    seed: int = 0,
) -> Path:
    """Write a COLMAP text model into `out_dir` (see the module docstring); returns `out_dir`.

    `intrinsics` `[T, 3, 3]` (vfm3d pixel convention; +0.5 is applied here), `cam_to_world`
    `[T, 4, 4]`, frames of `width` x `height`; optional world `points` `[N, 3]` with `colors`
    `[N, 3]` (uint8 or floats in [0, 1]); non-finite points are dropped before subsampling to
    `max_points`. Every file is written atomically.
    """
    k = as_numpy("intrinsics", intrinsics, np.float64)
    check_intrinsics("intrinsics", k)
    num_frames = k.shape[0]
    poses = as_numpy("cam_to_world", cam_to_world, np.float64)
    check_cam_to_world("cam_to_world", poses, num_frames)
    w, h = check_image_size(width, height)
    names = [f"{i:06d}.png" for i in range(num_frames)] if image_names is None else image_names
    names = [str(n) for n in names]
    if len(names) != num_frames:
        raise ValueError(f"image_names must have {num_frames} names, got {len(names)}")
    if any((not n) or any(c.isspace() for c in n) for n in names):
        raise ValueError("image_names must be non-empty and contain no whitespace")
    params = intrinsics_to_colmap(k)
    shared = bool(np.all(k == k[:1]))
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)

    camera_ids = [1] * num_frames if shared else list(range(1, num_frames + 1))
    camera_rows = params[:1] if shared else params
    lines = [
        "# Camera list with one line of data per camera:",
        "#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]",
        "# written by vfm3d: PINHOLE fx fy cx cy, principal point in COLMAP pixels "
        "(vfm3d cx, cy + 0.5)",
        f"# Number of cameras: {len(camera_rows)}",
    ]
    for camera_id, row in enumerate(camera_rows, start=1):
        lines.append(f"{camera_id} PINHOLE {w} {h} " + " ".join(_num(v) for v in row))
    atomic_write_text(folder / "cameras.txt", "\n".join(lines) + "\n")

    quaternion, translation = world_to_cam_quaternion_wxyz(poses)
    lines = [
        "# Image list with two lines of data per image:",
        "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME",
        "#   POINTS2D[] as (X, Y, POINT3D_ID)",
        "# written by vfm3d: (Q, T) = world_to_cam; no 2D points",
        f"# Number of images: {num_frames}, mean observations per image: 0",
    ]
    for index in range(num_frames):
        values = " ".join(_num(v) for v in (*quaternion[index], *translation[index]))
        lines.append(f"{index + 1} {values} {camera_ids[index]} {names[index]}")
        lines.append("")
    atomic_write_text(folder / "images.txt", "\n".join(lines) + "\n")

    if points is None:
        pts = np.zeros((0, 3), dtype=np.float64)
        cols = np.zeros((0, 3), dtype=np.uint8)
    else:
        pts = as_numpy("points", points, np.float64).reshape(-1, 3)
        cols = colors_uint8(colors, pts.shape[0])
        keep = np.isfinite(pts).all(axis=1)
        pts, cols = pts[keep], cols[keep]
        pick = subsample_indices(pts.shape[0], max_points, seed)
        pts, cols = pts[pick], cols[pick]
    lines = [
        "# 3D point list with one line of data per point:",
        "#   POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[] as (IMAGE_ID, POINT2D_IDX)",
        "# written by vfm3d: world frame, ERROR -1 = not computed, empty tracks",
        f"# Number of points: {pts.shape[0]}, mean track length: 0",
    ]
    for point_id, (xyz, rgb) in enumerate(zip(pts, cols, strict=True), start=1):
        coords = " ".join(_num(v) for v in xyz)
        lines.append(f"{point_id} {coords} {int(rgb[0])} {int(rgb[1])} {int(rgb[2])} -1")
    atomic_write_text(folder / "points3D.txt", "\n".join(lines) + "\n")
    return folder
