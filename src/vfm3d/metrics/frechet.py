"""Frechet distance between two Gaussians fitted to feature sets (the FID / FVD statistic).

Reference: Dowson & Landau 1982; Heusel et al. 2017 (FID, ``pytorch-fid``'s
``calculate_frechet_distance``); Unterthiner et al. 2018 (FVD, the same statistic on video
features). For features ``x [N, D]`` and ``y [M, D]`` with means ``mu_x, mu_y`` and covariances
``S_x, S_y`` (unbiased, ``1 / (N - 1)``, as ``np.cov``)::

    d^2 = |mu_x - mu_y|^2 + Tr(S_x) + Tr(S_y) - 2 Tr((S_x S_y)^(1/2))

This is the squared 2-Wasserstein distance between the two Gaussians (so it is 0 for identical
sets and ``|v|^2`` for a set and its translation by ``v``); like FID it is reported squared.

Square root route: ``S_x S_y`` is not symmetric, but it is similar to the symmetric PSD matrix
``A = S_x^(1/2) S_y S_x^(1/2)`` (``S_x S_y = S_x^(1/2) A S_x^(-1/2)`` where ``S_x`` is
invertible, and by continuity otherwise), so ``Tr((S_x S_y)^(1/2)) = sum_i sqrt(lambda_i(A))``.
Both square roots come from symmetric eigendecompositions (``torch.linalg.eigh`` in float64)
with eigenvalues below zero (round-off) clamped to 0; this is exact for the rank-deficient
covariances of ``N <= D`` sets, where ``scipy.linalg.sqrtm`` needs an ``eps`` offset.

Caution: the estimate is biased upward at small ``N`` (it grows as ``N`` falls); compare
distances computed from equally many samples only.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["frechet_distance", "gaussian_frechet_distance", "gaussian_stats"]


def gaussian_stats(
    features: torch.Tensor | np.ndarray, name: str = "features"
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mean [D], covariance [D, D])`` float64 of ``features [N, D]`` (unbiased covariance).

    Raises ValueError for a shape other than ``[N, D]``, ``N < 2`` or non-finite values.
    """
    x = torch.as_tensor(features).detach().to("cpu", torch.float64)
    if x.ndim != 2 or x.shape[1] < 1:
        raise ValueError(f"{name}: must be [N, D] feature vectors, got shape {list(x.shape)}")
    if x.shape[0] < 2:
        raise ValueError(
            f"{name}: the Frechet distance needs N >= 2 feature vectors to estimate a "
            f"covariance, got N = {x.shape[0]}"
        )
    bad = ~torch.isfinite(x)
    if bool(bad.any()):
        row = int(bad.any(dim=1).nonzero()[0])
        raise ValueError(f"{name}: contains NaN or Inf (first in row {row})")
    mean = x.mean(dim=0)
    centred = x - mean
    return mean, centred.T @ centred / (x.shape[0] - 1)


def _psd_sqrt(matrix: torch.Tensor) -> torch.Tensor:
    """Square root of a symmetric PSD ``[D, D]`` matrix (eigenvalues clamped at 0)."""
    sym = (matrix + matrix.T) / 2
    values, vectors = torch.linalg.eigh(sym)
    return (vectors * values.clamp_min(0).sqrt()) @ vectors.T


def gaussian_frechet_distance(
    mean_1: torch.Tensor, cov_1: torch.Tensor, mean_2: torch.Tensor, cov_2: torch.Tensor
) -> float:
    """Squared Frechet distance of ``N(mean_1 [D], cov_1 [D, D])`` and ``N(mean_2, cov_2)``
    (module docstring); >= 0 up to round-off (negative round-off returns 0)."""
    m1, m2 = (torch.as_tensor(m, dtype=torch.float64) for m in (mean_1, mean_2))
    c1, c2 = (torch.as_tensor(c, dtype=torch.float64) for c in (cov_1, cov_2))
    d = m1.shape[-1]
    if m1.shape != (d,) or m2.shape != (d,) or c1.shape != (d, d) or c2.shape != (d, d):
        raise ValueError(
            f"means must be [D] and covariances [D, D] of one D; got {list(m1.shape)}, "
            f"{list(c1.shape)}, {list(m2.shape)}, {list(c2.shape)}"
        )
    for name, value in (("mean_1", m1), ("cov_1", c1), ("mean_2", m2), ("cov_2", c2)):
        if not bool(torch.isfinite(value).all()):
            raise ValueError(f"{name}: contains NaN or Inf")
    root_1 = _psd_sqrt(c1)
    middle = root_1 @ c2 @ root_1
    cross = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp_min(0).sqrt().sum()
    value = float((m1 - m2).square().sum() + torch.trace(c1) + torch.trace(c2) - 2 * cross)
    return max(value, 0.0)


def frechet_distance(
    features_1: torch.Tensor | np.ndarray, features_2: torch.Tensor | np.ndarray
) -> float:
    """Squared Frechet distance between Gaussians fitted to ``features_1 [N, D]`` and
    ``features_2 [M, D]`` (``N, M >= 2``; module docstring)."""
    mean_1, cov_1 = gaussian_stats(features_1, "features_1")
    mean_2, cov_2 = gaussian_stats(features_2, "features_2")
    if mean_1.shape != mean_2.shape:
        raise ValueError(
            f"feature widths differ: features_1 has D = {mean_1.shape[0]}, features_2 has "
            f"D = {mean_2.shape[0]}"
        )
    return gaussian_frechet_distance(mean_1, cov_1, mean_2, cov_2)
