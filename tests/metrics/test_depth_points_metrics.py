"""Video depth metrics (MonST3R), Depth Err and Point Err (VidFM3D)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vfm3d.geometry import apply_similarity, random_rotation
from vfm3d.metrics import depth_error, depth_metrics, point_error

F64 = torch.float64


def _depth(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    gt = 1.0 + 9.0 * torch.rand(4, 8, 8, generator=generator, dtype=F64)
    valid = torch.rand(4, 8, 8, generator=generator) > 0.1
    return gt, valid


def test_depth_metrics_perfect_up_to_alignment() -> None:
    gt, valid = _depth()
    for align, pred in (("none", gt), ("median", 3.0 * gt), ("scale_shift", 0.5 * gt + 2.0)):
        m = depth_metrics(pred, gt, valid, align=align)  # type: ignore[arg-type]
        assert m.abs_rel < 1e-12 and m.rmse < 1e-10 and m.log_rmse < 1e-12
        assert m.delta1 == m.delta2 == m.delta3 == 1.0
    m = depth_metrics(3.0 * gt, gt, valid, align="median")
    assert abs(m.scale - 1.0 / 3.0) < 1e-12
    assert set(m.to_json()) >= {
        "abs_rel",
        "sq_rel",
        "rmse",
        "log_rmse",
        "delta1",
        "delta2",
        "delta3",
    }


def test_depth_metrics_known_values() -> None:
    gt = torch.tensor([1.0, 2.0, 4.0, 8.0], dtype=F64)
    pred = torch.tensor([1.1, 2.0, 2.5, 8.0], dtype=F64)
    m = depth_metrics(pred, gt, torch.ones(4, dtype=torch.bool), align="none")
    diff = np.array([0.1, 0.0, -1.5, 0.0])
    g = gt.numpy()
    assert abs(m.abs_rel - np.mean(np.abs(diff) / g)) < 1e-12
    assert abs(m.sq_rel - np.mean(diff**2 / g)) < 1e-12
    assert abs(m.rmse - math.sqrt(np.mean(diff**2))) < 1e-12
    assert (
        m.delta1 == 0.75 and m.delta2 == 0.75 and m.delta3 == 1.0
    )  # ratio 1.6: > 1.25^2, < 1.25^3
    assert m.num_pixels == 4


def test_depth_metrics_max_depth_filters_gt_and_clips_pred() -> None:
    gt = torch.tensor([1.0, 2.0, 100.0], dtype=F64)
    pred = torch.tensor([1.0, 200.0, 5.0], dtype=F64)
    m = depth_metrics(pred, gt, torch.ones(3, dtype=torch.bool), align="none", max_depth=70.0)
    assert m.num_pixels == 2  # gt 100 is beyond max_depth
    assert abs(m.rmse - math.sqrt((68.0**2) / 2)) < 1e-9  # pred 200 clipped to 70


def test_depth_metrics_lad2_runs_and_errors() -> None:
    gt, valid = _depth(1)
    m = depth_metrics(0.7 * gt + 0.1, gt, valid, align="lad2")
    assert m.abs_rel < 0.05
    with pytest.raises(ValueError, match="no valid pixel"):
        depth_metrics(gt, gt, torch.zeros_like(valid))
    with pytest.raises(ValueError, match="shape mismatch"):
        depth_metrics(gt[:2], gt, valid)


def test_depth_error_definition() -> None:
    gt = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=F64)
    pred = torch.tensor([[1.5, 2.0], [1.0, 400.0]], dtype=F64)
    valid = torch.tensor([[True, True], [True, False]])
    assert abs(depth_error(pred, gt, valid) - (0.5 + 0.0 + 2.0) / 3) < 1e-12
    conf = torch.tensor([[2.0, 1.0], [0.5, 9.0]], dtype=F64)
    # not divided by the sum of confidences: mean of conf * |d - d_gt| over valid pixels
    assert abs(depth_error(pred, gt, valid, conf) - (1.0 + 0.0 + 1.0) / 3) < 1e-12
    # channel dim of 1 is accepted; huge errors clamp at 100 as the reference does
    assert (
        abs(
            depth_error(pred[..., None], gt[..., None], torch.ones(2, 2, dtype=torch.bool))
            - (0.5 + 0 + 2 + 100) / 4
        )
        < 1e-12
    )
    with pytest.raises(ValueError, match="NaN"):
        depth_error(torch.full_like(gt, float("nan")), gt, valid)


def _points(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    gt = torch.randn(2, 3, 5, 6, 3, generator=generator, dtype=F64)
    valid = torch.rand(2, 3, 5, 6, generator=generator) > 0.2
    return gt, valid


def test_point_error_is_zero_for_similarity_of_gt() -> None:
    gt, valid = _points()
    rotation = random_rotation((), torch.Generator().manual_seed(3))
    pred = apply_similarity(
        torch.tensor(2.5, dtype=F64),
        rotation,
        torch.tensor([1.0, 2, 3], dtype=F64),
        gt.reshape(-1, 3),
    ).reshape(gt.shape)
    assert point_error(pred, gt, valid) < 1e-10
    assert point_error(pred[0], gt[0], valid[0]) < 1e-10  # single sample [T, H, W, 3]


def test_point_error_weights_and_mean_over_samples() -> None:
    gt, valid = _points(1)
    valid[:] = True
    pred = gt.clone()
    # shift one pixel of sample 0 that is NOT among the confident ones: the fit ignores it
    conf = torch.ones(gt.shape[:-1], dtype=F64)
    conf[0, 0, 0, 0] = 0.5  # below the 75th percentile (= 1)
    pred[0, 0, 0, 0] += torch.tensor([0.0, 0.0, 3.0], dtype=F64)
    error = point_error(pred, gt, valid, gt_conf=conf)
    total_weight = float(conf[0].sum())
    expected_sample0 = 0.5 * 3.0 / (total_weight + 1e-6)
    assert abs(error - expected_sample0 / 2) < 1e-9  # sample 1 is perfect; mean of the two


def test_point_error_bad_input() -> None:
    gt, valid = _points()
    with pytest.raises(ValueError, match="shape mismatch"):
        point_error(gt[:, :2], gt, valid)
    with pytest.raises(ValueError, match="no valid pixel"):
        point_error(gt, gt, torch.zeros_like(valid))
    with pytest.raises(ValueError, match="gt_conf"):
        point_error(gt, gt, valid, gt_conf=torch.ones(3))
