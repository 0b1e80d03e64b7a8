"""Input checks of the export writers: one clear ValueError per rule, naming the argument."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

#: tolerance on `R^T R = I` and `det R = 1` of a pose's rotation (float32 input passes)
ROTATION_TOLERANCE = 1e-4


def as_numpy(name: str, value: Any, dtype: Any = None) -> np.ndarray:
    """`value` (numpy array, torch tensor, nested list) -> numpy array (optionally cast)."""
    if value is None:
        raise ValueError(f"{name} is required, got None")
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # torch.Tensor without importing torch
        value = value.detach().cpu().numpy()
    array = np.asarray(value)
    if dtype is not None:
        array = array.astype(dtype, copy=False)
    return array


def check_shape(name: str, array: np.ndarray, shape: Sequence[int | None], labels: str) -> None:
    """Raise ValueError unless `array.shape` matches `shape` (None = any size).

    `labels` names the dimensions for the message, e.g. ``"T, H, W, 3"``.
    """
    want = tuple(shape)
    got = tuple(array.shape)
    ok = len(got) == len(want) and all(w is None or g == w for g, w in zip(got, want))
    if not ok:
        expected = ", ".join("*" if w is None else str(w) for w in want)
        raise ValueError(f"{name} must have shape [{labels}] = [{expected}], got {list(got)}")


def check_finite(name: str, array: np.ndarray, where: np.ndarray | None = None) -> None:
    """Raise ValueError if `array` holds NaN or inf (only at `where`, broadcast over trailing dims)."""
    bad = ~np.isfinite(array)
    if where is not None:
        mask = where.reshape(where.shape + (1,) * (bad.ndim - where.ndim))
        bad = bad & mask
    if bool(bad.any()):
        scope = " at valid pixels" if where is not None else ""
        raise ValueError(f"{name} must be finite{scope}; it has {int(bad.sum())} NaN/inf entries")


def check_intrinsics(name: str, intrinsics: np.ndarray, num_frames: int | None = None) -> None:
    """`intrinsics` must be `[T, 3, 3]` finite pinhole matrices: bottom row (0, 0, 1), fx, fy > 0."""
    check_shape(name, intrinsics, (num_frames, 3, 3), "T, 3, 3")
    check_finite(name, intrinsics)
    if not np.allclose(intrinsics[:, 2], [0.0, 0.0, 1.0]):
        raise ValueError(f"{name}: every K must have bottom row (0, 0, 1)")
    if bool((intrinsics[:, 1, 0] != 0).any()):
        raise ValueError(f"{name}: every K must be upper triangular (K[1, 0] = 0)")
    if bool((intrinsics[:, 0, 0] <= 0).any() or (intrinsics[:, 1, 1] <= 0).any()):
        raise ValueError(f"{name}: focal lengths K[0, 0] and K[1, 1] must be > 0 (pixels)")


def check_cam_to_world(name: str, cam_to_world: np.ndarray, num_frames: int | None = None) -> None:
    """`cam_to_world` must be `[T, 4, 4]` finite rigid transforms (bottom row 0 0 0 1, R in SO(3))."""
    check_shape(name, cam_to_world, (num_frames, 4, 4), "T, 4, 4")
    check_finite(name, cam_to_world)
    if not np.allclose(cam_to_world[:, 3], [0.0, 0.0, 0.0, 1.0]):
        raise ValueError(f"{name}: every pose must have bottom row (0, 0, 0, 1)")
    rotation = cam_to_world[:, :3, :3].astype(np.float64)
    gram = np.einsum("tji,tjk->tik", rotation, rotation)
    orthonormal = np.abs(gram - np.eye(3)).max(axis=(1, 2)) <= ROTATION_TOLERANCE
    proper = np.abs(np.linalg.det(rotation) - 1.0) <= ROTATION_TOLERANCE
    bad = np.flatnonzero(~(orthonormal & proper))
    if bad.size:
        raise ValueError(
            f"{name}: the 3x3 block of every pose must be a rotation (R^T R = I, det R = +1, "
            f"tolerance {ROTATION_TOLERANCE}); frames {bad[:5].tolist()} are not"
        )


def check_image_size(width: int, height: int) -> tuple[int, int]:
    """`(width, height)` as positive ints."""
    w, h = int(width), int(height)
    if w <= 0 or h <= 0 or w != width or h != height:
        raise ValueError(f"width and height must be positive integers, got {width} x {height}")
    return w, h


def check_timestamps(name: str, timestamps: Any, num_frames: int) -> np.ndarray:
    """`timestamps` `[T]` finite float64."""
    stamps = as_numpy(name, timestamps, np.float64)
    check_shape(name, stamps, (num_frames,), "T")
    check_finite(name, stamps)
    return stamps


def default_timestamps(num_frames: int, fps: float | None = None) -> np.ndarray:
    """Timestamps `[T]` float64 of frame indices: `i / fps` seconds, or `i` when `fps` is None."""
    index = np.arange(num_frames, dtype=np.float64)
    if fps is None:
        return index
    if not (np.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a finite number > 0, got {fps}")
    return index / float(fps)


def subsample_indices(count: int, max_points: int | None, seed: int = 0) -> np.ndarray:
    """Sorted indices of at most `max_points` of `count` items (uniform without replacement, seeded)."""
    if max_points is None or count <= max_points:
        return np.arange(count)
    if max_points < 0:
        raise ValueError(f"max_points must be >= 0 or None, got {max_points}")
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(count, size=int(max_points), replace=False))


def colors_uint8(colors: np.ndarray | None, count: int) -> np.ndarray:
    """`colors` `[N, 3]` (uint8, or float in [0, 1] or [0, 255]) -> uint8; grey when None."""
    if colors is None:
        return np.full((count, 3), 200, dtype=np.uint8)
    cols = as_numpy("colors", colors)
    if cols.ndim > 2 and cols.shape[-1] == 3:
        cols = cols.reshape(-1, 3)
    check_shape("colors", cols, (count, 3), "N, 3")
    if cols.dtype == np.uint8:
        return cols
    cols = cols.astype(np.float64)
    if not np.isfinite(cols).all():
        raise ValueError("colors must be finite")
    scale = 255.0 if cols.size and cols.max() <= 1.0 else 1.0
    return np.clip(np.round(cols * scale), 0, 255).astype(np.uint8)
