"""HunyuanVideo adapter: the contract, flow-matching noise recipe, layer numbering, loading."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import vfm3d.backbones as backbones
from tests.backbones.contract import BackboneContract
from vfm3d.backbones import hunyuanvideo
from vfm3d.backbones._diffusers_common import EMPTY_PROMPT_FILE, save_prompt_file
from vfm3d.features.extract import extract


class TestHunyuanVideoContract(BackboneContract):
    name = "hunyuanvideo"
    valid_input_shape = (2, 5, 32, 32)
    invalid_inputs = ((1, 4, 32, 32), (1, 5, 32, 24))
    timesteps = (250, 749)
    layers = (0, 1, 2, 3)

    def make_backbone(self):
        return backbones.load("hunyuanvideo", tiny=True)


@pytest.fixture(scope="module")
def tiny_hy() -> hunyuanvideo.HunyuanVideoBackbone:
    return hunyuanvideo.tiny(seed=0)


def _frames(b: int = 1, t: int = 5, h: int = 32, w: int = 32) -> torch.Tensor:
    return torch.rand((b, t, 3, h, w), generator=torch.Generator().manual_seed(13))


def test_noise_recipe_matches_the_pipeline(tiny_hy: hunyuanvideo.HunyuanVideoBackbone) -> None:
    """Encode (mode) -> z * scaling_factor -> scale_noise at scheduler.timesteps[t] (shift 7)."""
    frames = _frames(b=2)
    prepared = tiny_hy.prepare(frames, [749, 500], torch.Generator().manual_seed(2))
    with torch.no_grad():
        z = tiny_hy.vae.encode(frames.permute(0, 2, 1, 3, 4) * 2 - 1).latent_dist.mode()
    z = z * 0.476986
    noise = torch.randn(z.shape, generator=torch.Generator().manual_seed(2))
    sched = hunyuanvideo.default_scheduler()
    sched.set_timesteps(1000)
    batch = prepared.batch
    for i, index in enumerate((749, 500)):
        t_model = sched.timesteps[index].repeat(2)
        expected = sched.scale_noise(z, t_model, noise)
        torch.testing.assert_close(batch["hidden_states"][2 * i : 2 * i + 2], expected)
        torch.testing.assert_close(batch["timestep"][2 * i : 2 * i + 2], t_model)
        sigma = float(sched.sigmas[index])
        torch.testing.assert_close(expected, (1 - sigma) * z + sigma * noise)
    assert batch["guidance"].tolist() == [6000.0] * 4
    assert batch["encoder_attention_mask"].shape == (4, 8)
    assert batch["pooled_projections"].shape == (4, 8)


def test_layer_numbering_dual_then_single(tiny_hy: hunyuanvideo.HunyuanVideoBackbone) -> None:
    modules = tiny_hy.layer_modules()
    transformer = tiny_hy.transformer
    assert tiny_hy.num_layers == 4 and tiny_hy.num_dual_layers == 2
    assert modules[1] is transformer.transformer_blocks[1]
    assert modules[2] is transformer.single_transformer_blocks[0]
    prepared = tiny_hy.prepare(_frames(), [749], torch.Generator().manual_seed(0))
    video = torch.randn(1, 8, 32)
    text = torch.randn(1, 8, 32)
    joined = torch.cat([video, text], dim=1)
    # A single-stream block's joined [video, text] output loses its text tokens ...
    grid = tiny_hy.layer_output_to_grid(2, joined, prepared)
    torch.testing.assert_close(grid, video.reshape(1, 2, 2, 2, 32))
    # ... a dual-stream block never carries them: a wrong length is an error, not a silent cut.
    with pytest.raises(ValueError, match="video tokens"):
        tiny_hy.layer_output_to_grid(1, joined, prepared)


def test_guidance_reaches_the_model(
    tiny_hy: hunyuanvideo.HunyuanVideoBackbone,
) -> None:
    frames = _frames()
    base = extract(tiny_hy, frames, [3], timesteps=[749])[(3, 749)].tokens
    other = hunyuanvideo.tiny(seed=0)
    other.guidance_scale = 1.0
    changed = extract(other, frames, [3], timesteps=[749])[(3, 749)].tokens
    assert not torch.allclose(base, changed)


def test_bad_prompt_tensors_refused() -> None:
    transformer_config, vae_config = hunyuanvideo.tiny_configs()
    backbone = hunyuanvideo.build_random(transformer_config, vae_config)
    prompt = hunyuanvideo.zero_prompt(backbone.transformer)
    prompt["prompt_attention_mask"] = torch.zeros(1, 8, dtype=torch.long)
    with pytest.raises(ValueError, match="at least one token"):
        hunyuanvideo.HunyuanVideoBackbone(
            "hunyuanvideo", backbone.transformer, backbone.vae, backbone.scheduler, **prompt
        )
    prompt = hunyuanvideo.zero_prompt(backbone.transformer)
    prompt["pooled_prompt_embeds"] = torch.zeros(1, 5)
    with pytest.raises(ValueError, match="pooled_prompt_embeds"):
        hunyuanvideo.HunyuanVideoBackbone(
            "hunyuanvideo", backbone.transformer, backbone.vae, backbone.scheduler, **prompt
        )


def test_from_pretrained_with_stored_embedding(
    tiny_hy: hunyuanvideo.HunyuanVideoBackbone, tmp_path: Path
) -> None:
    tiny_hy.transformer.save_pretrained(tmp_path / "transformer")
    tiny_hy.vae.save_pretrained(tmp_path / "vae")
    with pytest.raises(FileNotFoundError, match="text_encoder_2"):
        backbones.load("hunyuanvideo", weights=tmp_path)
    gen = torch.Generator().manual_seed(0)
    prompt = {
        "prompt_embeds": torch.randn(1, 6, 16, generator=gen),
        "prompt_attention_mask": torch.tensor([[1, 1, 1, 1, 0, 0]]),
        "pooled_prompt_embeds": torch.randn(1, 8, generator=gen),
    }
    save_prompt_file(tmp_path / EMPTY_PROMPT_FILE, prompt)
    loaded = backbones.load("hunyuanvideo", weights=tmp_path)  # no scheduler/: the default
    assert loaded.scheduler.config.shift == 7.0
    reference = hunyuanvideo.HunyuanVideoBackbone(
        "hunyuanvideo", tiny_hy.transformer, tiny_hy.vae, tiny_hy.scheduler, **prompt
    )
    a = extract(loaded, _frames(), [1, 3], timesteps=[749], seed=0)
    b = extract(reference, _frames(), [1, 3], timesteps=[749], seed=0)
    for key in a:
        torch.testing.assert_close(a[key].tokens, b[key].tokens)
    # The mask matters: the masked text tokens must not influence the video tokens.
    masked = dict(prompt, prompt_embeds=prompt["prompt_embeds"].clone())
    masked["prompt_embeds"][:, 4:] = 100.0
    altered = hunyuanvideo.HunyuanVideoBackbone(
        "hunyuanvideo", tiny_hy.transformer, tiny_hy.vae, tiny_hy.scheduler, **masked
    )
    c = extract(altered, _frames(), [1], timesteps=[749], seed=0)
    torch.testing.assert_close(c[(1, 749)].tokens, b[(1, 749)].tokens)


def _tiny_text_encoders(folder: Path) -> None:
    """Character-level tokenizers (so the prompt template outlasts its 95-token crop), a 2-layer
    Llama and a 1-layer CLIP text model, all tiny and built offline."""
    from diffusers.pipelines.hunyuan_video.pipeline_hunyuan_video import DEFAULT_PROMPT_TEMPLATE
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, processors
    from transformers import (
        CLIPTextConfig,
        CLIPTextModel,
        LlamaConfig,
        LlamaModel,
        PreTrainedTokenizerFast,
    )

    chars = sorted(set(DEFAULT_PROMPT_TEMPLATE["template"]))
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{c: i + 3 for i, c in enumerate(chars)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", special_tokens=[("</s>", 1)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    )
    fast.save_pretrained(folder / "tokenizer")
    fast.save_pretrained(folder / "tokenizer_2")
    ids = {"pad_token_id": 0, "eos_token_id": 1, "bos_token_id": 1, "vocab_size": len(vocab)}
    torch.manual_seed(0)
    llama = LlamaConfig(
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=512,
        **ids,
    )
    LlamaModel(llama).save_pretrained(folder / "text_encoder")
    clip = CLIPTextConfig(
        hidden_size=8,
        intermediate_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=77,
        projection_dim=8,
        **ids,
    )
    CLIPTextModel(clip).save_pretrained(folder / "text_encoder_2")


def test_from_pretrained_computes_empty_prompt_with_text_encoders(
    tiny_hy: hunyuanvideo.HunyuanVideoBackbone, tmp_path: Path
) -> None:
    """Llama hidden state 3rd from last, after the template crop (95), + CLIP's pooled output."""
    from diffusers.pipelines.hunyuan_video.pipeline_hunyuan_video import DEFAULT_PROMPT_TEMPLATE
    from transformers import AutoTokenizer, CLIPTextModel, LlamaModel

    tiny_hy.transformer.save_pretrained(tmp_path / "transformer")
    tiny_hy.vae.save_pretrained(tmp_path / "vae")
    _tiny_text_encoders(tmp_path)
    loaded = hunyuanvideo.from_pretrained(tmp_path)
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "tokenizer")
    crop, length = DEFAULT_PROMPT_TEMPLATE["crop_start"], hunyuanvideo.HUNYUAN_PROMPT_TOKENS
    text = tokenizer(
        DEFAULT_PROMPT_TEMPLATE["template"].format(""),
        max_length=crop + length,
        padding="max_length",
        truncation=True,
        return_tensors="pt",
    )
    clip_ids = tokenizer("", max_length=77, padding="max_length", return_tensors="pt").input_ids
    with torch.no_grad():
        llama = LlamaModel.from_pretrained(tmp_path / "text_encoder").eval()
        hidden = llama(
            input_ids=text.input_ids, attention_mask=text.attention_mask, output_hidden_states=True
        ).hidden_states[-3]
        clip = CLIPTextModel.from_pretrained(tmp_path / "text_encoder_2").eval()
        pooled = clip(clip_ids).pooler_output
    torch.testing.assert_close(loaded.prompt_tensor("embeds"), hidden[:, crop:])
    assert torch.equal(loaded.prompt_tensor("mask"), text.attention_mask[:, crop:])
    torch.testing.assert_close(loaded.prompt_tensor("pooled"), pooled)
    assert loaded.prompt_tensor("embeds").shape == (1, length, 16)
