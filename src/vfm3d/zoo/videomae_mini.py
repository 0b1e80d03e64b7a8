"""``videomae-mini``: ``VideoMAEForPreTraining`` trained with masked video modelling on world
clips (tube masking: 75% of the spatial patch positions are masked in every tubelet; the decoder
reconstructs the per-patch-normalised pixels of the masked tubes, VideoMAE's own loss).

Sizes: 8 frames of 32x32 (a random 8-frame window of each clip, 4 tubelets of 2 frames), 8x8
patches -> 4 x 4 x 4 tokens of width 128, 4 encoder blocks; a 2-block decoder of width 64 (not shipped).
Output folder: the encoder alone in the layout ``VideoMAEModel.from_pretrained`` reads
(``config.json``, ``model.safetensors`` in float16; the adapter loads float32) plus
``preprocessor_config.json`` (ImageNet statistics, as VideoMAE's own loss assumes).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from vfm3d.zoo.common import (
    ClipTensors,
    Trainer,
    batch_generator,
    random_mask,
    save_hf_half,
    seeded_init,
)

NAME = "videomae-mini"
STAGES = ("mvm",)
DEFAULT_STEPS = {"mvm": 2000}
MASK_RATIO = 0.75
NUM_FRAMES = 8


def config_dict(image_size: int = 32) -> dict[str, Any]:
    """``VideoMAEConfig`` keyword arguments of videomae-mini (``image_size``: the clips')."""
    return {
        "image_size": image_size,
        "patch_size": 8,
        "num_frames": NUM_FRAMES,
        "tubelet_size": 2,
        "hidden_size": 128,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "intermediate_size": 512,
        "decoder_hidden_size": 64,
        "decoder_num_hidden_layers": 2,
        "decoder_num_attention_heads": 4,
        "decoder_intermediate_size": 256,
        "norm_pix_loss": True,
        "use_mean_pooling": False,
    }


def build(seed: int, image_size: int = 32) -> nn.Module:
    """A random-initialised ``VideoMAEForPreTraining`` of the videomae-mini config."""
    from transformers import VideoMAEConfig, VideoMAEForPreTraining

    config = VideoMAEConfig(**config_dict(image_size))
    return seeded_init(seed, lambda: VideoMAEForPreTraining(config))


def save_model(folder: Path, encoder: nn.Module) -> Path:
    """Save a ``VideoMAEModel`` (the encoder) in the ``videomae`` adapter's layout, float16."""
    from vfm3d.backbones.videomae import VideoMAEBackbone

    return save_hf_half(VideoMAEBackbone, encoder, folder)


def tube_mask(batch: int, config: Any, gen: torch.Generator) -> torch.Tensor:
    """``[batch, T'*h*w]`` bool: the same ``MASK_RATIO`` of spatial positions in every tubelet."""
    t = config.num_frames // config.tubelet_size
    hw = (config.image_size // config.patch_size) ** 2
    spatial = random_mask(batch, hw, MASK_RATIO, gen)
    return spatial.unsqueeze(1).expand(batch, t, hw).reshape(batch, t * hw)


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
    """Masked-video-modelling training into ``out`` (resumable); the encoder goes to ``out/model``."""
    from vfm3d.backbones._hf_common import IMAGENET_MEAN, IMAGENET_STD

    if data.frames.shape[1] < NUM_FRAMES:
        raise ValueError(f"videomae-mini needs clips of >= {NUM_FRAMES} frames")
    if data.frames.shape[2] != data.frames.shape[3]:
        raise ValueError("videomae-mini needs square frames")
    batch = batch or 16
    model = build(seed, int(data.frames.shape[2])).to(device)
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 1, 3, 1, 1)

    def step_fn(step: int) -> dict[str, torch.Tensor]:
        gen = batch_generator(seed, step)
        index = torch.randint(len(data), (batch,), generator=gen)
        start = int(torch.randint(data.frames.shape[1] - NUM_FRAMES + 1, (), generator=gen))
        video = data.video(index, device)[:, start : start + NUM_FRAMES]
        if bool(torch.rand((), generator=gen) < 0.5):
            video = video.flip(-1)
        mask = tube_mask(batch, model.config, gen).to(device)
        output = model(pixel_values=(video - mean) / std, bool_masked_pos=mask)
        return {"loss": output.loss}

    trainer = Trainer(
        out,
        "mvm",
        {"model": model},
        steps["mvm"],
        lr=1e-3,
        warmup=200,
        progress=progress,
        deadline=deadline,
    )
    trainer.fit(step_fn)
    save_model(out / "model", model.videomae)
    return {
        "parameters": sum(p.numel() for p in model.videomae.parameters()),
        "objective": f"masked video modelling, tube mask ratio {MASK_RATIO}",
    }


def twin(folder: Path, seed: int, reference: Path) -> Path:
    """Save the random-init twin of the encoder in ``reference`` (same config) into ``folder``."""
    from transformers import VideoMAEConfig, VideoMAEModel

    config = VideoMAEConfig.from_pretrained(reference)
    return save_model(folder, seeded_init(seed, lambda: VideoMAEModel(config)))
