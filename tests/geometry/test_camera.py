"""Rigid transforms, projection, depth <-> points, relative poses."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from vfm3d.geometry import (
    depth_to_world_points,
    invert_rigid,
    make_rigid,
    pixel_grid,
    project,
    random_rotation,
    relative_poses,
    transform_points,
    unproject_depth,
    world_points_to_depth,
)

seeds = st.integers(0, 2**31 - 1)


def _random_pose(generator: torch.Generator, shape: tuple[int, ...] = ()) -> torch.Tensor:
    rotation = random_rotation(shape, generator)
    translation = 3.0 * torch.randn(*shape, 3, generator=generator, dtype=torch.float64)
    return make_rigid(rotation, translation)


def _intrinsics(fx: float, fy: float, cx: float, cy: float, skew: float = 0.0) -> torch.Tensor:
    return torch.tensor([[fx, skew, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=torch.float64)


@given(seeds)
def test_invert_rigid_round_trip(seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    cam_to_world = _random_pose(generator, (3,))
    world_to_cam = invert_rigid(cam_to_world)
    eye = torch.eye(4, dtype=torch.float64).expand(3, 4, 4)
    assert torch.allclose(world_to_cam @ cam_to_world, eye, atol=1e-12)
    assert torch.allclose(invert_rigid(world_to_cam), cam_to_world, atol=1e-12)
    assert torch.allclose(world_to_cam, torch.linalg.inv(cam_to_world), atol=1e-12)


@given(seeds, st.floats(20.0, 500.0), st.floats(20.0, 500.0), st.floats(-5.0, 5.0))
def test_depth_points_depth_round_trip(seed: int, fx: float, fy: float, skew: float) -> None:
    generator = torch.Generator().manual_seed(seed)
    depth = 0.5 + 5.0 * torch.rand(2, 6, 7, generator=generator, dtype=torch.float64)
    intrinsics = _intrinsics(fx, fy, 3.3, 2.9, skew).expand(2, 3, 3)
    cam_to_world = _random_pose(generator, (2,))
    points_world = depth_to_world_points(depth, intrinsics, cam_to_world)
    assert points_world.shape == (2, 6, 7, 3)
    depth_back = world_points_to_depth(points_world, invert_rigid(cam_to_world))
    assert torch.allclose(depth_back, depth, atol=1e-10)
    uv, z = project(transform_points(invert_rigid(cam_to_world), points_world), intrinsics)
    assert torch.allclose(z, depth, atol=1e-10)
    assert torch.allclose(uv, pixel_grid(6, 7).expand(2, 6, 7, 2), atol=1e-8)


def test_unproject_known_pixel() -> None:
    depth = torch.full((3, 4), 2.0, dtype=torch.float64)
    points = unproject_depth(depth, _intrinsics(10.0, 20.0, 1.0, 2.0))
    # pixel (u=3, v=0): x = (3 - 1) / 10 * 2, y = (0 - 2) / 20 * 2
    assert torch.allclose(points[0, 3], torch.tensor([0.4, -0.2, 2.0], dtype=torch.float64))
    # the principal point lies on the optical axis
    assert torch.allclose(points[2, 1], torch.tensor([0.0, 0.0, 2.0], dtype=torch.float64))


def test_transform_points_broadcasts_over_middle_dims() -> None:
    generator = torch.Generator().manual_seed(0)
    transform = _random_pose(generator, (2,))
    points = torch.randn(2, 3, 5, 3, generator=generator, dtype=torch.float64)
    out = transform_points(transform, points)
    for b in range(2):
        expected = points[b] @ transform[b, :3, :3].T + transform[b, :3, 3]
        assert torch.allclose(out[b], expected, atol=1e-12)
    # a single transform applies to any point shape
    single = transform_points(transform[0], points)
    assert torch.allclose(single[1], points[1] @ transform[0, :3, :3].T + transform[0, :3, 3])


def test_relative_pose_conventions() -> None:
    generator = torch.Generator().manual_seed(1)
    cam_to_world = _random_pose(generator, (3,))
    world_to_cam = invert_rigid(cam_to_world)
    vggt = relative_poses(cam_to_world, convention="vggt")
    camera = relative_poses(cam_to_world, convention="camera")
    pairs = [(0, 1), (0, 2), (1, 2)]  # itertools.combinations order
    assert vggt.shape == (3, 4, 4)
    for p, (i, j) in enumerate(pairs):
        assert torch.allclose(
            vggt[p], torch.linalg.inv(world_to_cam[i]) @ world_to_cam[j], atol=1e-12
        )
        assert torch.allclose(camera[p], world_to_cam[i] @ cam_to_world[j], atol=1e-12)
    with pytest.raises(ValueError, match="convention"):
        relative_poses(cam_to_world, convention="bad")  # type: ignore[arg-type]


def test_shape_errors_name_the_argument() -> None:
    with pytest.raises(ValueError, match="intrinsics"):
        unproject_depth(torch.ones(4, 4), torch.eye(4))
    with pytest.raises(ValueError, match="points"):
        transform_points(torch.eye(4), torch.ones(5, 2))
