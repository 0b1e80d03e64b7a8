"""`SceneView`: what a report needs to show one reconstructed clip in 3D (arrays only).

The producer (a probe sweep, a reconstruction, a generation run) fills it; `report/` draws it
(static matplotlib figures, the interactive WebGL view of ``report.html``, PLY / GLB exports)
and never computes geometry itself. All coordinates are in one world frame (for the probe: the
first frame's OpenCV camera, scale-normalised; predictions already aligned to the truth for
display when ``aligned`` is set).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class SceneView:
    """One clip's predicted (and, when known, true) geometry.

    - ``images`` uint8 ``[S, H, W, 3]``; ``intrinsics`` ``[S, 3, 3]`` (OpenCV, pixels).
    - ``pred_depth`` ``[S, H, W]``; ``gt_depth`` ``[S, H, W]`` or None; ``valid`` bool
      ``[S, H, W]`` (where ``gt_depth`` is meaningful; all True without ground truth).
    - ``pred_points`` ``[N, 3]`` and ``colors`` uint8 ``[N, 3]``; ``gt_points`` ``[N, 3]`` or
      None (same pixels as ``pred_points``, row for row).
    - ``pred_cam_to_world`` ``[S, 4, 4]``; ``gt_cam_to_world`` ``[S, 4, 4]`` or None.
    """

    title: str
    images: np.ndarray
    intrinsics: np.ndarray
    pred_depth: np.ndarray
    valid: np.ndarray
    pred_points: np.ndarray
    colors: np.ndarray
    pred_cam_to_world: np.ndarray
    gt_depth: np.ndarray | None = None
    gt_points: np.ndarray | None = None
    gt_cam_to_world: np.ndarray | None = None
    aligned: bool = False

    def __post_init__(self) -> None:
        s, h, w = self.images.shape[:3]
        checks = {
            "images": (self.images, (s, h, w, 3)),
            "intrinsics": (self.intrinsics, (s, 3, 3)),
            "pred_depth": (self.pred_depth, (s, h, w)),
            "valid": (self.valid, (s, h, w)),
            "pred_cam_to_world": (self.pred_cam_to_world, (s, 4, 4)),
        }
        if self.gt_depth is not None:
            checks["gt_depth"] = (self.gt_depth, (s, h, w))
        if self.gt_cam_to_world is not None:
            checks["gt_cam_to_world"] = (self.gt_cam_to_world, (s, 4, 4))
        n = int(np.asarray(self.pred_points).reshape(-1, 3).shape[0])
        checks["pred_points"] = (self.pred_points, (n, 3))
        checks["colors"] = (self.colors, (n, 3))
        if self.gt_points is not None:
            checks["gt_points"] = (self.gt_points, (n, 3))
        for name, (array, shape) in checks.items():
            if tuple(np.shape(array)) != shape:
                raise ValueError(f"SceneView.{name}: expected shape {shape}, got {np.shape(array)}")
        if self.images.dtype != np.uint8 or np.asarray(self.colors).dtype != np.uint8:
            raise ValueError("SceneView: images and colors must be uint8")

    @property
    def num_frames(self) -> int:
        return int(self.images.shape[0])
