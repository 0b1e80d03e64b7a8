"""Camera conventions of the datasets, converted to vfm3d's (OpenCV, float64, named directions).

vfm3d convention: OpenCV camera axes (x right, y down, z forward), ``K`` in pixels with pixel
centres at integer coordinates, ``cam_to_world`` 4x4 float64. Each function names the source
convention it accepts. Intrinsics are taken as the datasets publish them (no half-pixel shift
is added), as the reference loaders (PyTorch3D, DUSt3R, nerfstudio) do.
"""

from __future__ import annotations

import numpy as np

from vfm3d.data.errors import DatasetFormatError

# OpenGL / PyTorch3D camera axes differ from OpenCV by flipping axes; these are the flips.
_FLIP_YZ = np.diag([1.0, -1.0, -1.0])  # OpenGL (x right, y up, z back) <-> OpenCV
_FLIP_XY = np.diag([-1.0, -1.0, 1.0])  # PyTorch3D (x left, y up, z forward) <-> OpenCV


def intrinsics_matrix(fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    """``[3, 3]`` float64 pinhole matrix."""
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=np.float64)


def homogeneous(rotation: np.ndarray, translation: np.ndarray) -> np.ndarray:
    """``[4, 4]`` float64 from a ``[3, 3]`` rotation and ``[3]`` translation."""
    out = np.eye(4, dtype=np.float64)
    out[:3, :3] = rotation
    out[:3, 3] = translation
    return out


def rigid_inverse(transform: np.ndarray) -> np.ndarray:
    """Inverse of a ``[..., 4, 4]`` rigid transform (``world_to_cam`` <-> ``cam_to_world``)."""
    rot = transform[..., :3, :3]
    trans = transform[..., :3, 3]
    out = np.zeros_like(transform, dtype=np.float64)
    rot_t = np.swapaxes(rot, -1, -2)
    out[..., :3, :3] = rot_t
    out[..., :3, 3] = -np.einsum("...ij,...j->...i", rot_t, trans)
    out[..., 3, 3] = 1.0
    return out


def quaternion_xyzw_to_matrix(quaternion: np.ndarray) -> np.ndarray:
    """``[3, 3]`` rotation from a quaternion in **XYZW** (scalar-last, TUM) order.

    The quaternion is normalised first; a zero / non-finite quaternion raises ``ValueError``.
    """
    q = np.asarray(quaternion, dtype=np.float64)
    norm = float(np.linalg.norm(q))
    if not np.isfinite(norm) or norm < 1e-12:
        raise ValueError(f"quaternion {q.tolist()} has zero or non-finite norm")
    x, y, z, w = q / norm
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ],
        dtype=np.float64,
    )


def opengl_to_opencv_cam_to_world(cam_to_world_gl: np.ndarray) -> np.ndarray:
    """nerfstudio / Blender / OpenGL ``cam_to_world`` (x right, y up, z back) -> OpenCV.

    The camera axes flip, so the rotation's columns 1 and 2 are negated; the centre stays.
    """
    out = np.array(cam_to_world_gl, dtype=np.float64, copy=True)
    out[..., :3, :3] = out[..., :3, :3] @ _FLIP_YZ
    return out


def pytorch3d_to_opencv(
    rotation_p3d: np.ndarray,
    translation_p3d: np.ndarray,
    focal_length_ndc: tuple[float, float],
    principal_point_ndc: tuple[float, float],
    image_hw: tuple[int, int],
    intrinsics_format: str = "ndc_isotropic",
) -> tuple[np.ndarray, np.ndarray]:
    """PyTorch3D camera (CO3D viewpoint) -> OpenCV ``(K [3,3], world_to_cam [4,4])``, float64.

    PyTorch3D: row vectors, ``X_cam = X_world @ R + T``, camera axes x left, y up, z forward.
    Intrinsics are in NDC: ``ndc_isotropic`` (the shorter side spans [-1, 1]: ``s = min(H, W)/2``
    on both axes) or ``ndc_norm_image_bounds`` (each axis spans [-1, 1]: ``s = (W/2, H/2)``);
    then ``f_px = f_ndc * s`` and ``c_px = size/2 - p_ndc * s``.
    Reference: PyTorch3D ``opencv_from_cameras_projection``, implicitron ``_convert_ndc_to_pixels``.
    """
    height, width = image_hw
    if intrinsics_format == "ndc_isotropic":
        scale_x = scale_y = min(height, width) / 2.0
    elif intrinsics_format == "ndc_norm_image_bounds":
        scale_x, scale_y = width / 2.0, height / 2.0
    else:
        raise ValueError(
            f"intrinsics_format must be 'ndc_isotropic' or 'ndc_norm_image_bounds', "
            f"got {intrinsics_format!r}"
        )
    fx, fy = focal_length_ndc[0] * scale_x, focal_length_ndc[1] * scale_y
    cx = width / 2.0 - principal_point_ndc[0] * scale_x
    cy = height / 2.0 - principal_point_ndc[1] * scale_y
    rot = np.asarray(rotation_p3d, dtype=np.float64)
    trans = np.asarray(translation_p3d, dtype=np.float64)
    # column-vector form: X_cam_p3d = R^T X + T; OpenCV camera = FLIP_XY @ p3d camera.
    rotation_cv = _FLIP_XY @ rot.T
    translation_cv = _FLIP_XY @ trans
    return intrinsics_matrix(fx, fy, cx, cy), homogeneous(rotation_cv, translation_cv)


def scale_intrinsics(intrinsics: np.ndarray, scale_x: float, scale_y: float) -> np.ndarray:
    """Intrinsics for the same camera after resizing the image by ``(scale_x, scale_y)``.

    Pure scaling of ``fx, cx, fy, cy``: used where a dataset publishes intrinsics for another
    resolution (DL3DV ``w, h`` vs ``images_4``; RE10K normalised values). For resampling our own
    arrays with the pixel-centre convention use `vfm3d.data.transforms` instead.
    """
    out = np.array(intrinsics, dtype=np.float64, copy=True)
    out[..., 0, :] *= scale_x
    out[..., 1, :] *= scale_y
    out[..., 2, :] = (0.0, 0.0, 1.0)
    return out


def check_intrinsics(intrinsics: np.ndarray, source: str) -> None:
    """Raise `DatasetFormatError` (naming ``source``) unless K is finite with positive focals."""
    if not np.all(np.isfinite(intrinsics)):
        raise DatasetFormatError(f"{source}: non-finite intrinsics")
    if intrinsics[0, 0] <= 0 or intrinsics[1, 1] <= 0:
        raise DatasetFormatError(f"{source}: focal lengths must be positive")
