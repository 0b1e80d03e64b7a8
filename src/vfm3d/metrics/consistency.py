"""3D consistency of a frame pair (the idea of MEt3R, Asim et al. CVPR 2025: "MEt3R: Measuring
Multi-View Consistency in Generated Images", code mohammadasim98/met3r).

Both frames' point maps (already in one world frame, e.g. from a reconstruction) are rendered
into the first camera, each carrying its own per-pixel features; the score is
`mean(1 - cosine(f_1, f_2))` over pixels both renderings cover. 0 means perfectly consistent,
1 uncorrelated, 2 opposite.

Two renderers:

- ``"nearest"`` (`splat_features`): each point lands on its nearest pixel, the nearest point
  wins (a hard z-buffer); the original vfm3d measure, default of `consistency_3d`.
- ``"soft"`` (`vfm3d.geometry.splat.soft_splat`): MEt3R's point rasteriser: each point reaches
  the pixels within ``radius`` with opacity ``1 - d^2 / r^2``, the ``points_per_pixel`` nearest
  in depth are composited front to back; see that module for the exact form. `pair_consistency`
  (the video score's per-pair term) uses it.

Differences from MEt3R's code, on purpose: the cosine is exact (MEt3R divides by
``|a| |b| + 1e-3``, which lowers the cosine of small features); pairs whose overlap is below
``min_overlap`` are flagged instead of scoring a silent 0 (MEt3R divides by ``mask.sum() + 1e-6``).
Geometry and features are inputs here: DUSt3R/MASt3R and DINO+FeatUp in MEt3R, any in vfm3d.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from vfm3d.geometry._checks import check_finite, check_mask, check_tail
from vfm3d.geometry.camera import project, transform_points
from vfm3d.geometry.splat import MET3R_POINTS_PER_PIXEL, SplatResult, soft_splat

#: default smallest fraction of camera 1's pixels both renders must cover for a pair to be scored
MIN_OVERLAP = 0.01


def splat_features(
    points_world: torch.Tensor,
    features: torch.Tensor,
    valid: torch.Tensor,
    world_to_cam: torch.Tensor,
    intrinsics: torch.Tensor,
    image_hw: tuple[int, int],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Render per-point features into a camera: points `[H', W', 3]`, features `[H', W', C]`.

    Each valid point in front of the camera lands on its nearest pixel; where several land on
    one pixel the one with the smallest z-depth wins. Returns `(rendered [H, W, C], covered
    [H, W] bool)` for `image_hw = (H, W)`; uncovered pixels hold 0.
    """
    check_tail("points_world", points_world, (None, None, 3))
    check_tail("world_to_cam", world_to_cam, (4, 4))
    check_tail("intrinsics", intrinsics, (3, 3))
    if features.shape[:-1] != points_world.shape[:-1]:
        raise ValueError(
            f"features {list(features.shape)} must match points_world {list(points_world.shape)} "
            "except the last dim"
        )
    valid = check_mask("valid", valid, points_world.shape[:-1])
    check_finite("points_world", points_world, where=valid[..., None])
    height, width = image_hw
    dtype = points_world.dtype
    uv, z = project(transform_points(world_to_cam.to(dtype), points_world), intrinsics.to(dtype))
    u = torch.round(uv[..., 0])
    v = torch.round(uv[..., 1])
    keep = valid & (z > 0) & (u >= 0) & (u < width) & (v >= 0) & (v < height)
    keep = keep & torch.isfinite(uv).all(dim=-1)
    pixel = (v[keep] * width + u[keep]).long()
    depth = z[keep]
    feats = features[keep]
    nearest = torch.full((height * width,), torch.inf, dtype=dtype, device=points_world.device)
    nearest = nearest.scatter_reduce(0, pixel, depth, reduce="amin")
    front = depth <= nearest[pixel]
    rendered = torch.zeros(
        height * width, features.shape[-1], dtype=features.dtype, device=features.device
    )
    rendered[pixel[front]] = feats[front]
    covered = torch.zeros(height * width, dtype=torch.bool, device=points_world.device)
    covered[pixel[front]] = True
    return rendered.reshape(height, width, -1), covered.reshape(height, width)


def consistency_3d(
    features_1: torch.Tensor,
    features_2: torch.Tensor,
    points_world_1: torch.Tensor,
    points_world_2: torch.Tensor,
    valid_1: torch.Tensor,
    valid_2: torch.Tensor,
    world_to_cam_1: torch.Tensor,
    intrinsics_1: torch.Tensor,
    *,
    renderer: str = "nearest",
    radius: float | None = None,
    points_per_pixel: int = MET3R_POINTS_PER_PIXEL,
) -> float:
    """MEt3R-style inconsistency of a frame pair -> float in [0, 2] (lower is more consistent).

    `features_k` `[H, W, C]` and `points_world_k` `[H, W, 3]` (with `valid_k` `[H, W]`) belong to
    frame k; both are rendered into camera 1 (`world_to_cam_1` `[4, 4]`, `intrinsics_1`
    `[3, 3]`, image size of frame 1) with ``renderer`` (``"nearest"``: `splat_features`;
    ``"soft"``: `soft_splat` with ``radius`` px and ``points_per_pixel``), and `1 - cosine` is
    averaged over pixels both cover. Raises ValueError when no pixel is covered by both.
    """
    hw = (int(points_world_1.shape[-3]), int(points_world_1.shape[-2]))
    if renderer == "nearest":
        render_1, cover_1 = splat_features(
            points_world_1, features_1, valid_1, world_to_cam_1, intrinsics_1, hw
        )
        render_2, cover_2 = splat_features(
            points_world_2, features_2, valid_2, world_to_cam_1, intrinsics_1, hw
        )
    elif renderer == "soft":
        renders = [
            soft_splat(p, f, v, world_to_cam_1, intrinsics_1, hw, radius, points_per_pixel)
            for p, f, v in (
                (points_world_1, features_1, valid_1),
                (points_world_2, features_2, valid_2),
            )
        ]
        (render_1, cover_1), (render_2, cover_2) = ((_mean_feature(r), r.covered) for r in renders)
    else:
        raise ValueError(f"renderer must be 'nearest' or 'soft', got {renderer!r}")
    both = cover_1 & cover_2
    if not bool(both.any()):
        raise ValueError("consistency_3d: the two frames share no covered pixel in camera 1")
    return float(_dissimilarity(render_1[both], render_2[both]).mean())


def _mean_feature(render: SplatResult) -> torch.Tensor:
    """The composite divided by its opacity ``[H, W, C]`` (float64; 0 where uncovered): the
    cosine is the same, but a pixel reached only by a point at the radius' rim (opacity ~1e-15)
    keeps a unit-scale feature instead of one lost in the cosine's epsilon."""
    alpha = render.alpha.double().clamp_min(torch.finfo(torch.float64).tiny)
    return render.features.double() / alpha[..., None]


def _dissimilarity(render_1: torch.Tensor, render_2: torch.Tensor) -> torch.Tensor:
    """``1 - cosine`` per row of ``[..., C]`` features, in float64, with torch's convention
    ``cos = a.b / max(|a| |b|, 1e-12)`` (1 where a feature is exactly zero)."""
    a, b = render_1.double(), render_2.double()
    norms = ((a * a).sum(-1) * (b * b).sum(-1)).sqrt()
    return 1.0 - (a * b).sum(-1) / norms.clamp_min(1e-12)


@dataclass
class PairConsistency:
    """The score of one frame pair (`pair_consistency`).

    - ``score``: mean ``1 - cosine`` over pixels both renders cover, in [0, 2]; ``None`` when
      the pair is flagged.
    - ``overlap``: fraction of camera 1's pixels both renders cover; ``coverage_1`` /
      ``coverage_2``: fraction each render covers alone.
    - ``flag``: ``None``, or why the pair was not scored (``"no shared view"``: overlap below
      ``min_overlap``).
    """

    score: float | None
    overlap: float
    coverage_1: float
    coverage_2: float
    flag: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def pair_consistency(
    features_1: torch.Tensor,
    features_2: torch.Tensor,
    points_world_1: torch.Tensor,
    points_world_2: torch.Tensor,
    valid_1: torch.Tensor,
    valid_2: torch.Tensor,
    world_to_cam_1: torch.Tensor,
    intrinsics_1: torch.Tensor,
    image_hw: tuple[int, int] | None = None,
    radius: float | None = None,
    points_per_pixel: int = MET3R_POINTS_PER_PIXEL,
    min_overlap: float = MIN_OVERLAP,
) -> PairConsistency:
    """MEt3R's pair score with the soft splat, flagging pairs that share too little view.

    Args:
        features_k: ``[H_k, W_k, C]`` per-pixel features of frame k (k = 1, 2).
        points_world_k: ``[H_k, W_k, 3]`` its point map in the pair's world frame.
        valid_k: ``[H_k, W_k]`` bool, pixels with a point.
        world_to_cam_1: ``[4, 4]`` camera 1 (world -> camera, OpenCV); ``intrinsics_1`` ``[3, 3]``.
        image_hw: rendered size (default frame 1's ``(H_1, W_1)``).
        radius, points_per_pixel: the splat's (`vfm3d.geometry.splat.soft_splat`).
        min_overlap: pairs whose both-covered fraction of pixels is below this are flagged
            ``"no shared view"`` with ``score=None`` (never a silent 0); at least one pixel is
            always required.

    Returns:
        `PairConsistency`.
    """
    check_tail("features_1", features_1, (None, None, None))
    hw = image_hw or (int(points_world_1.shape[-3]), int(points_world_1.shape[-2]))
    if not 0.0 <= float(min_overlap) <= 1.0:
        raise ValueError(f"min_overlap must lie in [0, 1], got {min_overlap}")
    if features_1.shape[-1] != features_2.shape[-1]:
        raise ValueError(
            f"features_1 and features_2 need the same width, got {features_1.shape[-1]} and "
            f"{features_2.shape[-1]}"
        )
    render_1 = soft_splat(
        points_world_1,
        features_1,
        valid_1,
        world_to_cam_1,
        intrinsics_1,
        hw,
        radius,
        points_per_pixel,
    )
    render_2 = soft_splat(
        points_world_2,
        features_2,
        valid_2,
        world_to_cam_1,
        intrinsics_1,
        hw,
        radius,
        points_per_pixel,
    )
    both = render_1.covered & render_2.covered
    pixels = both.numel()
    overlap = float(both.sum()) / pixels
    cov_1 = float(render_1.covered.sum()) / pixels
    cov_2 = float(render_2.covered.sum()) / pixels
    if not bool(both.any()) or overlap < float(min_overlap):
        return PairConsistency(None, overlap, cov_1, cov_2, "no shared view")
    mean_1, mean_2 = _mean_feature(render_1), _mean_feature(render_2)
    score = float(_dissimilarity(mean_1[both], mean_2[both]).mean())
    return PairConsistency(score, overlap, cov_1, cov_2)


def video_score(pairs: Sequence[PairConsistency]) -> float | None:
    """A video's score: the mean of its scored (unflagged) pairs; ``None`` if none is scored."""
    scores = [p.score for p in pairs if p.score is not None and math.isfinite(p.score)]
    return sum(scores) / len(scores) if scores else None
