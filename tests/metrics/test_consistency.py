"""MEt3R-style 3D consistency of a frame pair."""

from __future__ import annotations

import pytest
import torch

from vfm3d.geometry import depth_to_world_points, invert_rigid, make_rigid
from vfm3d.geometry.rotation import axis_angle_to_rotation
from vfm3d.metrics.consistency import consistency_3d, splat_features

F64 = torch.float64
H, W = 24, 32
K = torch.tensor([[30.0, 0, W / 2], [0, 30.0, H / 2], [0, 0, 1]], dtype=F64)


def _plane_view(cam_to_world: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """World points of a fronto-parallel plane at z = 4 seen from `cam_to_world` (ray cast)."""
    points_cam_unit = depth_to_world_points(torch.ones(H, W, dtype=F64), K, torch.eye(4, dtype=F64))
    rays = points_cam_unit @ cam_to_world[:3, :3].T
    origin = cam_to_world[:3, 3]
    t = (4.0 - origin[2]) / rays[..., 2]
    return origin + t[..., None] * rays, torch.ones(H, W, dtype=torch.bool)


def _features(points: torch.Tensor) -> torch.Tensor:
    """Smooth features of a world point (consistent across views)."""
    x, y = points[..., 0], points[..., 1]
    return torch.stack([torch.sin(x), torch.cos(y), 1.0 + 0.1 * x * y], dim=-1)


def test_same_view_scores_zero_and_opposite_scores_two() -> None:
    cam = torch.eye(4, dtype=F64)
    points, valid = _plane_view(cam)
    f = _features(points)
    world_to_cam = invert_rigid(cam)
    assert consistency_3d(f, f, points, points, valid, valid, world_to_cam, K) < 1e-12
    assert abs(consistency_3d(f, -f, points, points, valid, valid, world_to_cam, K) - 2.0) < 1e-12


def test_consistent_features_score_low_inconsistent_high() -> None:
    cam_1 = torch.eye(4, dtype=F64)
    cam_2 = make_rigid(
        axis_angle_to_rotation(torch.tensor([0.0, 0.05, 0.0], dtype=F64)),
        torch.tensor([0.3, 0.0, 0.0], dtype=F64),
    )
    p1, v1 = _plane_view(cam_1)
    p2, v2 = _plane_view(cam_2)
    good = consistency_3d(_features(p1), _features(p2), p1, p2, v1, v2, invert_rigid(cam_1), K)
    noise = torch.randn(H, W, 3, generator=torch.Generator().manual_seed(0), dtype=F64)
    bad = consistency_3d(_features(p1), noise, p1, p2, v1, v2, invert_rigid(cam_1), K)
    assert good < 0.01 < 0.5 < bad


def test_zbuffer_keeps_the_nearest_point() -> None:
    points = torch.tensor([[[0.0, 0.0, 2.0], [0.0, 0.0, 1.0]]], dtype=F64)  # both hit the centre
    features = torch.tensor([[[1.0], [2.0]]], dtype=F64)
    rendered, covered = splat_features(
        points, features, torch.ones(1, 2, dtype=torch.bool), torch.eye(4, dtype=F64), K, (H, W)
    )
    assert int(covered.sum()) == 1 and float(rendered[H // 2, W // 2, 0]) == 2.0


def test_no_overlap_raises() -> None:
    points, valid = _plane_view(torch.eye(4, dtype=F64))
    behind = points.clone()
    behind[..., 2] = -4.0
    with pytest.raises(ValueError, match="no covered pixel"):
        consistency_3d(
            _features(points),
            _features(points),
            points,
            behind,
            valid,
            valid,
            torch.eye(4, dtype=F64),
            K,
        )
