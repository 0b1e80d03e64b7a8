"""``dinov2-mini``: the DINOv2 architecture (transformers ``Dinov2Model``) trained per frame with
**masked image modelling**: half of the 8x8-pixel patches of a frame are replaced by the model's
``mask_token`` and a linear head on the final (layer-normed) tokens predicts the pixels of the
masked patches, normalised per patch (MAE's ``norm_pix_loss``); the loss is the MSE over masked
patches only. Frames are sampled at random from the training clips (random horizontal flips).

Sizes: 32x32 frames, 8x8 patches -> 4 x 4 tokens per frame, width 128, 4 blocks, 4 heads.
Output folder: the layout ``Dinov2Model.from_pretrained`` reads (``config.json``,
``model.safetensors`` in float16; the ``dinov2`` adapter loads it in float32) plus
``preprocessor_config.json`` with the ImageNet pixel statistics.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vfm3d.zoo.common import (
    ClipTensors,
    Trainer,
    batch_generator,
    random_mask,
    save_hf_half,
    seeded_init,
)

NAME = "dinov2-mini"
STAGES = ("mim",)
DEFAULT_STEPS = {"mim": 1500}
MASK_RATIO = 0.5


def config_dict(image_size: int = 32) -> dict[str, Any]:
    """``Dinov2Config`` keyword arguments of dinov2-mini (``image_size``: the training frames')."""
    return {
        "image_size": image_size,
        "patch_size": 8,
        "hidden_size": 128,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "mlp_ratio": 4,
    }


def build(seed: int, image_size: int = 32) -> nn.Module:
    """A random-initialised ``Dinov2Model`` of the dinov2-mini config."""
    from transformers import Dinov2Config, Dinov2Model

    return seeded_init(seed, lambda: Dinov2Model(Dinov2Config(**config_dict(image_size))))


def save_model(folder: Path, model: nn.Module) -> Path:
    """Save in the ``dinov2`` adapter's layout (weights in float16, ImageNet pixel statistics)."""
    from vfm3d.backbones.dinov2 import Dinov2Backbone

    return save_hf_half(Dinov2Backbone, model, folder)


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """``[N, 3, H, W]`` -> ``[N, (H/p)(W/p), p*p*3]`` (row-major patches)."""
    n, c, h, w = images.shape
    x = images.reshape(n, c, h // patch, patch, w // patch, patch)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(n, (h // patch) * (w // patch), patch * patch * c)


def norm_pixels(patches: torch.Tensor) -> torch.Tensor:
    """Normalise each patch's pixels to zero mean, unit variance (MAE ``norm_pix_loss``)."""
    mean = patches.mean(dim=-1, keepdim=True)
    var = patches.var(dim=-1, keepdim=True)
    return (patches - mean) / (var + 1e-6).sqrt()


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
    """Masked-image-modelling training into ``out`` (resumable); the model goes to ``out/model``."""
    from vfm3d.backbones._hf_common import IMAGENET_MEAN, IMAGENET_STD

    batch = batch or 64
    model = build(seed, int(data.frames.shape[2])).to(device)
    cfg = model.config
    patch = int(cfg.patch_size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 1)
        head = nn.Linear(cfg.hidden_size, patch * patch * 3).to(device)
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
    num_frames = data.frames.shape[1]

    def step_fn(step: int) -> dict[str, torch.Tensor]:
        gen = batch_generator(seed, step)
        clip = torch.randint(len(data), (batch,), generator=gen)
        frame = torch.randint(num_frames, (batch,), generator=gen)
        images = data.frames[clip, frame].to(device).permute(0, 3, 1, 2).float() / 255.0
        if bool(torch.rand((), generator=gen) < 0.5):
            images = images.flip(-1)
        tokens = (images.shape[-2] // patch) * (images.shape[-1] // patch)
        masked = random_mask(batch, tokens, MASK_RATIO, gen).to(device)
        hidden = model(pixel_values=(images - mean) / std, bool_masked_pos=masked)
        pred = head(hidden.last_hidden_state[:, 1:])
        target = norm_pixels(patchify(images, patch))
        loss = F.mse_loss(pred[masked], target[masked])
        return {"loss": loss}

    modules = {"model": model, "head": head}
    trainer = Trainer(
        out, "mim", modules, steps["mim"], lr=1e-3, warmup=200, progress=progress, deadline=deadline
    )
    trainer.fit(step_fn)
    save_model(out / "model", model)
    return {
        "parameters": sum(p.numel() for p in model.parameters()),
        "objective": f"masked image modelling, mask ratio {MASK_RATIO}, normalised pixels",
    }


def twin(folder: Path, seed: int, reference: Path) -> Path:
    """Save the random-init twin of the model in ``reference`` (same config) into ``folder``."""
    from transformers import Dinov2Config, Dinov2Model

    config = Dinov2Config.from_pretrained(reference)
    return save_model(folder, seeded_init(seed, lambda: Dinov2Model(config)))
