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


# ------------------------------------------------------------------ the soft splat (MEt3R's)
from vfm3d.geometry.splat import default_radius, soft_splat  # noqa: E402
from vfm3d.metrics.consistency import (  # noqa: E402
    PairConsistency,
    pair_consistency,
    video_score,
)

EYE = torch.eye(4, dtype=F64)


def _at_pixel(u: float, v: float, z: float) -> list[float]:
    """The camera-frame point that K (identity pose) projects onto pixel (u, v) at depth z."""
    return [(u - W / 2) * z / 30.0, (v - H / 2) * z / 30.0, z]


def test_one_point_reaches_the_pixels_within_the_radius_with_weight_one_minus_d2_over_r2() -> None:
    u, v, r = 10.3, 5.0, 1.5
    points = torch.tensor([_at_pixel(u, v, 2.0)], dtype=F64)
    out = soft_splat(points, torch.tensor([[2.0, -1.0]], dtype=F64), None, EYE, K, (H, W), r)
    rows, cols = torch.meshgrid(
        torch.arange(H, dtype=F64), torch.arange(W, dtype=F64), indexing="ij"
    )
    d2 = (cols - u) ** 2 + (rows - v) ** 2
    inside = d2 < r * r
    assert torch.equal(out.covered, inside) and int(inside.sum()) == 7
    expected = torch.where(inside, 1.0 - d2 / r**2, torch.zeros((), dtype=F64))
    torch.testing.assert_close(out.alpha, expected)
    torch.testing.assert_close(out.features[..., 0], 2.0 * out.alpha)
    torch.testing.assert_close(out.features[..., 1], -out.alpha)
    assert torch.equal(out.count, inside.long())
    assert float(out.depth[5, 10]) == pytest.approx(2.0) and torch.isinf(out.depth[0, 0])


def test_points_composite_front_to_back_whatever_their_order() -> None:
    # three points near pixel (8, 6) at depths 3 (front), 5, 9 (back); K = 2 keeps the front two
    spots = [(8.2, 6.0, 5.0), (8.0, 6.1, 3.0), (7.9, 6.0, 9.0)]
    feats = torch.tensor([[0.0, 1.0], [1.0, 0.0], [5.0, 5.0]], dtype=F64)
    points = torch.tensor([_at_pixel(*s) for s in spots], dtype=F64)
    r = 1.0
    alpha = {d: 1.0 - ((8 - u) ** 2 + (6 - v) ** 2) / r**2 for u, v, d in spots}
    for order in ([0, 1, 2], [2, 1, 0], [1, 2, 0]):
        out = soft_splat(points[order], feats[order], None, EYE, K, (H, W), r, points_per_pixel=2)
        front, back = alpha[3.0], alpha[5.0]
        want = front * feats[1] + back * (1 - front) * feats[0]  # the point at depth 9 is cut
        torch.testing.assert_close(out.features[6, 8], want)
        assert float(out.alpha[6, 8]) == pytest.approx(1 - (1 - front) * (1 - back))
        assert int(out.count[6, 8]) == 2 and float(out.depth[6, 8]) == pytest.approx(3.0)
    # with every point blended, the one behind adds what the two in front let through
    out = soft_splat(points, feats, None, EYE, K, (H, W), r, points_per_pixel=10)
    assert int(out.count[6, 8]) == 3
    assert float(out.alpha[6, 8]) == pytest.approx(
        1 - (1 - alpha[3.0]) * (1 - alpha[5.0]) * (1 - alpha[9.0])
    )


def test_invalid_behind_and_outside_points_are_not_rendered() -> None:
    points = torch.tensor(
        [_at_pixel(5, 5, 2.0), [0.0, 0.0, -2.0], _at_pixel(5, 5, 1.0), _at_pixel(-9, 4, 2.0)],
        dtype=F64,
    )
    valid = torch.tensor([True, True, False, True])
    out = soft_splat(points, torch.ones(4, 1, dtype=F64), valid, EYE, K, (H, W), 1.0)
    assert int(out.covered.sum()) == 1 and bool(out.covered[5, 5])
    assert float(out.depth[5, 5]) == pytest.approx(2.0)  # the nearer point is masked out
    assert float(out.features[~out.covered].abs().sum()) == 0.0


def test_a_point_map_seen_from_its_own_camera_renders_itself() -> None:
    points, valid = _plane_view(EYE)
    f = _features(points)
    out = soft_splat(points, f, valid, invert_rigid(EYE), K, (H, W))  # default radius: 1 px
    assert bool(out.covered.all())
    torch.testing.assert_close(out.features, f)  # own point at d = 0 (alpha 1) hides the rest
    torch.testing.assert_close(out.alpha, torch.ones(H, W, dtype=F64))


def test_default_radius_is_met3r_in_pixels_floored_at_one() -> None:
    assert default_radius((512, 512)) == pytest.approx(2.56)
    assert default_radius((256, 384)) == pytest.approx(1.28)  # NDC unit = half the short side
    assert default_radius((64, 64)) == 1.0


def test_soft_splat_is_differentiable_in_the_features() -> None:
    points, valid = _plane_view(EYE)
    f = _features(points).requires_grad_(True)
    out = soft_splat(points, f, valid, EYE, K, (H, W), radius=1.7)
    out.features.sum().backward()
    assert f.grad is not None and bool((f.grad > 0).all())


def test_soft_splat_rejects_bad_arguments() -> None:
    points, valid = _plane_view(EYE)
    f = _features(points)
    with pytest.raises(ValueError, match="radius"):
        soft_splat(points, f, valid, EYE, K, (H, W), radius=0.0)
    with pytest.raises(ValueError, match="points_per_pixel"):
        soft_splat(points, f, valid, EYE, K, (H, W), points_per_pixel=0)
    with pytest.raises(ValueError, match="features"):
        soft_splat(points, f[:-1], valid, EYE, K, (H, W))
    with pytest.raises(ValueError, match="valid"):
        soft_splat(points, f, valid.float(), EYE, K, (H, W))


def test_pair_score_is_zero_for_the_same_view_and_rises_with_foreign_features() -> None:
    cam_2 = make_rigid(
        axis_angle_to_rotation(torch.tensor([0.0, 0.05, 0.0], dtype=F64)),
        torch.tensor([0.3, 0.0, 0.0], dtype=F64),
    )
    p1, v1 = _plane_view(EYE)
    p2, v2 = _plane_view(cam_2)
    f1, f2 = _features(p1), _features(p2)
    same = pair_consistency(f1, f1, p1, p1, v1, v1, EYE, K)
    assert same.flag is None and same.score is not None and same.score < 1e-12
    assert same.overlap == 1.0 == same.coverage_1 == same.coverage_2
    moved = pair_consistency(f1, f2, p1, p2, v1, v2, EYE, K)
    assert moved.score is not None and moved.score < 0.01 and 0.5 < moved.overlap < 1.0
    noise = torch.randn(H, W, 3, generator=torch.Generator().manual_seed(0), dtype=F64)
    scores = []
    for share in (0.0, 0.25, 0.5, 1.0):  # a growing band of foreign features
        mixed = f2.clone()
        band = int(share * W)
        mixed[:, :band] = noise[:, :band]
        result = pair_consistency(f1, mixed, p1, p2, v1, v2, EYE, K)
        assert result.score is not None
        scores.append(result.score)
    assert scores == sorted(scores) and scores[-1] > 0.5
    opposite = pair_consistency(f1, -f1, p1, p1, v1, v1, EYE, K)
    assert opposite.score == pytest.approx(2.0)
    assert consistency_3d(f1, f1, p1, p1, v1, v1, EYE, K, renderer="soft") < 1e-12


def test_pairs_sharing_no_view_are_flagged_never_a_silent_zero() -> None:
    points, valid = _plane_view(EYE)
    f = _features(points)
    turned = make_rigid(
        axis_angle_to_rotation(torch.tensor([0.0, torch.pi, 0.0], dtype=F64)),
        torch.zeros(3, dtype=F64),
    )
    behind = points @ turned[:3, :3].T  # the plane behind camera 1
    result = pair_consistency(f, f, points, behind, valid, valid, EYE, K)
    assert result.score is None and result.flag == "no shared view" and result.overlap == 0.0
    assert result.coverage_1 == 1.0 and result.coverage_2 == 0.0
    # a sliver of overlap below min_overlap is flagged too
    sliver = valid.clone()
    sliver[:, 1:] = False
    small = pair_consistency(f, f, points, points, valid, sliver, EYE, K, min_overlap=0.2)
    assert small.score is None and 0 < small.overlap < 0.2
    ok = PairConsistency(0.1, 0.5, 1.0, 0.5)
    assert video_score([ok, result, PairConsistency(0.3, 0.5, 1.0, 0.5)]) == pytest.approx(0.2)
    assert video_score([result, small]) is None


def test_unknown_renderer_is_refused() -> None:
    points, valid = _plane_view(EYE)
    f = _features(points)
    with pytest.raises(ValueError, match="renderer"):
        consistency_3d(f, f, points, points, valid, valid, EYE, K, renderer="pytorch3d")
