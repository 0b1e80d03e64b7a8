"""Umeyama SE(3)/Sim(3) (vs evo and closed form) and depth alignment."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from evo.core.geometry import umeyama_alignment
from hypothesis import given
from hypothesis import strategies as st

from vfm3d.geometry import (
    DegenerateAlignmentError,
    align_depth,
    apply_similarity,
    random_rotation,
    umeyama,
)

seeds = st.integers(0, 2**31 - 1)


@given(seeds, st.floats(0.05, 20.0))
def test_umeyama_recovers_random_sim3(seed: int, scale: float) -> None:
    generator = torch.Generator().manual_seed(seed)
    src = torch.randn(3, 30, 3, generator=generator, dtype=torch.float64)
    rotation = random_rotation((3,), generator)
    translation = 10.0 * torch.randn(3, 3, generator=generator, dtype=torch.float64)
    s = torch.full((3,), scale, dtype=torch.float64)
    dst = apply_similarity(s, rotation, translation, src)
    s_hat, r_hat, t_hat = umeyama(src, dst)
    assert torch.allclose(s_hat, s, rtol=1e-9)
    assert torch.allclose(r_hat, rotation, atol=1e-9)
    assert torch.allclose(t_hat, translation, atol=1e-8 * max(1.0, scale))


def test_umeyama_equals_evo() -> None:
    rng = np.random.default_rng(3)
    src = rng.normal(size=(40, 3))
    dst = 1.7 * src @ np.linalg.qr(rng.normal(size=(3, 3)))[0].T + rng.normal(size=3)
    dst += 0.1 * rng.normal(size=dst.shape)
    for with_scale in (True, False):
        r_evo, t_evo, c_evo = umeyama_alignment(src.T, dst.T, with_scale)
        s, r, t = umeyama(torch.from_numpy(src), torch.from_numpy(dst), with_scale=with_scale)
        assert abs(float(s) - c_evo) < 1e-12
        assert np.allclose(r.numpy(), r_evo, atol=1e-12)
        assert np.allclose(t.numpy(), t_evo, atol=1e-12)


def test_umeyama_weights() -> None:
    generator = torch.Generator().manual_seed(0)
    src = torch.randn(20, 3, generator=generator, dtype=torch.float64)
    rotation = random_rotation((), generator)
    dst = apply_similarity(
        torch.tensor(2.0, dtype=torch.float64), rotation, torch.zeros(3, dtype=torch.float64), src
    )
    dst_corrupt = dst.clone()
    dst_corrupt[:5] += 50.0  # outliers with weight 0 must not matter
    weights = torch.ones(20, dtype=torch.float64)
    weights[:5] = 0.0
    s, r, _ = umeyama(src, dst_corrupt, weights=weights)
    assert abs(float(s) - 2.0) < 1e-10 and torch.allclose(r, rotation, atol=1e-10)
    # integer weights equal repeating points
    w = torch.tensor([1.0, 2.0, 3.0] * 6 + [1.0, 1.0], dtype=torch.float64)
    noisy = dst + 0.1 * torch.randn(20, 3, generator=generator, dtype=torch.float64)
    rep = w.long()
    s1, r1, t1 = umeyama(src, noisy, weights=w)
    s2, r2, t2 = umeyama(src.repeat_interleave(rep, 0), noisy.repeat_interleave(rep, 0))
    assert torch.allclose(s1, s2) and torch.allclose(r1, r2) and torch.allclose(t1, t2)


def test_umeyama_bad_input() -> None:
    pts = torch.randn(10, 3, dtype=torch.float64)
    with pytest.raises(DegenerateAlignmentError, match="at least 3"):
        umeyama(pts[:2], pts[:2])
    with pytest.raises(DegenerateAlignmentError, match="degenerate"):
        umeyama(torch.ones(10, 3, dtype=torch.float64), pts)
    line = torch.linspace(0, 1, 10, dtype=torch.float64)[:, None] * torch.tensor(
        [1.0, 2.0, 3.0], dtype=torch.float64
    )
    with pytest.raises(DegenerateAlignmentError, match="collinear"):
        umeyama(line, line)
    bad = pts.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        umeyama(bad, pts)
    with pytest.raises(ValueError, match="shape mismatch"):
        umeyama(pts, pts[:9])


def test_align_depth_modes() -> None:
    generator = torch.Generator().manual_seed(0)
    gt = 1.0 + 4.0 * torch.rand(2, 3, 8, 8, generator=generator, dtype=torch.float64)
    valid = torch.rand(2, 3, 8, 8, generator=generator) > 0.2
    pred = 0.5 * gt  # a pure scale error
    aligned, s, t = align_depth(pred, gt, valid, mode="median", dims=3)
    assert s.shape == (2,) and torch.allclose(s, torch.full((2,), 2.0, dtype=torch.float64))
    assert torch.allclose(aligned, gt) and bool((t == 0).all())
    affine = 0.5 * gt - 0.3
    aligned, s, t = align_depth(affine, gt, valid, mode="scale_shift")
    assert torch.allclose(aligned, gt, atol=1e-10)
    assert abs(float(s) - 2.0) < 1e-10 and abs(float(t) - 0.6) < 1e-10
    # per-frame alignment: one (s, t) per frame
    _, s, _ = align_depth(pred, gt, valid, mode="median", dims=2)
    assert s.shape == (2, 3)
    # invalid pixels do not influence the fit
    corrupted = pred.clone()
    corrupted[~valid] = 1e6
    _, s, _ = align_depth(corrupted, gt, valid, mode="median")
    assert abs(float(s) - 2.0) < 1e-12


def test_align_depth_lad2_reduces_l1() -> None:
    generator = torch.Generator().manual_seed(2)
    gt = 1.0 + torch.rand(500, generator=generator, dtype=torch.float64)
    pred = 0.8 * gt + 0.2 + 0.01 * torch.randn(500, generator=generator, dtype=torch.float64)
    valid = torch.ones(500, dtype=torch.bool)
    median_aligned, _, _ = align_depth(pred, gt, valid, mode="median")
    lad_aligned, _, t = align_depth(pred, gt, valid, mode="lad2")
    assert (lad_aligned - gt).abs().sum() < (median_aligned - gt).abs().sum()
    assert float(t) != 0.0


def test_align_depth_errors() -> None:
    x = torch.ones(4, 4)
    with pytest.raises(ValueError, match="mode"):
        align_depth(x, x, x > 0, mode="mean")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no valid pixel"):
        align_depth(x, x, x < 0)
    with pytest.raises(ValueError, match="valid must have shape"):
        align_depth(x, x, torch.ones(3, dtype=torch.bool))


def test_umeyama_gradcheck() -> None:
    generator = torch.Generator().manual_seed(5)
    src = torch.randn(8, 3, generator=generator, dtype=torch.float64, requires_grad=True)
    dst = (
        2.0 * src.detach() + 0.1 * torch.randn(8, 3, generator=generator, dtype=torch.float64)
    ).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: umeyama(a, b), (src, dst))


def test_lad2_equals_the_torch_optim_loop_of_monst3r() -> None:
    from vfm3d.geometry.align import _lad2

    generator = torch.Generator().manual_seed(3)
    gt = 1.0 + torch.rand(200, generator=generator, dtype=torch.float64)
    pred = 0.6 * gt + 0.3 + 0.05 * torch.randn(200, generator=generator, dtype=torch.float64)
    s_init = float(torch.median(gt) / torch.median(pred))
    # the reference loop (MonST3R absolute_value_scaling2), written with torch.optim.Adam
    s = torch.tensor([s_init], dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0.0], dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.Adam([s, t], lr=1e-2)
    prev = None
    for _ in range(40):
        optimizer.zero_grad()
        loss = torch.sum(torch.abs(s * pred + t - gt))
        loss.backward()
        optimizer.step()
        if prev is not None and abs(prev - loss.item()) < 1e-6:
            break
        prev = loss.item()
    ours = _lad2(pred, gt, s_init, lr=1e-2, max_iters=40, tol=1e-6)
    assert abs(ours[0] - s.item()) < 1e-12 and abs(ours[1] - t.item()) < 1e-12
