"""``wan-mini``: a miniature Wan2.1 (``AutoencoderKLWan`` + ``WanTransformer3DModel``) trained on
world videos, loadable by the ``wan2.1`` adapter.

Stage 1 (``vae``): the VAE learns to reconstruct clips ``[B, 3, T, H, W]`` in [-1, 1]:
``loss = MSE + L1 + kl_weight * KL`` (KL of the diagonal Gaussian posterior, per element), on
cheap ``VAE_FRAMES``-frame windows (two latent frames). Stage 1b (``vae_clip``): the same loss on
whole clips (all their latent frames), at a lower learning rate: the causal VAE's feature cache
differs from the third latent frame on, and a VAE that never saw one decodes frames 5..8 of a
9-frame clip with a colour cast.
Stage 2 (``dit``): the per-channel mean/std of the posterior modes over the training set are
stored in the VAE config (``latents_mean``/``latents_std``, as the published Wan VAE does), and the
transformer learns flow matching on normalised latents ``z0``: ``sigma ~ logit-normal``,
``z_sigma = (1 - sigma) z0 + sigma eps``, target velocity ``eps - z0``, model timestep
``1000 * sigma`` (the relation diffusers' flow schedulers use). It is unconditional: every sample
sees the same fixed null text embedding ``[1, NULL_TOKENS, text_dim]`` (saved as
``empty_prompt_embedding.safetensors``, key ``prompt_embeds``).

Sizes (32x32, T = 4k+1): VAE spatial factor 4, temporal factor 4, 16 latent channels (as Wan2.1);
transformer patch (1, 2, 2) -> a 9-frame 32x32 clip is 3 x 4 x 4 tokens of width 128, 4 blocks.
The VAE trains on random ``VAE_FRAMES``-frame windows (batch 8), the transformer on whole clips (batch 16).

Output folder (diffusers layout): ``vae/``, ``transformer/``, ``scheduler/`` (UniPC, flow shift 3,
the Wan2.1 default), ``empty_prompt_embedding.safetensors``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from vfm3d.models.wan_flow import (  # the flow-matching pieces (re-exported)
    KL_WEIGHT,
    decode_latents,
    sample_latents,
    sample_videos,
    scheduler,
    shifted_sigmas,
    to_video,
)
from vfm3d.zoo.common import ClipTensors, Trainer, batch_generator, seeded_init

__all__ = [
    "DEFAULT_STEPS",
    "KL_WEIGHT",
    "NAME",
    "NULL_TOKENS",
    "STAGES",
    "VAE_FRAMES",
    "build",
    "decode_latents",
    "encode_all",
    "null_embedding",
    "sample_latents",
    "sample_videos",
    "save_grid",
    "save_model",
    "scheduler",
    "shifted_sigmas",
    "to_video",
    "train",
    "transformer_config",
    "twin",
    "vae_config",
]

NAME = "wan-mini"
STAGES = ("vae", "vae_clip", "dit")
DEFAULT_STEPS = {"vae": 2500, "vae_clip": 600, "dit": 6000}
#: Frames of the (4k+1)-frame windows the VAE is trained on (the causal VAE is frame-count agnostic).
VAE_FRAMES = 5
NULL_TOKENS = 8


def vae_config() -> dict[str, Any]:
    """``AutoencoderKLWan`` keyword arguments of wan-mini (latent statistics filled in later)."""
    return {
        "base_dim": 16,
        "z_dim": 16,
        "dim_mult": [1, 2, 2],
        "num_res_blocks": 1,
        "temperal_downsample": [True, True],
        "scale_factor_temporal": 4,
        "scale_factor_spatial": 4,
        "latents_mean": [0.0] * 16,
        "latents_std": [1.0] * 16,
    }


def transformer_config() -> dict[str, Any]:
    """``WanTransformer3DModel`` keyword arguments of wan-mini (4 blocks of width 128)."""
    return {
        "patch_size": (1, 2, 2),
        "num_attention_heads": 4,
        "attention_head_dim": 32,
        "in_channels": 16,
        "out_channels": 16,
        "text_dim": 32,
        "freq_dim": 64,
        "ffn_dim": 512,
        "num_layers": 4,
        "rope_max_seq_len": 64,
    }


def null_embedding(text_dim: int, seed: int) -> torch.Tensor:
    """The fixed null text embedding ``[1, NULL_TOKENS, text_dim]`` (standard normal from seed)."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(1, NULL_TOKENS, text_dim, generator=gen)


def save_grid(videos: torch.Tensor, path: Path) -> Path:
    """``[N, T, 3, H, W]`` in [0, 1] -> a PNG with one row per video, one column per frame."""
    from PIL import Image

    from vfm3d.utils.atomic import atomic_path

    n, t, _, h, w = videos.shape
    grid = videos.permute(0, 3, 1, 4, 2).reshape(n * h, t * w, 3)
    image = Image.fromarray((grid.clamp(0, 1) * 255).round().byte().cpu().numpy())
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
    return path


# --------------------------------------------------------------------------- training
def _train_vae(
    vae: torch.nn.Module,
    data: ClipTensors,
    out: Path,
    steps: int,
    seed: int,
    device: torch.device,
    batch: int,
    progress: bool,
    deadline: float | None,
    stage: str = "vae",
) -> None:
    """Stage ``vae`` (random ``VAE_FRAMES``-frame windows, lr 1e-3) or ``vae_clip`` (whole clips,
    lr 3e-4, its own batch stream)."""
    whole = stage == "vae_clip"
    frames = data.frames.shape[1] if whole else VAE_FRAMES

    def step_fn(step: int) -> dict[str, torch.Tensor]:
        gen = batch_generator(seed + (2 if whole else 0), step)
        index = torch.randint(len(data), (batch,), generator=gen)
        start = int(torch.randint(data.frames.shape[1] - frames + 1, (), generator=gen))
        x = to_video(data.video(index, device)[:, start : start + frames])
        if bool(torch.rand((), generator=gen) < 0.5):
            x = x.flip(-1)
        posterior = vae.encode(x).latent_dist
        z = posterior.mean + posterior.std * torch.randn_like(posterior.mean)
        recon = vae.decode(z).sample
        mse = F.mse_loss(recon, x)
        l1 = (recon - x).abs().mean()
        kl = 0.5 * (posterior.mean.pow(2) + posterior.var - 1.0 - posterior.logvar).mean()
        return {"loss": mse + l1 + KL_WEIGHT * kl, "mse": mse, "l1": l1, "kl": kl}

    lr, warmup = (3e-4, 20) if whole else (1e-3, 100)
    trainer = Trainer(
        out, stage, {"vae": vae}, steps, lr=lr, warmup=warmup, progress=progress, deadline=deadline
    )
    trainer.fit(step_fn)


@torch.no_grad()
def encode_all(vae: torch.nn.Module, data: ClipTensors, device: torch.device) -> torch.Tensor:
    """Posterior modes of every clip: ``[N, C, T', h', w']`` (unnormalised, on ``device``)."""
    out = []
    for start in range(0, len(data), 32):
        index = torch.arange(start, min(start + 32, len(data)))
        out.append(vae.encode(to_video(data.video(index, device))).latent_dist.mode())
    return torch.cat(out)


def _train_dit(
    transformer: torch.nn.Module,
    latents: torch.Tensor,
    prompt: torch.Tensor,
    out: Path,
    steps: int,
    seed: int,
    batch: int,
    progress: bool,
    deadline: float | None,
) -> None:
    context = prompt.to(latents.device)

    def step_fn(step: int) -> dict[str, torch.Tensor]:
        gen = batch_generator(seed + 1, step)
        index = torch.randint(latents.shape[0], (batch,), generator=gen)
        z0 = latents[index.to(latents.device)]
        if bool(torch.rand((), generator=gen) < 0.5):
            z0 = z0.flip(-1)
        sigma = torch.sigmoid(torch.randn(batch, generator=gen)).to(z0.device)
        eps = torch.randn(z0.shape, generator=gen).to(z0.device)
        s = sigma.view(-1, 1, 1, 1, 1)
        noisy = (1.0 - s) * z0 + s * eps
        pred = transformer(
            hidden_states=noisy,
            timestep=sigma * 1000.0,
            encoder_hidden_states=context.expand(batch, -1, -1),
            return_dict=False,
        )[0]
        loss = F.mse_loss(pred, eps - z0)
        return {"loss": loss}

    trainer = Trainer(
        out,
        "dit",
        {"transformer": transformer},
        steps,
        lr=5e-4,
        warmup=200,
        progress=progress,
        deadline=deadline,
    )
    trainer.fit(step_fn)


def build(seed: int) -> tuple[torch.nn.Module, torch.nn.Module, torch.Tensor]:
    """Random-initialised ``(vae, transformer, null prompt)`` of the wan-mini configs."""
    from diffusers import AutoencoderKLWan, WanTransformer3DModel

    def both() -> tuple[torch.nn.Module, torch.nn.Module]:
        return AutoencoderKLWan(**vae_config()), WanTransformer3DModel(**transformer_config())

    vae, transformer = seeded_init(seed, both)  # one RNG stream: the VAE first
    prompt = null_embedding(int(transformer.config.text_dim), seed)
    return vae, transformer, prompt


def save_model(
    folder: Path, vae: torch.nn.Module, transformer: torch.nn.Module, prompt: torch.Tensor
) -> Path:
    """Write the diffusers layout the ``wan2.1`` adapter reads into ``folder``."""
    from safetensors.torch import save_file

    from vfm3d.backbones._diffusers_common import EMPTY_PROMPT_FILE
    from vfm3d.utils.atomic import atomic_path

    folder.mkdir(parents=True, exist_ok=True)
    vae.save_pretrained(folder / "vae", safe_serialization=True)
    transformer.save_pretrained(folder / "transformer", safe_serialization=True)
    scheduler().save_pretrained(folder / "scheduler")
    with atomic_path(folder / EMPTY_PROMPT_FILE) as tmp:
        save_file({"prompt_embeds": prompt.detach().cpu().contiguous()}, str(tmp))
    return folder


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
    """Train both stages into ``out`` (resumable); the model goes to ``out/model``.

    Returns a summary (parameter counts, latent statistics, final losses).
    """
    import time

    batch = batch or 8
    vae_deadline = None if deadline is None else time.time() + 0.45 * (deadline - time.time())
    vae, transformer, prompt = build(seed)
    vae.to(device)
    transformer.to(device)
    for stage in ("vae", "vae_clip"):
        vae_done = out / f"{stage}_stage"
        if (vae_done / "config.json").is_file():
            from diffusers import AutoencoderKLWan

            vae = AutoencoderKLWan.from_pretrained(vae_done).to(device)
        else:
            _train_vae(
                vae, data, out, steps[stage], seed, device, batch, progress, vae_deadline, stage
            )
            vae.save_pretrained(vae_done, safe_serialization=True)
    vae.eval().requires_grad_(False)
    latents = encode_all(vae, data, device)
    mean = latents.mean(dim=(0, 2, 3, 4))
    std = latents.std(dim=(0, 2, 3, 4)).clamp_min(1e-4)
    vae.register_to_config(latents_mean=mean.tolist(), latents_std=std.tolist())
    normalised = (latents - mean.view(1, -1, 1, 1, 1)) / std.view(1, -1, 1, 1, 1)
    dit_deadline = None if deadline is None else deadline - 30.0
    _train_dit(
        transformer, normalised, prompt, out, steps["dit"], seed, 2 * batch, progress, dit_deadline
    )
    transformer.eval().requires_grad_(False)
    save_model(out / "model", vae.cpu(), transformer.cpu(), prompt)
    # Sample grid: min(8, n) videos, Euler with n = min(30, transformer steps) steps (short runs
    # are smoke tests).
    sample_steps = min(30, steps["dit"])
    videos = sample_videos(
        transformer.to(device),
        vae.to(device),
        prompt,
        num=min(8, sample_steps),
        frames=data.frames.shape[1],
        height=data.frames.shape[2],
        width=data.frames.shape[3],
        steps=sample_steps,
        seed=seed,
    )
    save_grid(videos, out / "samples.png")
    real = data.video(torch.arange(min(8, len(data))), "cpu")
    save_grid(real, out / "real.png")
    return {
        "parameters": {
            "vae": sum(p.numel() for p in vae.parameters()),
            "transformer": sum(p.numel() for p in transformer.parameters()),
        },
        "latents_mean": mean.tolist(),
        "latents_std": std.tolist(),
        "sample_steps": sample_steps,
        "sampler": "Euler, flow shift 3",
        "lr_schedule": "warm-up + cosine",
    }


def twin(folder: Path, seed: int, reference: Path | None = None) -> Path:
    """Save the random-init twin (same configs, random weights) into ``folder``.

    With ``reference`` (a trained wan-mini folder), the VAE config's latent statistics and the
    null prompt are copied from it, so only the weights differ.
    """
    import json

    from safetensors.torch import load_file

    from vfm3d.backbones._diffusers_common import EMPTY_PROMPT_FILE

    vae, transformer, prompt = build(seed)
    if reference is not None:
        cfg = json.loads((Path(reference) / "vae" / "config.json").read_text())
        vae.register_to_config(latents_mean=cfg["latents_mean"], latents_std=cfg["latents_std"])
        prompt = load_file(str(Path(reference) / EMPTY_PROMPT_FILE))["prompt_embeds"]
    return save_model(folder, vae, transformer, prompt)
