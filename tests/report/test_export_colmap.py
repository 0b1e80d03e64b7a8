"""COLMAP text export, read back by pycolmap: same K (+0.5 pixel offset), world_to_cam, pixels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vfm3d.geometry import invert_rigid, make_rigid, project, random_rotation, transform_points
from vfm3d.report.export.colmap import (
    COLMAP_PIXEL_OFFSET,
    intrinsics_from_colmap,
    intrinsics_to_colmap,
    write_colmap_text,
)

pycolmap = pytest.importorskip("pycolmap")

WIDTH, HEIGHT = 40, 30


def _scene(n: int = 3, same_k: bool = True) -> tuple[np.ndarray, np.ndarray]:
    generator = torch.Generator().manual_seed(7)
    cam_to_world = make_rigid(
        random_rotation((n,), generator), torch.randn(n, 3, generator=generator).double()
    ).numpy()
    k = np.tile(np.array([[50.0, 0.0, 19.5], [0.0, 52.0, 14.5], [0.0, 0.0, 1.0]]), (n, 1, 1))
    if not same_k:
        k[:, 0, 0] += np.arange(n) * 1.5
        k[:, 1, 2] += np.arange(n) * 0.25
    return k, cam_to_world


def test_pycolmap_reads_same_intrinsics_and_poses(tmp_path) -> None:
    k, cam_to_world = _scene(same_k=False)
    write_colmap_text(tmp_path, k, cam_to_world, WIDTH, HEIGHT)
    reconstruction = pycolmap.Reconstruction(str(tmp_path))
    assert reconstruction.num_images() == 3 and reconstruction.num_cameras() == 3
    world_to_cam = invert_rigid(torch.from_numpy(cam_to_world)).numpy()
    for index in range(3):
        image = reconstruction.images[index + 1]
        assert image.name == f"{index:06d}.png"
        camera = reconstruction.cameras[image.camera_id]
        assert camera.model_name == "PINHOLE"
        assert (camera.width, camera.height) == (WIDTH, HEIGHT)
        expected = k[index].copy()
        expected[:2, 2] += 0.5
        np.testing.assert_allclose(camera.calibration_matrix(), expected, atol=1e-12)
        np.testing.assert_allclose(intrinsics_from_colmap(camera.params), k[index], atol=1e-12)
        np.testing.assert_allclose(
            image.cam_from_world().matrix(), world_to_cam[index, :3], atol=1e-12
        )
        np.testing.assert_allclose(
            image.projection_center(), cam_to_world[index, :3, 3], atol=1e-12
        )


def test_a_point_projects_to_the_same_pixel_plus_half(tmp_path) -> None:
    k, cam_to_world = _scene(same_k=False)
    write_colmap_text(tmp_path, k, cam_to_world, WIDTH, HEIGHT)
    reconstruction = pycolmap.Reconstruction(str(tmp_path))
    for index in range(3):
        # a world point 3 m in front of camera `index`, off-axis
        point_cam = np.array([[0.4, -0.3, 3.0], [-0.2, 0.25, 5.0]])
        point_world = transform_points(
            torch.from_numpy(cam_to_world[index]), torch.from_numpy(point_cam)
        )
        world_to_cam = invert_rigid(torch.from_numpy(cam_to_world[index]))
        uv, z = project(transform_points(world_to_cam, point_world), torch.from_numpy(k[index]))
        assert (z > 0).all()
        image = reconstruction.images[index + 1]
        camera = reconstruction.cameras[image.camera_id]
        in_cam = image.cam_from_world() * point_world.numpy()
        uv_colmap = camera.img_from_cam(in_cam)
        np.testing.assert_allclose(uv_colmap, uv.numpy() + COLMAP_PIXEL_OFFSET, atol=1e-9)
        np.testing.assert_allclose(image.project_point(point_world.numpy()[0]), uv_colmap[0])


def test_pycolmap_default_principal_point_is_the_vfm3d_image_centre() -> None:
    camera = pycolmap.Camera.create_from_model_name(0, "PINHOLE", 100.0, WIDTH, HEIGHT)
    k = intrinsics_from_colmap(camera.params)
    assert k[0, 2] == (WIDTH - 1) / 2 and k[1, 2] == (HEIGHT - 1) / 2
    np.testing.assert_array_equal(intrinsics_to_colmap(k), camera.params)


def test_shared_camera_and_points(tmp_path) -> None:
    k, cam_to_world = _scene(same_k=True)
    rng = np.random.default_rng(0)
    points = rng.normal(size=(50, 3))
    points[4] = np.nan
    colors = rng.integers(0, 256, size=(50, 3), dtype=np.uint8)
    write_colmap_text(tmp_path, k, cam_to_world, WIDTH, HEIGHT, points, colors)
    reconstruction = pycolmap.Reconstruction(str(tmp_path))
    assert reconstruction.num_cameras() == 1
    assert {image.camera_id for image in reconstruction.images.values()} == {1}
    assert reconstruction.num_points3D() == 49
    keep = np.isfinite(points).all(axis=1)
    xyz = np.array([reconstruction.points3D[i].xyz for i in range(1, 50)])
    rgb = np.array([reconstruction.points3D[i].color for i in range(1, 50)])
    np.testing.assert_allclose(xyz, points[keep], atol=0)
    np.testing.assert_array_equal(rgb, colors[keep])
    assert not reconstruction.points3D[1].has_error()
    write_colmap_text(
        tmp_path / "sub", k, cam_to_world, WIDTH, HEIGHT, points, colors, max_points=10
    )
    assert pycolmap.Reconstruction(str(tmp_path / "sub")).num_points3D() == 10


def test_quaternion_line_is_wxyz_of_world_to_cam(tmp_path) -> None:
    k, _ = _scene(1)
    # camera turned 90 degrees about y: world_to_cam rotation is the inverse turn
    cam_to_world = np.eye(4)[None].copy()
    cam_to_world[0, :3, :3] = [[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]]
    cam_to_world[0, :3, 3] = [1.0, 2.0, 3.0]
    write_colmap_text(tmp_path, k[:1], cam_to_world, WIDTH, HEIGHT)
    line = [row for row in (tmp_path / "images.txt").read_text().splitlines() if row[:1] != "#"]
    values = [float(v) for v in line[0].split()[1:8]]
    half = np.sqrt(0.5)
    np.testing.assert_allclose(values[:4], [half, 0.0, -half, 0.0], atol=1e-12)
    np.testing.assert_allclose(values[4:], [3.0, -2.0, -1.0], atol=1e-12)
    assert line[1] == ""


def test_errors(tmp_path) -> None:
    k, cam_to_world = _scene()
    skewed = k.copy()
    skewed[0, 0, 1] = 0.5
    with pytest.raises(ValueError, match="PINHOLE model has no skew"):
        write_colmap_text(tmp_path, skewed, cam_to_world, WIDTH, HEIGHT)
    with pytest.raises(ValueError, match="image_names must have 3 names"):
        write_colmap_text(tmp_path, k, cam_to_world, WIDTH, HEIGHT, image_names=["a.png"])
    with pytest.raises(ValueError, match="no whitespace"):
        write_colmap_text(tmp_path, k, cam_to_world, WIDTH, HEIGHT, image_names=["a b", "c", "d"])
    with pytest.raises(ValueError, match=r"cam_to_world must have shape \[T, 4, 4\] = \[3, 4, 4\]"):
        write_colmap_text(tmp_path, k, cam_to_world[:2], WIDTH, HEIGHT)
    assert not (tmp_path / "cameras.txt").exists()
