"""The world's multi-view geometry is exact: depth + cameras reproject pixels onto the same
surface points, which have the same colour in every view (static pixels only)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from vfm3d.cli import main as vfm3d_main
from vfm3d.clip import Clip, ClipFolder
from vfm3d.world import render_clip

H, W, T = 48, 64, 6
PAIRS = ((0, 1), (1, 0), (0, 2), (2, 4), (3, 5), (5, 3))
CENTRE_TOL_PX = 0.12  # compare only where the reprojection lands this close to a pixel centre
DEPTH_TOL = 0.005  # "visible in j": depth agrees within 0.5%


@dataclass
class Stats:
    """Reprojection statistics of a set of frame pairs (pixels landing near pixel centres)."""

    landed: int  # reprojected in front of camera j, inside the image, among static pixels
    visible: int  # ... and frame j shows the same surface there (depth within 0.5%)
    see_through: int  # ... frame j shows only farther things (or sky) around it: impossible
    color_err: np.ndarray  # [visible, near a pixel centre] max channel |rgb_i - rgb_j|
    depth_rel_err: np.ndarray  # [visible] |z_proj - depth_j| / z_proj (bilinear in 1/depth)


def _unproject(
    depth: np.ndarray, u: np.ndarray, v: np.ndarray, intrinsics: np.ndarray
) -> np.ndarray:
    """Camera points ``[N, 3]`` of pixels ``(u, v)`` with z-depth ``depth`` (OpenCV, K^-1 [u,v,1])."""
    rays = np.linalg.inv(intrinsics.astype(np.float64)) @ np.stack([u, v, np.ones_like(u)])
    return (rays * depth[None, :]).T


def _transform(cam_to_world: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ cam_to_world[:3, :3].T + cam_to_world[:3, 3]


def _world_to_cam(cam_to_world: np.ndarray) -> np.ndarray:
    out = np.eye(4)
    out[:3, :3] = cam_to_world[:3, :3].T
    out[:3, 3] = -cam_to_world[:3, :3].T @ cam_to_world[:3, 3]
    return out


def reprojection_stats(
    clip: Clip,
    pairs: tuple[tuple[int, int], ...] = PAIRS,
    intrinsics_j: np.ndarray | None = None,
    cam_to_world_j: np.ndarray | None = None,
) -> Stats:
    """Unproject static valid pixels of frame i, project into frame j, compare with frame j.

    Depth in frame j is read by bilinear interpolation of inverse depth over the 4 neighbouring
    pixel centres (exact on planes); colour at the nearest pixel when the point lands within
    ``CENTRE_TOL_PX`` of its centre. ``intrinsics_j`` / ``cam_to_world_j`` override the cameras
    of the target frames (to check that the test notices a wrong camera).
    """
    assert clip.depth is not None and clip.valid is not None and clip.dynamic is not None
    landed = visible = see_through = 0
    colors, depths = [], []
    for i, j in pairs:
        sel = clip.valid[i] & ~clip.dynamic[i]
        v, u = np.nonzero(sel)
        d_i = clip.depth[i][v, u].astype(np.float64)
        pts = _unproject(d_i, u.astype(float), v.astype(float), clip.intrinsics[i])
        world = _transform(clip.cam_to_world[i], pts)
        c2w_j = clip.cam_to_world[j] if cam_to_world_j is None else cam_to_world_j[j]
        k_j = clip.intrinsics[j].astype(np.float64) if intrinsics_j is None else intrinsics_j[j]
        cam_j = _transform(_world_to_cam(c2w_j), world)
        front = np.flatnonzero(cam_j[:, 2] > 0.1)
        proj = (k_j @ cam_j[front].T).T
        uj, vj, z = proj[:, 0] / proj[:, 2], proj[:, 1] / proj[:, 2], cam_j[front, 2]
        inside = (uj >= 0) & (uj <= clip.width - 1) & (vj >= 0) & (vj <= clip.height - 1)
        src, uj, vj, z = front[inside], uj[inside], vj[inside], z[inside]
        u0 = np.minimum(np.floor(uj).astype(int), clip.width - 2)
        v0 = np.minimum(np.floor(vj).astype(int), clip.height - 2)
        fu, fv = uj - u0, vj - v0
        inv_interp = np.zeros_like(z)
        all_valid = np.ones(len(z), dtype=bool)
        any_dynamic = np.zeros(len(z), dtype=bool)
        all_far = np.ones(len(z), dtype=bool)
        for du, dv, w in (
            (0, 0, (1 - fu) * (1 - fv)),
            (1, 0, fu * (1 - fv)),
            (0, 1, (1 - fu) * fv),
            (1, 1, fu * fv),
        ):
            d = clip.depth[j][v0 + dv, u0 + du].astype(np.float64)
            ok = clip.valid[j][v0 + dv, u0 + du]
            all_valid &= ok
            any_dynamic |= clip.dynamic[j][v0 + dv, u0 + du]
            all_far &= ~ok | (d > z * (1 + DEPTH_TOL))
            inv_interp += w * np.where(ok, 1.0 / np.maximum(d, 1e-9), 0.0)
        static = ~any_dynamic
        z_interp = 1.0 / np.maximum(inv_interp, 1e-12)
        vis = static & all_valid & (np.abs(z_interp - z) <= DEPTH_TOL * z)
        landed += int(static.sum())
        visible += int(vis.sum())
        see_through += int(np.sum(static & all_far))
        depths.append((np.abs(z_interp - z) / z)[vis])
        ur, vr = np.round(uj).astype(int), np.round(vj).astype(int)
        centred = vis & (np.abs(uj - ur) <= CENTRE_TOL_PX) & (np.abs(vj - vr) <= CENTRE_TOL_PX)
        rgb_i = clip.frames[i][v[src[centred]], u[src[centred]]].astype(int)
        rgb_j = clip.frames[j][vr[centred], ur[centred]].astype(int)
        colors.append(np.abs(rgb_i - rgb_j).max(axis=1))
    return Stats(landed, visible, see_through, np.concatenate(colors), np.concatenate(depths))


def assert_exact(stats: Stats) -> None:
    """The exactness property (thresholds leave room for sub-pixel sampling only)."""
    assert stats.landed >= 40, f"too few reprojected pixels to test ({stats.landed})"
    assert stats.visible >= max(100, 0.15 * stats.landed), (stats.visible, stats.landed)
    # a static surface point cannot be seen through in another view (slack: silhouettes)
    assert stats.see_through <= 0.01 * stats.landed, (stats.see_through, stats.landed)
    # projected depth equals the depth map: bilinear interpolation of inverse depth is exact on
    # planes (median ~1e-7 there); curved surfaces seen up close leave up to ~1e-4
    assert np.median(stats.depth_rel_err) <= 3e-4, np.median(stats.depth_rel_err)
    # Lambertian: same colour; slack for the <= 0.12 px sampling offset on textured surfaces
    # (far, finely textured surfaces alias at these small test resolutions)
    assert len(stats.color_err) >= 50, len(stats.color_err)
    assert np.median(stats.color_err) <= 4, np.median(stats.color_err)
    assert np.mean(stats.color_err <= 12) >= 0.8, np.mean(stats.color_err <= 12)


@pytest.mark.parametrize("kind", ["object", "scene", "dynamic"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_reprojection_is_exact(kind: str, seed: int) -> None:
    clip = render_clip(kind, seed, T, H, W)
    assert_exact(reprojection_stats(clip))


def test_reprojection_detects_wrong_cameras() -> None:
    """The property has power: half a pixel of principal-point error or a small rotation of the
    target camera breaks it (so passing above means the geometry is exact)."""
    clip = render_clip("object", 3, T, H, W)
    good = reprojection_stats(clip)
    assert_exact(good)
    shifted = clip.intrinsics.astype(np.float64).copy()
    shifted[:, 0, 2] += 0.5
    shifted[:, 1, 2] += 0.5
    bad_k = reprojection_stats(clip, intrinsics_j=shifted)
    angle = np.radians(1.0)
    tilt = np.eye(4)
    tilt[:3, :3] = [
        [1, 0, 0],
        [0, np.cos(angle), -np.sin(angle)],
        [0, np.sin(angle), np.cos(angle)],
    ]
    bad_r = reprojection_stats(clip, cam_to_world_j=clip.cam_to_world @ tilt)
    for bad in (bad_k, bad_r):
        assert bad.visible < 0.5 * good.visible, (bad.visible, good.visible)
        with pytest.raises(AssertionError):
            assert_exact(bad)


def _consistent_fraction(
    clip: Clip, masks: np.ndarray, pairs: tuple[tuple[int, int], ...] = PAIRS
) -> tuple[int, int]:
    """(consistent, total) over pixels ``masks[i]`` of frame i reprojected (static assumption)
    into frame j for ``pairs``: consistent = frame j shows a surface at that depth."""
    consistent = total = 0
    for i, j in pairs:
        v, u = np.nonzero(masks[i])
        pts = _unproject(
            clip.depth[i][v, u].astype(np.float64),
            u.astype(float),
            v.astype(float),
            clip.intrinsics[i],
        )
        cam = _transform(_world_to_cam(clip.cam_to_world[j]), _transform(clip.cam_to_world[i], pts))
        cam = cam[cam[:, 2] > 0.1]
        proj = (clip.intrinsics[j].astype(np.float64) @ cam.T).T
        uj, vj = (
            np.round(proj[:, 0] / proj[:, 2]).astype(int),
            np.round(proj[:, 1] / proj[:, 2]).astype(int),
        )
        inside = (uj >= 0) & (uj < clip.width) & (vj >= 0) & (vj < clip.height)
        z, uj, vj = cam[inside, 2], uj[inside], vj[inside]
        same = clip.valid[j][vj, uj] & (np.abs(clip.depth[j][vj, uj] - z) < 0.01 * z)
        consistent += int(same.sum())
        total += len(z)
    return consistent, total


def test_dynamic_mask_marks_moving_pixels() -> None:
    """Every dynamic clip has moving pixels; they (and only they) break the static reprojection.

    Movers move at per-frame rates (1-5 cm per frame), so the pairs are 10 frames apart."""
    dyn = [0, 0]
    static = [0, 0]
    frames, pairs = 21, ((0, 10), (10, 20), (20, 10), (5, 15))
    for seed in range(6):
        clip = render_clip("dynamic", seed, frames, H, W)
        assert clip.dynamic is not None and clip.valid is not None
        assert clip.dynamic.any(), seed
        assert not np.any(clip.dynamic & ~clip.valid)
        for acc, mask in ((dyn, clip.dynamic), (static, clip.valid & ~clip.dynamic)):
            c, n = _consistent_fraction(clip, mask, pairs)
            acc[0] += c
            acc[1] += n
        for obj in (o for o in clip.meta["objects"] if o["dynamic"]):
            centers = np.asarray(obj["centers"])
            assert centers.shape == (frames, 3)
            # movers move at a per-frame rate (>= 4 mm per frame: 1.0 m per 80 frames x 0.35)
            assert np.linalg.norm(centers[-1] - centers[0]) / (frames - 1) > 0.004
    assert dyn[1] > 100 and static[1] > 1000
    assert dyn[0] / dyn[1] < 0.2 < 0.4 < static[0] / static[1], (dyn, static)


def test_reprojection_on_cli_clips(tmp_path) -> None:
    out = tmp_path / "world"
    for kind in ("object", "scene", "dynamic"):
        rc = vfm3d_main(
            ["world", "--out", str(out / kind), "--kind", kind, "--clips", "2", "--frames", str(T),
             "--height", str(H), "--width", str(W), "--seed", "5"]
        )  # fmt: skip
        assert rc == 0
        folder = ClipFolder(out / kind)
        assert len(folder) == 2
        for clip in folder:
            assert clip.meta["kind"] == kind
            assert_exact(reprojection_stats(clip))
