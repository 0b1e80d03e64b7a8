"""Report outputs: tables pick the right best values, PLY round-trips, figures and HTML are written."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest

from vfm3d.report import html as report_html
from vfm3d.report import plots
from vfm3d.report.pointcloud import read_ply, write_ply
from vfm3d.report.tables import lower_is_better, to_csv, to_markdown

ROWS = [
    {
        "backbone": "a",
        "layer": 0,
        "timestep": None,
        "split": "object",
        "point_err": 0.5,
        "auc@5": 0.1,
    },
    {
        "backbone": "a",
        "layer": 1,
        "timestep": None,
        "split": "object",
        "point_err": 0.3,
        "auc@5": 0.4,
    },
    {
        "backbone": "b",
        "layer": 0,
        "timestep": 250,
        "split": "object",
        "point_err": 0.4,
        "auc@5": 0.2,
    },
    {
        "backbone": "b",
        "layer": 1,
        "timestep": 250,
        "split": "object",
        "point_err": 0.6,
        "auc@5": 0.3,
    },
    {
        "backbone": "b",
        "layer": 0,
        "timestep": 749,
        "split": "object",
        "point_err": 0.7,
        "auc@5": 0.0,
    },
    {
        "backbone": "b",
        "layer": 1,
        "timestep": 749,
        "split": "object",
        "point_err": 0.9,
        "auc@5": 0.05,
    },
]


def test_direction_of_metrics() -> None:
    assert lower_is_better("point_err") and lower_is_better("abs_rel")
    assert not lower_is_better("auc@30") and not lower_is_better("delta1")


def test_markdown_bolds_the_best_in_each_direction() -> None:
    text = to_markdown(ROWS, metrics=("point_err", "auc@5"))
    lines = text.strip().splitlines()
    assert lines[0].startswith("| backbone | layer | timestep | split | point_err | auc@5")
    bold = [ln for ln in lines if "**" in ln]
    # lowest point_err (0.3) and highest auc@5 (0.4) are both on layer 1 of backbone a
    assert len(bold) == 1 and "**0.3000**" in bold[0] and "**0.4000**" in bold[0]


def test_csv_round_trip(tmp_path) -> None:
    to_csv(ROWS, tmp_path / "r.csv")
    back = list(csv.DictReader(io.StringIO((tmp_path / "r.csv").read_text())))
    assert len(back) == len(ROWS)
    assert float(back[1]["point_err"]) == pytest.approx(0.3)
    assert back[0]["timestep"] == ""


def test_ply_round_trip_drops_non_finite(tmp_path) -> None:
    pts = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32)
    pts[3] = np.nan
    cols = np.random.default_rng(1).integers(0, 255, size=(50, 3), dtype=np.uint8)
    write_ply(tmp_path / "p.ply", pts, cols)
    p2, c2 = read_ply(tmp_path / "p.ply")
    keep = np.isfinite(pts).all(axis=1)
    np.testing.assert_array_equal(p2, pts[keep])
    np.testing.assert_array_equal(c2, cols[keep])


def test_best_rows_per_backbone() -> None:
    best = {r["backbone"]: r for r in plots.best_rows(ROWS, "point_err")}
    assert best["a"]["point_err"] == 0.3 and best["b"]["point_err"] == 0.4
    best_auc = {r["backbone"]: r for r in plots.best_rows(ROWS, "auc@5")}
    assert best_auc["b"]["auc@5"] == 0.3


def test_figures_and_html(tmp_path) -> None:
    figs = [
        ("layers", plots.metric_vs_layer(ROWS, "point_err", tmp_path / "layers.png")),
        ("heat", plots.layer_timestep_heatmap(ROWS, "b", "point_err", tmp_path / "heat.png")),
        ("bars", plots.best_per_backbone_bars(ROWS, "point_err", tmp_path / "bars.png")),
    ]
    rng = np.random.default_rng(0)
    depth = rng.uniform(1, 2, size=(2, 8, 8))
    figs.append(
        (
            "depth",
            plots.depth_comparison(
                rng.integers(0, 255, (2, 8, 8, 3), dtype=np.uint8),
                depth + 0.1,
                depth,
                np.ones_like(depth, bool),
                tmp_path / "depth.png",
            ),
        )
    )
    pts = rng.normal(size=(100, 3))
    figs.append(
        (
            "cloud",
            plots.point_cloud_views(
                pts, pts, rng.integers(0, 255, (100, 3)), tmp_path / "cloud.png"
            ),
        )
    )
    for _, f in figs:
        assert f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = report_html.write_report(tmp_path / "report.html", "t", ROWS, figs, notes=["hello"])
    text = page.read_text()
    assert text.count("data:image/png;base64,") == len(figs)
    assert "<td>0.3000</td>" in text and "hello" in text


def test_markdown_bolds_nothing_in_a_constant_column() -> None:
    rows = [
        {"backbone": b, "layer": 0, "auc@5": 0.0, "point_err": v} for b, v in (("a", 1), ("b", 2))
    ]
    text = to_markdown(rows, metrics=("point_err", "auc@5"))
    assert "**0.0000**" not in text and "**1**" in text


def test_html_videos_are_players_with_escaped_names(tmp_path) -> None:
    videos = [("a <b> & 'c'", "clip's <1>.mp4"), ("plain", "sample_000.mp4")]
    text = report_html.write_report(tmp_path / "r.html", "t", ROWS, [], videos=videos).read_text()
    assert text.count("<video controls loop muted autoplay playsinline") == 2
    assert "src='clip&#x27;s &lt;1&gt;.mp4'" in text and "<1>" not in text
    assert "a &lt;b&gt; &amp; &#x27;c&#x27;" in text and "<b>" not in text
    assert "src='sample_000.mp4'" in text
    bare = report_html.write_report(tmp_path / "s.html", "t", ROWS, []).read_text()
    assert "<video" not in bare and "<h2>Videos</h2>" not in bare


def test_camera_paths_start_at_the_origin(tmp_path, monkeypatch) -> None:
    cams = np.repeat(np.eye(4)[None], 5, 0)
    cams[:, 0, 3] = np.arange(5.0) + 3.0  # a walk right from x = 3
    still = np.repeat(np.eye(4)[None], 3, 0)
    axes = []
    save = plots._save
    monkeypatch.setattr(
        plots, "_save", lambda fig, path: (axes.extend(fig.axes), save(fig, path))[1]
    )
    path = plots.camera_paths(
        [("walk", [("a", cams)]), ("still", [("b", still)])], tmp_path / "paths.png"
    )
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [ax.get_title() for ax in axes] == ["walk", "still"]
    line = axes[0].lines[0]
    np.testing.assert_allclose(line.get_xdata(), np.arange(5.0))  # in the first camera's frame
    np.testing.assert_allclose(line.get_ydata(), 0.0)
