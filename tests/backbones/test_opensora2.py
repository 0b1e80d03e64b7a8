"""Open-Sora 2.0 adapter: the contract, the noise recipe, conditioning, layers, loading, a sweep."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import vfm3d.backbones as backbones
from tests.backbones.contract import BackboneContract
from vfm3d.backbones import opensora2
from vfm3d.backbones._diffusers_common import EMPTY_PROMPT_FILE, save_prompt_file
from vfm3d.features.extract import extract
from vfm3d.models.opensora2 import pack


class TestOpenSora2Contract(BackboneContract):
    name = "opensora2"
    valid_input_shape = (2, 5, 32, 32)
    invalid_inputs = ((1, 4, 32, 32), (1, 5, 32, 24))
    timesteps = (250, 749)
    layers = (0, 1, 2, 3)

    def make_backbone(self):
        return backbones.load("opensora2", tiny=True)


@pytest.fixture(scope="module")
def tiny_os() -> opensora2.OpenSora2Backbone:
    return opensora2.tiny(seed=0)


def _frames(b: int = 1, t: int = 5, h: int = 32, w: int = 32, seed: int = 13) -> torch.Tensor:
    return torch.rand((b, t, 3, h, w), generator=torch.Generator().manual_seed(seed))


def test_noise_recipe_matches_open_soras_training_formula(
    tiny_os: opensora2.OpenSora2Backbone,
) -> None:
    """z = 0.476986 * mode; s' = alpha s / (1 + (alpha - 1) s) with alpha from the packed tokens
    per frame and sqrt(T'); x_t = (1 - s') z + (1 - (1 - 1e-5)(1 - s')) noise; packed 2x2."""
    frames = _frames(b=2)
    prepared = tiny_os.prepare(frames, [250, 600], torch.Generator().manual_seed(2))
    with torch.no_grad():
        z = tiny_os.vae.encode(frames.permute(0, 2, 1, 3, 4) * 2 - 1).latent_dist.mode()
    z = 0.476986 * z
    assert z.shape == (2, 16, 2, 4, 4)
    noise = torch.randn(z.shape, generator=torch.Generator().manual_seed(2))
    alpha = (1 + (4 * 4 // 4 - 256) * (3 - 1) / (4096 - 256)) * math.sqrt(2)
    assert prepared.info["shift_alpha"] == pytest.approx(alpha)
    assert prepared.info["noise_levels"] == [0.25, 0.6]
    batch = prepared.batch
    for i, level in enumerate((0.25, 0.6)):
        s = alpha * level / (1 + (alpha - 1) * level)
        assert prepared.info["model_timesteps"][i] == pytest.approx(s, rel=1e-6)
        expected = (1 - s) * z + (1 - (1 - 1e-5) * (1 - s)) * noise
        torch.testing.assert_close(batch["img"][2 * i : 2 * i + 2], pack(expected))
        torch.testing.assert_close(batch["timesteps"][2 * i : 2 * i + 2], torch.tensor([s, s]))
    assert batch["txt"].shape == (4, 8, 16) and batch["y_vec"].shape == (4, 8)
    assert batch["txt_ids"].abs().sum() == 0
    # (t, h, w) ids of the packed 2 x 2 x 2 grid, in (t, h, w) order
    assert batch["img_ids"][0].tolist()[:3] == [[0, 0, 0], [0, 0, 1], [0, 1, 0]]
    assert batch["img_ids"][0, -1].tolist() == [1, 1, 1]


def test_release_geometry_shift_values() -> None:
    """480x848 -> latent 60x106 -> 1590 packed tokens per frame; 0.25 lands at 0.764 for 129
    frames (33 latent frames, the paper's window) and at 0.721 for 81 frames."""
    schedule = opensora2.OpenSora2NoiseSchedule()
    alpha_129 = schedule.shift_alpha(60 * 106 // 4, 33)
    alpha_81 = schedule.shift_alpha(60 * 106 // 4, 21)
    assert alpha_129 == pytest.approx(1.694792 * math.sqrt(33), rel=1e-5)
    assert float(schedule.shifted(torch.tensor(0.25), alpha_129)) == pytest.approx(0.7644, abs=1e-4)
    assert float(schedule.shifted(torch.tensor(0.25), alpha_81)) == pytest.approx(0.7214, abs=1e-4)
    flat = opensora2.OpenSora2NoiseSchedule(time_shift=False)
    assert flat.shift_alpha(1590, 33) == 1.0


def test_first_frame_condition(tiny_os: opensora2.OpenSora2Backbone) -> None:
    """cond = pack(mask ⊕ mask * latent of frame 0 encoded alone): 1 + 16 channels x 2 x 2."""
    frames = _frames()
    prepared = tiny_os.prepare(frames, [250], torch.Generator().manual_seed(0))
    cond = prepared.batch["cond"]
    assert cond.shape == (1, 8, 68)
    with torch.no_grad():
        first = tiny_os.vae.encode(frames[:, :1].permute(0, 2, 1, 3, 4) * 2 - 1).latent_dist.mode()
    mask = torch.zeros(1, 1, 2, 4, 4)
    mask[:, :, 0] = 1
    reference = torch.zeros(1, 16, 2, 4, 4)
    reference[:, :, :1] = 0.476986 * first
    torch.testing.assert_close(cond, pack(torch.cat([mask, mask * reference], dim=1)))
    assert cond[:, 4:].abs().sum() == 0  # latent frame 1: no condition
    plain = opensora2.tiny(seed=0, condition="none")
    assert plain.prepare(frames, [250], torch.Generator()).batch["cond"].abs().sum() == 0
    a = extract(tiny_os, frames, [3], timesteps=[250])[(3, 250)].tokens
    b = extract(plain, frames, [3], timesteps=[250])[(3, 250)].tokens
    assert not torch.allclose(a, b)


def test_layer_numbering_double_then_single(tiny_os: opensora2.OpenSora2Backbone) -> None:
    modules = tiny_os.layer_modules()
    model = tiny_os.transformer
    assert tiny_os.num_layers == 4 and tiny_os.num_double_layers == 2
    assert modules[1] is model.double_blocks[1] and modules[2] is model.single_blocks[0]
    prepared = tiny_os.prepare(_frames(), [250], torch.Generator().manual_seed(0))
    image = torch.randn(1, 8, 32)
    text = torch.randn(1, 8, 32)
    # a single block's [text, image] output loses its leading text tokens ...
    torch.testing.assert_close(
        tiny_os.layer_output_to_grid(2, torch.cat([text, image], dim=1), prepared),
        image.reshape(1, 2, 2, 2, 32),
    )
    # ... a double block's (img, txt) gives its image stream
    torch.testing.assert_close(
        tiny_os.layer_output_to_grid(0, (image, text), prepared), image.reshape(1, 2, 2, 2, 32)
    )
    with pytest.raises(ValueError, match="text"):
        tiny_os.layer_output_to_grid(3, image, prepared)


def test_vae_runs_as_open_sora_samples(tiny_os: opensora2.OpenSora2Backbone) -> None:
    """Whole clips (no frame-wise encoding), 256 px tiles with 192 px stride."""
    vae = tiny_os.vae
    assert vae.use_framewise_encoding is False and vae.use_tiling is True
    assert (vae.tile_sample_min_height, vae.tile_sample_stride_width) == (256, 192)


def test_release_vae_architecture_is_the_diffusers_default() -> None:
    from diffusers import AutoencoderKLHunyuanVideo

    with torch.device("meta"):
        vae = AutoencoderKLHunyuanVideo()
    c = vae.config
    assert len(vae.state_dict()) == 248 and c.latent_channels == 16
    assert tuple(c.block_out_channels) == (128, 256, 512, 512) and c.layers_per_block == 2
    assert (c.temporal_compression_ratio, c.spatial_compression_ratio) == (4, 8)
    assert c.scaling_factor == pytest.approx(0.476986)


def test_bad_construction_is_refused(tiny_os: opensora2.OpenSora2Backbone) -> None:
    t, v, s = tiny_os.transformer, tiny_os.vae, tiny_os.scheduler
    good = {"prompt_embeds": torch.zeros(1, 8, 16), "pooled_prompt_embeds": torch.zeros(1, 8)}
    with pytest.raises(ValueError, match="pooled_prompt_embeds"):
        opensora2.OpenSora2Backbone("x", t, v, s, good["prompt_embeds"], torch.zeros(1, 5))
    with pytest.raises(ValueError, match="prompt_embeds"):
        opensora2.OpenSora2Backbone(
            "x", t, v, s, torch.zeros(1, 8, 5), good["pooled_prompt_embeds"]
        )
    with pytest.raises(ValueError, match="condition"):
        opensora2.OpenSora2Backbone("x", t, v, s, **good, condition="last_frame")
    with pytest.raises(ValueError, match="out of range"):
        tiny_os.prepare(_frames(), [1001], torch.Generator())


def test_from_pretrained_folders_and_stored_embedding(
    tiny_os: opensora2.OpenSora2Backbone, tmp_path: Path
) -> None:
    tiny_os.transformer.save_pretrained(tmp_path / "transformer")
    tiny_os.vae.save_pretrained(tmp_path / "vae")
    with pytest.raises(FileNotFoundError, match="openai/clip-vit-large-patch14"):
        backbones.load("opensora2", weights=tmp_path)
    gen = torch.Generator().manual_seed(0)
    prompt = {
        "prompt_embeds": torch.randn(1, 6, 16, generator=gen),
        "pooled_prompt_embeds": torch.randn(1, 8, generator=gen),
    }
    save_prompt_file(tmp_path / EMPTY_PROMPT_FILE, prompt)
    loaded = backbones.load("opensora2", weights=tmp_path)
    reference = opensora2.OpenSora2Backbone(
        "opensora2", tiny_os.transformer, tiny_os.vae, tiny_os.scheduler, **prompt
    )
    a = extract(loaded, _frames(), [1, 3], timesteps=[250], seed=0)
    b = extract(reference, _frames(), [1, 3], timesteps=[250], seed=0)
    for key in a:
        torch.testing.assert_close(a[key].tokens, b[key].tokens)
    c = extract(tiny_os, _frames(), [3], timesteps=[250], seed=0)  # zero prompt: different
    assert not torch.allclose(c[(3, 250)].tokens, b[(3, 250)].tokens)


def test_release_file_layout_is_checked_by_name(
    tiny_os: opensora2.OpenSora2Backbone, tmp_path: Path
) -> None:
    """``Open_Sora_v2.safetensors`` must be the release preset and ``hunyuan_vae.safetensors``
    the default HunyuanVideo VAE; tiny files are refused with the tensors named."""
    from safetensors.torch import save_file

    with pytest.raises(FileNotFoundError, match=r"Open_Sora_v2\.safetensors"):
        opensora2.load_transformer(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"hunyuan_vae\.safetensors"):
        opensora2.load_vae(tmp_path)
    save_file(dict(tiny_os.transformer.state_dict()), str(tmp_path / opensora2.TRANSFORMER_FILE))
    with pytest.raises(ValueError, match=r"Open-Sora 2\.0 MMDiT .*img_in\.weight: expected"):
        opensora2.load_transformer(tmp_path)
    vae_state = {k: v.contiguous() for k, v in tiny_os.vae.state_dict().items()}
    vae_state["encoder.not_a_weight"] = torch.zeros(1)
    save_file(vae_state, str(tmp_path / opensora2.VAE_FILE))
    with pytest.raises(ValueError, match=r"HunyuanVideo VAE .*unexpected: encoder\.not_a_weight"):
        opensora2.load_vae(tmp_path)


def _tiny_text_encoders(folder: Path) -> tuple[Path, Path]:
    """Word-level tokenizers and a tiny T5 encoder (width 16) / CLIP text model (width 8),
    saved as the release lays them out."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import (
        CLIPTextConfig,
        CLIPTextModel,
        PreTrainedTokenizerFast,
        T5Config,
        T5EncoderModel,
    )

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, "a": 3}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", special_tokens=[("</s>", 1)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    )
    t5_dir, clip_dir = folder / opensora2.T5_FOLDER, folder / opensora2.CLIP_FOLDER
    torch.manual_seed(0)
    t5 = T5Config(
        vocab_size=len(vocab), d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2,
        pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
    )  # fmt: skip
    T5EncoderModel(t5).save_pretrained(t5_dir)
    clip = CLIPTextConfig(
        vocab_size=len(vocab), hidden_size=8, intermediate_size=16, num_hidden_layers=1,
        num_attention_heads=2, max_position_embeddings=77, pad_token_id=0, eos_token_id=1,
        bos_token_id=1,
    )  # fmt: skip
    CLIPTextModel(clip).save_pretrained(clip_dir)
    fast.save_pretrained(t5_dir)
    fast.save_pretrained(clip_dir)
    return t5_dir, clip_dir


def test_empty_prompt_from_local_t5_and_clip(
    tiny_os: opensora2.OpenSora2Backbone, tmp_path: Path
) -> None:
    """T5 last hidden state of "" padded to 512 tokens without a mask; CLIP pooled output."""
    from transformers import CLIPTextModel, T5EncoderModel

    tiny_os.transformer.save_pretrained(tmp_path / "transformer")
    tiny_os.vae.save_pretrained(tmp_path / "vae")
    t5_dir, clip_dir = _tiny_text_encoders(tmp_path)
    loaded = opensora2.from_pretrained(tmp_path)
    ids = torch.tensor([[1] + [0] * 511])  # "</s>" then padding
    with torch.no_grad():
        hidden = T5EncoderModel.from_pretrained(t5_dir).eval()(input_ids=ids).last_hidden_state
        clip_ids = torch.tensor([[1] + [0] * 76])
        pooled = CLIPTextModel.from_pretrained(clip_dir).eval()(input_ids=clip_ids).pooler_output
    assert loaded.prompt_tensor("embeds").shape == (1, 512, 16)
    torch.testing.assert_close(loaded.prompt_tensor("embeds"), hidden)
    torch.testing.assert_close(loaded.prompt_tensor("pooled"), pooled)


def test_probe_sweep_runs_on_the_tiny_config(tmp_path: Path) -> None:
    """World clips -> tiny Open-Sora 2.0 features -> 2 probe steps -> metrics."""
    from vfm3d.probe.sweep import parse_spec, run_sweep

    spec = parse_spec(
        {
            "world": {
                "kind": "object",
                "train_clips": 2,
                "eval_kinds": ["object"],
                "eval_clips": 1,
                "frames": 9,
                "height": 32,
                "width": 32,
            },
            "extract": {"num_frames": 9},
            "probe": {
                "preset": "cpu_small",
                "steps": 2,
                "first_n": 9,
                "min_gap": 2,
                "num_frames": 3,
            },
            "backbones": [
                {"name": "opensora2", "tiny": True, "layers": [1, 2], "timesteps": [250]}
            ],
        },
        base=tmp_path,
    )
    rows = run_sweep(spec, tmp_path / "out", progress=False, log=lambda *_: None)
    assert [(r["layer"], r["timestep"], r["split"]) for r in rows] == [
        (1, 250, "object"),
        (2, 250, "object"),
    ]
    assert all(math.isfinite(r["point_err"]) and r["backbone"] == "opensora2-tiny" for r in rows)


def test_release_layer_numbering_on_the_meta_device() -> None:
    """57 layers: double_blocks[0..18] then single_blocks[0..37]; the paper's single block 20
    is layer 39, 3072 wide; rules T = 4k+1, H, W multiples of 16; 480x848 -> 30 x 53 tokens."""
    from diffusers import AutoencoderKLHunyuanVideo

    from vfm3d.models.opensora2 import OpenSora2

    with torch.device("meta"):
        backbone = opensora2.OpenSora2Backbone(
            "opensora2",
            OpenSora2(),
            AutoencoderKLHunyuanVideo(),
            None,
            torch.zeros(1, 512, 4096),
            torch.zeros(1, 768),
        )
    assert backbone.num_layers == 57 and backbone.num_double_layers == 19
    assert backbone.layer_modules()[39] is backbone.transformer.single_blocks[20]
    assert backbone.layer_modules()[18] is backbone.transformer.double_blocks[18]
    assert backbone.layer_width(39) == 3072
    assert backbone.rules.describe() == "T = 4k+1, H, W multiples of 16"
    assert backbone.grid.spatial_shape(480, 848) == (30, 53)
    assert (
        backbone.grid.num_feature_frames(81) == 21 and backbone.grid.num_feature_frames(129) == 33
    )
