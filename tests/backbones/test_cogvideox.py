"""CogVideoX adapter: the contract (sin-cos and rotary flavours), DDIM noise recipe, traps."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import vfm3d.backbones as backbones
from tests.backbones.contract import BackboneContract
from vfm3d.backbones import cogvideox
from vfm3d.backbones._diffusers_common import EMPTY_PROMPT_FILE, save_prompt_file
from vfm3d.backbones.base import UnsupportedInputError
from vfm3d.features.extract import extract


class TestCogVideoXContract(BackboneContract):
    name = "cogvideox"
    valid_input_shape = (2, 5, 32, 32)
    invalid_inputs = ((1, 4, 32, 32), (1, 5, 32, 40))
    timesteps = (250, 749)

    def make_backbone(self):
        return backbones.load("cogvideox", tiny=True)


class TestCogVideoXRotaryContract(BackboneContract):
    name = "cogvideox"
    valid_input_shape = (1, 9, 32, 48)
    invalid_inputs = ((1, 7, 32, 48),)
    timesteps = (500,)

    def make_backbone(self):
        return cogvideox.tiny(rotary=True)


@pytest.fixture(scope="module")
def tiny_cog() -> cogvideox.CogVideoXBackbone:
    return cogvideox.tiny(seed=0)


def _frames(b: int = 1, t: int = 5, h: int = 32, w: int = 32) -> torch.Tensor:
    return torch.rand((b, t, 3, h, w), generator=torch.Generator().manual_seed(11))


def test_noise_recipe_matches_the_pipeline(tiny_cog: cogvideox.CogVideoXBackbone) -> None:
    """Encode (mode) -> z * scaling_factor -> DDIM add_noise at scheduler.timesteps[t]."""
    frames = _frames(b=2)
    prepared = tiny_cog.prepare(frames, [749, 261], torch.Generator().manual_seed(4))
    with torch.no_grad():
        z = tiny_cog.vae.encode(frames.permute(0, 2, 1, 3, 4) * 2 - 1).latent_dist.mode()
    z = z * 0.7  # the tiny VAE's scaling_factor
    noise = torch.randn(z.shape, generator=torch.Generator().manual_seed(4))
    sched = cogvideox.default_scheduler()
    sched.set_timesteps(1000)
    got = prepared.batch["hidden_states"]  # [N, T', C, h', w'] as CogVideoX wants
    assert got.shape == (4, 2, 4, 4, 4)
    assert prepared.info["model_timesteps"] == [250.0, 738.0]
    for i, t_model in enumerate((250, 738)):
        t = torch.tensor([t_model, t_model])
        expected = sched.add_noise(z, noise, t).permute(0, 2, 1, 3, 4)
        torch.testing.assert_close(got[2 * i : 2 * i + 2], expected)
        assert prepared.batch["timestep"][2 * i : 2 * i + 2].tolist() == [t_model, t_model]
    assert prepared.batch["encoder_hidden_states"].shape == (4, 8, 16)


def test_value_mode_adds_noise_at_that_timestep() -> None:
    backbone = cogvideox.tiny(seed=0, timestep_mode="value")
    frames = _frames()
    prepared = backbone.prepare(frames, [749], torch.Generator().manual_seed(0))
    z = backbone.encode(frames)
    noise = torch.randn(z.shape, generator=torch.Generator().manual_seed(0))
    alpha_bar = backbone.scheduler.alphas_cumprod[749]
    expected = alpha_bar.sqrt() * z + (1 - alpha_bar).sqrt() * noise
    torch.testing.assert_close(prepared.batch["hidden_states"], expected.permute(0, 2, 1, 3, 4))


def test_rotary_positions_are_passed_and_matter() -> None:
    backbone = cogvideox.tiny(rotary=True)
    prepared = backbone.prepare(_frames(t=9, w=48), [500], torch.Generator().manual_seed(0))
    cos, sin = prepared.batch["image_rotary_emb"]
    assert cos.shape == sin.shape == (3 * 2 * 3, 16)  # T'*h*w tokens, head dim
    with_rope = backbone.run(prepared)[0]
    prepared.batch["image_rotary_emb"] = None
    without = backbone.run(prepared)[0]
    assert not torch.allclose(with_rope, without)


def test_learned_positions_fix_frames_and_size() -> None:
    transformer_config, vae_config = cogvideox.tiny_configs(rotary=True)
    transformer_config["use_learned_positional_embeddings"] = True
    backbone = cogvideox.build_random(transformer_config, vae_config)
    assert backbone.rules.describe() == "T = 5, H x W = 32 x 32"
    extract(backbone, _frames(), [0], timesteps=[500])
    with pytest.raises(UnsupportedInputError, match="T = 5"):
        extract(backbone, _frames(t=9), [0], timesteps=[500])
    with pytest.raises(UnsupportedInputError, match="32 x 32"):
        extract(backbone, _frames(h=48), [0], timesteps=[500])


@pytest.mark.parametrize(
    ("change", "message"),
    [({"patch_size_t": 2}, "CogVideoX 1.5"), ({"in_channels": 8}, "image-to-video")],
)
def test_unsupported_variants_refused(change: dict, message: str) -> None:
    transformer_config, vae_config = cogvideox.tiny_configs()
    transformer_config.update(change)
    with pytest.raises(ValueError, match=message):
        cogvideox.build_random(transformer_config, vae_config)


def test_from_pretrained_with_stored_embedding(
    tiny_cog: cogvideox.CogVideoXBackbone, tmp_path: Path
) -> None:
    tiny_cog.transformer.save_pretrained(tmp_path / "transformer")
    tiny_cog.vae.save_pretrained(tmp_path / "vae")
    tiny_cog.scheduler.save_pretrained(tmp_path / "scheduler")
    save_prompt_file(tmp_path / EMPTY_PROMPT_FILE, {"prompt_embeds": torch.zeros(1, 5, 16)})
    with pytest.raises(ValueError, match="prompt_embeds"):  # must be max_text_seq_length long
        backbones.load("cogvideox", weights=tmp_path)
    embeds = torch.randn(1, 8, 16, generator=torch.Generator().manual_seed(0))
    save_prompt_file(tmp_path / EMPTY_PROMPT_FILE, {"prompt_embeds": embeds})
    loaded = backbones.load("cogvideox", weights=tmp_path)
    reference = cogvideox.tiny(seed=0)
    reference.prompt_embeds = embeds
    a = extract(loaded, _frames(), [1], timesteps=[749], seed=0)
    b = extract(reference, _frames(), [1], timesteps=[749], seed=0)
    torch.testing.assert_close(a[(1, 749)].tokens, b[(1, 749)].tokens)
    assert loaded.fingerprint == reference.fingerprint


def test_from_pretrained_computes_empty_prompt_with_t5(
    tiny_cog: cogvideox.CogVideoXBackbone, tmp_path: Path
) -> None:
    """CogVideoX encodes "" padded to max_text_seq_length and, unlike Wan, keeps the pad outputs."""
    from transformers import T5Config, T5EncoderModel

    from tests.backbones.test_wan import save_tiny_tokenizer, tiny_t5_kwargs

    tiny_cog.transformer.save_pretrained(tmp_path / "transformer")
    tiny_cog.vae.save_pretrained(tmp_path / "vae")
    save_tiny_tokenizer(tmp_path / "tokenizer")
    torch.manual_seed(0)
    T5EncoderModel(T5Config(**tiny_t5_kwargs())).save_pretrained(tmp_path / "text_encoder")
    loaded = cogvideox.from_pretrained(tmp_path)
    encoder = T5EncoderModel.from_pretrained(tmp_path / "text_encoder").eval()
    ids = torch.tensor([[1, 0, 0, 0, 0, 0, 0, 0]])  # </s> then padding to 8 tokens
    with torch.no_grad():
        direct = encoder(ids).last_hidden_state
    torch.testing.assert_close(loaded.prompt_tensor("embeds"), direct)
