"""Metrics: pure functions, tensors in, numbers out. Each docstring names its reference.

Camera (RRA/RTA/AUC: VGGT / VidFM3D), trajectories (ATE/RPE: evo, MonST3R protocol), video depth
(MonST3R), point maps and depth (VidFM3D Point Err / Depth Err), VSI-Bench (MRA, accuracy),
3D consistency of a frame pair (MEt3R idea), the Frechet distance of two feature sets (FID/FVD).
"""

from vfm3d.metrics.camera import auc_from_errors, camera_auc, relative_pose_errors, rra_rta
from vfm3d.metrics.consistency import consistency_3d, splat_features
from vfm3d.metrics.depth import DepthMetrics, depth_metrics
from vfm3d.metrics.frechet import frechet_distance
from vfm3d.metrics.points import depth_error, point_error
from vfm3d.metrics.trajectory import (
    TrajectoryMetrics,
    align_trajectory,
    ate,
    rpe,
    trajectory_metrics,
)
from vfm3d.metrics.vsi import exact_match, mra, mra_thresholds, vsi_accuracy

__all__ = [
    "DepthMetrics",
    "TrajectoryMetrics",
    "align_trajectory",
    "ate",
    "auc_from_errors",
    "camera_auc",
    "consistency_3d",
    "depth_error",
    "depth_metrics",
    "exact_match",
    "frechet_distance",
    "mra",
    "mra_thresholds",
    "point_error",
    "relative_pose_errors",
    "rpe",
    "rra_rta",
    "splat_features",
    "trajectory_metrics",
    "vsi_accuracy",
]
