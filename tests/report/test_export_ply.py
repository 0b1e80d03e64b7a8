"""PLY export: layout, confidence round trip, non-finite points dropped, the old import path."""

from __future__ import annotations

import numpy as np
import pytest

from vfm3d.report import pointcloud
from vfm3d.report.export import ply
from vfm3d.report.export.ply import read_ply, read_point_cloud, write_ply


def _cloud(n: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    pts = rng.normal(size=(n, 3)).astype(np.float32)
    cols = rng.integers(0, 256, size=(n, 3), dtype=np.uint8)
    conf = rng.uniform(1.0, 5.0, size=n).astype(np.float32)
    return pts, cols, conf


def test_confidence_round_trip_and_header(tmp_path) -> None:
    pts, cols, conf = _cloud()
    path = write_ply(tmp_path / "c.ply", pts, cols, confidence=conf)
    header = path.read_bytes().split(b"end_header\n")[0].decode("ascii")
    assert "format binary_little_endian 1.0" in header
    assert "element vertex 40" in header
    assert header.index("property float z") < header.index("property uchar red")
    assert "property float confidence" in header
    assert path.stat().st_size == len(header) + len("end_header\n") + 40 * 19
    cloud = read_point_cloud(path)
    np.testing.assert_array_equal(cloud.points, pts)
    np.testing.assert_array_equal(cloud.colors, cols)
    assert cloud.confidence is not None
    np.testing.assert_array_equal(cloud.confidence, conf)


def test_non_finite_points_dropped_with_their_colour_and_confidence(tmp_path) -> None:
    pts, cols, conf = _cloud()
    pts[3, 1] = np.nan
    pts[7, 2] = np.inf
    write_ply(tmp_path / "p.ply", pts, cols, confidence=conf)
    cloud = read_point_cloud(tmp_path / "p.ply")
    keep = np.isfinite(pts).all(axis=1)
    assert cloud.points.shape == (38, 3)
    np.testing.assert_array_equal(cloud.points, pts[keep])
    np.testing.assert_array_equal(cloud.colors, cols[keep])
    np.testing.assert_array_equal(cloud.confidence, conf[keep])


def test_without_confidence_and_float_colours(tmp_path) -> None:
    pts, cols, _ = _cloud()
    write_ply(tmp_path / "f.ply", pts.reshape(4, 10, 3), cols.astype(np.float64) / 255.0)
    cloud = read_point_cloud(tmp_path / "f.ply")
    assert cloud.confidence is None
    np.testing.assert_array_equal(cloud.colors, cols)
    p2, c2 = read_ply(tmp_path / "f.ply")
    np.testing.assert_array_equal(c2, cols)
    np.testing.assert_array_equal(p2, pts)
    write_ply(tmp_path / "g.ply", pts)
    assert (read_ply(tmp_path / "g.ply")[1] == 200).all()


def test_trimesh_reads_it(tmp_path) -> None:
    trimesh = pytest.importorskip("trimesh")
    pts, cols, conf = _cloud()
    write_ply(tmp_path / "t.ply", pts, cols, confidence=conf)
    loaded = trimesh.load(tmp_path / "t.ply")
    np.testing.assert_allclose(loaded.vertices, pts, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(loaded.colors)[:, :3], cols)


def test_bad_input_and_bad_files(tmp_path) -> None:
    pts, cols, conf = _cloud()
    with pytest.raises(ValueError, match=r"colors must have shape \[N, 3\]"):
        write_ply(tmp_path / "x.ply", pts, cols[:5])
    with pytest.raises(ValueError, match=r"confidence must have shape \[N\]"):
        write_ply(tmp_path / "x.ply", pts, cols, confidence=conf[:5])
    with pytest.raises(ValueError, match=r"points must have shape \[N, 3\]"):
        write_ply(tmp_path / "x.ply", pts[:, :2])
    assert not (tmp_path / "x.ply").exists()
    path = write_ply(tmp_path / "ok.ply", pts, cols)
    (tmp_path / "cut.ply").write_bytes(path.read_bytes()[:-7])
    with pytest.raises(ValueError, match="truncated"):
        read_point_cloud(tmp_path / "cut.ply")
    (tmp_path / "no.ply").write_bytes(b"hello")
    with pytest.raises(ValueError, match="not a PLY"):
        read_point_cloud(tmp_path / "no.ply")
    assert list(tmp_path.glob(".*.tmp")) == []


def test_pointcloud_module_re_exports() -> None:
    assert pointcloud.write_ply is ply.write_ply
    assert pointcloud.read_ply is ply.read_ply
