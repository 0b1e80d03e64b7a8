"""Wan2.1 adapter: the backbone contract on the tiny config, the noise recipe, loading from disk."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import vfm3d.backbones as backbones
from tests.backbones.contract import BackboneContract
from vfm3d.backbones import wan
from vfm3d.backbones._diffusers_common import EMPTY_PROMPT_FILE, save_prompt_file
from vfm3d.backbones.base import UnsupportedInputError
from vfm3d.features.extract import extract


class TestWanContract(BackboneContract):
    name = "wan2.1"
    valid_input_shape = (2, 5, 32, 32)
    invalid_inputs = ((1, 4, 32, 32), (1, 5, 24, 32), (1, 6, 32, 32))
    timesteps = (250, 749)

    def make_backbone(self):
        return backbones.load("wan2.1", tiny=True)


@pytest.fixture(scope="module")
def tiny_wan() -> wan.WanBackbone:
    return wan.tiny(seed=0)


def _frames(b: int = 1, t: int = 5, h: int = 32, w: int = 32) -> torch.Tensor:
    return torch.rand((b, t, 3, h, w), generator=torch.Generator().manual_seed(7))


def test_rules_and_grid_come_from_the_configs(tiny_wan: wan.WanBackbone) -> None:
    assert tiny_wan.rules.frame_step == 4 and tiny_wan.rules.frame_offset == 1
    assert tiny_wan.rules.spatial_multiple == 16
    assert tiny_wan.grid.temporal_stride == 4 and tiny_wan.grid.causal_first_frame
    assert tiny_wan.grid.patch_size == (16, 16)
    assert tiny_wan.rules.describe() == "T = 4k+1, H, W multiples of 16"
    info = tiny_wan.describe()
    assert info["timestep_mode"] == "index" and info["scheduler"] == "UniPCMultistepScheduler"
    with pytest.raises(UnsupportedInputError, match="T = 4k\\+1"):
        tiny_wan.prepare(_frames(t=8), [749], torch.Generator().manual_seed(0))


def test_noise_recipe_matches_the_pipeline(tiny_wan: wan.WanBackbone) -> None:
    """Encode (mode) -> (z - mean) / std -> scheduler.timesteps[t] -> scheduler.add_noise."""
    frames = _frames(b=2)
    prepared = tiny_wan.prepare(frames, [749, 100], torch.Generator().manual_seed(3))
    vae = tiny_wan.vae
    with torch.no_grad():
        z = vae.encode(frames.permute(0, 2, 1, 3, 4) * 2 - 1).latent_dist.mode()
    mean = torch.tensor(vae.config.latents_mean).view(1, -1, 1, 1, 1)
    inv_std = 1.0 / torch.tensor(vae.config.latents_std).view(1, -1, 1, 1, 1)
    z = (z - mean) * inv_std
    noise = torch.randn(z.shape, generator=torch.Generator().manual_seed(3))
    sched = wan.default_scheduler()
    sched.set_timesteps(1000)
    got = prepared.batch["hidden_states"]
    assert got.shape[0] == 4  # timestep-major: [t0 b0, t0 b1, t1 b0, t1 b1]
    for i, index in enumerate([749, 100]):
        t_model = sched.timesteps[index]
        expected = sched.add_noise(z, noise, t_model.repeat(2))
        torch.testing.assert_close(got[2 * i : 2 * i + 2], expected)
        assert torch.equal(prepared.batch["timestep"][2 * i : 2 * i + 2], t_model.repeat(2))
    # The paper's t=749 with UniPC flow shift 3 is model timestep 502 (sigma ~0.50).
    assert prepared.info["model_timesteps"][0] == 502.0
    sigma = 0.5023
    torch.testing.assert_close(got[:2], (1 - sigma) * z + sigma * noise, atol=1e-3, rtol=0)


def test_value_mode_uses_scale_noise_at_t_over_1000() -> None:
    from diffusers import FlowMatchEulerDiscreteScheduler

    backbone = wan.tiny(seed=0, timestep_mode="value")
    backbone.scheduler = FlowMatchEulerDiscreteScheduler(shift=5.0)
    frames = _frames()
    prepared = backbone.prepare(frames, [300], torch.Generator().manual_seed(1))
    z = backbone.encode(frames)
    noise = torch.randn(z.shape, generator=torch.Generator().manual_seed(1))
    assert prepared.batch["timestep"].tolist() == [300.0]
    torch.testing.assert_close(prepared.batch["hidden_states"], 0.7 * z + 0.3 * noise)


def test_two_timesteps_in_one_batch_equal_separate_runs(tiny_wan: wan.WanBackbone) -> None:
    frames = _frames(b=2)
    both = extract(tiny_wan, frames, [0, 1], timesteps=[250, 749], seed=5)
    for t in (250, 749):
        alone = extract(tiny_wan, frames, [0, 1], timesteps=[t], seed=5)
        for layer in (0, 1):
            torch.testing.assert_close(both[(layer, t)].tokens, alone[(layer, t)].tokens)
    assert not torch.allclose(both[(1, 250)].tokens, both[(1, 749)].tokens)


def test_grid_is_the_patch_embedding_order(tiny_wan: wan.WanBackbone) -> None:
    """Block 0's input tokens regridded put each Conv3d patch at its (t, h, w) place."""
    frames = _frames()
    prepared = tiny_wan.prepare(frames, [749], torch.Generator().manual_seed(0))
    seen = {}

    def grab(_module: torch.nn.Module, args: tuple) -> None:
        seen["x"] = args[0]

    handle = tiny_wan.transformer.blocks[0].register_forward_pre_hook(grab)
    try:
        tiny_wan.run(prepared)
    finally:
        handle.remove()
    grid = tiny_wan.layer_output_to_grid(0, seen["x"], prepared)
    conv = tiny_wan.transformer.patch_embedding(prepared.batch["hidden_states"])  # [N, C, t, h, w]
    torch.testing.assert_close(grid, conv.permute(0, 2, 3, 4, 1))


def test_value_mode_with_unipc_gives_exact_timesteps() -> None:
    backbone = wan.tiny(seed=0, timestep_mode="value")  # default scheduler: UniPC, flow shift 3
    frames = _frames()
    prepared = backbone.prepare(frames, [749, 250], torch.Generator().manual_seed(1))
    z = backbone.encode(frames)
    noise = torch.randn(z.shape, generator=torch.Generator().manual_seed(1))
    assert prepared.batch["timestep"].tolist() == [749, 250]
    for i, sigma in enumerate((0.749, 0.25)):
        expected = (1 - sigma) * z + sigma * noise
        torch.testing.assert_close(prepared.batch["hidden_states"][i : i + 1], expected)


def test_real_1_3b_config_has_1_4b_parameters() -> None:
    from diffusers import WanTransformer3DModel

    with torch.device("meta"):
        model = WanTransformer3DModel(**wan.wan21_1_3b_config())
    count = sum(p.numel() for p in model.parameters())
    assert 1.40e9 < count < 1.44e9
    assert len(model.blocks) == 30


def _save_tiny(backbone: wan.WanBackbone, folder: Path, scheduler=None) -> None:
    backbone.transformer.save_pretrained(folder / "transformer")
    backbone.vae.save_pretrained(folder / "vae")
    (scheduler or backbone.scheduler).save_pretrained(folder / "scheduler")


def test_from_pretrained_with_stored_embedding(tiny_wan: wan.WanBackbone, tmp_path: Path) -> None:
    from diffusers import FlowMatchEulerDiscreteScheduler

    _save_tiny(tiny_wan, tmp_path, FlowMatchEulerDiscreteScheduler(shift=5.0))
    with pytest.raises(FileNotFoundError, match=EMPTY_PROMPT_FILE):
        backbones.load("wan2.1", weights=tmp_path)
    embeds = torch.randn(1, 6, 16, generator=torch.Generator().manual_seed(2))
    save_prompt_file(tmp_path / EMPTY_PROMPT_FILE, {"prompt_embeds": embeds})
    loaded = backbones.load("wan2.1", weights=tmp_path)
    assert isinstance(loaded.scheduler, FlowMatchEulerDiscreteScheduler)
    assert loaded.scheduler.config.shift == 5.0
    torch.testing.assert_close(loaded.prompt_tensor("embeds"), embeds)
    # Same weights + scheduler + prompt as an in-memory model => same features.
    reference = wan.tiny(seed=0)
    reference.scheduler = FlowMatchEulerDiscreteScheduler(shift=5.0)
    reference.prompt_embeds = embeds
    frames = _frames()
    a = extract(loaded, frames, [1], timesteps=[600], seed=0)
    b = extract(reference, frames, [1], timesteps=[600], seed=0)
    torch.testing.assert_close(a[(1, 600)].tokens, b[(1, 600)].tokens)
    assert loaded.fingerprint == reference.fingerprint


def test_wrong_stored_embedding_width_refused(tiny_wan: wan.WanBackbone, tmp_path: Path) -> None:
    _save_tiny(tiny_wan, tmp_path)
    save_prompt_file(tmp_path / EMPTY_PROMPT_FILE, {"prompt_embeds": torch.zeros(1, 4, 7)})
    with pytest.raises(ValueError, match="prompt_embeds"):
        wan.from_pretrained(tmp_path)


def save_tiny_tokenizer(folder: Path) -> None:
    """A WordLevel fast tokenizer appending </s> (pad 0, eos 1), built offline, saved to ``folder``."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, "a": 3, "cat": 4}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", special_tokens=[("</s>", 1)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    )
    fast.save_pretrained(folder)


def tiny_t5_kwargs() -> dict:
    """Config of a 1-layer, 16-wide (U)T5 encoder over `save_tiny_tokenizer`'s vocabulary."""
    return {
        "vocab_size": 8,
        "d_model": 16,
        "d_kv": 8,
        "d_ff": 32,
        "num_layers": 1,
        "num_heads": 2,
        "relative_attention_num_buckets": 8,
        "pad_token_id": 0,
        "eos_token_id": 1,
        "decoder_start_token_id": 0,
    }


def _tiny_umt5(folder: Path) -> None:
    from transformers import UMT5Config, UMT5EncoderModel

    save_tiny_tokenizer(folder / "tokenizer")
    torch.manual_seed(0)
    UMT5EncoderModel(UMT5Config(**tiny_t5_kwargs())).save_pretrained(folder / "text_encoder")


def test_from_pretrained_computes_empty_prompt_with_text_encoder(
    tiny_wan: wan.WanBackbone, tmp_path: Path
) -> None:
    from transformers import UMT5EncoderModel

    _save_tiny(tiny_wan, tmp_path)
    _tiny_umt5(tmp_path)
    loaded = wan.from_pretrained(tmp_path)
    embeds = loaded.prompt_tensor("embeds")
    assert embeds.shape == (1, wan.WAN_PROMPT_TOKENS, 16)
    # "" tokenises to [</s>]: one real token, then zero padding as the pipeline does.
    encoder = UMT5EncoderModel.from_pretrained(tmp_path / "text_encoder").eval()
    with torch.no_grad():
        direct = encoder(input_ids=torch.tensor([[1]])).last_hidden_state
    torch.testing.assert_close(embeds[:, :1], direct, atol=1e-5, rtol=1e-4)
    assert embeds[:, 1:].abs().max() == 0
    assert embeds[:, :1].abs().max() > 0


def test_bfloat16_keeps_fp32_modules_and_vae(tiny_wan: wan.WanBackbone) -> None:
    half = wan.tiny(seed=0, dtype=torch.bfloat16)
    assert half.transformer.blocks[0].attn1.to_q.weight.dtype == torch.bfloat16
    assert half.transformer.blocks[0].norm2.weight.dtype == torch.float32  # _keep_in_fp32
    assert half._vae_dtype() == torch.float32
    frames = _frames()
    a = extract(half, frames, [1], timesteps=[749])[(1, 749)].tokens
    b = extract(tiny_wan, frames, [1], timesteps=[749])[(1, 749)].tokens
    assert a.dtype == torch.bfloat16
    assert float((a.float() - b).abs().max() / b.abs().max()) < 0.05
