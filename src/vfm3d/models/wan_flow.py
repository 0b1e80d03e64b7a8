"""Wan2.1 flow matching as vfm3d's Wan-architecture models use it (wan-mini, Sora3R, JOG3R).

Convention (diffusers' flow schedulers): normalised latents ``z0`` (per channel
``(z - latents_mean) / latents_std`` from the VAE config), ``z_sigma = (1 - sigma) z0 + sigma eps``,
velocity target ``eps - z0``, model timestep ``1000 * sigma``. Sampling integrates the learned flow
with Euler steps on Wan2.1's shifted sigma schedule (flow shift 3). Here: the published scheduler
(`default_scheduler`, `scheduler`), `to_video` (frames -> the VAE's input), `shifted_sigmas`,
`sample_latents` (Euler), `decode_latents`, `sample_videos`, and the VAE's ``KL_WEIGHT``.

The training of the zoo's ``wan-mini`` on these pieces is `vfm3d.zoo.wan_mini`.
"""

from __future__ import annotations

from typing import Any

import torch

#: Weight of the KL term of the Wan VAE losses (``MSE + L1 + KL_WEIGHT * KL``).
KL_WEIGHT = 1e-6


def default_scheduler() -> Any:
    """The scheduler published with Wan2.1-T2V (UniPC, flow prediction, flow shift 3.0)."""
    from diffusers import UniPCMultistepScheduler

    return UniPCMultistepScheduler(
        num_train_timesteps=1000,
        prediction_type="flow_prediction",
        use_flow_sigmas=True,
        flow_shift=3.0,
        solver_order=2,
        solver_type="bh2",
        final_sigmas_type="zero",
        timestep_spacing="linspace",
    )


def scheduler() -> Any:
    """The scheduler saved with wan-mini: Wan2.1's UniPC (flow prediction, flow shift 3)."""
    return default_scheduler()


def to_video(frames: torch.Tensor) -> torch.Tensor:
    """``[B, T, 3, H, W]`` in [0, 1] -> ``[B, 3, T, H, W]`` in [-1, 1] (the VAE's input)."""
    return frames.permute(0, 2, 1, 3, 4) * 2.0 - 1.0


def shifted_sigmas(steps: int, shift: float = 3.0) -> torch.Tensor:
    """``steps + 1`` sigmas from 1 to 0: ``s' = shift s / (1 + (shift - 1) s)`` on a linspace."""
    s = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)
    return (shift * s / (1.0 + (shift - 1.0) * s)).float()


@torch.no_grad()
def sample_latents(
    transformer: torch.nn.Module,
    prompt_embeds: torch.Tensor,
    shape: tuple[int, ...],
    steps: int = 30,
    seed: int = 0,
    shift: float = 3.0,
) -> torch.Tensor:
    """Euler integration of the learned flow from noise (sigma 1) to data (sigma 0).

    ``shape`` = ``[N, C, T', h', w']`` of normalised latents; returns them (on the model's device).
    """
    device = next(transformer.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=gen).to(device)
    sigmas = shifted_sigmas(steps, shift).to(device)
    context = prompt_embeds.to(device).expand(shape[0], -1, -1)
    for i in range(steps):
        t = (sigmas[i] * 1000.0).expand(shape[0])
        v = transformer(
            hidden_states=x, timestep=t, encoder_hidden_states=context, return_dict=False
        )[0]
        x = x + (sigmas[i + 1] - sigmas[i]) * v
    return x


@torch.no_grad()
def decode_latents(vae: torch.nn.Module, latents: torch.Tensor) -> torch.Tensor:
    """Normalised latents ``[N, C, T', h', w']`` -> frames ``[N, T, 3, H, W]`` in [0, 1]."""
    cfg = vae.config
    mean = torch.tensor(cfg.latents_mean, device=latents.device).view(1, -1, 1, 1, 1)
    std = torch.tensor(cfg.latents_std, device=latents.device).view(1, -1, 1, 1, 1)
    video = vae.decode(latents * std + mean).sample
    return ((video.clamp(-1, 1) + 1) / 2).permute(0, 2, 1, 3, 4)


@torch.no_grad()
def sample_videos(
    transformer: torch.nn.Module,
    vae: torch.nn.Module,
    prompt_embeds: torch.Tensor,
    num: int = 4,
    frames: int = 9,
    height: int = 32,
    width: int = 32,
    steps: int = 30,
    seed: int = 0,
) -> torch.Tensor:
    """Generate ``num`` videos ``[num, frames, 3, H, W]`` in [0, 1] (Euler flow-matching sampler)."""
    ft, fs = int(vae.config.scale_factor_temporal), int(vae.config.scale_factor_spatial)
    if (frames - 1) % ft or height % fs or width % fs:
        raise ValueError(f"frames must be {ft}k+1 and H, W multiples of {fs}")
    shape = (num, int(vae.config.z_dim), (frames - 1) // ft + 1, height // fs, width // fs)
    latents = sample_latents(transformer, prompt_embeds, shape, steps=steps, seed=seed)
    vae_dtype = next(vae.parameters()).dtype
    return decode_latents(vae, latents.to(vae_dtype)).float()
