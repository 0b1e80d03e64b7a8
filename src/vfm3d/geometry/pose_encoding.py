"""VGGT pose encoding `absT_quaR_FoV` (reference: VGGT `vggt/utils/pose_enc.py`).

9 numbers per camera: `[t (3), q (4, XYZW), fov_h, fov_w]` where `(R, t)` is **world_to_cam**
(OpenCV, camera from world), `q` the quaternion of `R` in **XYZW** order with `w >= 0`, and
`fov = 2 * atan((size / 2) / focal)` with `size` the image height (for `fov_h`, focal `fy`) or
width (for `fov_w`, focal `fx`). Decoding puts the principal point at the image centre
`(W / 2, H / 2)`, as VGGT does; an encoding therefore does not keep an off-centre principal point.
"""

from __future__ import annotations

import torch

from vfm3d.geometry._checks import check_tail
from vfm3d.geometry.camera import make_rigid
from vfm3d.geometry.rotation import quaternion_xyzw_to_rotation, rotation_to_quaternion_xyzw

POSE_ENCODING_DIM = 9


def _check_hw(image_hw: tuple[int, int]) -> tuple[int, int]:
    if len(image_hw) != 2 or min(int(image_hw[0]), int(image_hw[1])) <= 0:
        raise ValueError(f"image_hw must be (height, width) with positive sizes, got {image_hw}")
    return int(image_hw[0]), int(image_hw[1])


def encode_pose(
    world_to_cam: torch.Tensor, intrinsics: torch.Tensor, image_hw: tuple[int, int]
) -> torch.Tensor:
    """`world_to_cam` `[..., 4, 4]` or `[..., 3, 4]`, `K` `[..., 3, 3]` -> encoding `[..., 9]`.

    Layout `[tx, ty, tz, qx, qy, qz, qw, fov_h, fov_w]` (VGGT `extri_intri_to_pose_encoding`).
    Keeps the input dtype (VGGT casts to float32).
    """
    check_tail("world_to_cam", world_to_cam, (None, 4))
    check_tail("intrinsics", intrinsics, (3, 3))
    if world_to_cam.shape[-2] not in (3, 4):
        raise ValueError(
            f"world_to_cam must be [..., 3, 4] or [..., 4, 4], got {list(world_to_cam.shape)}"
        )
    height, width = _check_hw(image_hw)
    translation = world_to_cam[..., :3, 3]
    quaternion = rotation_to_quaternion_xyzw(world_to_cam[..., :3, :3])
    k = intrinsics.to(world_to_cam.dtype)
    fov_h = 2.0 * torch.atan((height / 2.0) / k[..., 1, 1])
    fov_w = 2.0 * torch.atan((width / 2.0) / k[..., 0, 0])
    lead = torch.broadcast_shapes(world_to_cam.shape[:-2], intrinsics.shape[:-2])
    parts = [
        translation.expand(*lead, 3),
        quaternion.expand(*lead, 4),
        fov_h.expand(lead)[..., None],
        fov_w.expand(lead)[..., None],
    ]
    return torch.cat(parts, dim=-1)


def decode_pose(
    encoding: torch.Tensor, image_hw: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Encoding `[..., 9]` -> `(world_to_cam [..., 4, 4], K [..., 3, 3])`.

    `fy = (H / 2) / tan(fov_h / 2)`, `fx = (W / 2) / tan(fov_w / 2)`, principal point `(W / 2,
    H / 2)`, no skew (VGGT `pose_encoding_to_extri_intri`). The quaternion is normalised.
    """
    check_tail("encoding", encoding, (POSE_ENCODING_DIM,))
    height, width = _check_hw(image_hw)
    translation = encoding[..., :3]
    rotation = quaternion_xyzw_to_rotation(encoding[..., 3:7])
    fov_h, fov_w = encoding[..., 7], encoding[..., 8]
    fy = (height / 2.0) / torch.tan(fov_h / 2.0)
    fx = (width / 2.0) / torch.tan(fov_w / 2.0)
    intrinsics = torch.zeros(
        *encoding.shape[:-1], 3, 3, dtype=encoding.dtype, device=encoding.device
    )
    intrinsics[..., 0, 0] = fx
    intrinsics[..., 1, 1] = fy
    intrinsics[..., 0, 2] = width / 2.0
    intrinsics[..., 1, 2] = height / 2.0
    intrinsics[..., 2, 2] = 1.0
    return make_rigid(rotation, translation), intrinsics
