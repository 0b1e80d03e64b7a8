"""`Reconstruction`: what every 4D reconstructor returns, and how it is written to disk."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Reconstruction:
    """Per-frame geometry of one clip, world frame = the first frame's OpenCV camera.

    - ``frames`` uint8 ``[T, H, W, 3]`` (the model's input resolution);
    - ``depth`` float32 ``[T, H, W]`` z-depth in each frame's camera; ``depth_conf`` ``[T, H, W]``;
    - ``points`` float32 ``[T, H, W, 3]`` world points; ``points_conf`` ``[T, H, W]``;
    - ``intrinsics`` float64 ``[T, 3, 3]`` (pixels of ``frames``); ``cam_to_world`` float64
      ``[T, 4, 4]`` as the model predicts them (trained so that frame 0 is the identity; near it);
    - ``timestamps`` ``[T]`` seconds (or frame indices when the source has no clock);
    - ``meta``: model, input, windows, timings. The scale is the model's own (up to similarity).
    """

    frames: np.ndarray
    depth: np.ndarray
    depth_conf: np.ndarray
    points: np.ndarray
    points_conf: np.ndarray
    intrinsics: np.ndarray
    cam_to_world: np.ndarray
    timestamps: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        t, h, w = self.frames.shape[:3]
        shapes = {
            "frames": (t, h, w, 3),
            "depth": (t, h, w),
            "depth_conf": (t, h, w),
            "points": (t, h, w, 3),
            "points_conf": (t, h, w),
            "intrinsics": (t, 3, 3),
            "cam_to_world": (t, 4, 4),
            "timestamps": (t,),
        }
        for name, shape in shapes.items():
            if tuple(np.shape(getattr(self, name))) != shape:
                got = np.shape(getattr(self, name))
                raise ValueError(f"Reconstruction.{name}: expected shape {shape}, got {got}")
        for name in ("depth", "points", "intrinsics", "cam_to_world"):
            if not np.all(np.isfinite(getattr(self, name))):
                raise ValueError(f"Reconstruction.{name}: contains NaN or Inf")

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    def confident(self, quantile: float = 0.25) -> np.ndarray:
        """bool ``[T, H, W]``: points whose confidence is above the clip's ``quantile``."""
        threshold = float(np.quantile(self.points_conf, quantile))
        return self.points_conf >= threshold

    def save(
        self,
        out_dir: str | os.PathLike[str],
        max_points: int = 200_000,
        conf_quantile: float = 0.25,
    ) -> dict[str, Path]:
        """Write the standard files into ``out_dir`` (see `vfm3d.report.export`); returns name ->
        path. Points below the ``conf_quantile`` of confidence are left out of the clouds."""
        from vfm3d.report.export import export_reconstruction
        from vfm3d.utils.atomic import atomic_write_json

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        files = export_reconstruction(
            out,
            frames=self.frames,
            depth=self.depth,
            intrinsics=self.intrinsics,
            cam_to_world=self.cam_to_world,
            points=self.points,
            conf=self.points_conf,
            valid=self.confident(conf_quantile),
            timestamps=self.timestamps,
            max_points=max_points,
        )
        atomic_write_json(out / "reconstruction.json", self.meta)
        files["reconstruction.json"] = out / "reconstruction.json"
        return files
