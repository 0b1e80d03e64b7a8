"""`cameras_from_pointmaps`: focal, cam_to_world and depth recovered from exact point maps.

References are independent of the code under test: point maps are built from known intrinsics,
camera paths and z-depth (random depth maps with `unproject_depth`, or a rendered world clip),
expressed in frame 0's camera coordinates as the function expects.
"""

from __future__ import annotations

import sys

import pytest
import torch

import vfm3d.geometry
from vfm3d.geometry import (
    PointmapCameras,
    axis_angle_to_rotation,
    cameras_from_pointmaps,
    depth_to_world_points,
    invert_rigid,
    make_rigid,
    rotation_angle,
    transform_points,
    unproject_depth,
)
from vfm3d.metrics import ate
from vfm3d.world import render_clip

T, H, W = 5, 48, 64
FOCAL = 55.0


def _intrinsics(fx: float = FOCAL, fy: float | None = None, cx=None, cy=None) -> torch.Tensor:
    cx = (W - 1) / 2.0 if cx is None else cx
    cy = (H - 1) / 2.0 if cy is None else cy
    fy = fx if fy is None else fy
    return torch.tensor([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=torch.float64)


def _scene(
    intrinsics: torch.Tensor | None = None, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Exact point maps -> `(points [T,H,W,3] float32, cam_to_world [T,4,4], depth [T,H,W])`.

    World = frame 0's camera (cam_to_world[0] = I); depth in [2, 5]; rotations ~0.1 rad,
    translations ~0.3 (scale of the scene ~3).
    """
    k = _intrinsics() if intrinsics is None else intrinsics
    generator = torch.Generator().manual_seed(seed)
    depth = 2.0 + 3.0 * torch.rand(T, H, W, generator=generator, dtype=torch.float64)
    axis_angle = 0.1 * torch.randn(T, 3, generator=generator, dtype=torch.float64)
    translation = 0.3 * torch.randn(T, 3, generator=generator, dtype=torch.float64)
    axis_angle[0] = 0.0
    translation[0] = 0.0
    cam_to_world = make_rigid(axis_angle_to_rotation(axis_angle), translation)
    points = transform_points(cam_to_world, unproject_depth(depth, k))
    return points.to(torch.float32), cam_to_world, depth


def _pose_errors(estimate: torch.Tensor, truth: torch.Tensor) -> tuple[float, float]:
    """Max rotation error (rad) and max translation error over frames."""
    relative = estimate[:, :3, :3].transpose(-1, -2) @ truth[:, :3, :3]
    rotation = float(rotation_angle(relative).max())
    translation = float(
        torch.linalg.vector_norm(estimate[:, :3, 3] - truth[:, :3, 3], dim=-1).max()
    )
    return rotation, translation


def _with_outliers(points: torch.Tensor, fraction: float, seed: int = 1):
    generator = torch.Generator().manual_seed(seed)
    bad = torch.rand(points.shape[:-1], generator=generator) < fraction
    noise = torch.empty(points.shape).uniform_(-3.0, 3.0, generator=generator)
    noise[..., 2] = torch.empty(points.shape[:-1]).uniform_(0.5, 6.0, generator=generator)
    return torch.where(bad[..., None], noise, points), bad


def test_exact_point_maps_give_exact_cameras_and_depth() -> None:
    points, cam_to_world, depth = _scene()
    out = cameras_from_pointmaps(points)
    assert isinstance(out, PointmapCameras)
    assert out.intrinsics.shape == (T, 3, 3) and out.intrinsics.dtype == torch.float32
    assert out.cam_to_world.shape == (T, 4, 4) and out.cam_to_world.dtype == torch.float64
    assert out.depth.shape == (T, H, W) and out.depth.dtype == torch.float32
    assert out.valid.dtype == torch.bool and bool(out.valid.all())
    assert out.inlier_ratio.shape == (T,) and out.fallback.shape == (T,)
    focal = out.intrinsics[:, 0, 0]
    assert abs(float(focal[0]) / FOCAL - 1.0) < 5e-3  # measured: ~1e-9
    assert torch.equal(focal, focal[0].expand(T)) and torch.equal(out.intrinsics[:, 1, 1], focal)
    assert torch.allclose(out.intrinsics[0, :2, 2], torch.tensor([(W - 1) / 2, (H - 1) / 2]))
    assert torch.equal(out.cam_to_world[0], torch.eye(4, dtype=torch.float64))
    rotation, translation = _pose_errors(out.cam_to_world, cam_to_world)
    assert rotation < 1e-3 and translation < 1e-3 * 3.0  # measured: ~1e-9 rad, ~1e-8
    assert torch.allclose(out.depth.double(), depth, atol=1e-5, rtol=0)  # measured: ~5e-7
    assert bool((out.inlier_ratio == 1).all()) and not bool(out.fallback.any())
    assert out.focal.shape == (T, 2)


@pytest.mark.parametrize(
    ("kind", "seed", "give_intrinsics"),
    [("scene", 0, False), ("object", 0, True)],  # street with sky (constant FoV); orbit, FoV varies
)
def test_world_clip_round_trip_and_ate(kind: str, seed: int, give_intrinsics: bool) -> None:
    clip = render_clip(kind, seed=seed, frames=8, height=H, width=W)
    depth = torch.from_numpy(clip.depth).double()
    valid = torch.from_numpy(clip.valid)
    assert not bool(valid.all())  # the sky is invalid: the mask matters
    k = torch.from_numpy(clip.intrinsics).double()
    gt_cam_to_world = invert_rigid(torch.from_numpy(clip.cam_to_world[:1])) @ torch.from_numpy(
        clip.cam_to_world
    )  # rebased: frame 0 = identity
    points = depth_to_world_points(depth, k, gt_cam_to_world).float()
    points = torch.where(valid[..., None], points, torch.full_like(points, float("nan")))
    out = cameras_from_pointmaps(points, valid=valid, intrinsics=k if give_intrinsics else None)
    if give_intrinsics:
        assert torch.equal(out.intrinsics, k.float())
    else:
        assert abs(float(out.intrinsics[0, 0, 0]) / float(k[0, 0, 0]) - 1.0) < 5e-3
    scale = float(depth[valid].mean())
    rotation, translation = _pose_errors(out.cam_to_world, gt_cam_to_world)
    assert rotation < 1e-3 and translation < 1e-3 * scale
    assert torch.equal(out.valid, valid)
    assert torch.allclose(out.depth[valid].double(), depth[valid], atol=1e-4 * scale, rtol=0)
    assert bool((out.depth[~valid] == 0).all())
    assert ate(out.cam_to_world, gt_cam_to_world) < 1e-5 * scale


def test_scale_invariance() -> None:
    points, _, _ = _scene(seed=2)
    base = cameras_from_pointmaps(points)
    scaled = cameras_from_pointmaps(points * 3.7)
    assert torch.allclose(scaled.intrinsics, base.intrinsics, rtol=1e-5)
    assert torch.allclose(
        scaled.cam_to_world[:, :3, :3], base.cam_to_world[:, :3, :3], atol=1e-6, rtol=0
    )
    assert torch.allclose(
        scaled.cam_to_world[:, :3, 3], 3.7 * base.cam_to_world[:, :3, 3], atol=1e-5, rtol=0
    )
    assert torch.allclose(scaled.depth, 3.7 * base.depth, rtol=1e-5)


@pytest.mark.parametrize("with_conf", [False, True])
def test_ransac_recovers_poses_with_20_percent_outliers(with_conf: bool) -> None:
    points, cam_to_world, depth = _scene(seed=4)
    corrupted, bad = _with_outliers(points, 0.2)
    conf = torch.where(bad, 0.5, 2.0) if with_conf else None
    out = cameras_from_pointmaps(corrupted, conf=conf, max_points=1000)
    assert abs(float(out.intrinsics[0, 0, 0]) / FOCAL - 1.0) < 5e-3  # measured: ~1e-9
    rotation, translation = _pose_errors(out.cam_to_world, cam_to_world)
    assert rotation < 1e-3 and translation < 1e-3 * 3.0  # measured: ~1e-9 rad, ~1e-7
    good = ~bad
    assert torch.allclose(out.depth[good].double(), depth[good], atol=1e-5, rtol=0)
    inlier_share = good.flatten(1).double().mean(-1)
    assert torch.allclose(out.inlier_ratio.double(), inlier_share, atol=0.02)
    assert not bool(out.fallback.any())


def test_given_intrinsics_are_used_as_is() -> None:
    k = _intrinsics(fx=48.0, fy=52.0, cx=30.0, cy=25.0)  # off-centre, non-square pixels
    points, cam_to_world, depth = _scene(intrinsics=k, seed=5)
    for given in (k, k.expand(T, 3, 3)):
        out = cameras_from_pointmaps(points, intrinsics=given)
        assert torch.equal(out.intrinsics, given.float().expand(T, 3, 3))
        rotation, translation = _pose_errors(out.cam_to_world, cam_to_world)
        assert rotation < 1e-6 and translation < 1e-6
        assert torch.allclose(out.depth.double(), depth, atol=1e-5, rtol=0)
    per_frame = k.repeat(T, 1, 1)
    per_frame[2, 0, 0] = 60.0  # a wrong K for frame 2 only: used as given, frame 2 then misfits
    out = cameras_from_pointmaps(points, intrinsics=per_frame)
    assert float(out.intrinsics[2, 0, 0]) == 60.0
    others = torch.tensor([0, 1, 3, 4])
    rotation, translation = _pose_errors(out.cam_to_world[others], cam_to_world[others])
    assert rotation < 1e-6 and translation < 1e-6
    rotation, translation = _pose_errors(out.cam_to_world[2:3], cam_to_world[2:3])
    assert max(rotation, translation) > 1e-3  # the given (wrong) focal was not re-estimated


def test_frame_without_points_falls_back_to_previous_pose() -> None:
    points, cam_to_world, _ = _scene(seed=6)
    valid = torch.ones(points.shape[:-1], dtype=torch.bool)
    valid[2] = False
    valid[3, :, 2:] = False  # 48 valid points: enough
    points = points.clone()
    points[2] = float("nan")  # invalid pixels may hold anything
    out = cameras_from_pointmaps(points, valid=valid)
    assert out.fallback.tolist() == [False, False, True, False, False]
    assert torch.equal(out.cam_to_world[2], out.cam_to_world[1])
    assert not bool(out.valid[2].any()) and bool((out.depth[2] == 0).all())
    assert float(out.inlier_ratio[2]) == 0.0
    keep = torch.tensor([0, 1, 3, 4])
    rotation, translation = _pose_errors(out.cam_to_world[keep], cam_to_world[keep])
    assert rotation < 1e-3 and translation < 3e-3


def test_a_wrong_pnp_minimum_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    """A PnP pose that puts the frame's points behind the camera (a wrong minimum, as seen on
    small noisy point maps) is replaced by the previous pose and flagged; good frames keep
    their exact pose."""
    import numpy as np

    import vfm3d.geometry.pointmap_cameras as module

    points, cam_to_world, _ = _scene(seed=7)
    solve = module._solve_pnp
    calls = []

    def flipped_on_frame_3(*args, **kwargs):
        pose = solve(*args, **kwargs)
        calls.append(1)
        if len(calls) == 3 and pose is not None:  # frame 3: mirror the camera through the scene
            pose = pose.copy()
            pose[:3, :3] = np.diag([1.0, -1.0, -1.0]) @ pose[:3, :3]
            pose[:3, 3] = np.diag([1.0, -1.0, -1.0]) @ pose[:3, 3]
        return pose

    monkeypatch.setattr(module, "_solve_pnp", flipped_on_frame_3)
    out = cameras_from_pointmaps(points)
    assert out.fallback.tolist() == [False, False, False, True, False]
    assert torch.equal(out.cam_to_world[3], out.cam_to_world[2])
    keep = torch.tensor([0, 1, 2, 4])
    rotation, translation = _pose_errors(out.cam_to_world[keep], cam_to_world[keep])
    assert rotation < 1e-3 and translation < 3e-3


def test_median_error_closed_form() -> None:
    import numpy as np

    from vfm3d.geometry.pointmap_cameras import _median_error

    k = np.array([[10.0, 0, 5], [0, 10.0, 5], [0, 0, 1]])
    obj = np.array([[0.0, 0, 1], [0.1, 0, 1], [0, 0.2, 2], [0, 0, -1]])
    img = np.array([[5.0, 5], [6.0, 5], [5, 6], [5, 5]]) + np.array([[3.0, 0]])
    # errors: 3, 3, 3, inf (behind) -> median 3
    assert _median_error(np.eye(4), obj, img, k) == pytest.approx(3.0)


def test_single_frame_and_determinism() -> None:
    points, _, depth = _scene(seed=7)
    single = cameras_from_pointmaps(points[:1])
    assert torch.equal(single.cam_to_world, torch.eye(4, dtype=torch.float64)[None])
    assert torch.allclose(single.depth.double(), depth[:1], atol=1e-5, rtol=0)
    corrupted, _ = _with_outliers(points, 0.3, seed=8)
    a = cameras_from_pointmaps(corrupted, max_points=300, seed=1)
    b = cameras_from_pointmaps(corrupted, max_points=300, seed=1)
    assert torch.equal(a.cam_to_world, b.cam_to_world)


def _good() -> dict:
    points, _, _ = _scene(seed=9)
    return {"points": points}


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        (lambda a: {"points": a["points"][0]}, ValueError, "T, H, W, 3"),
        (lambda a: {"points": a["points"][..., :2]}, ValueError, "shape"),
        (lambda a: {"points": a["points"][:0]}, ValueError, "T >= 1"),
        (lambda a: {"points": a["points"].numpy()}, TypeError, "torch.Tensor"),
        (lambda a: {"points": a["points"].to(torch.int64)}, ValueError, "floating"),
        (lambda a: {**a, "valid": torch.ones(T, H, W)}, ValueError, "bool"),
        (lambda a: {**a, "valid": torch.ones(T, H, W + 1, dtype=torch.bool)}, ValueError, "valid"),
        (lambda a: {**a, "conf": torch.ones(T, H)}, ValueError, "conf"),
        (lambda a: {**a, "conf": -torch.ones(T, H, W)}, ValueError, "non-negative"),
        (lambda a: {**a, "intrinsics": torch.eye(3).expand(T + 1, 3, 3)}, ValueError, "intrinsics"),
        (lambda a: {**a, "intrinsics": torch.zeros(3, 3)}, ValueError, "positive focal"),
        (lambda a: {**a, "reprojection_px": 0.0}, ValueError, "reprojection_px"),
    ],
)
def test_bad_input_errors(change, error, match) -> None:
    with pytest.raises(error, match=match):
        cameras_from_pointmaps(**change(_good()))


def test_nan_and_too_few_points_errors() -> None:
    points = _good()["points"].clone()
    points[1, 3, 4, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf"):
        cameras_from_pointmaps(points)
    valid = torch.zeros(points.shape[:-1], dtype=torch.bool)
    valid[0, 0, :5] = True
    with pytest.raises(ValueError, match="frame 0 has 5 valid points"):
        cameras_from_pointmaps(points, valid=valid)
    behind = _good()["points"].clone()
    behind[0, ..., 2] *= -1.0  # frame 0 behind its own camera
    with pytest.raises(ValueError, match="z > 0"):
        cameras_from_pointmaps(behind)


def test_missing_opencv_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cv2", None)
    with pytest.raises(ImportError, match=r"vfm3d\[geometry\]"):
        cameras_from_pointmaps(_good()["points"])


def test_exported() -> None:
    assert "cameras_from_pointmaps" in vfm3d.geometry.__all__
    assert "PointmapCameras" in vfm3d.geometry.__all__
