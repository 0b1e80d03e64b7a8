"""Cameras of the procedural world: intrinsics from a field of view, look-at poses, smooth paths.

Conventions (DESIGN.md): OpenCV cameras (x right, y down, z forward), pixel centres at integer
coordinates, so the principal point of a centred camera is ``((W - 1) / 2, (H - 1) / 2)``.
``fov = 2 * atan((size / 2) / focal)`` with ``size`` the image width (``fov_x``) or height.
The world is z-up (gravity along -z), in metres.

Time: camera paths are functions of the *path time* ``s = frame / (REFERENCE_FRAMES - 1)``, so
frame ``i`` sits at ``s = i / 80`` whatever the clip length: motion is a per-frame rate (`Motion`:
an orbit's degrees per frame, a walk's metres per frame) and a clip of T frames is the first T
frames of any longer one (up to ``REFERENCE_FRAMES``; see `path_horizon`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

WORLD_UP = np.array([0.0, 0.0, 1.0])
FOV_RANGE_DEG = (45.0, 75.0)
"""Range of the horizontal field of view sampled for every clip (degrees)."""

REFERENCE_FRAMES = 81
"""Frames of one unit of path time (VidFM3D's clips: 81 frames; CO3D orbits ~360 deg in them)."""
DEFAULT_DEG_PER_FRAME = 4.5
"""Object orbits: degrees of azimuth per frame (CO3D as VidFM3D samples it: 360 deg / 80 steps)."""
DEFAULT_M_PER_FRAME = 0.05
"""Scene walks: metres per frame (matches the orbit's median image motion; see docs/world.md)."""


@dataclass(frozen=True)
class Motion:
    """Camera motion as per-frame rates, independent of the clip length.

    ``deg_per_frame``: mean azimuth step of an object orbit (degrees, >= 0);
    ``m_per_frame``: mean step of a scene walk along its path (metres, >= 0).
    Smooth wobbles (radius, elevation, look-around, bobbing) are functions of path time too, so
    their rates do not depend on the clip length either.
    """

    deg_per_frame: float = DEFAULT_DEG_PER_FRAME
    m_per_frame: float = DEFAULT_M_PER_FRAME

    def __post_init__(self) -> None:
        for name in ("deg_per_frame", "m_per_frame"):
            value = float(getattr(self, name))
            if not np.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
            object.__setattr__(self, name, value)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready ``{"deg_per_frame", "m_per_frame", "reference_frames"}``."""
        return {
            "deg_per_frame": self.deg_per_frame,
            "m_per_frame": self.m_per_frame,
            "reference_frames": REFERENCE_FRAMES,
        }


def frame_times(frames: int) -> np.ndarray:
    """``[T]`` path times ``i / (REFERENCE_FRAMES - 1)`` of the frames of a clip."""
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    return np.arange(frames, dtype=np.float64) / (REFERENCE_FRAMES - 1)


def path_horizon(frames: int) -> float:
    """Path time up to which a world of ``frames`` frames is laid out (objects kept clear of the
    camera): ``max(frames, REFERENCE_FRAMES) - 1`` frames. Clips of up to ``REFERENCE_FRAMES``
    frames therefore share one world: a shorter clip is a prefix of a longer one."""
    return (max(int(frames), REFERENCE_FRAMES) - 1) / (REFERENCE_FRAMES - 1)


def dense_times(frames: int, per_unit: int = 120) -> np.ndarray:
    """Dense path times over ``[0, path_horizon(frames)]`` (``per_unit`` steps per unit) used
    for clearance checks; independent of the frame count up to ``REFERENCE_FRAMES``."""
    horizon = path_horizon(frames)
    return np.linspace(0.0, horizon, int(np.ceil(per_unit * horizon)) + 1)


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
    """A smooth random function of path time ``s`` with values in about [-1, 1].

    A sum of a few low-frequency sines (0.15 to ``max_cycles`` cycles per unit of path time, i.e.
    per ``REFERENCE_FRAMES`` frames) with random phases; derivatives are bounded, so camera paths
    built from it are smooth, with per-frame rates that do not depend on the clip length.
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
    """``[T]`` evenly spaced times in [0, 1] (0 for a single frame); not the world's path time
    (see `frame_times`)."""
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    if frames == 1:
        return np.zeros(1)
    return np.linspace(0.0, 1.0, frames)
