"""Joint training: L_gen is wan-mini's loss, lambda = 0 is generation-only, a short run learns."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from vfm3d.jointgen.model import JointGenerator
from vfm3d.jointgen.train import (
    JointTrainConfig,
    clip_targets,
    joint_loss,
    load_captioned_clips,
    mirror_caption,
    mirror_geometry,
    read_curve,
    train_jog3r,
)
from vfm3d.world import generate_dataset


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clips") / "c"
    generate_dataset(folder, "mixed", 4, 9, 32, 32, 0, progress=False)
    return load_captioned_clips(folder)


def _batch(g: JointGenerator, data, n: int = 2):
    index = torch.arange(n)
    z0 = g.encode_video(data.video(index, "cpu"))
    gen = torch.Generator().manual_seed(3)
    sigma = torch.sigmoid(torch.randn(n, generator=gen))
    eps = torch.randn(z0.shape, generator=gen)
    targets = clip_targets(
        data.depth[index],
        data.valid[index],
        data.intrinsics[index],
        data.cam_to_world[index],
        torch.arange(data.frames.shape[1]),
    )
    return z0, sigma, eps, targets


@torch.no_grad()
def test_gen_loss_is_wan_mini_flow_matching(clips) -> None:
    data, captions = clips
    g = JointGenerator.tiny(seed=0, corpus=captions).eval()
    z0, sigma, eps, targets = _batch(g, data)
    context = g.encode_prompts(captions[:2])
    # wan-mini's stage-2 loss (vfm3d.zoo.wan_mini._train_dit), written out
    s = sigma.view(-1, 1, 1, 1, 1)
    pred = g.transformer(
        hidden_states=(1.0 - s) * z0 + s * eps,
        timestep=sigma * 1000.0,
        encoder_hidden_states=context,
        return_dict=False,
    )[0]
    expected = F.mse_loss(pred, eps - z0)
    twin = joint_loss(g, z0, context, sigma, eps, lambda_rec=0.0)
    assert set(twin) == {"loss", "gen"}
    assert torch.equal(twin["gen"], expected) and torch.equal(twin["loss"], expected)
    joint = joint_loss(g, z0, context, sigma, eps, targets, lambda_rec=1.0)
    assert torch.equal(joint["gen"], expected)
    assert torch.allclose(joint["loss"], expected + joint["rec"])
    assert {"point", "depth", "camera"} <= set(joint)


def test_mirrored_ground_truth(clips) -> None:
    data, _ = clips
    geo = (data.depth[:2], data.valid[:2], data.intrinsics[:2], data.cam_to_world[:2])
    frames = torch.arange(9)
    plain = clip_targets(*geo, frames)
    mirrored = clip_targets(*mirror_geometry(*geo), frames)
    flip_x = torch.tensor([-1.0, 1.0, 1.0])
    expected = plain["points"].flip(-2) * flip_x
    valid = mirrored["valid"]
    assert torch.equal(valid, plain["valid"].flip(-1))
    assert torch.allclose(mirrored["points"][valid], expected[valid], atol=1e-4)
    assert torch.allclose(mirrored["depth"], plain["depth"].flip(-1), atol=1e-5)
    text = "a red sofa in a room, the camera walks left, turning right"
    assert mirror_caption(text) == "a red sofa in a room, the camera walks right, turning left"


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_lambda_zero_is_generation_only_training(clips, tmp_path) -> None:
    data, captions = clips
    cfg = JointTrainConfig(lambda_rec=0.0, batch=2, lr=2e-3, warmup=1, log_every=1)
    with_head = JointGenerator.tiny(seed=0, corpus=captions)
    head_before = _state(with_head.head)
    without = JointGenerator.tiny(seed=0, corpus=captions, head=False)
    for g, name in ((with_head, "a"), (without, "b")):
        train_jog3r(
            tmp_path / name, data, captions, 3, seed=5, generator=g, config=cfg, progress=False
        )
    for key, value in _state(with_head.head).items():
        assert torch.equal(value, head_before[key]), f"head weight {key} changed at lambda 0"
    a, b = _state(with_head.transformer), _state(without.transformer)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ta, tb = _state(with_head.text.encoder), _state(without.text.encoder)
    assert all(torch.equal(ta[k], tb[k]) for k in ta)
    curve_a, curve_b = read_curve(tmp_path / "a"), read_curve(tmp_path / "b")
    assert [r["gen"] for r in curve_a] == [r["gen"] for r in curve_b]
    assert "rec" not in curve_a[0]


def test_short_run_lowers_both_losses(clips, tmp_path) -> None:
    data, captions = clips
    g = JointGenerator.tiny(seed=0, corpus=captions)
    cfg = JointTrainConfig(batch=4, lr=2e-3, warmup=2, log_every=1)
    summary = train_jog3r(
        tmp_path,
        data,
        captions,
        20,
        seed=0,
        generator=g,
        config=cfg,
        progress=False,
        heldout=data,
        heldout_captions=captions,
    )
    curve = read_curve(tmp_path)
    assert len(curve) == 20
    for key in ("gen", "rec"):
        first = sum(r[key] for r in curve[:4]) / 4
        last = sum(r[key] for r in curve[-4:]) / 4
        assert last < first, (key, first, last)
        before, after = summary["heldout"]["before"][key], summary["heldout"]["after"][key]
        assert after < before, (key, before, after)
    meta = json.loads((tmp_path / "model" / "jog3r.json").read_text())
    assert meta["lambda_rec"] == 1.0
    assert meta["train"]["frames"] == 9 and meta["train"]["height"] == 32
    assert (tmp_path / "checkpoint_joint.safetensors").is_file()
    loaded = JointGenerator.from_pretrained(tmp_path / "model")
    assert loaded.head is not None and loaded.text is not None


def test_config_checks(clips, tmp_path) -> None:
    data, captions = clips
    with pytest.raises(ValueError, match="lambda_rec"):
        JointTrainConfig(lambda_rec=-1.0)
    with pytest.raises(ValueError, match="reconstruction head"):
        train_jog3r(
            tmp_path,
            data,
            captions,
            1,
            generator=JointGenerator.tiny(head=False, corpus=captions),
            progress=False,
        )
    with pytest.raises(ValueError, match="captions for"):
        train_jog3r(
            tmp_path, data, captions[:1], 1, generator=JointGenerator.tiny(), progress=False
        )
