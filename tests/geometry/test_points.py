"""Focal length from a point map; pose from a world point map (Procrustes)."""

from __future__ import annotations

import pytest
import torch

from vfm3d.geometry import (
    focal_from_points,
    invert_rigid,
    make_rigid,
    pose_from_points,
    random_rotation,
    transform_points,
    unproject_depth,
)


def _points(focal: float, height: int = 12, width: int = 16) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    depth = 1.0 + torch.rand(2, height, width, generator=generator, dtype=torch.float64)
    k = torch.tensor(
        [[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]], dtype=torch.float64
    )
    return unproject_depth(depth, k)


@pytest.mark.parametrize("method", ["median", "weiszfeld"])
def test_focal_recovered(method: str) -> None:
    points = _points(37.5)
    focal = focal_from_points(points, method=method)  # type: ignore[arg-type]
    assert focal.shape == (2,)
    assert torch.allclose(focal, torch.full((2,), 37.5, dtype=torch.float64), rtol=1e-9)


def test_focal_robust_to_outliers_and_mask() -> None:
    points = _points(50.0)
    valid = torch.ones(points.shape[:-1], dtype=torch.bool)
    corrupted = points.clone()
    corrupted[:, :2, :, :2] *= 3.0  # two corrupted rows: wrong focal votes
    median = focal_from_points(corrupted, method="median")
    assert torch.allclose(median, torch.full((2,), 50.0, dtype=torch.float64), rtol=1e-9)
    valid[:, :2] = False
    masked = focal_from_points(corrupted, valid, method="weiszfeld")
    assert torch.allclose(masked, torch.full((2,), 50.0, dtype=torch.float64), rtol=1e-9)
    with pytest.raises(ValueError, match="no valid pixel"):
        focal_from_points(points, torch.zeros_like(valid))


def test_pose_from_points_recovers_cam_to_world() -> None:
    generator = torch.Generator().manual_seed(4)
    points_cam = _points(40.0)
    cam_to_world = make_rigid(
        random_rotation((2,), generator),
        torch.randn(2, 3, generator=generator, dtype=torch.float64),
    )
    points_world = transform_points(cam_to_world, points_cam)
    estimate, scale = pose_from_points(points_world, points_cam)
    assert torch.allclose(estimate, cam_to_world, atol=1e-10)
    assert torch.allclose(scale, torch.ones(2, dtype=torch.float64))
    # with a scaled world (e.g. up-to-scale reconstruction) the scale comes back
    _, scale = pose_from_points(3.0 * points_world, points_cam, with_scale=True)
    assert torch.allclose(scale, torch.full((2,), 3.0, dtype=torch.float64))
    assert torch.allclose(
        invert_rigid(estimate) @ cam_to_world,
        torch.eye(4, dtype=torch.float64).expand(2, 4, 4),
        atol=1e-10,
    )
