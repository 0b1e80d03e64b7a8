"""Point-map VAE (Sora3R): the fixed transform, sky handling, init from the video VAE, loss, folders."""

from __future__ import annotations

import math

import pytest
import torch

from vfm3d.backbones.wan import tiny_configs
from vfm3d.recon4d.pointmap_vae import (
    INVALID_THRESHOLD,
    SENTINEL,
    VALID_EXTENT,
    PointmapVAE,
    latent_statistics,
    pointmap_targets,
    pointmap_vae_loss,
    points_to_vae,
    vae_to_points,
)


def tiny_video_vae(seed: int = 0) -> torch.nn.Module:
    from diffusers import AutoencoderKLWan

    from vfm3d.zoo.common import seeded_init

    return seeded_init(seed, lambda: AutoencoderKLWan(**tiny_configs()[1]))


def scene_pointmaps(
    b: int = 1, t: int = 5, h: int = 16, w: int = 16, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised point maps of a tilted plane with a bump seen by a camera sliding sideways;
    the top rows are sky (invalid)."""
    gen = torch.Generator().manual_seed(seed)
    v, u = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    base = 2.0 + 0.05 * v + 0.5 * torch.exp(-((u - w / 2) ** 2 + (v - h / 2) ** 2) / 10)
    depth = base.expand(b, t, h, w) * (1 + 0.2 * torch.rand(b, 1, 1, 1, generator=gen))
    valid = torch.ones(b, t, h, w, dtype=torch.bool)
    valid[:, :, : h // 4] = False
    k = torch.tensor([[w * 1.0, 0, (w - 1) / 2], [0, w * 1.0, (h - 1) / 2], [0, 0, 1]])
    intrinsics = k.expand(b, t, 3, 3)
    cam_to_world = torch.eye(4).repeat(b, t, 1, 1)
    cam_to_world[..., 0, 3] = 0.1 * torch.arange(t).float()
    return pointmap_targets(depth, valid, intrinsics, cam_to_world)


def test_pointmap_targets_use_the_one_normalisation() -> None:
    points, valid = scene_pointmaps(b=2)
    assert points.dtype == torch.float32 and points.shape == (2, 5, 16, 16, 3)
    dist0 = points[:, 0].norm(dim=-1)
    for i in range(2):
        torch.testing.assert_close(dist0[i][valid[i, 0]].mean(), torch.tensor(1.0))
    assert bool((points[~valid] == 0).all())


def test_transform_inverts_on_valid_pixels_and_marks_sky() -> None:
    gen = torch.Generator().manual_seed(0)
    points = torch.randn(2, 5, 8, 8, 3, generator=gen) * 3
    points[0, 0, 0, 0] = 0.0  # the camera centre is fine
    points[0, 0, 0, 1] = torch.tensor([0.0, 0.0, 1000.0])  # beyond max_distance: clamped
    valid = torch.rand(2, 5, 8, 8, generator=gen) > 0.3
    valid[0, 0, 0, :2] = True
    points[~valid] = float("nan")  # whatever invalid pixels hold is ignored
    x = points_to_vae(points, valid, max_distance=32.0)
    assert x.shape == (2, 3, 5, 8, 8) and bool(torch.isfinite(x).all())
    u = x.permute(0, 2, 3, 4, 1)
    assert float(u[valid].norm(dim=-1).max()) <= VALID_EXTENT + 1e-6
    assert bool((u[~valid] == torch.tensor(SENTINEL)).all())
    back, back_valid = vae_to_points(x, max_distance=32.0)
    assert torch.equal(back_valid, valid)
    assert bool((back[~valid] == 0).all())
    keep = valid.clone()
    keep[0, 0, 0, 1] = False
    torch.testing.assert_close(back[keep], points[keep], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(back[0, 0, 0, 1], torch.tensor([0.0, 0.0, 32.0]), rtol=1e-4, atol=0)
    # Anything decoded outside the threshold ball is sky.
    far = torch.zeros(1, 3, 1, 1, 1)
    far[0, 0] = INVALID_THRESHOLD + 0.01
    assert not bool(vae_to_points(far)[1].any())


def test_transform_rejects_bad_input() -> None:
    points = torch.zeros(1, 5, 4, 4, 3)
    with pytest.raises(ValueError, match="valid must be bool"):
        points_to_vae(points, torch.ones(1, 5, 4, 4))
    bad = points.clone()
    bad[0, 0, 0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="non-finite"):
        points_to_vae(bad, torch.ones(1, 5, 4, 4, dtype=torch.bool))


def test_init_is_a_deep_copy_of_the_video_vae() -> None:
    from diffusers import AutoencoderKLWan

    video = tiny_video_vae().requires_grad_(False)  # as a loaded backbone's VAE
    pm = PointmapVAE.from_video_vae(video)
    assert all(p.requires_grad for p in pm.parameters())
    assert type(pm.vae) is AutoencoderKLWan and pm.vae is not video
    ref = video.state_dict()
    got = pm.vae.state_dict()
    assert ref.keys() == got.keys()
    assert all(torch.equal(ref[k], got[k]) for k in ref)
    # Point-map latents get their own statistics; the video VAE's config is left alone.
    assert pm.vae.config.latents_mean == [0.0] * 4 and pm.vae.config.latents_std == [1.0] * 4
    assert video.config.latents_mean == tiny_configs()[1]["latents_mean"]
    with torch.no_grad():
        next(pm.vae.parameters()).add_(1.0)
    assert torch.equal(next(video.parameters()), ref[next(iter(ref))])


def test_round_trip_shapes_and_size_rules() -> None:
    pm = PointmapVAE.from_video_vae(tiny_video_vae())
    points, valid = scene_pointmaps(b=2)
    latents = pm.encode(points, valid)
    assert latents.shape == (2, 4, 2, 2, 2)
    out = pm.decode(latents)
    assert out["points"].shape == (2, 5, 16, 16, 3) and out["points"].dtype == torch.float32
    assert out["valid"].shape == (2, 5, 16, 16) and out["valid"].dtype == torch.bool
    with pytest.raises(ValueError, match="T = 4k\\+1"):
        pm.encode(points[:, :4], valid[:, :4])
    with pytest.raises(ValueError, match="multiples of 8"):
        pm.encode(points[:, :, :12], valid[:, :, :12])


def test_latent_statistics_normalise_the_latents() -> None:
    pm = PointmapVAE.from_video_vae(tiny_video_vae())
    points, valid = scene_pointmaps(b=3)
    raw = pm.posterior(points, valid).mode().detach()
    mean, std = latent_statistics(raw)
    pm.set_latent_statistics(mean, std)
    z = pm.encode(points, valid).detach()
    torch.testing.assert_close(z.mean(dim=(0, 2, 3, 4)), torch.zeros(4), atol=1e-5, rtol=0)
    torch.testing.assert_close(z.std(dim=(0, 2, 3, 4)), torch.ones(4), atol=1e-4, rtol=0)
    torch.testing.assert_close(pm.denormalise(z), raw, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="> 0"):
        pm.set_latent_statistics(mean, torch.zeros(4))


def test_loss_masks_sky_and_weights_it_as_documented() -> None:
    pm = PointmapVAE.from_video_vae(tiny_video_vae())
    points, valid = scene_pointmaps()
    moved = points.clone()
    moved[~valid] = 123.0  # invalid pixels' values never reach the VAE

    def loss(p: torch.Tensor, **kw: float) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            return pointmap_vae_loss(pm, p, valid, torch.Generator().manual_seed(1), **kw)

    a, b = loss(points), loss(moved)
    assert all(torch.equal(a[k], b[k]) for k in a)
    masked = loss(points, invalid_weight=0.0, kl_weight=0.0)
    torch.testing.assert_close(masked["loss"], masked["huber"])
    torch.testing.assert_close(a["loss"], a["huber"] + 0.1 * a["invalid"] + 1e-6 * a["kl"])
    assert float(a["invalid"]) > 0
    with pytest.raises(ValueError, match="no valid pixel"):
        pointmap_vae_loss(pm, points, torch.zeros_like(valid))


def test_loss_decreases_when_fitting_one_batch() -> None:
    torch.manual_seed(0)
    pm = PointmapVAE.from_video_vae(tiny_video_vae())
    points, valid = scene_pointmaps(b=2)
    opt = torch.optim.Adam(pm.parameters(), lr=2e-3)
    losses = []
    for step in range(20):
        out = pointmap_vae_loss(pm, points, valid, torch.Generator().manual_seed(step))
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(float(out["loss"].detach()))
    assert all(math.isfinite(x) for x in losses)
    assert sum(losses[-3:]) / 3 < 0.7 * sum(losses[:3]) / 3, losses


def test_save_and_load_round_trip(tmp_path) -> None:
    from diffusers import AutoencoderKLWan

    pm = PointmapVAE.from_video_vae(tiny_video_vae(), max_distance=20.0)
    pm.set_latent_statistics(torch.tensor([0.1, 0.2, 0.3, 0.4]), torch.tensor([1.0, 2.0, 3.0, 4.0]))
    folder = pm.save_pretrained(tmp_path / "pm")
    assert (folder / "diffusion_pytorch_model.safetensors").is_file()
    loaded = PointmapVAE.from_pretrained(folder)
    assert loaded.max_distance == 20.0
    assert loaded.vae.config.latents_std == [1.0, 2.0, 3.0, 4.0]
    points, valid = scene_pointmaps()
    with torch.no_grad():
        z = pm.encode(points, valid)
        torch.testing.assert_close(loaded.encode(points, valid), z)
        torch.testing.assert_close(loaded.decode(z)["points"], pm.decode(z)["points"])
    # The folder is a plain diffusers VAE too.
    assert type(AutoencoderKLWan.from_pretrained(folder)) is AutoencoderKLWan
    with pytest.raises(FileNotFoundError, match=r"pointmap_vae\.json"):
        PointmapVAE.from_pretrained(tmp_path)
