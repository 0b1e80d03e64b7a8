"""Camera conventions, projection, pose encodings, alignment, point map <-> depth <-> camera.

All functions are torch, batched over leading dims, float64-safe, differentiable where it makes
sense. Conventions (DESIGN.md): OpenCV cameras (x right, y down, z forward), pixel centres at
integer coordinates, `K` in pixels, poses named `cam_to_world` / `world_to_cam`, z-depth,
quaternions XYZW at every boundary.
"""

from vfm3d.geometry.align import (
    DegenerateAlignmentError,
    align_depth,
    apply_similarity,
    similarity_matrix,
    umeyama,
)
from vfm3d.geometry.camera import (
    depth_to_world_points,
    invert_rigid,
    make_rigid,
    pair_indices,
    pixel_grid,
    project,
    relative_poses,
    to_homogeneous,
    transform_points,
    transform_points_grid,
    unproject_depth,
    world_points_to_depth,
)
from vfm3d.geometry.normalize import ProbeTargets, probe_targets
from vfm3d.geometry.pointmap_cameras import PointmapCameras, cameras_from_pointmaps
from vfm3d.geometry.points import focal_from_points, pose_from_points
from vfm3d.geometry.pose_encoding import POSE_ENCODING_DIM, decode_pose, encode_pose
from vfm3d.geometry.rotation import (
    axis_angle_to_rotation,
    quaternion_xyzw_to_rotation,
    random_rotation,
    rotation_angle,
    rotation_to_quaternion_xyzw,
)
from vfm3d.geometry.trajectory import (
    Trajectory,
    TrajectoryFileError,
    associate,
    read_tum,
    write_tum,
)

__all__ = [
    "POSE_ENCODING_DIM",
    "DegenerateAlignmentError",
    "PointmapCameras",
    "ProbeTargets",
    "Trajectory",
    "TrajectoryFileError",
    "align_depth",
    "apply_similarity",
    "associate",
    "axis_angle_to_rotation",
    "cameras_from_pointmaps",
    "decode_pose",
    "depth_to_world_points",
    "encode_pose",
    "focal_from_points",
    "invert_rigid",
    "make_rigid",
    "pair_indices",
    "pixel_grid",
    "pose_from_points",
    "probe_targets",
    "project",
    "quaternion_xyzw_to_rotation",
    "random_rotation",
    "read_tum",
    "relative_poses",
    "rotation_angle",
    "rotation_to_quaternion_xyzw",
    "similarity_matrix",
    "to_homogeneous",
    "transform_points",
    "transform_points_grid",
    "umeyama",
    "unproject_depth",
    "world_points_to_depth",
    "write_tum",
]
