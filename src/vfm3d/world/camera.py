"""Cameras of the procedural world: intrinsics from a field of view, look-at poses, smooth paths.

Conventions (DESIGN.md): OpenCV cameras (x right, y down, z forward), pixel centres at integer
coordinates, so the principal point of a centred camera is ``((W - 1) / 2, (H - 1) / 2)``.
``fov = 2 * atan((size / 2) / focal)`` with ``size`` the image width (``fov_x``) or height.
The world is z-up (gravity along -z), in metres.
"""

from __future__ import annotations

import numpy as np

WORLD_UP = np.array([0.0, 0.0, 1.0])
FOV_RANGE_DEG = (45.0, 75.0)
"""Range of the horizontal field of view sampled for every clip (degrees)."""


def intrinsics_from_fov(fov_x_deg: float, height: int, width: int) -> np.ndarray:
    """``[3, 3]`` float64 K with square pixels, horizontal FoV ``fov_x_deg``, centred."""
    if not 0.0 < fov_x_deg < 180.0:
        raise ValueError(f"fov_x_deg must lie in (0, 180), got {fov_x_deg}")
    focal = (width / 2.0) / np.tan(np.radians(fov_x_deg) / 2.0)
    return np.array(
        [[focal, 0.0, (width - 1) / 2.0], [0.0, focal, (height - 1) / 2.0], [0.0, 0.0, 1.0]]
    )


def fov_from_intrinsics(intrinsics: np.ndarray, height: int, width: int) -> tuple[float, float]:
    """``(fov_x, fov_y)`` in degrees of a ``[3, 3]`` K for an image of ``height x width``."""
    fov_x = 2.0 * np.degrees(np.arctan((width / 2.0) / intrinsics[0, 0]))
    fov_y = 2.0 * np.degrees(np.arctan((height / 2.0) / intrinsics[1, 1]))
    return float(fov_x), float(fov_y)


def look_at(eye: np.ndarray, target: np.ndarray, roll_rad: float | np.ndarray = 0.0) -> np.ndarray:
    """``[..., 4, 4]`` float64 ``cam_to_world`` of OpenCV cameras at ``eye`` ``[..., 3]``
    looking at ``target`` ``[..., 3]`` (batched over leading axes).

    The camera's x axis is horizontal (before ``roll_rad``, a rotation about the optical axis)
    and its y axis points down; the rotation is orthonormal with determinant +1.
    """
    eye = np.asarray(eye, dtype=np.float64)
    forward = np.asarray(target, dtype=np.float64) - eye
    norm = np.linalg.norm(forward, axis=-1, keepdims=True)
    if np.any(norm < 1e-9):
        raise ValueError("look_at: eye and target coincide")
    forward = forward / norm
    right = np.cross(forward, WORLD_UP)
    right_norm = np.linalg.norm(right, axis=-1, keepdims=True)
    if np.any(right_norm < 1e-6):
        raise ValueError("look_at: viewing direction is parallel to the world up axis")
    right = right / right_norm
    down = np.cross(forward, right)
    roll = np.asarray(roll_rad, dtype=np.float64)[..., None]
    c, s = np.cos(roll), np.sin(roll)
    right, down = c * right + s * down, -s * right + c * down
    cam_to_world = np.zeros((*eye.shape[:-1], 4, 4))
    cam_to_world[..., :3, 0] = right
    cam_to_world[..., :3, 1] = down
    cam_to_world[..., :3, 2] = forward
    cam_to_world[..., :3, 3] = eye
    cam_to_world[..., 3, 3] = 1.0
    return cam_to_world


def direction_from_angles(yaw_rad: np.ndarray, pitch_rad: np.ndarray) -> np.ndarray:
    """Unit viewing directions ``[..., 3]`` for headings ``yaw`` (about +z, from +x) and
    ``pitch`` (up > 0), both ``[...]`` radians."""
    cp = np.cos(pitch_rad)
    return np.stack([cp * np.cos(yaw_rad), cp * np.sin(yaw_rad), np.sin(pitch_rad)], axis=-1)


class SmoothSignal:
    """A smooth random function of normalised time ``s`` in [0, 1] with values in about [-1, 1].

    A sum of a few low-frequency sines with random phases; derivatives are bounded, so camera
    paths built from it are smooth at any frame count.
    """

    def __init__(self, rng: np.random.Generator, max_cycles: float = 1.2, terms: int = 3):
        self.freqs = rng.uniform(0.15, max_cycles, size=terms)
        self.phases = rng.uniform(0.0, 2.0 * np.pi, size=terms)
        amps = rng.uniform(0.3, 1.0, size=terms)
        self.amps = amps / amps.sum()

    def __call__(self, s: np.ndarray | float) -> np.ndarray:
        s = np.asarray(s, dtype=np.float64)
        out = np.zeros_like(s)
        for f, p, a in zip(self.freqs, self.phases, self.amps):
            out = out + a * np.sin(2.0 * np.pi * f * s + p)
        return out


def normalised_times(frames: int) -> np.ndarray:
    """``[T]`` times in [0, 1] of the frames of a clip (0 for a single frame)."""
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    if frames == 1:
        return np.zeros(1)
    return np.linspace(0.0, 1.0, frames)
