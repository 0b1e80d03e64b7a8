"""``vggt-mini``: a small `vfm3d.models.vggt.VGGT` trained with 3D supervision on world clips (the
3D expert, the upper bound of the zoo as Fast3R is in the paper).

Each sample is ``NUM_VIEWS`` frames of a clip (random sorted indices); targets come from
`vfm3d.geometry.probe_targets` (frame 0 of the sample is the world, scaled so that frame 0's mean
point distance is 1) and `vfm3d.geometry.encode_pose` (``absT_quaR_FoV`` of world_to_cam). Losses
are VGGT's, as implemented for the probe (`vfm3d.probe.losses.probe_loss`): confidence-weighted
point loss after mean-distance normalisation, confidence-weighted depth loss, Huber camera loss
over the refinement iterations.

Sizes: 32x32 frames, 8x8 conv patch embedding -> 4 x 4 patch tokens (+1 camera, 4 registers),
width 128, 4 frame/global block pairs; DPT heads read layers (0, 1, 2, 3). No tracking head.
Output folder: ``config.json`` + ``model.safetensors`` (float16; the adapter loads float32), the
layout `VGGT.from_pretrained` and the ``vggt`` adapter read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from vfm3d.zoo.common import ClipTensors, Trainer, batch_generator

NAME = "vggt-mini"
STAGES = ("geo",)
DEFAULT_STEPS = {"geo": 600}
NUM_VIEWS = 4


def config(img_size: int = 32) -> Any:
    """The `VGGTConfig` of vggt-mini (``img_size``: the training frames')."""
    from vfm3d.models.vggt import VGGTConfig

    return VGGTConfig(
        img_size=img_size,
        patch_size=8,
        embed_dim=128,
        depth=4,
        num_heads=4,
        mlp_ratio=4.0,
        num_register_tokens=4,
        patch_embed="conv",
        intermediate_layer_idx=(0, 1, 2, 3),
        dpt_features=32,
        dpt_out_channels=(32, 64, 64, 64),
        camera_trunk_depth=1,
        camera_num_heads=4,
        enable_track=False,
    )


def build(seed: int, img_size: int = 32) -> Any:
    """A random-initialised VGGT of the vggt-mini config."""
    from vfm3d.models.vggt import VGGT

    return VGGT.random(config(img_size), seed=seed)


def save_model(folder: Path, model: torch.nn.Module) -> Path:
    """Save in the ``vggt`` adapter's layout with float16 weights."""
    import copy

    half = copy.deepcopy(model).cpu().half()
    half.save_pretrained(folder)
    return folder


def targets(data: ClipTensors, clip: torch.Tensor, frames: torch.Tensor, device: Any) -> dict:
    """Probe-normalised targets of ``frames`` ``[B, S]`` of clips ``clip`` ``[B]``.

    Returns ``images [B, S, 3, H, W]``, ``points [B, S, H, W, 3]``, ``depth``/``valid``
    ``[B, S, H, W]`` and ``pose_enc [B, S, 9]`` on ``device``.
    """
    from vfm3d.geometry import encode_pose, probe_targets

    rows = clip[:, None].expand_as(frames)
    images = data.frames[rows, frames].to(device).permute(0, 1, 4, 2, 3).float() / 255.0
    t = probe_targets(
        data.depth[rows, frames].to(device),
        data.valid[rows, frames].to(device),
        data.intrinsics[rows, frames].to(device),
        data.cam_to_world[rows, frames].float().to(device),
    )
    h, w = images.shape[-2:]
    pose = encode_pose(t.world_to_cam, t.intrinsics, (h, w))
    return {
        "images": images,
        "points": t.points.float(),
        "depth": t.depth.float(),
        "valid": t.valid,
        "pose_enc": pose.float(),
    }


def predictions(model: torch.nn.Module, images: torch.Tensor) -> dict[str, Any]:
    """VGGT outputs renamed to the keys `vfm3d.probe.losses.probe_loss` expects."""
    out = model(images)
    return {
        "points": out["world_points"],
        "points_conf": out["world_points_conf"],
        "depth": out["depth"][..., 0],
        "depth_conf": out["depth_conf"],
        "pose_enc_list": out["pose_enc_list"],
    }


def sample_views(gen: torch.Generator, batch: int, num_frames: int) -> torch.Tensor:
    """``[batch, NUM_VIEWS]`` sorted distinct frame indices in ``[0, num_frames)``."""
    scores = torch.rand(batch, num_frames, generator=gen)
    return scores.argsort(dim=1)[:, :NUM_VIEWS].sort(dim=1).values


def train(
    out: Path,
    data: ClipTensors,
    steps: dict[str, int],
    seed: int,
    device: torch.device,
    progress: bool = True,
    batch: int | None = None,
    deadline: float | None = None,
) -> dict[str, Any]:
    """3D-supervised training into ``out`` (resumable); the model goes to ``out/model``."""
    from vfm3d.probe.config import ProbeConfig
    from vfm3d.probe.losses import probe_loss

    batch = batch or 8
    model = build(seed, int(data.frames.shape[2])).to(device)
    loss_config = ProbeConfig.cpu_small()
    num_frames = data.frames.shape[1]
    if num_frames < NUM_VIEWS:
        raise ValueError(f"vggt-mini needs clips of >= {NUM_VIEWS} frames, got {num_frames}")

    def step_fn(step: int) -> dict[str, torch.Tensor]:
        gen = batch_generator(seed, step)
        clip = torch.randint(len(data), (batch,), generator=gen)
        views = sample_views(gen, batch, num_frames)
        target = targets(data, clip, views, device)
        pred = predictions(model, target["images"])
        return probe_loss(pred, target, loss_config)

    trainer = Trainer(
        out,
        "geo",
        {"model": model},
        steps["geo"],
        lr=5e-4,
        warmup=200,
        progress=progress,
        deadline=deadline,
    )
    trainer.fit(step_fn)
    save_model(out / "model", model)
    return {
        "parameters": sum(p.numel() for p in model.parameters()),
        "aggregator_parameters": sum(p.numel() for p in model.aggregator.parameters()),
        "objective": "VGGT losses (points, depth, camera) on probe-normalised world targets",
    }


def twin(folder: Path, seed: int, reference: Path) -> Path:
    """Save the random-init twin of the model in ``reference`` (same config) into ``folder``."""
    from vfm3d.models.vggt import VGGT, VGGTConfig

    return save_model(folder, VGGT.random(VGGTConfig.from_json(reference / "config.json"), seed))
