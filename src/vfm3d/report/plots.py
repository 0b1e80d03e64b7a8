"""Figures of a sweep (matplotlib, Agg backend; PNG files).

- `metric_vs_layer`: one line per (backbone, timestep), one panel per split;
- `layer_timestep_heatmap`: layer x timestep grid of one diffusion backbone;
- `best_per_backbone_bars`: each backbone's best value (over layers/timesteps), per split;
- `depth_comparison` and `point_cloud_views` for one example clip;
- `camera_paths`: top-down camera paths, each in its first camera's frame.
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vfm3d.report.tables import lower_is_better


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | os.PathLike[str]) -> Path:
    from vfm3d.utils.atomic import atomic_path

    target = Path(path)
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    _plt().close(fig)
    return target


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def _splits(rows: Sequence[dict[str, Any]]) -> list[Any]:
    return sorted({r.get("split") for r in rows}, key=str)


def metric_vs_layer(
    rows: Sequence[dict[str, Any]], metric: str, path: str | os.PathLike[str]
) -> Path:
    """Line plot of ``metric`` against ``layer`` for each (backbone, timestep), a panel per split."""
    plt = _plt()
    splits = _splits(rows)
    fig, axes = plt.subplots(1, len(splits), figsize=(5.5 * len(splits), 4), squeeze=False)
    for ax, split in zip(axes[0], splits):
        series: dict[str, list[tuple[int, float]]] = defaultdict(list)
        for r in rows:
            if r.get("split") != split or not _finite(r.get(metric)):
                continue
            label = r["backbone"] + ("" if r.get("timestep") is None else f" t={r['timestep']}")
            series[label].append((int(r["layer"]), float(r[metric])))
        for label, pts in sorted(series.items()):
            pts.sort()
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
        ax.set_xlabel("layer")
        ax.set_ylabel(metric + (" (lower is better)" if lower_is_better(metric) else ""))
        ax.set_title(f"{metric} vs layer" + ("" if split is None else f" [{split}]"))
        ax.grid(alpha=0.3)
        if series:
            ax.legend(fontsize=7)
    return _save(fig, path)


def layer_timestep_heatmap(
    rows: Sequence[dict[str, Any]], backbone: str, metric: str, path: str | os.PathLike[str]
) -> Path:
    """Heat map of ``metric`` over layer (rows) x timestep (columns) for one backbone."""
    plt = _plt()
    splits = _splits(rows)
    fig, axes = plt.subplots(1, len(splits), figsize=(5 * len(splits), 4), squeeze=False)
    for ax, split in zip(axes[0], splits):
        sel = [
            r
            for r in rows
            if r["backbone"] == backbone
            and r.get("split") == split
            and r.get("timestep") is not None
            and _finite(r.get(metric))
        ]
        layers = sorted({int(r["layer"]) for r in sel})
        steps = sorted({int(r["timestep"]) for r in sel})
        grid = np.full((len(layers), len(steps)), np.nan)
        for r in sel:
            grid[layers.index(int(r["layer"])), steps.index(int(r["timestep"]))] = r[metric]
        cmap = "viridis_r" if lower_is_better(metric) else "viridis"
        im = ax.imshow(grid, cmap=cmap, aspect="auto")
        ax.set_xticks(range(len(steps)), [str(s) for s in steps])
        ax.set_yticks(range(len(layers)), [str(v) for v in layers])
        ax.set_xlabel("timestep")
        ax.set_ylabel("layer")
        for i in range(len(layers)):
            for j in range(len(steps)):
                if np.isfinite(grid[i, j]):
                    ax.text(j, i, f"{grid[i, j]:.3f}", ha="center", va="center", fontsize=7)
        ax.set_title(f"{backbone}: {metric}" + ("" if split is None else f" [{split}]"))
        fig.colorbar(im, ax=ax)
    return _save(fig, path)


def best_rows(rows: Sequence[dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    """For each (backbone, split), the row with the best ``metric``."""
    best: dict[tuple[str, Any], dict[str, Any]] = {}
    for r in rows:
        v = r.get(metric)
        if not _finite(v):
            continue
        key = (r["backbone"], r.get("split"))
        cur = best.get(key)
        better = cur is None or (v < cur[metric] if lower_is_better(metric) else v > cur[metric])
        if better:
            best[key] = r
    return list(best.values())


def best_per_backbone_bars(
    rows: Sequence[dict[str, Any]], metric: str, path: str | os.PathLike[str]
) -> Path:
    """Bar chart: each backbone's best ``metric`` over its layers/timesteps, grouped by split."""
    plt = _plt()
    best = best_rows(rows, metric)
    backbones = sorted({r["backbone"] for r in best})
    splits = _splits(best) or [None]
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(backbones) * len(splits)), 4))
    width = 0.8 / len(splits)
    for k, split in enumerate(splits):
        vals = []
        for b in backbones:
            match = [r[metric] for r in best if r["backbone"] == b and r.get("split") == split]
            vals.append(match[0] if match else np.nan)
        xs = np.arange(len(backbones)) + (k - (len(splits) - 1) / 2) * width
        ax.bar(xs, vals, width=width, label=str(split))
    ax.set_xticks(range(len(backbones)), backbones, rotation=30, ha="right")
    ax.set_ylabel(metric + (" (lower is better)" if lower_is_better(metric) else ""))
    ax.set_title(f"best {metric} per backbone")
    ax.grid(axis="y", alpha=0.3)
    if len(splits) > 1 or splits[0] is not None:
        ax.legend()
    return _save(fig, path)


def depth_comparison(
    frames: np.ndarray,
    pred_depth: np.ndarray,
    gt_depth: np.ndarray,
    valid: np.ndarray,
    path: str | os.PathLike[str],
) -> Path:
    """Rows: RGB, true depth, predicted depth, |error|. ``frames`` ``[S,H,W,3]`` uint8, depths ``[S,H,W]``."""
    plt = _plt()
    s = frames.shape[0]
    fig, axes = plt.subplots(4, s, figsize=(2.2 * s, 8), squeeze=False)
    vmax = float(np.nanpercentile(np.where(valid, gt_depth, np.nan), 98)) if valid.any() else 1.0
    for i in range(s):
        gt = np.where(valid[i], gt_depth[i], np.nan)
        err = np.where(valid[i], np.abs(pred_depth[i] - gt_depth[i]), np.nan)
        panels = [
            (frames[i], None, "RGB"),
            (gt, "magma", "true depth"),
            (pred_depth[i], "magma", "predicted"),
            (err, "inferno", "|error|"),
        ]
        for row, (img, cmap, title) in enumerate(panels):
            ax = axes[row][i]
            if cmap is None:
                ax.imshow(img)
            else:
                ax.imshow(img, cmap=cmap, vmin=0, vmax=vmax)
            ax.set_axis_off()
            if i == 0:
                ax.set_title(title, fontsize=8, loc="left")
    return _save(fig, path)


def point_cloud_views(
    pred_points: np.ndarray,
    gt_points: np.ndarray,
    colors: np.ndarray,
    path: str | os.PathLike[str],
    max_points: int = 4000,
    seed: int = 0,
) -> Path:
    """Two 3D scatter panels (true, predicted). Points ``[N,3]`` in the first camera's frame."""
    plt = _plt()
    rng = np.random.default_rng(seed)
    n = pred_points.shape[0]
    idx = rng.choice(n, size=min(n, max_points), replace=False) if n else np.zeros(0, int)
    cols = colors[idx].astype(np.float32) / 255.0
    fig = plt.figure(figsize=(10, 4.5))
    for k, (pts, title) in enumerate(((gt_points, "true points"), (pred_points, "predicted"))):
        ax = fig.add_subplot(1, 2, k + 1, projection="3d")
        p = pts[idx]
        # OpenCV camera: show x right, z forward (depth) and -y up.
        ax.scatter(p[:, 0], p[:, 2], -p[:, 1], c=cols, s=2, depthshade=False)
        ax.set_xlabel("x")
        ax.set_ylabel("z (forward)")
        ax.set_zlabel("-y (up)")
        ax.set_title(title)
        ax.view_init(elev=20, azim=-70)
    return _save(fig, path)


def camera_paths(
    panels: Sequence[tuple[str, Sequence[tuple[str, np.ndarray]]]],
    path: str | os.PathLike[str],
) -> Path:
    """Top-down camera paths: one panel per ``(title, [(label, cam_to_world [T, 4, 4]), ...])``.

    Each path is drawn in its own first camera's frame (OpenCV: x right, z forward, the height
    y dropped), so paths of different worlds and scales start at the origin looking up the plot:
    camera centres as a line (the first one a square), each camera's viewing direction as a
    short arrow. Each panel keeps its own units (equal aspect)."""
    plt = _plt()
    fig, axes = plt.subplots(
        1, max(1, len(panels)), figsize=(4.2 * max(1, len(panels)), 4), squeeze=False
    )
    for ax, (title, paths) in zip(axes[0], panels, strict=False):
        for k, (label, cams) in enumerate(paths):
            c2w = np.asarray(cams, dtype=np.float64)
            rel = np.linalg.inv(c2w[0]) @ c2w  # first camera's frame
            x, z = rel[:, 0, 3], rel[:, 2, 3]
            extent = max(float(np.ptp(x)), float(np.ptp(z)), 1e-6)
            look = rel[:, :3, 2]  # viewing direction (camera +z) in that frame
            norm = np.maximum(np.hypot(look[:, 0], look[:, 2]), 1e-9)
            arrow = 0.15 * extent
            colour = f"C{k % 10}"
            ax.plot(x, z, marker="o", markersize=3, color=colour, label=label)
            ax.plot(x[:1], z[:1], marker="s", markersize=7, color=colour)
            ax.quiver(
                x,
                z,
                arrow * look[:, 0] / norm,
                arrow * look[:, 2] / norm,
                color=colour,
                angles="xy",
                scale_units="xy",
                scale=1,
                width=0.004,
            )
        ax.set_aspect("equal", adjustable="datalim")
        ax.set_xlabel("x (right)")
        ax.set_ylabel("z (forward)")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
        if paths:
            ax.legend(fontsize=6, loc="best")
    return _save(fig, path)
