"""HunyuanVideo (text-to-video) adapter: ``AutoencoderKLHunyuanVideo`` + ``HunyuanVideoTransformer3DModel``.

Layer numbering: the ``num_layers`` dual-stream blocks first (``transformer_blocks[i]`` is layer
``i``), then the ``num_single_layers`` single-stream blocks (``single_transformer_blocks[j]`` is
layer ``num_layers + j``); 20 + 40 = 60 layers for the published model. Every layer is the video
stream ``[N, T'*h*w, C]`` in (t, h, w) order (Conv3d patch embedding + ``flatten(2)``). The single
blocks attend over video and text tokens concatenated; diffusers returns the two streams split,
and should a block return them joined the trailing text tokens are stripped.

Recipe (flow matching): frames -> [-1, 1] -> VAE posterior mode -> ``z * vae.config.scaling_factor``
(the inverse of what ``HunyuanVideoPipeline`` does before decoding) -> the scheduler's
``scale_noise`` (default ``FlowMatchEulerDiscreteScheduler(shift=7.0)``, as published; a
``scheduler/`` folder overrides it) -> transformer with the empty-prompt conditioning and, for the
guidance-distilled model, ``guidance = guidance_scale * 1000`` (pipeline default 6.0).

Input rules (from the configs): ``T = 4k+1`` (VAE temporal ratio x temporal patch), H, W
multiples of 8 x 2 = 16.

Empty prompt: the real pipeline needs two text encoders (a Llama-based one with a prompt template,
and CLIP for the pooled vector). With ``text_encoder/``, ``tokenizer/``, ``text_encoder_2/`` and
``tokenizer_2/`` in the weights directory they run through ``HunyuanVideoPipeline.encode_prompt``;
otherwise ``empty_prompt_embedding.safetensors`` holds ``prompt_embeds`` ``[1, L, 4096]``,
``prompt_attention_mask`` ``[1, L]`` (int) and ``pooled_prompt_embeds`` ``[1, 768]``. `tiny` uses
zero embeddings with an all-ones mask of 8 tokens (an all-zero mask would make the token refiner's
attention undefined).
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
from vfm3d.backbones.base import Prepared

NEEDS_WEIGHTS = True
#: ``max_sequence_length`` of ``HunyuanVideoPipeline`` (Llama tokens after the template crop).
HUNYUAN_PROMPT_TOKENS = 256
TINY_PROMPT_TOKENS = 8
#: ``guidance_scale`` default of ``HunyuanVideoPipeline.__call__``.
DEFAULT_GUIDANCE_SCALE = 6.0


def default_scheduler() -> Any:
    """The scheduler published with HunyuanVideo (flow matching, Euler, shift 7.0)."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=7.0)


class HunyuanVideoBackbone(DiffusersVideoBackbone):
    """HunyuanVideo features; layers = dual-stream blocks, then single-stream blocks.

    Prompt tensors: ``prompt_embeds`` ``[1, L, text_embed_dim]``, ``prompt_attention_mask``
    ``[1, L]``, ``pooled_prompt_embeds`` ``[1, pooled_projection_dim]``.
    """

    def __init__(
        self,
        name: str,
        transformer: nn.Module,
        vae: nn.Module,
        scheduler: Any,
        prompt_embeds: torch.Tensor,
        prompt_attention_mask: torch.Tensor,
        pooled_prompt_embeds: torch.Tensor,
        timestep_mode: str = DEFAULT_TIMESTEP_MODE,
        guidance_scale: float = DEFAULT_GUIDANCE_SCALE,
    ) -> None:
        cfg = transformer.config
        if cfg.image_condition_type is not None or cfg.in_channels != vae.config.latent_channels:
            raise ValueError(
                f"image-to-video HunyuanVideo checkpoints are not supported: image_condition_type "
                f"{cfg.image_condition_type!r}, in_channels {cfg.in_channels} "
                f"(VAE latent channels {vae.config.latent_channels})"
            )
        length = prompt_embeds.shape[1] if prompt_embeds.ndim == 3 else -1
        shapes = {
            "prompt_embeds": (tuple(prompt_embeds.shape), (1, length, int(cfg.text_embed_dim))),
            "prompt_attention_mask": (tuple(prompt_attention_mask.shape), (1, length)),
            "pooled_prompt_embeds": (
                tuple(pooled_prompt_embeds.shape),
                (1, int(cfg.pooled_projection_dim)),
            ),
        }
        for key, (got, want) in shapes.items():
            if got != want:
                raise ValueError(f"{key} must have shape {list(want)}, got {list(got)}")
        if int(prompt_attention_mask.sum()) == 0:
            raise ValueError("prompt_attention_mask must mark at least one token as valid")
        super().__init__(
            name,
            transformer,
            vae,
            scheduler,
            {
                "embeds": prompt_embeds,
                "mask": prompt_attention_mask.long(),
                "pooled": pooled_prompt_embeds,
            },
            timestep_mode,
        )
        self.guidance_scale = float(guidance_scale)
        p, p_t = int(cfg.patch_size), int(cfg.patch_size_t)
        vae_cfg = vae.config
        self._set_geometry(
            int(vae_cfg.temporal_compression_ratio),
            int(vae_cfg.spatial_compression_ratio),
            (p_t, p, p),
        )

    def _blocks(self) -> list[nn.Module]:
        return [*self.transformer.transformer_blocks, *self.transformer.single_transformer_blocks]

    @property
    def num_dual_layers(self) -> int:
        """Layers ``0..num_dual_layers-1`` are dual-stream blocks, the rest single-stream."""
        return len(self.transformer.transformer_blocks)

    # ---------------------------------------------------------------- recipe
    def _normalise_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """``z * scaling_factor`` (the pipeline divides by it before decoding)."""
        return latents * float(self.vae.config.scaling_factor)

    def _model_inputs(
        self, noisy: torch.Tensor, model_timesteps: torch.Tensor, info: dict[str, Any]
    ) -> dict[str, Any]:
        dtype = self.transformer.dtype
        n = noisy.shape[0]
        inputs: dict[str, Any] = {
            "hidden_states": noisy.to(dtype),
            "timestep": model_timesteps.to(dtype),
            "encoder_hidden_states": self.prompt_tensor("embeds")
            .to(noisy.device, dtype)
            .expand(n, -1, -1),
            "encoder_attention_mask": self.prompt_tensor("mask").to(noisy.device).expand(n, -1),
            "pooled_projections": self.prompt_tensor("pooled")
            .to(noisy.device, dtype)
            .expand(n, -1),
        }
        if self.transformer.config.guidance_embeds:
            inputs["guidance"] = torch.full(
                (n,), self.guidance_scale * 1000.0, device=noisy.device, dtype=dtype
            )
        return inputs

    def layer_output_to_grid(self, layer: int, output: Any, prepared: Prepared) -> torch.Tensor:
        """Video stream of block ``layer`` -> ``[N, T', h, w, C]`` (text tokens dropped)."""
        tokens = output[0] if isinstance(output, tuple) else output
        t_, h_, w_ = prepared.feature_shape
        if layer >= self.num_dual_layers and tokens.shape[1] > t_ * h_ * w_:
            tokens = tokens[:, : t_ * h_ * w_]  # video first, then the text tokens
        return super().layer_output_to_grid(layer, tokens, prepared)


# --------------------------------------------------------------------------- constructors
def encode_empty_prompt(
    path: str | os.PathLike[str],
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    max_sequence_length: int = HUNYUAN_PROMPT_TOKENS,
) -> dict[str, torch.Tensor]:
    """Empty-prompt conditioning from the local Llama + CLIP encoders via the pipeline."""
    from diffusers import HunyuanVideoPipeline
    from transformers import AutoTokenizer, CLIPTextModel, LlamaModel

    parts = {
        "tokenizer": AutoTokenizer,
        "text_encoder": LlamaModel,
        "tokenizer_2": AutoTokenizer,
        "text_encoder_2": CLIPTextModel,
    }
    embeds, pooled, mask = encode_prompt_with_pipeline(
        HunyuanVideoPipeline, path, parts, device, dtype, max_sequence_length=max_sequence_length
    )
    return {
        "prompt_embeds": embeds,
        "prompt_attention_mask": mask.long(),
        "pooled_prompt_embeds": pooled,
    }


def from_pretrained(
    path: str | os.PathLike[str],
    name: str = "hunyuanvideo",
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    timestep_mode: str = DEFAULT_TIMESTEP_MODE,
    vae_dtype: torch.dtype = torch.float32,
    guidance_scale: float = DEFAULT_GUIDANCE_SCALE,
) -> HunyuanVideoBackbone:
    """Load a diffusers HunyuanVideo folder (``transformer/``, ``vae/``, optional ``scheduler/``, and
    the two text encoders + tokenizers or ``empty_prompt_embedding.safetensors``)."""
    from diffusers import AutoencoderKLHunyuanVideo, HunyuanVideoTransformer3DModel

    path = Path(path)
    transformer, vae = load_models(
        path, HunyuanVideoTransformer3DModel, AutoencoderKLHunyuanVideo, dtype, vae_dtype
    )
    cfg = transformer.config
    prompt = empty_prompt_from_dir(
        path,
        ("text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2"),
        lambda: encode_empty_prompt(path, device=device, dtype=dtype),
        {
            "prompt_embeds": (1, None, int(cfg.text_embed_dim)),
            "prompt_attention_mask": (1, None),
            "pooled_prompt_embeds": (1, int(cfg.pooled_projection_dim)),
        },
    )
    scheduler = load_scheduler(path, default_scheduler())
    backbone = HunyuanVideoBackbone(
        name,
        transformer,
        vae,
        scheduler,
        **prompt,
        timestep_mode=timestep_mode,
        guidance_scale=guidance_scale,
    )
    return finish(backbone, device, dtype, vae_dtype, cast_transformer=False)  # type: ignore[return-value]


def zero_prompt(
    transformer: nn.Module, tokens: int = TINY_PROMPT_TOKENS
) -> dict[str, torch.Tensor]:
    """Zero embeddings with an all-ones mask of ``tokens`` tokens (tests, random builds)."""
    cfg = transformer.config
    return {
        "prompt_embeds": torch.zeros(1, tokens, int(cfg.text_embed_dim)),
        "prompt_attention_mask": torch.ones(1, tokens, dtype=torch.long),
        "pooled_prompt_embeds": torch.zeros(1, int(cfg.pooled_projection_dim)),
    }


def tiny_configs() -> tuple[dict[str, Any], dict[str, Any]]:
    """(transformer, VAE) configs of the tiny model: 2 dual + 2 single blocks of width 32."""
    transformer = {
        "in_channels": 4,
        "out_channels": 4,
        "num_attention_heads": 2,
        "attention_head_dim": 16,
        "num_layers": 2,
        "num_single_layers": 2,
        "num_refiner_layers": 1,
        "mlp_ratio": 2.0,
        "patch_size": 2,
        "patch_size_t": 1,
        "guidance_embeds": True,
        "text_embed_dim": 16,
        "pooled_projection_dim": 8,
        "rope_axes_dim": (4, 6, 6),
    }
    vae = {
        "latent_channels": 4,
        "block_out_channels": (8, 8, 8, 8),
        "layers_per_block": 1,
        "norm_num_groups": 4,
        "scaling_factor": 0.476986,
    }
    return transformer, vae


def build_random(
    transformer_config: dict[str, Any],
    vae_config: dict[str, Any] | None = None,
    name: str = "hunyuanvideo",
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    seed: int = 0,
    timestep_mode: str = DEFAULT_TIMESTEP_MODE,
) -> HunyuanVideoBackbone:
    """A random-initialised HunyuanVideo backbone from configs, with `zero_prompt` conditioning."""
    from diffusers import AutoencoderKLHunyuanVideo, HunyuanVideoTransformer3DModel

    return build_random_backbone(  # type: ignore[return-value]
        HunyuanVideoBackbone,
        lambda: HunyuanVideoTransformer3DModel(**transformer_config),
        lambda: AutoencoderKLHunyuanVideo(**(vae_config or {})),
        zero_prompt,
        default_scheduler,
        name,
        device,
        dtype,
        seed,
        timestep_mode=timestep_mode,
    )


def tiny(
    name: str = "hunyuanvideo",
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    seed: int = 0,
    timestep_mode: str = DEFAULT_TIMESTEP_MODE,
) -> HunyuanVideoBackbone:
    """Tiny random HunyuanVideo (same classes): 4 layers, width 32; 5 frames at 32x32 -> 2x2x2."""
    transformer_config, vae_config = tiny_configs()
    return build_random(
        transformer_config,
        vae_config,
        name=name,
        device=device,
        dtype=dtype,
        seed=seed,
        timestep_mode=timestep_mode,
    )
