"""Joint latent DiT (Sora3R): widened patch embedding, its documented init guarantees, the flow
loss, the random twin, folders."""

from __future__ import annotations

import pytest
import torch

from vfm3d.backbones.wan import tiny_configs
from vfm3d.recon4d.joint_dit import JointDiT, joint_config, joint_flow_loss

C = 4  # the tiny Wan's latent channels


def tiny_video_dit(seed: int = 0) -> torch.nn.Module:
    from diffusers import WanTransformer3DModel

    from vfm3d.zoo.common import seeded_init

    return seeded_init(seed, lambda: WanTransformer3DModel(**tiny_configs()[0])).eval()


def prompt(seed: int = 5) -> torch.Tensor:
    return torch.randn(1, 8, 16, generator=torch.Generator().manual_seed(seed))


def latents(b: int = 2, seed: int = 0) -> torch.Tensor:
    """Normalised latents of a 5-frame 32x32 clip under the tiny VAE: [b, 4, 2, 4, 4]."""
    return torch.randn(b, C, 2, 4, 4, generator=torch.Generator().manual_seed(seed))


def video_dit_out(dit: torch.nn.Module, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    context = prompt().expand(x.shape[0], -1, -1)
    return dit(hidden_states=x, timestep=t, encoder_hidden_states=context, return_dict=False)[0]


T = torch.tensor([900.0, 120.0])


def test_config_is_widened() -> None:
    cfg = joint_config(tiny_configs()[0])
    assert cfg["in_channels"] == 2 * C and cfg["out_channels"] == C
    with pytest.raises(ValueError, match="text-to-video"):
        joint_config({**tiny_configs()[0], "in_channels": 8})
    joint = JointDiT.from_video_dit(tiny_video_dit(), prompt())
    assert joint.latent_channels == C
    assert tuple(joint.transformer.patch_embedding.weight.shape[:2]) == (32, 2 * C)
    assert joint.init == "video-dit:zeros"


def test_zero_init_reproduces_the_video_dit_on_the_clean_video() -> None:
    dit = tiny_video_dit().requires_grad_(False)  # as a loaded backbone's DiT
    before = {k: v.clone() for k, v in dit.state_dict().items()}
    joint = JointDiT.from_video_dit(dit, prompt()).eval()
    assert all(p.requires_grad for p in joint.parameters())
    video = latents(seed=1)
    with torch.no_grad():
        expected = video_dit_out(dit, video, T)
        for seed in (2, 3):  # whatever the point-map latent is
            torch.testing.assert_close(joint(video, latents(seed=seed), T), expected)
    # Every other weight is the video DiT's; the video DiT is untouched.
    got = joint.transformer.state_dict()
    for name, value in before.items():
        assert torch.equal(dit.state_dict()[name], value)
        if name != "patch_embedding.weight":
            assert torch.equal(got[name], value), name
    w = got["patch_embedding.weight"]
    assert torch.equal(w[:, :C], before["patch_embedding.weight"])
    assert not bool(w[:, C:].any())


@pytest.mark.parametrize(
    ("init", "equivalent"),
    [
        ("denoiser", lambda video, pm: pm),
        ("half", lambda video, pm: (video + pm) / 2),
    ],
)
def test_alternative_inits_keep_their_guarantee(init, equivalent) -> None:
    dit = tiny_video_dit()
    joint = JointDiT.from_video_dit(dit, prompt(), pointmap_init=init).eval()
    video, pm = latents(seed=1), latents(seed=2)
    with torch.no_grad():
        got = joint(video, pm, T)
        torch.testing.assert_close(got, video_dit_out(dit, equivalent(video, pm), T))
    with pytest.raises(ValueError, match="pointmap_init"):
        JointDiT.from_video_dit(dit, prompt(), pointmap_init="copy")


def test_the_zero_half_gets_a_gradient_at_once() -> None:
    joint = JointDiT.from_video_dit(tiny_video_dit(), prompt())
    loss = joint_flow_loss(
        joint, latents(seed=1), latents(seed=2), torch.Generator().manual_seed(0)
    )
    loss.backward()
    grad = joint.transformer.patch_embedding.weight.grad
    assert float(grad[:, C:].abs().sum()) > 0


def test_random_twin_has_the_same_architecture_and_its_own_weights() -> None:
    dit = tiny_video_dit()
    joint = JointDiT.from_video_dit(dit, prompt())
    twin = JointDiT.random_init(dit.config, prompt(), seed=3)
    again = JointDiT.random_init(tiny_configs()[0], prompt(), seed=3)
    assert twin.init == "random:3"
    a, b, c = (m.transformer.state_dict() for m in (joint, twin, again))
    assert a.keys() == b.keys() and all(a[k].shape == b[k].shape for k in a)
    assert all(torch.equal(b[k], c[k]) for k in b)  # seeded
    assert not torch.equal(a["proj_out.weight"], b["proj_out.weight"])
    assert dict(twin.transformer.config) == dict(joint.transformer.config)


def test_flow_loss_follows_the_wan_mini_convention() -> None:
    """sigma ~ sigmoid(N(0,1)) then eps from the same generator; target eps - z0; t = 1000 sigma."""
    joint = JointDiT.from_video_dit(tiny_video_dit(), prompt()).eval()
    video, z0 = latents(seed=1), latents(seed=2)
    gen = torch.Generator().manual_seed(4)
    sigma = torch.sigmoid(torch.randn(2, generator=gen))
    eps = torch.randn(z0.shape, generator=gen)
    s = sigma.view(-1, 1, 1, 1, 1)
    with torch.no_grad():
        pred = joint(video, (1 - s) * z0 + s * eps, 1000 * sigma)
        expected = torch.nn.functional.mse_loss(pred, eps - z0)
        got = joint_flow_loss(joint, video, z0, torch.Generator().manual_seed(4))
    torch.testing.assert_close(got, expected)


def test_flow_loss_decreases_when_fitting_one_batch() -> None:
    torch.manual_seed(0)
    joint = JointDiT.from_video_dit(tiny_video_dit(), prompt())
    video, z0 = latents(seed=1), latents(seed=2)
    opt = torch.optim.Adam(joint.parameters(), lr=2e-3)
    losses = []
    for _ in range(20):
        loss = joint_flow_loss(joint, video, z0, torch.Generator().manual_seed(0))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0], losses


def test_shapes_are_checked() -> None:
    joint = JointDiT.from_video_dit(tiny_video_dit(), prompt())
    with pytest.raises(ValueError, match="both be"):
        joint(latents(), latents()[:, :, :1], T)
    with pytest.raises(ValueError, match="text_dim"):
        JointDiT.from_video_dit(tiny_video_dit(), torch.zeros(1, 8, 7))


def test_save_and_load_round_trip(tmp_path) -> None:
    joint = JointDiT.from_video_dit(tiny_video_dit(), prompt(), pointmap_init="half").eval()
    folder = joint.save_pretrained(tmp_path / "dit")
    assert (folder / "diffusion_pytorch_model.safetensors").is_file()
    loaded = JointDiT.from_pretrained(folder).eval()
    assert loaded.init == "video-dit:half"
    assert torch.equal(loaded.prompt_embeds, joint.prompt_embeds)
    video, pm = latents(seed=1), latents(seed=2)
    with torch.no_grad():
        torch.testing.assert_close(loaded(video, pm, T), joint(video, pm, T))
    with pytest.raises(FileNotFoundError, match=r"joint_dit\.json"):
        JointDiT.from_pretrained(tmp_path)
