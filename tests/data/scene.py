"""A known scene for reader fixtures: a tilted plane seen by known OpenCV cameras.

Everything here is written independently of `vfm3d.data` (plain numpy / scipy), so a reader
that converts a dataset convention wrongly cannot agree with it by accident.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy.spatial.transform import Rotation

H, W = 16, 24
PLANE_NORMAL = np.array([0.1, -0.05, 1.0]) / np.linalg.norm([0.1, -0.05, 1.0])
PLANE_OFFSET = 4.0  # points X with PLANE_NORMAL . X = PLANE_OFFSET
MARKER_UV = (11, 7)  # pixel (x, y) where each frame shows the marker
RED = (255, 0, 0)


@dataclass
class Truth:
    """Known OpenCV cameras and their exact depth maps."""

    intrinsics: np.ndarray  # [T, 3, 3] float64
    cam_to_world: np.ndarray  # [T, 4, 4] float64
    depth: np.ndarray  # [T, H, W] float64 z-depth of the plane
    markers: np.ndarray  # [T, 3] world point seen at MARKER_UV in each frame
    frames: np.ndarray  # [T, H, W, 3] uint8 with the red marker


def make_truth(
    num_frames: int = 3,
    seed: int = 0,
    intrinsics: tuple[float, float, float, float] | None = None,
    hw: tuple[int, int] = (H, W),
    blob: int = 0,
) -> Truth:
    """``num_frames`` cameras near the origin looking roughly along +z at the plane."""
    rng = np.random.default_rng(seed)
    h, w = hw
    fx, fy, cx, cy = intrinsics or (20.0, 21.0, w / 2 - 0.3, h / 2 + 0.2)
    k = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], dtype=np.float64)
    ks, poses, depths, markers, frames = [], [], [], [], []
    vs, us = np.mgrid[0:h, 0:w].astype(np.float64)
    for _ in range(num_frames):
        rot = Rotation.from_rotvec(rng.normal(scale=0.08, size=3)).as_matrix()
        centre = rng.normal(scale=0.3, size=3)
        pose = np.eye(4)
        pose[:3, :3], pose[:3, 3] = rot, centre
        rays_cam = np.stack([(us - cx) / fx, (vs - cy) / fy, np.ones_like(us)], axis=-1)
        rays_world = rays_cam @ rot.T  # direction of z-depth 1 in world coordinates
        depth = (PLANE_OFFSET - PLANE_NORMAL @ centre) / (rays_world @ PLANE_NORMAL)
        u0, v0 = MARKER_UV
        marker = centre + depth[v0, u0] * rays_world[v0, u0]
        image = np.zeros((h, w, 3), np.uint8)
        image[..., 0] = (us * 5 + 30).astype(np.uint8)
        image[..., 1] = (vs * 9 + 40).astype(np.uint8)
        image[..., 2] = 200
        image[max(v0 - blob, 0) : v0 + blob + 1, max(u0 - blob, 0) : u0 + blob + 1] = RED
        ks.append(k.copy())
        poses.append(pose)
        depths.append(depth)
        markers.append(marker)
        frames.append(image)
    return Truth(
        np.stack(ks), np.stack(poses), np.stack(depths), np.stack(markers), np.stack(frames)
    )


def project(intrinsics: np.ndarray, cam_to_world: np.ndarray, point: np.ndarray) -> np.ndarray:
    """Pixel (x, y) of a world point (float64)."""
    world_to_cam = np.linalg.inv(cam_to_world.astype(np.float64))
    cam = world_to_cam[:3, :3] @ point + world_to_cam[:3, 3]
    uvw = intrinsics.astype(np.float64) @ cam
    return uvw[:2] / uvw[2]


def save_png(path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def save_jpg(path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, quality=100, subsampling=0)


def save_png16(path, array: np.ndarray) -> None:
    """A 16-bit single-channel PNG of a uint16 array."""
    assert array.dtype == np.uint16
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def tum_quaternion_xyzw(rotation: np.ndarray) -> np.ndarray:
    return Rotation.from_matrix(rotation).as_quat()  # scipy order is x, y, z, w


def assert_reads_back(clip, truth: Truth, frame_ids=None, depth=None, atol_k=1e-4) -> None:
    """Intrinsics, cam_to_world (1e-6), marker projection and colour of a read clip."""
    idx = list(range(len(truth.intrinsics))) if frame_ids is None else list(frame_ids)
    np.testing.assert_allclose(clip.intrinsics, truth.intrinsics[idx], atol=atol_k)
    np.testing.assert_allclose(clip.cam_to_world, truth.cam_to_world[idx], atol=1e-6)
    for t, i in enumerate(idx):
        uv = project(clip.intrinsics[t], clip.cam_to_world[t], truth.markers[i])
        np.testing.assert_allclose(uv, MARKER_UV, atol=1e-3)
        u, v = MARKER_UV
        r, g, b = (int(c) for c in clip.frames[t, v, u])
        assert r > 200 and g < 60 and b < 60, f"frame {t}: no marker at {MARKER_UV}: {(r, g, b)}"
    if depth is not None:
        np.testing.assert_allclose(clip.depth, depth, atol=1e-6)
