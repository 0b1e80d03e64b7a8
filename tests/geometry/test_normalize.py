"""probe_targets: frame 0 = identity, mean distance of frame-0 valid points = 1."""

from __future__ import annotations

import pytest
import torch

from vfm3d.geometry import (
    depth_to_world_points,
    invert_rigid,
    make_rigid,
    probe_targets,
    random_rotation,
    transform_points,
)


def _scene(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    b, t, h, w = 2, 3, 6, 8
    depth = 1.0 + 3.0 * torch.rand(b, t, h, w, generator=generator, dtype=torch.float64)
    valid = torch.rand(b, t, h, w, generator=generator) > 0.3
    depth[~valid] = float("nan")  # invalid pixels may hold garbage; only `valid` counts
    k = torch.tensor([[9.0, 0, 4], [0, 9.0, 3], [0, 0, 1]], dtype=torch.float64).expand(b, t, 3, 3)
    cam_to_world = make_rigid(
        random_rotation((b, t), generator),
        torch.randn(b, t, 3, generator=generator, dtype=torch.float64),
    )
    return depth, valid, k, cam_to_world


def test_probe_targets_convention() -> None:
    depth, valid, k, cam_to_world = _scene()
    targets = probe_targets(depth, valid, k, cam_to_world)
    eye = torch.eye(4, dtype=torch.float64)
    assert torch.allclose(targets.cam_to_world[:, 0], eye.expand(2, 4, 4), atol=1e-12)
    # frame 0's valid points have mean distance 1
    dist = targets.points[:, 0].norm(dim=-1)
    mean = (dist * valid[:, 0]).sum((-1, -2)) / valid[:, 0].sum((-1, -2))
    assert torch.allclose(mean, torch.ones(2, dtype=torch.float64), atol=1e-12)
    # points are the world points expressed in camera 0, scaled
    world = depth_to_world_points(torch.nan_to_num(depth), k, cam_to_world)
    in_cam0 = transform_points(invert_rigid(cam_to_world[:, :1]), world)
    scaled = in_cam0 * targets.scale[:, None, None, None, None]
    assert torch.allclose(targets.points[valid], scaled[valid], atol=1e-12)
    assert bool((targets.points[~valid] == 0).all()) and bool((targets.depth[~valid] == 0).all())
    # depth is each frame's z-depth in the same scale, consistent with points and poses
    z = transform_points(targets.world_to_cam, targets.points)[..., 2]
    assert torch.allclose(z[valid], targets.depth[valid], atol=1e-12)
    assert torch.allclose(targets.world_to_cam, invert_rigid(targets.cam_to_world), atol=1e-12)
    assert targets.intrinsics is k


def test_probe_targets_is_scale_and_frame_invariant() -> None:
    depth, valid, k, cam_to_world = _scene(1)
    first = probe_targets(depth, valid, k, cam_to_world)
    # same scene in a different world frame and units (x 7.5) gives the same targets
    change = make_rigid(
        random_rotation((), torch.Generator().manual_seed(9)),
        torch.tensor([5.0, -2.0, 1.0], dtype=torch.float64),
    )
    moved = change @ cam_to_world
    moved[..., :3, 3] *= 7.5
    second = probe_targets(depth * 7.5, valid, k, moved)
    assert torch.allclose(first.points, second.points, atol=1e-10)
    assert torch.allclose(first.cam_to_world, second.cam_to_world, atol=1e-10)
    assert torch.allclose(first.scale, second.scale * 7.5, rtol=1e-10)


def test_probe_targets_errors() -> None:
    depth, valid, k, cam_to_world = _scene()
    no_frame0 = valid.clone()
    no_frame0[1, 0] = False
    with pytest.raises(ValueError, match="frame 0 has no valid pixel"):
        probe_targets(depth, no_frame0, k, cam_to_world)
    bad = torch.nan_to_num(depth)
    bad[0, 1, 0, 0] = float("inf")
    v = valid.clone()
    v[0, 1, 0, 0] = True
    with pytest.raises(ValueError, match="depth contains NaN"):
        probe_targets(bad, v, k, cam_to_world)
    with pytest.raises(ValueError, match="intrinsics"):
        probe_targets(depth, valid, k[:, :2], cam_to_world)


def test_probe_targets_dtype_follows_inputs() -> None:
    depth, valid, k, cam_to_world = _scene()
    depth = torch.nan_to_num(depth).float()
    mixed = probe_targets(depth, valid, k.float(), cam_to_world)  # Clip layout: float64 poses
    assert mixed.points.dtype == torch.float64 and mixed.cam_to_world.dtype == torch.float64
    single = probe_targets(depth, valid, k.float(), cam_to_world.float())
    assert single.points.dtype == torch.float32
    assert torch.allclose(single.points.double(), mixed.points, atol=1e-4)


def test_probe_targets_is_differentiable_in_depth() -> None:
    depth, valid, k, cam_to_world = _scene()
    depth = torch.nan_to_num(depth).requires_grad_(True)
    targets = probe_targets(depth, valid, k, cam_to_world)
    targets.points.sum().backward()
    assert depth.grad is not None and bool(torch.isfinite(depth.grad).all())
