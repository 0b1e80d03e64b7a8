"""Point-map and depth errors exactly as VidFM3D reports them (the paper's Point / Depth columns).

- `point_error`: VidFM3D `val/pmap_mse_aligned` (`vidfm3d/models/video_probe_module.py`
  `validation_step` with `vidfm3d/utils/eval_utils.py` `build_mask` + `align_pmaps`), a mean
  distance despite its name.
- `depth_error`: VidFM3D `val/loss_depth` (`vidfm3d/utils/loss.py` `depth_loss` -> `conf_loss`).
Both expect inputs already in the normalised target space (`vfm3d.geometry.probe_targets`).
"""

from __future__ import annotations

import numpy as np
import torch

from vfm3d.geometry._checks import check_finite, check_mask, check_same_shape, check_tail
from vfm3d.geometry.align import apply_similarity, umeyama

_HARD_MAX = 100.0  # VidFM3D check_and_fix_inf_nan clamps every per-pixel loss to [-100, 100]


def point_error(
    pred_points: torch.Tensor,
    gt_points: torch.Tensor,
    valid: torch.Tensor,
    gt_conf: torch.Tensor | None = None,
    pred_conf: torch.Tensor | None = None,
    percentile: float = 75.0,
) -> float:
    """VidFM3D "Point Err" of point maps `[B, T, H, W, 3]` (or `[T, H, W, 3]` = one sample) -> float.

    Per sample: pixels with GT confidence >= its 75th percentile (`np.percentile` over the
    sample's valid pixels) and valid select the correspondences; a Sim(3) (Umeyama with scale) from
    predicted to GT points is fitted on them (none if fewer than 3) and applied to *all* predicted
    points; the error is `sum(w * |aligned - gt|) / (sum(w) + 1e-6)` with `w = gt_conf * valid`
    (`gt_conf = 1` when absent, so all valid pixels). The result is the mean over samples.
    `pred_conf`, if given, multiplies the weights (not part of the reference; leave None for
    paper numbers).
    """
    check_tail("pred_points", pred_points, (None, None, None, 3))
    check_same_shape(("pred_points", "gt_points"), (pred_points, gt_points))
    if pred_points.ndim == 4:
        pred_points, gt_points, valid = pred_points[None], gt_points[None], valid[None]
        gt_conf = None if gt_conf is None else gt_conf[None]
        pred_conf = None if pred_conf is None else pred_conf[None]
    if pred_points.ndim != 5:
        raise ValueError(
            f"pred_points must be [B, T, H, W, 3] or [T, H, W, 3], got {list(pred_points.shape)}"
        )
    valid = check_mask("valid", valid, pred_points.shape[:-1])
    check_finite("pred_points", pred_points, where=valid[..., None])
    check_finite("gt_points", gt_points, where=valid[..., None])
    dtype = torch.float64
    conf = (
        torch.ones(valid.shape, dtype=dtype, device=valid.device)
        if gt_conf is None
        else gt_conf.to(dtype)
    )
    if conf.shape != valid.shape:
        raise ValueError(f"gt_conf must have shape {list(valid.shape)}, got {list(conf.shape)}")
    weight_extra = None
    if pred_conf is not None:
        if pred_conf.shape != valid.shape:
            raise ValueError(
                f"pred_conf must have shape {list(valid.shape)}, got {list(pred_conf.shape)}"
            )
        weight_extra = pred_conf.to(dtype)
    errors = []
    for b in range(pred_points.shape[0]):
        m = valid[b]
        if not bool(m.any()):
            raise ValueError(f"point_error: sample {b} has no valid pixel")
        pred = torch.where(m[..., None], pred_points[b].to(dtype), 0.0).reshape(-1, 3)
        gt = torch.where(m[..., None], gt_points[b].to(dtype), 0.0).reshape(-1, 3)
        c = conf[b]
        threshold = float(np.percentile(c[m].cpu().numpy(), percentile))
        select = (m & (c >= threshold)).reshape(-1)
        if int(select.sum()) >= 3:
            s, r, t = umeyama(pred[select], gt[select], with_scale=True)
            pred = apply_similarity(s, r, t, pred)
        distance = torch.linalg.vector_norm(pred - gt, dim=-1)
        w = (c * m).reshape(-1)
        if weight_extra is not None:
            w = w * weight_extra[b].reshape(-1)
        errors.append(float((distance * w).sum() / (w.sum() + 1e-6)))
    return float(np.mean(errors))


def depth_error(
    pred_depth: torch.Tensor,
    gt_depth: torch.Tensor,
    valid: torch.Tensor,
    conf: torch.Tensor | None = None,
) -> float:
    """VidFM3D "Depth Err": `mean over valid pixels of conf * |pred - gt|` (any shape) -> float.

    Not divided by the sum of confidences; `conf` is the GT confidence (1 when absent). Per-pixel
    terms are clamped to [-100, 100] before and after the confidence product, as the
    reference's `check_and_fix_inf_nan` does. Inputs are
    the normalised (probe-target) depths; a trailing channel dim of 1 is allowed on both.
    """
    if pred_depth.shape != gt_depth.shape:
        raise ValueError(
            f"shape mismatch: pred_depth {list(pred_depth.shape)} vs gt_depth {list(gt_depth.shape)}"
        )
    if pred_depth.shape[-1:] == (1,) and valid.shape == pred_depth.shape[:-1]:
        pred_depth, gt_depth = pred_depth[..., 0], gt_depth[..., 0]
    valid = check_mask("valid", valid, pred_depth.shape)
    check_finite("pred_depth", pred_depth, where=valid)
    check_finite("gt_depth", gt_depth, where=valid)
    if not bool(valid.any()):
        raise ValueError("depth_error: no valid pixel")
    diff = (pred_depth.double() - gt_depth.double()).abs().clamp(max=_HARD_MAX)
    if conf is not None:
        if conf.shape != valid.shape:
            raise ValueError(f"conf must have shape {list(valid.shape)}, got {list(conf.shape)}")
        diff = (diff * conf.double()).clamp(min=-_HARD_MAX, max=_HARD_MAX)
    return float(diff[valid].mean())
