"""Rotation conversions (torch, batched over leading dims, float64-safe, differentiable).

Convention: quaternions at every public boundary are **XYZW** (scalar last), as VGGT's
`vggt/utils/rotation.py` (`mat_to_quat` / `quat_to_mat`) and the `absT_quaR_FoV` pose encoding
use. `q` and `-q` are the same rotation (double cover); `rotation_to_quaternion_xyzw` returns the
representative with `w >= 0` (VGGT's `standardize_quaternion`). Rotation matrices act on column
vectors (`x' = R @ x`).
"""

from __future__ import annotations

import math

import torch

from vfm3d.geometry._checks import check_tail


def _sqrt_positive(x: torch.Tensor) -> torch.Tensor:
    """`sqrt(max(x, 0))` with a zero (not NaN) gradient where `x <= 0`."""
    positive = x > 0
    return torch.where(positive, torch.sqrt(torch.where(positive, x, torch.ones_like(x))), 0.0)


def rotation_to_quaternion_xyzw(rotation: torch.Tensor) -> torch.Tensor:
    """Rotation matrices `[..., 3, 3]` -> unit quaternions `[..., 4]` in XYZW order, `w >= 0`.

    Numerically robust for every angle: of the four algebraically equal formulas, the one
    dividing by the largest of `|w|, |x|, |y|, |z|` is used (as pytorch3d / VGGT `mat_to_quat`).
    """
    check_tail("rotation", rotation, (3, 3))
    m = rotation
    m00, m01, m02 = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
    m10, m11, m12 = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
    m20, m21, m22 = m[..., 2, 0], m[..., 2, 1], m[..., 2, 2]
    # q_abs = 2 * (|w|, |x|, |y|, |z|)
    q_abs = _sqrt_positive(
        torch.stack(
            [
                1.0 + m00 + m11 + m22,
                1.0 + m00 - m11 - m22,
                1.0 - m00 + m11 - m22,
                1.0 - m00 - m11 + m22,
            ],
            dim=-1,
        )
    )
    # Each row: (w, x, y, z) * 2 * q_abs[i] in WXYZ order.
    candidates = torch.stack(
        [
            torch.stack([q_abs[..., 0] ** 2, m21 - m12, m02 - m20, m10 - m01], dim=-1),
            torch.stack([m21 - m12, q_abs[..., 1] ** 2, m10 + m01, m02 + m20], dim=-1),
            torch.stack([m02 - m20, m10 + m01, q_abs[..., 2] ** 2, m12 + m21], dim=-1),
            torch.stack([m10 - m01, m20 + m02, m21 + m12, q_abs[..., 3] ** 2], dim=-1),
        ],
        dim=-2,
    )
    candidates = candidates / (2.0 * torch.clamp(q_abs[..., None], min=0.1))
    best = q_abs.argmax(dim=-1)
    index = best[..., None, None].expand(*best.shape, 1, 4)
    q_wxyz = torch.gather(candidates, -2, index).squeeze(-2)
    q_xyzw = torch.cat([q_wxyz[..., 1:], q_wxyz[..., :1]], dim=-1)
    q_xyzw = q_xyzw / torch.linalg.vector_norm(q_xyzw, dim=-1, keepdim=True)
    return torch.where(q_xyzw[..., 3:4] < 0, -q_xyzw, q_xyzw)


def quaternion_xyzw_to_rotation(quaternion_xyzw: torch.Tensor) -> torch.Tensor:
    """Quaternions `[..., 4]` in **XYZW** order (normalised here) -> rotation matrices `[..., 3, 3]`.

    Raises ValueError for a zero quaternion.
    """
    check_tail("quaternion_xyzw", quaternion_xyzw, (4,))
    norm = torch.linalg.vector_norm(quaternion_xyzw, dim=-1, keepdim=True)
    if bool((norm == 0).any()):
        raise ValueError("quaternion_xyzw has a zero quaternion (norm 0); it is no rotation")
    q = quaternion_xyzw / norm
    x, y, z, w = q.unbind(-1)
    two = 2.0
    rows = [
        torch.stack([1 - two * (y * y + z * z), two * (x * y - z * w), two * (x * z + y * w)], -1),
        torch.stack([two * (x * y + z * w), 1 - two * (x * x + z * z), two * (y * z - x * w)], -1),
        torch.stack([two * (x * z - y * w), two * (y * z + x * w), 1 - two * (x * x + y * y)], -1),
    ]
    return torch.stack(rows, dim=-2)


def rotation_angle(rotation: torch.Tensor, degrees: bool = False) -> torch.Tensor:
    """Angle of rotation matrices `[..., 3, 3]` -> `[...]` in radians (or degrees), in `[0, pi]`.

    Uses `atan2(|vee(R - R^T)| / 2, (trace(R) - 1) / 2)`, accurate at every angle (unlike
    `arccos` near 0); equals the norm of the SO(3) logarithm (evo's `so3_log_angle`).
    """
    check_tail("rotation", rotation, (3, 3))
    r = rotation
    sin_vec = torch.stack(
        [r[..., 2, 1] - r[..., 1, 2], r[..., 0, 2] - r[..., 2, 0], r[..., 1, 0] - r[..., 0, 1]],
        dim=-1,
    )
    sin = 0.5 * torch.linalg.vector_norm(sin_vec, dim=-1)
    cos = 0.5 * (r[..., 0, 0] + r[..., 1, 1] + r[..., 2, 2] - 1.0)
    angle = torch.atan2(sin, cos)
    return angle * (180.0 / math.pi) if degrees else angle


def axis_angle_to_rotation(axis_angle: torch.Tensor) -> torch.Tensor:
    """Rotation vectors `[..., 3]` (axis * angle, radians) -> rotation matrices `[..., 3, 3]`.

    Rodrigues' formula; exact at angle 0 (returns the identity).
    """
    check_tail("axis_angle", axis_angle, (3,))
    angle = torch.linalg.vector_norm(axis_angle, dim=-1)
    half = 0.5 * angle
    # sin(half) / angle, with its limit 1/2 at 0
    small = angle < 1e-8
    safe = torch.where(small, torch.ones_like(angle), angle)
    scale = torch.where(small, 0.5 - angle**2 / 48.0, torch.sin(half) / safe)
    q_xyzw = torch.cat([axis_angle * scale[..., None], torch.cos(half)[..., None]], dim=-1)
    return quaternion_xyzw_to_rotation(q_xyzw)


def random_rotation(
    shape: tuple[int, ...] = (),
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """Uniformly distributed random rotations `[*shape, 3, 3]` (normalised Gaussian quaternions)."""
    q = torch.randn(*shape, 4, generator=generator, dtype=dtype)
    return quaternion_xyzw_to_rotation(q)
