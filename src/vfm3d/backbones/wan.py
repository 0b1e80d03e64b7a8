"""Wan2.1 text-to-video adapter: ``AutoencoderKLWan`` + ``WanTransformer3DModel`` (diffusers).

Layer ``i`` = output of ``transformer.blocks[i]`` (``[N, T'*h*w, C]``, tokens in (t, h, w) order:
the patch embedding is a Conv3d followed by ``flatten(2)``), before the output norm.

Recipe (as ``WanVideoToVideoPipeline``, posterior mode instead of a sample): frames -> [-1, 1] ->
VAE posterior mode -> ``(z - latents_mean) * (1 / latents_std)`` (per channel, from the VAE config)
-> noise via the scheduler (default: the published ``UniPCMultistepScheduler``, flow shift 3; a
``scheduler/`` folder in the weights overrides it) -> transformer with the empty-prompt embedding.

Input rules (from the configs): ``T = s_t k + 1`` with ``s_t`` the VAE temporal factor (4) times
the temporal patch (1); H, W multiples of the VAE spatial factor (8) times the patch (2) = 16.

Empty prompt: with ``text_encoder/`` + ``tokenizer/`` in the weights directory the UMT5 embedding of
"" is computed through ``WanPipeline.encode_prompt`` (padded with zeros to 512 tokens, the
pipeline's ``max_sequence_length``); otherwise ``empty_prompt_embedding.safetensors`` holds
``prompt_embeds`` ``[1, L, text_dim]``. `tiny` uses zeros ``[1, 8, text_dim]``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vfm3d.backbones._diffusers_common import (
    DEFAULT_TIMESTEP_MODE,
    DiffusersVideoBackbone,
    build_random_backbone,
    empty_prompt_from_dir,
    encode_prompt_with_pipeline,
    finish,
    load_models,
    load_scheduler,
)
from vfm3d.models.wan_flow import default_scheduler  # re-exported (moved there)

NEEDS_WEIGHTS = True
#: ``max_sequence_length`` of ``WanPipeline.__call__``: the empty prompt is padded to this length.
WAN_PROMPT_TOKENS = 512
TINY_PROMPT_TOKENS = 8


def wan21_1_3b_config() -> dict[str, Any]:
    """``WanTransformer3DModel`` config of Wan2.1-T2V-1.3B (1536 wide, 30 blocks), for benchmarks."""
    return {
        "patch_size": (1, 2, 2),
        "num_attention_heads": 12,
        "attention_head_dim": 128,
        "in_channels": 16,
        "out_channels": 16,
        "text_dim": 4096,
        "freq_dim": 256,
        "ffn_dim": 8960,
        "num_layers": 30,
        "cross_attn_norm": True,
        "qk_norm": "rms_norm_across_heads",
        "eps": 1e-6,
        "image_dim": None,
        "added_kv_proj_dim": None,
        "rope_max_seq_len": 1024,
    }


def _vae_factors(vae: nn.Module) -> tuple[int, int]:
    """(temporal, spatial) compression of an ``AutoencoderKLWan``, from its config."""
    cfg = vae.config
    temporal = cfg.scale_factor_temporal or 2 ** sum(bool(x) for x in cfg.temperal_downsample)
    spatial = cfg.scale_factor_spatial or 2 ** (len(cfg.dim_mult) - 1) * (cfg.patch_size or 1)
    return int(temporal), int(spatial)


class WanBackbone(DiffusersVideoBackbone):
    """Wan2.1 T2V features. ``prompt_embeds`` ``[1, L, text_dim]`` is the empty-prompt embedding."""

    def __init__(
        self,
        name: str,
        transformer: nn.Module,
        vae: nn.Module,
        scheduler: Any,
        prompt_embeds: torch.Tensor,
        timestep_mode: str = DEFAULT_TIMESTEP_MODE,
    ) -> None:
        cfg = transformer.config
        p_t, p_h, p_w = (int(x) for x in cfg.patch_size)
        if p_t != 1:
            raise ValueError(f"Wan transformer with temporal patch {p_t} not supported (need 1)")
        if cfg.image_dim is not None or cfg.in_channels != vae.config.z_dim:
            raise ValueError(
                f"image-to-video Wan checkpoints are not supported: transformer in_channels "
                f"{cfg.in_channels} (VAE z_dim {vae.config.z_dim}), image_dim {cfg.image_dim}"
            )
        if prompt_embeds.ndim != 3 or prompt_embeds.shape[-1] != cfg.text_dim:
            raise ValueError(
                f"prompt_embeds must be [1, L, {cfg.text_dim}], got {tuple(prompt_embeds.shape)}"
            )
        super().__init__(
            name, transformer, vae, scheduler, {"embeds": prompt_embeds}, timestep_mode
        )
        self._set_geometry(*_vae_factors(vae), (p_t, p_h, p_w))
        std = torch.tensor(vae.config.latents_std, dtype=torch.float32)
        self.register_buffer(
            "latents_mean",
            torch.tensor(vae.config.latents_mean, dtype=torch.float32).view(1, -1, 1, 1, 1),
            persistent=False,
        )
        self.register_buffer("latents_inv_std", (1.0 / std).view(1, -1, 1, 1, 1), persistent=False)

    def _blocks(self) -> list[nn.Module]:
        return list(self.transformer.blocks)

    # ---------------------------------------------------------------- recipe
    def _normalise_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """As the Wan pipelines: ``(z - mean) * (1 / std)`` per latent channel."""
        mean = self.latents_mean.to(latents.device, latents.dtype)
        inv_std = self.latents_inv_std.to(latents.device, latents.dtype)
        return (latents - mean) * inv_std

    def _model_inputs(
        self, noisy: torch.Tensor, model_timesteps: torch.Tensor, info: dict[str, Any]
    ) -> dict[str, Any]:
        dtype = self.transformer.dtype
        embeds = self.prompt_tensor("embeds").to(noisy.device, dtype)
        return {
            "hidden_states": noisy.to(dtype),
            "timestep": model_timesteps,
            "encoder_hidden_states": embeds.expand(noisy.shape[0], -1, -1),
        }


# --------------------------------------------------------------------------- constructors
def encode_empty_prompt(
    path: str | os.PathLike[str],
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    max_sequence_length: int = WAN_PROMPT_TOKENS,
) -> torch.Tensor:
    """UMT5 embedding of "" from ``path/text_encoder`` + ``path/tokenizer``: ``[1, L, text_dim]``.

    Goes through ``WanPipeline.encode_prompt`` (prompt cleaning, padding to ``max_sequence_length``
    and zeroing past the real tokens exactly as the pipeline does).
    """
    from diffusers import WanPipeline
    from transformers import AutoTokenizer, UMT5EncoderModel

    parts = {"tokenizer": AutoTokenizer, "text_encoder": UMT5EncoderModel}
    embeds, _ = encode_prompt_with_pipeline(
        WanPipeline,
        path,
        parts,
        device,
        dtype,
        do_classifier_free_guidance=False,
        max_sequence_length=max_sequence_length,
    )
    return embeds


def from_pretrained(
    path: str | os.PathLike[str],
    name: str = "wan2.1",
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    timestep_mode: str = DEFAULT_TIMESTEP_MODE,
    vae_dtype: torch.dtype = torch.float32,
) -> WanBackbone:
    """Load a diffusers Wan folder (``transformer/``, ``vae/``, optional ``scheduler/``, and either
    ``text_encoder/`` + ``tokenizer/`` or ``empty_prompt_embedding.safetensors``).

    The VAE runs in ``vae_dtype`` (float32 by default, as the Wan examples do).
    """
    from diffusers import AutoencoderKLWan, WanTransformer3DModel

    path = Path(path)
    transformer, vae = load_models(path, WanTransformer3DModel, AutoencoderKLWan, dtype, vae_dtype)
    prompt = empty_prompt_from_dir(
        path,
        ("text_encoder", "tokenizer"),
        lambda: {"prompt_embeds": encode_empty_prompt(path, device=device, dtype=dtype)},
        {"prompt_embeds": (1, None, int(transformer.config.text_dim))},
    )
    scheduler = load_scheduler(path, default_scheduler())
    backbone = WanBackbone(
        name, transformer, vae, scheduler, prompt["prompt_embeds"], timestep_mode=timestep_mode
    )
    return finish(backbone, device, dtype, vae_dtype, cast_transformer=False)  # type: ignore[return-value]


def tiny_configs() -> tuple[dict[str, Any], dict[str, Any]]:
    """(transformer, VAE) configs of the tiny test model: 2 blocks of width 32, 4 latent channels.

    The VAE's ``latents_mean``/``latents_std`` are deliberately not 0/1 so that tests see the
    normalisation.
    """
    transformer = {
        "patch_size": (1, 2, 2),
        "num_attention_heads": 2,
        "attention_head_dim": 16,
        "in_channels": 4,
        "out_channels": 4,
        "text_dim": 16,
        "freq_dim": 32,
        "ffn_dim": 64,
        "num_layers": 2,
        "rope_max_seq_len": 32,
    }
    vae = {
        "base_dim": 8,
        "z_dim": 4,
        "dim_mult": [1, 1, 1, 1],
        "num_res_blocks": 1,
        "temperal_downsample": [False, True, True],
        "latents_mean": [0.5, -0.25, 0.1, -0.4],
        "latents_std": [2.0, 0.5, 1.5, 0.8],
    }
    return transformer, vae


def build_random(
    transformer_config: dict[str, Any],
    vae_config: dict[str, Any] | None = None,
    name: str = "wan2.1",
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    seed: int = 0,
    prompt_tokens: int = WAN_PROMPT_TOKENS,
    timestep_mode: str = DEFAULT_TIMESTEP_MODE,
) -> WanBackbone:
    """A random-initialised Wan backbone from configs (zero prompt ``[1, prompt_tokens, text_dim]``).

    ``build_random(wan21_1_3b_config())`` is the real 1.3B architecture (VAE: the default
    ``AutoencoderKLWan`` config, which is Wan2.1's) for GPU benchmarks.
    """
    from diffusers import AutoencoderKLWan, WanTransformer3DModel

    return build_random_backbone(  # type: ignore[return-value]
        WanBackbone,
        lambda: WanTransformer3DModel(**transformer_config),
        lambda: AutoencoderKLWan(**(vae_config or {})),
        lambda t: {"prompt_embeds": torch.zeros(1, prompt_tokens, int(t.config.text_dim))},
        default_scheduler,
        name,
        device,
        dtype,
        seed,
        timestep_mode=timestep_mode,
    )


def tiny(
    name: str = "wan2.1",
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    seed: int = 0,
    timestep_mode: str = DEFAULT_TIMESTEP_MODE,
) -> WanBackbone:
    """Tiny random Wan (same classes): 2 blocks, width 32; 5 frames at 32x32 -> 2x2x2 tokens."""
    transformer_config, vae_config = tiny_configs()
    return build_random(
        transformer_config,
        vae_config,
        name=name,
        device=device,
        dtype=dtype,
        seed=seed,
        prompt_tokens=TINY_PROMPT_TOKENS,
        timestep_mode=timestep_mode,
    )
