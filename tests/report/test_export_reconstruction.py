"""`export_reconstruction` end to end on a known scene: a camera orbit looking at a plane."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from evo.tools import file_interface

from vfm3d.geometry import invert_rigid, project, transform_points
from vfm3d.report.export import (
    export_reconstruction,
    read_cameras_json,
    read_depth_png,
    read_depth_safetensors,
    read_point_cloud,
    read_trajectory_tum,
)

T, H, W = 4, 12, 16
PLANE_Z = 5.0  # the plane z = 5 in the world (= frame 0's camera)


def _look_at(centre: np.ndarray, target: np.ndarray) -> np.ndarray:
    """OpenCV cam_to_world at `centre` looking at `target`, image rows along world +y (down)."""
    z = (target - centre) / np.linalg.norm(target - centre)
    x = np.cross([0.0, 1.0, 0.0], z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    pose = np.eye(4)
    pose[:3, :3] = np.stack([x, y, z], axis=1)
    pose[:3, 3] = centre
    return pose


def orbit_scene() -> dict[str, np.ndarray]:
    """T frames orbiting (radius 5, 0..15 degrees about y) the point (0, 0, 5) on the plane z = 5."""
    angles = np.deg2rad(np.linspace(0.0, 15.0, T))
    target = np.array([0.0, 0.0, PLANE_Z])
    centres = np.stack([5 * np.sin(angles), 0 * angles, PLANE_Z - 5 * np.cos(angles)], axis=1)
    cam_to_world = np.stack([_look_at(c, target) for c in centres])
    k = np.array([[14.0, 0.0, (W - 1) / 2], [0.0, 14.0, (H - 1) / 2], [0.0, 0.0, 1.0]])
    intrinsics = np.tile(k, (T, 1, 1)).astype(np.float32)
    v, u = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
    rays = np.stack([(u - k[0, 2]) / k[0, 0], (v - k[1, 2]) / k[1, 1], np.ones_like(u)], -1)
    world_rays = np.einsum("tij,hwj->thwi", cam_to_world[:, :3, :3], rays)
    depth = ((PLANE_Z - centres[:, 2, None, None]) / world_rays[..., 2]).astype(np.float32)
    valid = np.ones_like(depth, dtype=bool)
    valid[:, 0, 0] = False  # one invalid pixel per frame
    depth[~valid] = np.nan
    frames = np.zeros((T, H, W, 3), dtype=np.uint8)
    frames[..., 0] = (u * 16)[None]
    frames[..., 1] = (v * 20)[None]
    frames[..., 2] = (np.arange(T) * 60)[:, None, None]
    conf = np.linspace(1.0, 3.0, T * H * W, dtype=np.float32).reshape(T, H, W)
    return {
        "frames": frames,
        "depth": depth,
        "intrinsics": intrinsics,
        "cam_to_world": cam_to_world,
        "valid": valid,
        "conf": conf,
    }


def test_writes_every_file_and_they_read_back(tmp_path) -> None:
    scene = orbit_scene()
    written = export_reconstruction(tmp_path / "out", **scene, fps=25.0)
    out = tmp_path / "out"
    assert set(written) == {
        "points.ply",
        "scene.glb",
        "colmap",
        "trajectory_tum.txt",
        "depth",
        "depth.safetensors",
        "cameras.json",
    }
    for name in ["points.ply", "scene.glb", "trajectory_tum.txt", "depth.safetensors"]:
        assert (out / name).is_file() and (out / name).stat().st_size > 0
    for name in ["cameras.txt", "images.txt", "points3D.txt"]:
        assert (out / "colmap" / name).is_file()
    assert sorted(p.name for p in (out / "depth").iterdir()) == [
        *(f"{i:06d}.png" for i in range(T)),
        "depth_scale.json",
    ]
    assert not list(out.rglob("*.tmp"))

    valid = scene["valid"]
    # the point cloud: every valid pixel, on the plane, with its pixel's colour and confidence
    cloud = read_point_cloud(out / "points.ply")
    assert cloud.points.shape == (int(valid.sum()), 3)
    np.testing.assert_allclose(cloud.points[:, 2], PLANE_Z, atol=1e-4)
    np.testing.assert_array_equal(cloud.colors, scene["frames"][valid])
    np.testing.assert_array_equal(cloud.confidence, scene["conf"][valid])
    # trajectory through evo, cameras.json, depth
    trajectory = file_interface.read_tum_trajectory_file(str(out / "trajectory_tum.txt"))
    np.testing.assert_allclose(trajectory.positions_xyz, scene["cam_to_world"][:, :3, 3])
    np.testing.assert_allclose(trajectory.timestamps, np.arange(T) / 25.0)
    cameras = read_cameras_json(out / "cameras.json")
    np.testing.assert_allclose(cameras.cam_to_world, scene["cam_to_world"], atol=0)
    np.testing.assert_allclose(cameras.intrinsics, scene["intrinsics"], atol=0)
    assert (cameras.widths == W).all() and (cameras.heights == H).all()
    depth, depth_valid = read_depth_png(out / "depth")
    scale = json.loads((out / "depth" / "depth_scale.json").read_text())["metres_per_unit"]
    np.testing.assert_array_equal(depth_valid, valid)
    assert np.abs(depth[valid] - scene["depth"][valid]).max() <= scale / 2 + 1e-5
    depth_f, valid_f = read_depth_safetensors(out / "depth.safetensors")
    np.testing.assert_array_equal(depth_f[valid], scene["depth"][valid])
    np.testing.assert_array_equal(valid_f, valid)
    stamps, poses = read_trajectory_tum(out / "trajectory_tum.txt")
    np.testing.assert_allclose(stamps, np.arange(T) / 25.0)
    np.testing.assert_allclose(poses, scene["cam_to_world"], atol=1e-12)


def test_colmap_and_glb_agree_with_the_scene(tmp_path) -> None:
    pycolmap = pytest.importorskip("pycolmap")
    trimesh = pytest.importorskip("trimesh")
    scene = orbit_scene()
    export_reconstruction(tmp_path, **scene, max_points=100)
    reconstruction = pycolmap.Reconstruction(str(tmp_path / "colmap"))
    assert reconstruction.num_images() == T and reconstruction.num_cameras() == 1
    assert reconstruction.num_points3D() == 100
    # each COLMAP point projects into frame 2 where vfm3d projects it, + 0.5
    xyz = np.array([p.xyz for p in reconstruction.points3D.values()])
    image = reconstruction.images[3]
    uv_colmap = reconstruction.cameras[image.camera_id].img_from_cam(image.cam_from_world() * xyz)
    world_to_cam = invert_rigid(torch.from_numpy(scene["cam_to_world"][2]))
    uv, _ = project(
        transform_points(world_to_cam, torch.from_numpy(xyz)),
        torch.from_numpy(scene["intrinsics"][2].astype(np.float64)),
    )
    np.testing.assert_allclose(uv_colmap, uv.numpy() + 0.5, atol=1e-6)
    glb = trimesh.load(tmp_path / "scene.glb")
    assert len(glb.geometry["points"].vertices) == 100
    assert sum(name.startswith("frustum_") for name in glb.geometry) == T
    np.testing.assert_allclose(
        np.asarray(glb.geometry["points"].vertices)[:, 2], PLANE_Z, atol=1e-4
    )


def test_points_given_default_valid_and_no_glb(tmp_path) -> None:
    scene = orbit_scene()
    points = np.zeros((T, H, W, 3))
    points[..., 2] = 7.0
    points[0, 1, 1] = np.nan  # invalid by the default rule
    written = export_reconstruction(
        tmp_path,
        scene["frames"],
        scene["depth"],
        torch.from_numpy(scene["intrinsics"]),
        scene["cam_to_world"],
        points=points,
        glb=False,
    )
    assert "scene.glb" not in written and not (tmp_path / "scene.glb").exists()
    cloud = read_point_cloud(tmp_path / "points.ply")
    assert cloud.confidence is None
    assert cloud.points.shape[0] == T * H * W - T - 1  # NaN depth pixels and the NaN point
    assert (cloud.points[:, 2] == 7.0).all()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s.update(frames=s["frames"].astype(np.float32)), "frames must be uint8"),
        (lambda s: s.update(frames=s["frames"][..., :2]), r"frames must have shape \[T, H, W, 3\]"),
        (
            lambda s: s.update(depth=s["depth"][:, :5]),
            r"depth must have shape \[T, H, W\] = \[4, 12, 16\]",
        ),
        (
            lambda s: s.update(intrinsics=s["intrinsics"][:2]),
            r"intrinsics must have shape \[T, 3, 3\]",
        ),
        (lambda s: s["intrinsics"].__setitem__((1, 0, 0), np.nan), "intrinsics must be finite"),
        (lambda s: s["intrinsics"].__setitem__((1, 0, 0), -3.0), "focal lengths"),
        (lambda s: s["cam_to_world"].__setitem__((0, 3, 3), 2.0), "bottom row"),
        (lambda s: s["cam_to_world"].__setitem__((2, 0, 0), 1.5), "must be a rotation"),
        (
            lambda s: s["depth"].__setitem__((0, 3, 3), np.nan),
            "depth must be finite at valid pixels",
        ),
        (lambda s: s.update(valid=s["valid"].astype(np.uint8)), "valid must be a bool array"),
        (lambda s: s.update(conf=s["conf"][0]), r"conf must have shape \[T, H, W\]"),
        (lambda s: s["conf"].__setitem__((1, 2, 2), np.inf), "conf must be finite at valid pixels"),
        (
            lambda s: s.update(points=np.zeros((T, H, W, 2))),
            r"points must have shape \[T, H, W, 3\]",
        ),
        (lambda s: s.update(timestamps=np.zeros(T + 1)), r"timestamps must have shape \[T\]"),
    ],
)
def test_bad_input_names_the_argument_and_rule(tmp_path, change, message) -> None:
    scene = orbit_scene()
    change(scene)
    with pytest.raises(ValueError, match=message):
        export_reconstruction(tmp_path / "out", **scene)
    assert not (tmp_path / "out").exists()


def test_missing_trimesh_fails_before_writing(tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "trimesh", None)
    with pytest.raises(ImportError, match=r"pip install vfm3d\[export\]"):
        export_reconstruction(tmp_path / "out", **orbit_scene())
    assert not (tmp_path / "out").exists()
    written = export_reconstruction(tmp_path / "out", **orbit_scene(), glb=False)
    assert "points.ply" in written
