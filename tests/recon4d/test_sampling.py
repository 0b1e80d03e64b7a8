"""Sampling point maps: the Euler flow sampler, determinism per seed, K-sample mean and spread."""

from __future__ import annotations

import pytest
import torch

from tests.recon4d.test_joint_dit import latents, prompt, tiny_video_dit
from tests.recon4d.test_pointmap_vae import tiny_video_vae
from vfm3d.recon4d.joint_dit import JointDiT
from vfm3d.recon4d.pointmap_vae import PointmapVAE
from vfm3d.recon4d.sampling import (
    encode_video,
    sample_latents,
    sample_pointmaps,
    sample_seed,
)
from vfm3d.zoo.wan_mini import shifted_sigmas


@pytest.fixture(scope="module")
def models() -> tuple[JointDiT, PointmapVAE]:
    return (
        JointDiT.from_video_dit(tiny_video_dit(), prompt()).eval(),
        PointmapVAE.from_video_vae(tiny_video_vae()).eval(),
    )


def test_sampler_is_euler_on_the_shifted_schedule(models) -> None:
    dit, _ = models
    video = latents(seed=1)
    got = sample_latents(dit, video, steps=3, seed=11)
    x = torch.randn(video.shape, generator=torch.Generator().manual_seed(11))
    sigmas = shifted_sigmas(3, 3.0)
    with torch.no_grad():
        for i in range(3):
            v = dit(video, x, (sigmas[i] * 1000).expand(2))
            x = x + (sigmas[i + 1] - sigmas[i]) * v
    torch.testing.assert_close(got, x)


def test_sampling_is_deterministic_per_seed(models) -> None:
    dit, vae = models
    video = latents(seed=1)
    a = sample_pointmaps(dit, vae, video, steps=2, samples=2, seed=3)
    b = sample_pointmaps(dit, vae, video, steps=2, samples=2, seed=3)
    c = sample_pointmaps(dit, vae, video, steps=2, samples=2, seed=4)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["points"], c["points"])


def test_k_samples_give_mean_spread_and_shapes(models) -> None:
    dit, vae = models
    video = latents(seed=1)
    out = sample_pointmaps(dit, vae, video, samples=3, seed=0, return_samples=True)
    assert out["points"].shape == (2, 5, 32, 32, 3) and out["points"].dtype == torch.float32
    assert out["spread"].shape == (2, 5, 32, 32) and float(out["spread"].mean()) > 0
    assert out["valid"].shape == (2, 5, 32, 32) and out["valid"].dtype == torch.bool
    assert out["samples"].shape == (3, 2, 5, 32, 32, 3)
    # Per pixel: mean and RMS distance to it over the samples that decode it valid.
    p, v = out["samples"], out["samples_valid"]
    some = v.any(0)
    assert bool(v.all(0).any())
    w = v.float()[..., None]
    mean = (w * p).sum(0) / w.sum(0).clamp_min(1)
    torch.testing.assert_close(out["points"][some], mean[some])
    spread = ((w * (p - mean).pow(2)).sum(0) / w.sum(0).clamp_min(1)).sum(-1).sqrt()
    torch.testing.assert_close(out["spread"][some], spread[some])
    torch.testing.assert_close(out["valid"], v.float().mean(0) >= 0.5)
    # Sample k's noise depends only on (seed, k): one sample equals the first of three.
    one = sample_pointmaps(dit, vae, video, samples=1, seed=0, return_samples=True)
    torch.testing.assert_close(one["samples"][0], p[0])
    assert not bool(one["spread"].any())
    assert sample_seed(0, 0) != sample_seed(0, 1) != sample_seed(1, 0)


def test_default_steps_and_bad_arguments(models) -> None:
    dit, vae = models
    video = latents(b=1, seed=1)
    five = sample_latents(dit, video, seed=sample_seed(0, 0))
    via = sample_pointmaps(dit, vae, video, seed=0)
    torch.testing.assert_close(via["points"], vae.decode(five)["points"])
    with pytest.raises(ValueError, match="samples"):
        sample_pointmaps(dit, vae, video, samples=0)
    with pytest.raises(ValueError, match="steps"):
        sample_pointmaps(dit, vae, video, steps=0)
    with pytest.raises(ValueError, match="video_latent"):
        sample_pointmaps(dit, vae, video[:, :2])


def test_encode_video_normalises_with_the_vae_config() -> None:
    vae = tiny_video_vae().eval()
    frames = torch.rand(1, 5, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    z = encode_video(vae, frames)
    with torch.no_grad():
        raw = vae.encode(frames.permute(0, 2, 1, 3, 4) * 2 - 1).latent_dist.mode()
    cfg = vae.config
    mean = torch.tensor(cfg.latents_mean).view(1, -1, 1, 1, 1)
    std = torch.tensor(cfg.latents_std).view(1, -1, 1, 1, 1)
    torch.testing.assert_close(z, (raw - mean) / std)
    with pytest.raises(ValueError, match="4k\\+1"):
        encode_video(vae, frames[:, :4])
