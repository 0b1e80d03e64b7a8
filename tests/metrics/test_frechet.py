"""Frechet distance of two feature sets: closed forms, scipy's sqrtm, properties, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from vfm3d.metrics.frechet import frechet_distance, gaussian_frechet_distance, gaussian_stats


def test_diagonal_covariances_match_the_closed_form() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.uniform(0.1, 3.0, 5), rng.uniform(0.1, 3.0, 5)
    m1, m2 = rng.normal(size=5), rng.normal(size=5)
    expected = np.sum((m1 - m2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    got = gaussian_frechet_distance(
        torch.tensor(m1), torch.diag(torch.tensor(a)), torch.tensor(m2), torch.diag(torch.tensor(b))
    )
    assert got == pytest.approx(expected, rel=1e-10)


def test_full_covariances_match_scipy_sqrtm() -> None:
    linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 6)) @ rng.normal(size=(6, 6))
    y = rng.normal(size=(150, 6)) @ rng.normal(size=(6, 6)) + 0.5
    mx, my = x.mean(0), y.mean(0)
    cx, cy = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    root = linalg.sqrtm(cx @ cy).real
    expected = np.sum((mx - my) ** 2) + np.trace(cx) + np.trace(cy) - 2 * np.trace(root)
    assert frechet_distance(x, y) == pytest.approx(expected, rel=1e-8)
    mean, cov = gaussian_stats(x)
    assert np.allclose(mean.numpy(), mx) and np.allclose(cov.numpy(), cx)


@pytest.mark.parametrize("n, d", [(50, 4), (5, 16)])  # full rank and rank-deficient (N < D)
def test_identical_sets_are_zero_and_a_translation_costs_its_squared_length(n, d) -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(n, d))
    v = rng.normal(size=d)
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-8)
    assert frechet_distance(x, x + v) == pytest.approx(float(v @ v), rel=1e-7, abs=1e-8)


def test_bad_input_is_a_clear_error() -> None:
    x = np.zeros((4, 3))
    with pytest.raises(ValueError, match="N >= 2"):
        frechet_distance(x[:1], x)
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        frechet_distance(np.zeros(4), x)
    bad = x.copy()
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match="features_2: contains NaN or Inf \\(first in row 2\\)"):
        frechet_distance(x, bad)
    with pytest.raises(ValueError, match="widths differ"):
        frechet_distance(x, np.zeros((4, 2)))


_sets = arrays(
    np.float64,
    st.tuples(st.integers(2, 8), st.just(3)),
    elements=st.floats(-10, 10, allow_nan=False, width=64),
)


@settings(max_examples=40, deadline=None)
@given(_sets, _sets)
def test_symmetric_and_non_negative(x: np.ndarray, y: np.ndarray) -> None:
    forward, backward = frechet_distance(x, y), frechet_distance(y, x)
    assert forward >= 0.0
    assert forward == pytest.approx(backward, rel=1e-6, abs=1e-6)
