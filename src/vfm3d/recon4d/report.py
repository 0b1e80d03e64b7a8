"""The ``report.html`` of one reconstruction: a 3D view of the cloud and cameras, depth per frame,
and the scores when the clip has ground truth (drawing done by `vfm3d.report`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from vfm3d.clip import Clip
from vfm3d.recon4d.result import Reconstruction


def camera_alignment(
    pred_cam_to_world: np.ndarray, gt_cam_to_world: np.ndarray
) -> tuple[float, np.ndarray, np.ndarray] | None:
    """Sim(3) ``(s, R [3,3], t [3])`` with ``gt centre ~ s R pred centre + t`` (Umeyama on the
    camera centres ``[T, 4, 4]``, as ATE aligns); None when the predicted centres are degenerate
    (fewer than 3 frames, all in one place or collinear)."""
    import torch

    from vfm3d.geometry import DegenerateAlignmentError, umeyama

    src = torch.as_tensor(pred_cam_to_world[:, :3, 3], dtype=torch.float64)
    dst = torch.as_tensor(gt_cam_to_world[:, :3, 3], dtype=torch.float64)
    try:
        s, r, t = umeyama(src, dst, with_scale=True)
    except DegenerateAlignmentError:
        return None
    return float(s), r.numpy(), t.numpy()


def scene_view(recon: Reconstruction, clip: Clip | None = None, max_points: int = 50_000) -> Any:
    """A `vfm3d.report.scene.SceneView` of the confident points (subsampled to ``max_points``),
    the predicted cameras and depth; true depth alongside when ``clip`` has it. When ``clip`` has
    true cameras, those are drawn too and the prediction (points and cameras) is mapped into the
    true world frame by the Sim(3) of `camera_alignment` (``aligned``; left as predicted when that
    alignment is degenerate)."""
    from vfm3d.report.scene import SceneView

    keep = recon.confident()
    points = recon.points[keep].astype(np.float64)
    colors = recon.frames[keep]
    if points.shape[0] > max_points:
        idx = np.random.default_rng(0).choice(points.shape[0], max_points, replace=False)
        points, colors = points[idx], colors[idx]
    cams = recon.cam_to_world.astype(np.float64)
    gt_cams = None
    aligned = False
    if clip is not None and clip.poses_known:
        gt_cams = np.asarray(clip.cam_to_world, dtype=np.float64)
        sim = camera_alignment(cams, gt_cams)
        if sim is not None:
            s, r, t = sim
            points = s * points @ r.T + t
            cams = cams.copy()
            cams[:, :3, :3] = r @ cams[:, :3, :3]
            cams[:, :3, 3] = s * cams[:, :3, 3] @ r.T + t
            aligned = True
    with_gt = clip is not None and clip.has_depth
    return SceneView(
        title=f"{recon.meta.get('clip_id', '')} ({recon.meta.get('model', '')})",
        images=recon.frames,
        intrinsics=recon.intrinsics,
        pred_depth=recon.depth,
        gt_depth=clip.depth if with_gt else None,
        valid=clip.valid if with_gt else np.ones(recon.depth.shape, bool),
        pred_points=points,
        colors=colors,
        pred_cam_to_world=cams,
        gt_cam_to_world=gt_cams,
        aligned=aligned,
    )


def write_reconstruction_report(
    path: Path, recon: Reconstruction, clip: Clip | None = None, metrics: dict | None = None
) -> Path:
    """Write ``report.html`` beside the exports; ``metrics`` (from `score`) becomes its table."""
    from vfm3d.report.html import write_report

    row: dict[str, Any] = {
        "clip": recon.meta.get("clip_id", ""),
        "frames": recon.num_frames,
        "s/frame": round(float(recon.meta.get("seconds_per_frame", float("nan"))), 4),
        **(metrics or {}),
    }
    columns = list(row)
    notes = [
        "World frame: the first frame's OpenCV camera (x right, y down, z forward), in the "
        "model's scale. Files: points.ply, scene.glb, colmap/, trajectory_tum.txt, depth/, "
        "depth.safetensors, cameras.json (see docs/io.md).",
    ]
    if metrics:
        notes.append(
            "Scores (MonST3R protocol): ATE / RPE after a Sim(3) alignment of camera centres; "
            "depth AbsRel and delta1 after one median scale per sequence."
        )
    links = [(name, name) for name in ("points.ply", "scene.glb", "cameras.json")]
    return write_report(
        path,
        f"vfm3d reconstruction: {row['clip']}",
        [row],
        [],
        notes=notes,
        metrics=columns,
        links=links,
        scene=scene_view(recon, clip),
    )
