"""Sampling point maps from the joint DiT: video latent -> K Euler flow samples -> mean and spread.

`encode_video` turns frames into the DiT's condition (the video VAE's posterior mode, normalised
with the VAE config's ``latents_mean``/``latents_std`` as the Wan adapter does). `sample_pointmaps`
integrates the learned flow from noise (sigma 1) to data (sigma 0) with ``steps`` Euler steps on
Wan2.1's shifted sigma schedule (flow shift 3; `vfm3d.models.wan_flow.sample_latents`, the sampler
wan-mini's videos come from, run on the DiT conditioned on the video latent), for ``samples``
independent noises, decodes each with the point-map VAE and returns their mean point map and
per-pixel spread. Video-to-geometry diffusion peers use 4-5 steps (Aether 4, Geo4D and
GeometryCrafter 5); the default here is 5.

Determinism: sample ``k`` starts from noise seeded by ``(seed, k)`` (CPU generator), so a seed
fixes the result, and the first samples of a K-sample run equal those of a shorter run.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from vfm3d.recon4d.joint_dit import JointDiT
from vfm3d.recon4d.pointmap_vae import PointmapVAE

DEFAULT_STEPS = 5
#: Wan2.1's flow shift (its published scheduler's, and wan-mini's sampler's).
DEFAULT_SHIFT = 3.0


@torch.no_grad()
def encode_video(vae: nn.Module, frames: torch.Tensor) -> torch.Tensor:
    """Frames ``[B, T, 3, H, W]`` in [0, 1] -> normalised video latents ``[B, C, T', h', w']``.

    Posterior mode of the (frozen) video VAE, then ``(z - latents_mean) / latents_std`` per channel.
    """
    from vfm3d.backbones.wan import _vae_factors
    from vfm3d.models.wan_flow import to_video

    if frames.ndim != 5 or frames.shape[2] != 3:
        raise ValueError(f"frames must be [B, T, 3, H, W], got {list(frames.shape)}")
    ft, fs = _vae_factors(vae)
    t, h, w = frames.shape[1], frames.shape[3], frames.shape[4]
    if (t - 1) % ft or h % fs or w % fs:
        raise ValueError(f"{t} frames at {h}x{w}: need T = {ft}k+1 and H, W multiples of {fs}")
    param = next(vae.parameters())
    z = vae.encode(to_video(frames.to(param.device, param.dtype))).latent_dist.mode().float()
    mean = torch.tensor(vae.config.latents_mean, device=z.device).view(1, -1, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std, device=z.device).view(1, -1, 1, 1, 1)
    return (z - mean) / std


class _VideoConditioned(nn.Module):
    """The JointDiT with its video latent bound, called as wan-mini's sampler calls a DiT."""

    def __init__(self, dit: JointDiT, video_latent: torch.Tensor) -> None:
        super().__init__()
        self.dit = dit
        self.video_latent = video_latent

    def forward(
        self,
        hidden_states: torch.Tensor,
        timestep: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        return_dict: bool = False,
    ) -> tuple[torch.Tensor]:
        # The null prompt is the JointDiT's own; the sampler's context argument is ignored.
        return (self.dit(self.video_latent, hidden_states, timestep),)


def sample_seed(seed: int, k: int) -> int:
    """The noise seed of sample ``k`` of a run seeded ``seed``."""
    return int(np.random.SeedSequence([int(seed), int(k)]).generate_state(1)[0])


@torch.no_grad()
def sample_latents(
    dit: JointDiT,
    video_latent: torch.Tensor,
    steps: int = DEFAULT_STEPS,
    seed: int = 0,
    shift: float = DEFAULT_SHIFT,
) -> torch.Tensor:
    """One Euler flow sample of normalised point-map latents ``[B, C, T', h', w']`` given the
    normalised video latent (same shape), noise from ``seed``."""
    from vfm3d.models.wan_flow import sample_latents as euler

    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    device = next(dit.parameters()).device
    video_latent = video_latent.to(device)
    model = _VideoConditioned(dit, video_latent)
    return euler(
        model, dit.prompt_embeds, tuple(video_latent.shape), steps=steps, seed=seed, shift=shift
    )


@torch.no_grad()
def sample_pointmaps(
    dit: JointDiT,
    pm_vae: PointmapVAE,
    video_latent: torch.Tensor,
    steps: int = DEFAULT_STEPS,
    samples: int = 1,
    seed: int = 0,
    shift: float = DEFAULT_SHIFT,
    return_samples: bool = False,
) -> dict[str, torch.Tensor]:
    """K = ``samples`` point-map samples of a video -> their mean and per-pixel spread.

    ``video_latent`` ``[B, C, T', h', w']``: normalised (`encode_video`). Each sample: noise from
    ``sample_seed(seed, k)``, ``steps`` Euler steps, point-map VAE decode (latents de-normalised,
    fixed transform inverted). Returns (float32 on the DiT's device, normalised units, frame 0's
    camera coordinates):

    - ``points`` ``[B, T, H, W, 3]``: per pixel, the mean over the samples that decode it valid
      (over all samples where none does);
    - ``spread`` ``[B, T, H, W]``: RMS distance of those samples to that mean,
      ``sqrt(mean_k |p_k - mean|^2)`` (0 for K = 1): the sampler's uncertainty;
    - ``valid`` ``[B, T, H, W]`` bool: at least half of the samples decode the pixel valid;
    - ``valid_fraction`` ``[B, T, H, W]``: the fraction that do;
    - ``samples`` ``[K, B, T, H, W, 3]`` and ``samples_valid`` ``[K, B, T, H, W]`` if
      ``return_samples``.
    """
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    if video_latent.ndim != 5 or video_latent.shape[1] != dit.latent_channels:
        raise ValueError(
            f"video_latent must be [B, {dit.latent_channels}, T', h', w'], got "
            f"{list(video_latent.shape)}"
        )
    points, valid = [], []
    for k in range(samples):
        latents = sample_latents(dit, video_latent, steps, sample_seed(seed, k), shift)
        decoded = pm_vae.decode(latents.to(next(pm_vae.parameters()).device))
        points.append(decoded["points"].float())
        valid.append(decoded["valid"])
    p = torch.stack(points)  # [K, B, T, H, W, 3]
    v = torch.stack(valid)  # [K, B, T, H, W]
    count = v.sum(0)
    w = torch.where(count[None] > 0, v, torch.ones_like(v)).to(p.dtype)[..., None]
    n = w.sum(0)
    mean = (w * p).sum(0) / n
    spread = ((w * (p - mean).pow(2)).sum(0) / n).sum(-1).sqrt()
    out = {
        "points": mean,
        "spread": spread,
        "valid": 2 * count >= samples,
        "valid_fraction": count.float() / samples,
    }
    if return_samples:
        out["samples"] = p
        out["samples_valid"] = v
    return out
