"""The Python side of the interactive report view: payload, subsampling, frusta, page size."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from vfm3d.report import html as report_html
from vfm3d.report import viewer
from vfm3d.report.export.cameras import write_cameras_json
from vfm3d.report.scene import SceneView


def _look_at(center: np.ndarray, target: np.ndarray) -> np.ndarray:
    """OpenCV ``cam_to_world`` ``[4, 4]`` at ``center`` looking at ``target`` (world y down)."""
    z = target - center
    z = z / np.linalg.norm(z)
    x = np.cross(np.array([0.0, 1.0, 0.0]), z)
    x = x / np.linalg.norm(x)
    y = np.cross(z, x)
    c2w = np.eye(4)
    c2w[:3, :3] = np.stack([x, y, z], axis=1)
    c2w[:3, 3] = center
    return c2w


def synthetic_scene(
    num_points: int = 4000, frames: int = 3, height: int = 48, width: int = 64, seed: int = 0
) -> SceneView:
    """A coloured sphere (radius 1 at z = 4) seen by ``frames`` cameras on an arc; the
    prediction is the truth plus noise, with slightly perturbed cameras."""
    rng = np.random.default_rng(seed)
    direction = rng.normal(size=(num_points, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    center = np.array([0.0, 0.0, 4.0])
    gt_points = center + direction
    colors = np.round((direction * 0.5 + 0.5) * 255).astype(np.uint8)
    pred_points = gt_points + rng.normal(scale=0.03, size=gt_points.shape)
    k = np.array([[60.0, 0.0, (width - 1) / 2], [0.0, 60.0, (height - 1) / 2], [0.0, 0.0, 1.0]])
    angles = np.linspace(0.0, 0.6, frames)
    gt_c2w = np.stack(
        [_look_at(center + 4 * np.array([-np.sin(a), 0, -np.cos(a)]), center) for a in angles]
    )
    pred_c2w = gt_c2w.copy()
    pred_c2w[:, :3, 3] += rng.normal(scale=0.05, size=(frames, 3))
    v, u = np.mgrid[0:height, 0:width]
    images = np.stack(
        [
            np.stack([u * 255 // width, v * 255 // height, np.full_like(u, 40 * i)], -1)
            for i in range(frames)
        ]
    ).astype(np.uint8)
    gt_depth = np.stack([3.0 + 0.02 * u + 0.5 * i + 0.01 * v for i in range(frames)]).astype(
        np.float32
    )
    valid = np.ones_like(gt_depth, dtype=bool)
    valid[:, :4] = False
    pred_depth = (gt_depth * 1.05 + rng.normal(scale=0.05, size=gt_depth.shape)).astype(np.float32)
    return SceneView(
        title="synthetic sphere",
        images=images,
        intrinsics=np.repeat(k[None], frames, axis=0),
        pred_depth=pred_depth,
        gt_depth=gt_depth,
        valid=valid,
        pred_points=pred_points,
        gt_points=gt_points,
        colors=colors,
        pred_cam_to_world=pred_c2w,
        gt_cam_to_world=gt_c2w,
        aligned=True,
    )


def _payload_of(page: str) -> dict:
    match = re.search(r'<script type="application/json" id=v3d-data>(.*?)</script>', page, re.S)
    assert match, "no JSON payload in the page"
    return json.loads(match.group(1))


def test_payload_decodes_to_the_scene_arrays(tmp_path) -> None:
    scene = synthetic_scene(num_points=500)
    page = report_html.write_report(tmp_path / "r.html", "t", [], [], scene=scene).read_text()
    payload = _payload_of(page)
    assert payload["cap"] == viewer.POINT_CAP and payload["total_points"] == 500
    pred = payload["clouds"]["pred"]
    assert pred["n"] == 500
    pos = viewer.decode_array(pred["positions"], "<f4", (500, 3))
    np.testing.assert_allclose(pos, scene.pred_points, atol=1e-6)
    gt = viewer.decode_array(payload["clouds"]["gt"]["positions"], "<f4", (500, 3))
    np.testing.assert_allclose(gt, scene.gt_points, atol=1e-6)
    cols = viewer.decode_array(pred["colors"], "u1", (500, 3))
    np.testing.assert_array_equal(cols, scene.colors)
    seg = viewer.decode_array(payload["frusta"]["gt"]["segments"], "<f4", (3, 8, 2, 3))
    np.testing.assert_allclose(seg[:, 0, 0], scene.gt_cam_to_world[:, :3, 3], atol=1e-5)
    assert len(payload["frames"]) == 3 and all(f["gt"] and f["pred"] for f in payload["frames"])
    assert "vfm3dViewer" in page and "http://" not in page and "https://" not in page
    assert "cap 20,000" in page


def test_subsampling_respects_the_cap_and_keeps_rows_paired() -> None:
    scene = synthetic_scene(num_points=3000)
    payload = viewer.scene_payload(scene, max_points=700)
    n = payload["clouds"]["pred"]["n"]
    assert n == 700 == payload["clouds"]["gt"]["n"]
    pred = viewer.decode_array(payload["clouds"]["pred"]["positions"], "<f4", (n, 3))
    gt = viewer.decode_array(payload["clouds"]["gt"]["positions"], "<f4", (n, 3))
    # Same rows in both clouds: the residual is the small prediction noise only.
    assert np.abs(pred - gt).max() < 0.3
    idx = viewer.subsample_indices(3000, 700)
    assert idx.size == 700 and np.unique(idx).size == 700 and np.all(np.diff(idx) > 0)
    np.testing.assert_array_equal(viewer.subsample_indices(10, 700), np.arange(10))


def test_non_finite_points_are_dropped() -> None:
    scene = synthetic_scene(num_points=100)
    scene.pred_points[:5] = np.nan
    payload = viewer.scene_payload(scene)
    assert payload["clouds"]["pred"]["n"] == 95 == payload["clouds"]["gt"]["n"]


@pytest.mark.parametrize("depth", [0.3, 2.0])
def test_frustum_base_projects_back_to_the_image_corners(depth: float) -> None:
    scene = synthetic_scene()
    h, w = scene.images.shape[1:3]
    c2w = scene.gt_cam_to_world
    apex, base = viewer.frustum_corners(scene.intrinsics, c2w, w, h, depth)
    np.testing.assert_allclose(apex, c2w[:, :3, 3])
    w2c = np.linalg.inv(c2w)
    cam = np.einsum("sij,scj->sci", w2c[:, :3, :3], base) + w2c[:, None, :3, 3]
    np.testing.assert_allclose(cam[..., 2], depth, atol=1e-9)
    uvw = np.einsum("sij,scj->sci", scene.intrinsics, cam)
    uv = uvw[..., :2] / uvw[..., 2:3]
    expected = np.array([[-0.5, -0.5], [w - 0.5, -0.5], [w - 0.5, h - 0.5], [-0.5, h - 0.5]])
    np.testing.assert_allclose(uv, np.broadcast_to(expected, uv.shape), atol=1e-9)
    seg = viewer.frustum_segments(scene.intrinsics, c2w, w, h, depth)
    assert seg.shape == (3, 8, 2, 3)
    np.testing.assert_allclose(seg[:, 4:, 0], base)  # base edges start at the corners
    np.testing.assert_allclose(seg[:, 4:, 1], np.roll(base, -1, axis=1))


def test_frustum_depth_follows_the_scene_size() -> None:
    scene = synthetic_scene()
    payload = viewer.scene_payload(scene)
    assert payload["frustum_depth"] == pytest.approx(viewer.FRUSTUM_FRACTION * payload["size"])
    assert 2.0 < payload["size"] < 4.0  # the sphere's 2-98 % box diagonal (diameter 2)
    np.testing.assert_allclose(payload["center"], [0, 0, 4], atol=0.1)
    r0 = np.array(payload["initial"]["world_to_cam_rotation"]).reshape(3, 3)
    np.testing.assert_allclose(r0, scene.gt_cam_to_world[0, :3, :3].T, atol=1e-12)


def test_depth_colour_map_and_invalid_pixels() -> None:
    depth = np.array([[0.0, 0.5, 1.0, 7.0]])
    valid = np.array([[True, True, True, False]])
    rgb = viewer.colorize_depth(depth, valid, 0.0, 1.0)
    assert rgb.dtype == np.uint8 and rgb.shape == (1, 4, 3)
    np.testing.assert_array_equal(rgb[0, 0], [48, 18, 59])
    np.testing.assert_array_equal(rgb[0, 2], [250, 230, 35])
    np.testing.assert_array_equal(rgb[0, 3], [60, 60, 60])


def test_report_with_100k_points_stays_small(tmp_path) -> None:
    scene = synthetic_scene(num_points=100_000, frames=8, height=120, width=160)
    page = report_html.write_report(tmp_path / "r.html", "t", [], [], scene=scene)
    size = page.stat().st_size
    assert size < 2_000_000, size
    payload = _payload_of(page.read_text())
    assert payload["clouds"]["pred"]["n"] == viewer.POINT_CAP


def test_page_without_scene_has_no_viewer(tmp_path) -> None:
    page = report_html.write_report(tmp_path / "r.html", "t", [], []).read_text()
    assert "v3d-canvas" not in page


def test_scene_without_truth(tmp_path) -> None:
    full = synthetic_scene(num_points=200)
    scene = SceneView(
        title="pred only",
        images=full.images,
        intrinsics=full.intrinsics,
        pred_depth=full.pred_depth,
        valid=np.ones_like(full.valid),
        pred_points=full.pred_points,
        colors=full.colors,
        pred_cam_to_world=full.pred_cam_to_world,
    )
    page = report_html.write_report(tmp_path / "r.html", "t", [], [], scene=scene).read_text()
    payload = _payload_of(page)
    assert set(payload["clouds"]) == {"pred"} and set(payload["frusta"]) == {"pred"}
    assert payload["frames"][0]["gt"] is None and "id=v3d-gtimg" not in page
    assert "id=v3d-gt " not in page


# ----------------------------------------------------------------------------- vfm3d view
def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _clip_file(tmp_path) -> tuple[object, object]:
    from vfm3d.clip import Clip

    scene = synthetic_scene(num_points=10, frames=3, height=12, width=16)
    clip = Clip(
        frames=scene.images,
        intrinsics=scene.intrinsics.astype(np.float32),
        cam_to_world=scene.gt_cam_to_world.astype(np.float64),
        depth=scene.gt_depth,
        valid=scene.valid,
        meta={"id": "sphere"},
    )
    return clip, clip.save(tmp_path / "sphere.safetensors")


def test_view_loads_a_clip_by_back_projecting_its_depth(tmp_path) -> None:
    from vfm3d.report.view import load_scene

    clip, path = _clip_file(tmp_path)
    scene = load_scene(path)
    ((name, points, colors),) = scene.clouds
    assert name == "clip" and points.shape == (int(clip.valid.sum()), 3)
    assert len(scene.cameras) == 3 and scene.cameras[0].image is not None
    # Each point lies on its pixel's ray at the pixel's depth: reproject through frame 0.
    t, v, u = np.nonzero(clip.valid)
    first = t == 0
    w2c = np.linalg.inv(clip.cam_to_world[0])
    cam = points[first] @ w2c[:3, :3].T + w2c[:3, 3]
    np.testing.assert_allclose(cam[:, 2], clip.depth[0][clip.valid[0]], rtol=1e-5)
    uv = cam @ clip.intrinsics[0].T.astype(np.float64)
    np.testing.assert_allclose(uv[:, 0] / uv[:, 2], u[first], atol=1e-4)
    np.testing.assert_allclose(uv[:, 1] / uv[:, 2], v[first], atol=1e-4)
    np.testing.assert_array_equal(colors, clip.frames[clip.valid])
    assert len(load_scene(path, max_points=50).clouds[0][1]) == 50


def test_view_loads_run_folders_and_ply(tmp_path) -> None:
    from vfm3d.report.pointcloud import write_ply
    from vfm3d.report.view import load_scene

    scene = synthetic_scene(num_points=300)
    sweep = tmp_path / "sweep"
    write_ply(sweep / "example_pred.ply", scene.pred_points, scene.colors)
    write_ply(sweep / "example_gt.ply", scene.gt_points, scene.colors)
    loaded = load_scene(sweep)
    assert [c[0] for c in loaded.clouds] == ["predicted", "true"] and not loaded.cameras
    assert load_scene(sweep / "example_gt.ply").clouds[0][1].shape == (300, 3)

    export = tmp_path / "export"
    write_ply(export / "points.ply", scene.gt_points, scene.colors)
    write_cameras_json(
        export / "cameras.json", scene.intrinsics[:3], scene.gt_cam_to_world[:3], 64, 48
    )
    loaded = load_scene(export)
    assert [c[0] for c in loaded.clouds] == ["points"] and len(loaded.cameras) == 3
    np.testing.assert_allclose(loaded.cameras[2].cam_to_world, scene.gt_cam_to_world[2])
    with pytest.raises(FileNotFoundError):
        load_scene(tmp_path / "missing")
    (tmp_path / "notes.txt").write_text("")
    with pytest.raises(ValueError, match="expected a folder"):
        load_scene(tmp_path / "notes.txt")


def test_vfm3d_view_serves_on_localhost(tmp_path, capsys) -> None:
    import urllib.request

    from vfm3d.cli import build_parser

    _, path = _clip_file(tmp_path)
    port = _free_port()
    args = build_parser("view").parse_args([str(path), "--port", str(port), "--no-block"])
    assert args._main(args) == 0
    server = args.server
    try:
        assert server.get_host() == "127.0.0.1"
        url = f"http://127.0.0.1:{server.get_port()}"
        assert url in capsys.readouterr().out
        assert server.scene.get_handle_by_name("/clouds/clip") is not None
        for t in range(3):
            assert server.scene.get_handle_by_name(f"/cameras/frame_{t:03d}") is not None
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.status == 200
    finally:
        server.stop()
