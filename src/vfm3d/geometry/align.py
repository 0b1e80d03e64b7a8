"""Alignment: weighted Umeyama SE(3)/Sim(3) and per-sequence depth alignment.

- `umeyama`: Umeyama, "Least-squares estimation of transformation parameters between two point
  patterns", IEEE PAMI 1991 (eqs. 34-43), the same computation as evo's
  `evo.core.geometry.umeyama_alignment`, generalised to weights and batches.
- `align_depth`: the video-depth alignments of MonST3R's `depth_evaluation`
  (`dust3r/depth_eval.py`): median scaling, least-squares scale and shift, and "lad2" (L1 scale
  and shift fitted by Adam from the median-scale initialisation, `absolute_value_scaling2`).
"""

from __future__ import annotations

from typing import Literal

import torch

from vfm3d.geometry._checks import check_finite, check_mask, check_same_shape, check_tail

DepthAlignMode = Literal["none", "median", "scale_shift", "lad2"]


class DegenerateAlignmentError(ValueError):
    """The points do not determine a rotation (too few, collinear, or all equal)."""


def umeyama(
    src: torch.Tensor,
    dst: torch.Tensor,
    weights: torch.Tensor | None = None,
    with_scale: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Least-squares similarity `dst ≈ s R src + t` from corresponding points `[..., N, 3]`.

    Returns `(s [...], R [..., 3, 3], t [..., 3])`; `s = 1` when `with_scale=False` (SE(3)).
    `weights` `[..., N]` (non-negative, normalised here) weight each correspondence; `None` is
    uniform and reproduces evo's `umeyama_alignment` exactly. Reflections are excluded (det R = +1).

    Raises `DegenerateAlignmentError` for fewer than 3 points, or points whose covariance has rank
    < 2 (collinear, all equal); ValueError for NaN/inf or mismatched shapes.
    """
    check_tail("src", src, (None, 3))
    check_same_shape(("src", "dst"), (src, dst))
    check_finite("src", src)
    check_finite("dst", dst)
    num = src.shape[-2]
    if num < 3:
        raise DegenerateAlignmentError(f"umeyama needs at least 3 points, got {num}")
    if weights is None:
        w = torch.full(src.shape[:-1], 1.0 / num, dtype=src.dtype, device=src.device)
    else:
        if tuple(weights.shape) != tuple(src.shape[:-1]):
            raise ValueError(
                f"weights must have shape {list(src.shape[:-1])}, got {list(weights.shape)}"
            )
        check_finite("weights", weights)
        if bool((weights < 0).any()):
            raise ValueError("weights must be non-negative")
        total = weights.sum(dim=-1, keepdim=True)
        if bool((total <= 0).any()):
            raise DegenerateAlignmentError("weights sum to zero: no point to align")
        w = (weights / total).to(src.dtype)
    mean_src = (w[..., None] * src).sum(dim=-2)
    mean_dst = (w[..., None] * dst).sum(dim=-2)
    src_c = src - mean_src[..., None, :]
    dst_c = dst - mean_dst[..., None, :]
    var_src = (w * (src_c**2).sum(dim=-1)).sum(dim=-1)
    cov = torch.einsum("...n,...ni,...nj->...ij", w, dst_c, src_c)
    u, d, vh = torch.linalg.svd(cov)
    tol = torch.finfo(src.dtype).eps * 100.0
    degenerate = (d[..., 0] <= 0) | (d[..., 1] <= tol * d[..., 0]) | (var_src <= 0)
    if bool(degenerate.any()):
        raise DegenerateAlignmentError(
            "degenerate point configuration (covariance rank < 2: points collinear or all equal, "
            "e.g. every camera centre at the same place); no unique alignment exists"
        )
    sign = torch.ones_like(d)
    sign[..., 2] = torch.where(torch.det(u) * torch.det(vh) < 0, -1.0, 1.0)
    rotation = u @ (sign[..., None] * vh)
    if with_scale:
        scale = (d * sign).sum(dim=-1) / var_src
    else:
        scale = torch.ones_like(var_src)
    translation = mean_dst - scale[..., None] * (rotation @ mean_src[..., None])[..., 0]
    return scale, rotation, translation


def similarity_matrix(
    scale: torch.Tensor, rotation: torch.Tensor, translation: torch.Tensor
) -> torch.Tensor:
    """`(s [...], R [..., 3, 3], t [..., 3])` -> 4x4 similarity `[..., 4, 4]` with top-left `s R`."""
    out = torch.zeros(*rotation.shape[:-2], 4, 4, dtype=rotation.dtype, device=rotation.device)
    out[..., :3, :3] = scale[..., None, None] * rotation
    out[..., :3, 3] = translation
    out[..., 3, 3] = 1.0
    return out


def apply_similarity(
    scale: torch.Tensor, rotation: torch.Tensor, translation: torch.Tensor, points: torch.Tensor
) -> torch.Tensor:
    """`s R p + t` for points `[..., N, 3]` (leading dims as `rotation.shape[:-2]`) -> `[..., N, 3]`."""
    rotated = points @ rotation.transpose(-1, -2)
    return scale[..., None, None] * rotated + translation[..., None, :]


def _lad2(
    pred: torch.Tensor, gt: torch.Tensor, s_init: float, lr: float, max_iters: int, tol: float
) -> tuple[float, float]:
    """MonST3R `absolute_value_scaling2`: Adam on `sum |s pred + t - gt|` from `(s_init, 0)`.

    The Adam update (betas 0.9 / 0.999, eps 1e-8) is written out as `torch.optim.Adam` computes
    it, with the analytic gradient of the L1 loss (`sign`, 0 at 0, as autograd's), which avoids
    the optimiser's per-step overhead; it equals the torch.optim loop to rounding.
    """
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    params = torch.tensor([s_init, 0.0], dtype=pred.dtype, device=pred.device)
    exp_avg = torch.zeros_like(params)
    exp_avg_sq = torch.zeros_like(params)
    prev_loss: float | None = None
    for step in range(1, max_iters + 1):
        residual = params[0] * pred + params[1] - gt
        loss = float(residual.abs().sum())
        sign = torch.sign(residual)
        grad = torch.stack([(sign * pred).sum(), sign.sum()])
        exp_avg.lerp_(grad, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        step_size = lr / (1 - beta1**step)
        denom = (exp_avg_sq.sqrt() / (1 - beta2**step) ** 0.5).add_(eps)
        params.addcdiv_(exp_avg, denom, value=-step_size)
        if prev_loss is not None and abs(prev_loss - loss) < tol:
            break
        prev_loss = loss
    return float(params[0]), float(params[1])


def align_depth(
    pred: torch.Tensor,
    gt: torch.Tensor,
    valid: torch.Tensor,
    mode: DepthAlignMode = "median",
    dims: int | None = None,
    lad_lr: float = 1e-4,
    lad_max_iters: int = 1000,
    lad_tol: float = 1e-6,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Align predicted depth to GT per sequence: `pred, gt, valid` `[...]` -> `(aligned, s, t)`.

    One `(scale, shift)` is fitted over the last `dims` dims (default: all dims, i.e. the whole
    input is one sequence; `dims=3` on `[B, T, H, W]` gives one per video, `dims=2` one per frame)
    using only `valid` pixels; `aligned = s * pred + t` everywhere. Modes (MonST3R
    `depth_evaluation`):
    - `"median"`: `s = median(gt) / median(pred)`, `t = 0` (`torch.median`: lower median);
    - `"scale_shift"`: least squares `min sum (s pred + t - gt)^2` (MonST3R `align_with_lstsq`);
    - `"lad2"`: L1 `min sum |s pred + t - gt|` by Adam (lr 1e-4, <= 1000 steps, stop when the loss
      changes by < 1e-6) from `s = median ratio, t = 0`, exactly MonST3R's `absolute_value_scaling2`;
    - `"none"`: `s = 1, t = 0`.
    Returns `aligned` (shape of `pred`) and `s`, `t` of shape `pred.shape[:-dims]`.
    """
    check_same_shape(("pred", "gt"), (pred, gt))
    valid = check_mask("valid", valid, pred.shape)
    check_finite("pred", pred, where=valid)
    check_finite("gt", gt, where=valid)
    if mode not in ("none", "median", "scale_shift", "lad2"):
        raise ValueError(f"mode must be 'none', 'median', 'scale_shift' or 'lad2', got {mode!r}")
    ndim = pred.ndim if dims is None else dims
    if not 0 < ndim <= pred.ndim:
        raise ValueError(f"dims must be in [1, {pred.ndim}], got {dims}")
    batch_shape = pred.shape[: pred.ndim - ndim]
    flat_pred = pred.reshape(-1, *pred.shape[pred.ndim - ndim :]).flatten(1)
    flat_gt = gt.reshape(flat_pred.shape)
    flat_valid = valid.reshape(flat_pred.shape)
    scales, shifts = [], []
    for p_all, g_all, m in zip(flat_pred, flat_gt, flat_valid, strict=True):
        if int(m.sum()) == 0:
            raise ValueError("align_depth: a sequence has no valid pixel")
        p, g = p_all[m], g_all[m]
        if mode == "none":
            s, t = 1.0, 0.0
        elif mode == "median" or mode == "lad2":
            s = float(torch.median(g) / torch.median(p))
            t = 0.0
            if mode == "lad2":
                s, t = _lad2(p.detach(), g.detach(), s, lad_lr, lad_max_iters, lad_tol)
        else:
            p64, g64 = p.double(), g.double()
            p_mean, g_mean = p64.mean(), g64.mean()
            var = ((p64 - p_mean) ** 2).sum()
            if float(var) <= 0:
                raise ValueError("align_depth scale_shift: predicted depth is constant; no fit")
            s = float(((p64 - p_mean) * (g64 - g_mean)).sum() / var)
            t = float(g_mean - s * p_mean)
        scales.append(s)
        shifts.append(t)
    scale = torch.tensor(scales, dtype=pred.dtype, device=pred.device).reshape(batch_shape)
    shift = torch.tensor(shifts, dtype=pred.dtype, device=pred.device).reshape(batch_shape)
    expand = (...,) + (None,) * ndim
    return scale[expand] * pred + shift[expand], scale, shift
