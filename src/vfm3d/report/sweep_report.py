"""The report of a probe sweep: ``results.csv`` / ``results.md``, figures and ``report.html``.

Drawing only: the sweep (`vfm3d.probe.sweep`) trains and evaluates, then hands this module the
result rows and, optionally, a `SceneView` of one evaluation clip (predicted vs true geometry).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vfm3d.report.scene import SceneView

PLOT_METRICS = ("point_err", "depth_err", "auc@30")


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


def write_sweep_report(
    rows: list[dict[str, Any]],
    out_dir: Path,
    example: SceneView | None = None,
    extra_notes: Sequence[str] = (),
    extra_links: Sequence[tuple[str, str]] = (),
) -> Path:
    """Write the tables, the plots and ``report.html`` into ``out_dir``; return the report path.
    ``extra_notes`` / ``extra_links`` (text, href relative to ``out_dir``) are appended to the
    report's notes and files (the demo's 4D reconstruction)."""
    from vfm3d.report import html as report_html
    from vfm3d.report import plots
    from vfm3d.report.tables import to_csv, to_markdown

    out_dir = Path(out_dir)
    to_csv(rows, out_dir / "results.csv")
    to_markdown(rows, path=out_dir / "results.md")
    fig_dir = out_dir / "figures"
    figures: list[tuple[str, Path]] = []
    for metric in PLOT_METRICS:
        if any(r.get(metric) is not None for r in rows):
            path = fig_dir / f"layers_{_safe(metric)}.png"
            figures.append((f"{metric} vs layer", plots.metric_vs_layer(rows, metric, path)))
    diffusion = sorted({r["backbone"] for r in rows if r.get("timestep") is not None})
    for name in diffusion:
        path = fig_dir / f"heatmap_{_safe(name)}.png"
        figures.append(
            (
                f"{name}: layer x timestep (point_err)",
                plots.layer_timestep_heatmap(rows, name, "point_err", path),
            )
        )
    for metric in ("point_err", "auc@30"):
        path = fig_dir / f"bars_{_safe(metric)}.png"
        figures.append(
            (f"best {metric} per backbone", plots.best_per_backbone_bars(rows, metric, path))
        )
    links: list[tuple[str, str]] = [("results.csv", "results.csv"), ("results.md", "results.md")]
    if example is not None:
        figures += example_figures(example, fig_dir)
        links += example_files(example, out_dir)
    notes = [
        "Point Err and Depth Err: lower is better (VidFM3D definitions, normalised scale); "
        "AUC@k: higher is better (auc@k = VGGT mode over all pairs, auc_vidfm3d@k = the paper's "
        "31-bin per-batch mode). Best value per split in bold in results.md.",
        *extra_notes,
    ]
    links += list(extra_links)
    return report_html.write_report(
        out_dir / "report.html",
        "vfm3d probe sweep",
        rows,
        figures,
        notes=notes,
        links=links,
        scene=example,
    )


def example_figures(view: SceneView, fig_dir: Path) -> list[tuple[str, Path]]:
    """Static figures of one clip: predicted vs true depth, and two 3D scatter panels."""
    from vfm3d.report import plots

    figures = []
    if view.gt_depth is not None:
        depth_png = plots.depth_comparison(
            view.images, view.pred_depth, view.gt_depth, view.valid, fig_dir / "example_depth.png"
        )
        figures.append((f"{view.title}: depth", depth_png))
    if view.gt_points is not None:
        cloud_png = plots.point_cloud_views(
            view.pred_points, view.gt_points, view.colors, fig_dir / "example_points.png"
        )
        figures.append((f"{view.title}: point cloud", cloud_png))
    return figures


def example_files(view: SceneView, out_dir: Path) -> list[tuple[str, str]]:
    """PLY files of the clip's predicted (and true) point cloud; returns (caption, href) links."""
    from vfm3d.report.pointcloud import write_ply

    write_ply(out_dir / "example_pred.ply", view.pred_points, view.colors)
    links = [("predicted point cloud (PLY)", "example_pred.ply")]
    if view.gt_points is not None:
        write_ply(out_dir / "example_gt.ply", view.gt_points, view.colors)
        links.append(("true point cloud (PLY)", "example_gt.ply"))
    return links
