"""Video depth metrics (reference: MonST3R `dust3r/depth_eval.py::depth_evaluation`, the
protocol of MonST3R / CUT3R / VGGT video-depth tables).

Per sequence: keep valid pixels with `gt > 0` (and `gt < max_depth` if given); align the
prediction with `vfm3d.geometry.align_depth` (median scale, least-squares scale+shift, or L1
"lad2"); clip it to `max_depth` if given (MonST3R's `post_clip_max`); then
- `abs_rel = mean(|p - g| / g)`, `sq_rel = mean((p - g)^2 / g)`, `rmse = sqrt(mean((p - g)^2))`,
- `log_rmse = sqrt(mean((log max(p, 1e-5) - log g)^2))`,
- `delta_n = mean(max(p / g, g / p) < 1.25^n)` for n = 1, 2, 3 (with `p` clamped to >= 1e-5).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from vfm3d.geometry._checks import check_finite, check_mask, check_same_shape
from vfm3d.geometry.align import DepthAlignMode, align_depth


@dataclass(frozen=True)
class DepthMetrics:
    """Video depth metrics of one sequence (see the module docstring)."""

    abs_rel: float
    sq_rel: float
    rmse: float
    log_rmse: float
    delta1: float
    delta2: float
    delta3: float
    scale: float
    shift: float
    num_pixels: int

    def to_json(self) -> dict[str, float | int]:
        """A JSON-serialisable dict of the fields."""
        return asdict(self)


def depth_metrics(
    pred: torch.Tensor,
    gt: torch.Tensor,
    valid: torch.Tensor,
    align: DepthAlignMode = "median",
    max_depth: float | None = None,
) -> DepthMetrics:
    """Depth metrics of one sequence `pred, gt, valid` `[T, H, W]` (any shape) -> `DepthMetrics`.

    `align` in `"none" | "median" | "scale_shift" | "lad2"`; `max_depth` is the dataset's clipping
    depth (e.g. 70 for Sintel and Bonn, 80 for KITTI in MonST3R). Computed in float64.
    """
    check_same_shape(("pred", "gt"), (pred, gt))
    valid = check_mask("valid", valid, pred.shape)
    check_finite("gt", gt, where=valid)
    check_finite("pred", pred, where=valid)
    mask = valid & (gt > 0)
    if max_depth is not None:
        mask = mask & (gt < max_depth)
    if not bool(mask.any()):
        raise ValueError("depth_metrics: no valid pixel with 0 < gt < max_depth")
    p = pred.double()[mask]
    g = gt.double()[mask]
    p, scale, shift = align_depth(p, g, torch.ones_like(p, dtype=torch.bool), mode=align)
    if max_depth is not None:
        p = p.clamp(max=max_depth)
    diff = p - g
    abs_rel = (diff.abs() / g).mean()
    sq_rel = (diff**2 / g).mean()
    rmse = torch.sqrt((diff**2).mean())
    p_pos = p.clamp(min=1e-5)
    log_rmse = torch.sqrt(((torch.log(p_pos) - torch.log(g)) ** 2).mean())
    ratio = torch.maximum(p_pos / g, g / p_pos)
    return DepthMetrics(
        abs_rel=float(abs_rel),
        sq_rel=float(sq_rel),
        rmse=float(rmse),
        log_rmse=float(log_rmse),
        delta1=float((ratio < 1.25).double().mean()),
        delta2=float((ratio < 1.25**2).double().mean()),
        delta3=float((ratio < 1.25**3).double().mean()),
        scale=float(scale),
        shift=float(shift),
        num_pixels=int(mask.sum()),
    )
