"""Probe losses: zero at the target, normalisation invariance, confidence regulariser, camera."""

from __future__ import annotations

import pytest
import torch

from vfm3d.probe import ProbeConfig
from vfm3d.probe.losses import camera_loss, depth_loss, point_loss, probe_loss


def test_point_loss_is_scale_invariant_and_conf_regularised() -> None:
    torch.manual_seed(0)
    gt = torch.randn(2, 3, 4, 5, 3) + torch.tensor([0, 0, 3.0])
    valid = torch.rand(2, 3, 4, 5) > 0.2
    conf = torch.full((2, 3, 4, 5), 2.0)
    cfg = ProbeConfig.cpu_small()
    # scaled prediction: zero error after normalisation -> only -alpha * log(conf) remains
    loss = point_loss(3.0 * gt, conf, gt, valid, None, cfg)
    assert float(loss) == pytest.approx(-0.2 * float(torch.log(torch.tensor(2.0))), abs=1e-5)
    gt_mode = ProbeConfig.cpu_small(conf_mode="gt")
    assert float(point_loss(3.0 * gt, conf, gt, valid, None, gt_mode)) == pytest.approx(0, abs=1e-5)
    # depth is not normalised: a scaled depth costs
    d = gt[..., 2]
    assert float(depth_loss(2 * d, conf, d, valid, None, gt_mode)) == pytest.approx(
        float(d[valid].mean()), rel=1e-5
    )
    # invalid pixels do not count
    noisy = gt.clone()
    noisy[~valid] += 100.0
    assert float(point_loss(noisy, conf, gt, valid, None, gt_mode)) < 1e-4 + float(
        point_loss(gt, conf, gt, valid, None, gt_mode)
    )


def test_camera_loss_weights_and_gamma() -> None:
    cfg = ProbeConfig.cpu_small(camera_iters=2)
    gt = torch.zeros(1, 2, 9)
    off = torch.zeros(1, 2, 9)
    off[..., 7:] = 0.5  # only FoV wrong: huber(0.5) = 0.125
    zero = camera_loss([gt, gt], gt, cfg)
    assert float(zero["camera"]) == 0.0
    late = camera_loss([gt, off], gt, cfg)  # last iteration weight 1
    early = camera_loss([off, gt], gt, cfg)  # first iteration weight gamma
    assert float(late["camera"]) == pytest.approx(0.5 * 0.125 / 2)
    assert float(early["camera"]) == pytest.approx(0.6 * 0.5 * 0.125 / 2)


def test_probe_loss_is_the_sum() -> None:
    torch.manual_seed(0)
    cfg = ProbeConfig.cpu_small(camera_iters=1)
    b, s, h, w = 1, 2, 4, 4
    pred = {
        "points": torch.randn(b, s, h, w, 3),
        "points_conf": torch.rand(b, s, h, w) + 1,
        "depth": torch.rand(b, s, h, w) + 1,
        "depth_conf": torch.rand(b, s, h, w) + 1,
        "pose_enc_list": [torch.randn(b, s, 9)],
    }
    batch = {
        "points": torch.randn(b, s, h, w, 3),
        "depth": torch.rand(b, s, h, w) + 1,
        "valid": torch.ones(b, s, h, w, dtype=torch.bool),
        "conf": torch.ones(b, s, h, w),
        "pose_enc": torch.randn(b, s, 9),
    }
    out = probe_loss(pred, batch, cfg)
    torch.testing.assert_close(
        out["loss"], out["point"] + out["depth"] + cfg.camera_weight * out["camera"]
    )
    assert cfg.camera_weight == 10.0  # cpu-small (docs/probe.md "Calibration"); paper: 1


def test_detached_confidence_keeps_vidfm3d_map_gradients() -> None:
    """``conf_mode="detached"``: the maps get VidFM3D's gradient (``"gt"``), the confidence is
    still trained (towards ``alpha / err``)."""
    torch.manual_seed(0)
    gt = torch.randn(1, 2, 3, 4) + 3.0
    valid = torch.ones(1, 2, 3, 4, dtype=torch.bool)
    grads = {}
    noisy = gt + torch.randn_like(gt)
    for mode in ("gt", "detached", "vggt"):
        pred = noisy.clone().requires_grad_(True)
        conf = torch.full_like(gt, 2.0, requires_grad=True)
        depth_loss(pred, conf, gt, valid, None, ProbeConfig.cpu_small(conf_mode=mode)).backward()
        grads[mode] = (pred.grad.clone(), None if conf.grad is None else conf.grad.clone())
    torch.testing.assert_close(grads["detached"][0], grads["gt"][0])
    assert not torch.allclose(grads["vggt"][0], grads["gt"][0])
    assert grads["detached"][1] is not None and grads["detached"][1].abs().sum() > 0
    assert ProbeConfig.cpu_small().conf_mode == "detached"
