"""Probe losses (VidFM3D ``vidfm3d/utils/loss.py`` with VGGT's confidence regulariser).

- point: L2 distance between predicted and target points on valid pixels, after normalising each
  of pred and target by its mean point distance (per sample, valid pixels) when
  ``config.normalize_points``;
- depth: the same on depth, without normalisation;
- confidence: ``config.conf_mode == "vggt"``: per pixel ``w * (c * err - alpha * log c)`` with the
  predicted confidence ``c`` and the target confidence ``w`` (1 for vfm3d clips);
  ``"gt"`` (VidFM3D exactly): ``w * err`` (the predicted confidence is not trained);
  ``"detached"``: VidFM3D's ``w * err`` for the maps plus ``w * (c * sg(err) - alpha * log c)``
  (``sg`` = stop-gradient), so the confidence learns to rank errors (its optimum is
  ``c = alpha / err``) without re-weighting the regression away from the uniform weighting the
  metrics use.
  Per-pixel terms are made finite and clamped to [-100, 100] as VidFM3D does, then averaged over
  all valid pixels of the batch;
- camera: Huber on ``absT_quaR_FoV`` per part (T, R, FoV) averaged, iteration ``i`` of ``n``
  weighted ``gamma ** (n - 1 - i)``, summed and divided by ``n``; weighted T 1, R 1, FoV 0.5.
- total = point_weight * point + depth_weight * depth + camera_weight * camera.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vfm3d.probe.config import ProbeConfig

_HARD_MAX = 100.0


def normalize_by_mean_distance(
    points: torch.Tensor, valid: torch.Tensor, eps: float = 1e-3
) -> torch.Tensor:
    """Divide each sample's ``points [B, S, H, W, 3]`` by its mean norm over ``valid [B,S,H,W]``."""
    dist = points.norm(dim=-1)
    mask = valid.to(points.dtype)
    mean = (dist * mask).sum(dim=(1, 2, 3)) / (mask.sum(dim=(1, 2, 3)) + eps)
    return points / mean.clamp(min=eps, max=1e3).view(-1, 1, 1, 1, 1)


def _finite_clamped(x: torch.Tensor) -> torch.Tensor:
    return torch.nan_to_num(x, nan=0.0, posinf=_HARD_MAX, neginf=-_HARD_MAX).clamp(
        -_HARD_MAX, _HARD_MAX
    )


def confidence_loss(
    err: torch.Tensor,
    pred_conf: torch.Tensor,
    valid: torch.Tensor,
    gt_conf: torch.Tensor | None,
    config: ProbeConfig,
) -> torch.Tensor:
    """Mean over valid pixels of the confidence-weighted error (see module docstring)."""
    weight = torch.ones_like(err) if gt_conf is None else gt_conf.to(err.dtype)
    if config.conf_mode == "vggt":
        per_pixel = weight * (pred_conf * err - config.conf_alpha * torch.log(pred_conf))
    elif config.conf_mode == "detached":
        conf_term = pred_conf * err.detach() - config.conf_alpha * torch.log(pred_conf)
        per_pixel = weight * (err + conf_term)
    else:
        per_pixel = weight * err
    per_pixel = _finite_clamped(per_pixel[valid])
    return per_pixel.mean() if per_pixel.numel() else err.sum() * 0.0


def point_loss(
    pred: torch.Tensor,
    pred_conf: torch.Tensor,
    gt: torch.Tensor,
    valid: torch.Tensor,
    gt_conf: torch.Tensor | None,
    config: ProbeConfig,
) -> torch.Tensor:
    """``pred, gt [B, S, H, W, 3]``; ``pred_conf, valid, gt_conf [B, S, H, W]`` -> scalar."""
    if config.normalize_points:
        pred = normalize_by_mean_distance(pred, valid)
        gt = normalize_by_mean_distance(gt, valid)
    err = (gt - pred).norm(dim=-1)
    return confidence_loss(err, pred_conf, valid, gt_conf, config)


def depth_loss(
    pred: torch.Tensor,
    pred_conf: torch.Tensor,
    gt: torch.Tensor,
    valid: torch.Tensor,
    gt_conf: torch.Tensor | None,
    config: ProbeConfig,
) -> torch.Tensor:
    """``pred, gt, pred_conf, valid, gt_conf [B, S, H, W]`` -> scalar (no normalisation)."""
    return confidence_loss((gt - pred).abs(), pred_conf, valid, gt_conf, config)


def camera_loss(
    pose_enc_list: list[torch.Tensor], gt_pose_enc: torch.Tensor, config: ProbeConfig
) -> dict[str, torch.Tensor]:
    """Huber loss of every iteration's ``[B, S, 9]`` encoding against ``gt_pose_enc [B, S, 9]``."""
    n = len(pose_enc_list)
    parts = {"T": (0, 3), "R": (3, 7), "FoV": (7, 9)}
    totals = {name: gt_pose_enc.new_zeros(()) for name in parts}
    for i, pred in enumerate(pose_enc_list):
        weight = config.camera_gamma ** (n - 1 - i)
        for name, (a, b) in parts.items():
            err = F.huber_loss(pred[..., a:b], gt_pose_enc[..., a:b], reduction="none")
            if name == "T":
                err = err.clamp(max=_HARD_MAX)
            totals[name] = totals[name] + weight * _finite_clamped(err).mean()
    totals = {k: v / n for k, v in totals.items()}
    camera = (
        config.weight_trans * totals["T"]
        + config.weight_rot * totals["R"]
        + config.weight_fov * totals["FoV"]
    )
    return {
        "camera": camera,
        "camera_T": totals["T"],
        "camera_R": totals["R"],
        "camera_FoV": totals["FoV"],
    }


def probe_loss(
    pred: dict[str, torch.Tensor | list[torch.Tensor]],
    batch: dict[str, torch.Tensor],
    config: ProbeConfig,
) -> dict[str, torch.Tensor]:
    """All losses for one batch. ``pred`` from `ProbeModel.forward`; ``batch`` from the dataset.

    Returns ``{"loss", "point", "depth", "camera", "camera_T", "camera_R", "camera_FoV"}``.
    """
    valid = batch["valid"]
    gt_conf = batch.get("conf")
    points = point_loss(
        pred["points"].float(), pred["points_conf"].float(), batch["points"], valid, gt_conf, config
    )
    depth = depth_loss(
        pred["depth"].float(), pred["depth_conf"].float(), batch["depth"], valid, gt_conf, config
    )
    pose_list = [p.float() for p in pred["pose_enc_list"]]  # type: ignore[union-attr]
    camera = camera_loss(pose_list, batch["pose_enc"].float(), config)
    total = (
        config.point_weight * points
        + config.depth_weight * depth
        + config.camera_weight * camera["camera"]
    )
    return {"loss": total, "point": points, "depth": depth, **camera}
