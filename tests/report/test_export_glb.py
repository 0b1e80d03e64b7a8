"""GLB export read back by trimesh: same points and colours, one frustum per camera, the axes."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from vfm3d.geometry import invert_rigid, make_rigid, project, random_rotation, transform_points
from vfm3d.report.export.glb import (
    OPENCV_TO_GLTF,
    ROOT_NODE,
    frustum_node_name,
    frustum_vertices,
    write_glb,
)

trimesh = pytest.importorskip("trimesh")

WIDTH, HEIGHT = 32, 24


def _scene(n: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    generator = torch.Generator().manual_seed(5)
    cam_to_world = make_rigid(
        random_rotation((n,), generator), torch.randn(n, 3, generator=generator).double()
    ).numpy()
    k = np.tile(np.array([[40.0, 0.0, 15.5], [0.0, 42.0, 11.5], [0.0, 0.0, 1.0]]), (n, 1, 1))
    rng = np.random.default_rng(1)
    points = rng.normal(size=(200, 3)).astype(np.float32)
    colors = rng.integers(0, 256, size=(200, 3), dtype=np.uint8)
    return points, colors, k, cam_to_world


def _write(tmp_path, y_up: bool = True):
    points, colors, k, cam_to_world = _scene()
    path = write_glb(
        tmp_path / "scene.glb",
        points,
        colors,
        cam_to_world=cam_to_world,
        intrinsics=k,
        image_size=(WIDTH, HEIGHT),
        frustum_depth=0.5,
        y_up=y_up,
    )
    return trimesh.load(path), points, colors, k, cam_to_world


def test_trimesh_reads_same_points_colours_and_frusta(tmp_path) -> None:
    scene, points, colors, k, cam_to_world = _write(tmp_path)
    cloud = scene.geometry["points"]
    assert isinstance(cloud, trimesh.PointCloud)
    np.testing.assert_array_equal(np.asarray(cloud.vertices, dtype=np.float32), points)
    np.testing.assert_array_equal(np.asarray(cloud.colors)[:, :3], colors)
    frusta = [name for name in scene.geometry if name.startswith("frustum_")]
    assert sorted(frusta) == [frustum_node_name(i) for i in range(3)]
    expected = frustum_vertices(k, cam_to_world, WIDTH, HEIGHT, 0.5)
    for index in range(3):
        path = scene.geometry[frustum_node_name(index)]
        vertices = np.unique(np.round(np.asarray(path.vertices), 5), axis=0)
        np.testing.assert_allclose(vertices, np.unique(np.round(expected[index], 5), axis=0))
        # the apex is the camera centre
        assert (
            np.abs(np.asarray(path.vertices) - cam_to_world[index, :3, 3]).sum(axis=1).min() < 1e-5
        )


def test_axes_root_node_maps_opencv_to_gltf(tmp_path) -> None:
    scene, points, *_ = _write(tmp_path)
    for node in ["points", frustum_node_name(0)]:
        transform, _ = scene.graph[node]
        np.testing.assert_array_equal(transform, OPENCV_TO_GLTF)
    assert ROOT_NODE in scene.graph.nodes
    flat = scene.dump(concatenate=False)
    cloud = next(g for g in flat if isinstance(g, trimesh.PointCloud))
    np.testing.assert_allclose(cloud.vertices, points * [1.0, -1.0, -1.0], atol=1e-6)
    plain, *_ = _write(tmp_path, y_up=False)
    np.testing.assert_array_equal(plain.graph["points"][0], np.eye(4))


def test_frustum_corners_project_to_the_image_corners() -> None:
    _, _, k, cam_to_world = _scene()
    vertices = frustum_vertices(k, cam_to_world, WIDTH, HEIGHT, 2.0)
    world_to_cam = invert_rigid(torch.from_numpy(cam_to_world))
    cam = transform_points(world_to_cam, torch.from_numpy(vertices))
    np.testing.assert_allclose(cam[:, 0].numpy(), 0.0, atol=1e-12)
    uv, z = project(cam[:, 1:], torch.from_numpy(k))
    np.testing.assert_allclose(z.numpy(), 2.0, atol=1e-12)
    corners = [[-0.5, -0.5], [WIDTH - 0.5, -0.5], [WIDTH - 0.5, HEIGHT - 0.5], [-0.5, HEIGHT - 0.5]]
    np.testing.assert_allclose(uv.numpy(), np.broadcast_to(corners, (3, 4, 2)), atol=1e-9)


def test_points_only_and_non_finite_dropped(tmp_path) -> None:
    points, colors, _, _ = _scene()
    points[0] = np.nan
    scene = trimesh.load(write_glb(tmp_path / "p.glb", points, colors))
    assert list(scene.geometry) == ["points"]
    assert len(scene.geometry["points"].vertices) == 199


def test_errors_and_missing_trimesh(tmp_path, monkeypatch) -> None:
    points, colors, k, cam_to_world = _scene()
    with pytest.raises(ValueError, match="frusta need all of"):
        write_glb(tmp_path / "x.glb", points, colors, cam_to_world=cam_to_world)
    with pytest.raises(ValueError, match="frustum_depth must be"):
        frustum_vertices(k, cam_to_world, WIDTH, HEIGHT, -1.0)
    monkeypatch.setitem(sys.modules, "trimesh", None)
    with pytest.raises(ImportError, match=r"pip install vfm3d\[export\]"):
        write_glb(tmp_path / "x.glb", points, colors)
    assert not (tmp_path / "x.glb").exists()
