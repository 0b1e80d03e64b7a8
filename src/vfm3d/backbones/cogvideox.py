"""CogVideoX (1.0, text-to-video) adapter: ``AutoencoderKLCogVideoX`` + ``CogVideoXTransformer3DModel``.

Layer ``i`` = video part of the output of ``transformer.transformer_blocks[i]`` (the block returns
``(hidden_states, encoder_hidden_states)``; the text tokens travel separately and are dropped),
``[N, T'*h*w, C]`` in (t, h, w) order, before the final norm.

Recipe (as ``CogVideoXVideoToVideoPipeline``, posterior mode instead of a sample): frames -> [-1, 1]
-> VAE posterior mode -> ``z * vae.config.scaling_factor`` -> ``scheduler.add_noise`` (default:
``CogVideoXDDIMScheduler`` as published with CogVideoX-2b, v-prediction, trailing spacing; a
``scheduler/`` folder overrides it) -> transformer with the empty-prompt embedding; rotary
embeddings (CogVideoX-5b) are computed by the pipeline's own ``_prepare_rotary_positional_embeddings``.

Positions: sin-cos positional embeddings (CogVideoX-2b) are recomputed by diffusers for any latent
size, so any ``T = 4k+1`` and H, W multiple of 16 work. Learned positional embeddings
(CogVideoX-5b-I2V style configs) only exist for the configured ``sample_frames`` and
``sample_height x sample_width``: diffusers would silently fall back to sin-cos for other frame
counts, so the rules fix T and H x W. CogVideoX 1.5 (``patch_size_t``), image-to-video
checkpoints (``in_channels`` != VAE latent channels) and ``ofs`` embeddings are refused.

Empty prompt: with ``text_encoder/`` + ``tokenizer/`` the T5 embedding of "" is computed through
``CogVideoXPipeline.encode_prompt`` (``max_sequence_length`` = the transformer's
``max_text_seq_length``, 226); otherwise ``empty_prompt_embedding.safetensors`` holds
``prompt_embeds`` ``[1, max_text_seq_length, text_embed_dim]``. `tiny` uses zeros. The text length
must equal ``max_text_seq_length``: the joint positional embedding is laid out for it.
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
from vfm3d.backbones.base import InputRules

NEEDS_WEIGHTS = True


def default_scheduler() -> Any:
    """The scheduler published with CogVideoX-2b (DDIM, v-prediction, zero-SNR, trailing)."""
    from diffusers import CogVideoXDDIMScheduler

    return CogVideoXDDIMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=True,
        steps_offset=0,
        prediction_type="v_prediction",
        timestep_spacing="trailing",
        rescale_betas_zero_snr=True,
        snr_shift_scale=3.0,
    )


class CogVideoXBackbone(DiffusersVideoBackbone):
    """CogVideoX features. ``prompt_embeds`` ``[1, max_text_seq_length, text_embed_dim]``."""

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
        if cfg.patch_size_t is not None:
            raise ValueError(
                f"CogVideoX 1.5 (patch_size_t={cfg.patch_size_t}) is not supported: its first "
                "feature frame would cover a different number of input frames than the others"
            )
        if cfg.ofs_embed_dim is not None or cfg.in_channels != vae.config.latent_channels:
            raise ValueError(
                f"image-to-video CogVideoX checkpoints are not supported: transformer in_channels "
                f"{cfg.in_channels} (VAE latent channels {vae.config.latent_channels}), "
                f"ofs_embed_dim {cfg.ofs_embed_dim}"
            )
        expected = (1, int(cfg.max_text_seq_length), int(cfg.text_embed_dim))
        if tuple(prompt_embeds.shape) != expected:
            raise ValueError(
                f"prompt_embeds must be {list(expected)} (max_text_seq_length, text_embed_dim), "
                f"got {list(prompt_embeds.shape)}"
            )
        super().__init__(
            name, transformer, vae, scheduler, {"embeds": prompt_embeds}, timestep_mode
        )
        vae_t = int(vae.config.temporal_compression_ratio)
        vae_s = 2 ** (len(vae.config.block_out_channels) - 1)  # as the pipeline computes it
        rules = None
        if cfg.use_learned_positional_embeddings:
            rules = InputRules(
                fixed_frames=int(cfg.sample_frames),
                fixed_size=(int(cfg.sample_height) * vae_s, int(cfg.sample_width) * vae_s),
            )
        p = int(cfg.patch_size)
        self._set_geometry(vae_t, vae_s, (1, p, p), rules)
        self._pipe: Any = None

    def _blocks(self) -> list[nn.Module]:
        return list(self.transformer.transformer_blocks)

    # ---------------------------------------------------------------- recipe
    def _normalise_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """As the CogVideoX pipelines: ``z * scaling_factor``."""
        return latents * float(self.vae.config.scaling_factor)

    def rotary_embeddings(
        self, latent_frames: int, height: int, width: int, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The pipeline's rotary embeddings for a ``height x width`` (pixels) input, or None."""
        if not self.transformer.config.use_rotary_positional_embeddings:
            return None
        if self._pipe is None:
            from diffusers import CogVideoXPipeline

            self._pipe = CogVideoXPipeline(
                tokenizer=None,
                text_encoder=None,
                vae=self.vae,
                transformer=self.transformer,
                scheduler=self.scheduler,
            )
        return self._pipe._prepare_rotary_positional_embeddings(
            height, width, latent_frames, device
        )

    def _model_inputs(
        self, noisy: torch.Tensor, model_timesteps: torch.Tensor, info: dict[str, Any]
    ) -> dict[str, Any]:
        dtype = self.transformer.dtype
        _, vae_s = self.vae_factors
        n, _, t_, h_, w_ = noisy.shape
        embeds = self.prompt_tensor("embeds").to(noisy.device, dtype)
        return {
            "hidden_states": noisy.permute(0, 2, 1, 3, 4).to(dtype),  # [N, T', C, h', w']
            "encoder_hidden_states": embeds.expand(n, -1, -1),
            "timestep": model_timesteps,
            "image_rotary_emb": self.rotary_embeddings(t_, h_ * vae_s, w_ * vae_s, noisy.device),
        }


# --------------------------------------------------------------------------- constructors
def encode_empty_prompt(
    path: str | os.PathLike[str],
    max_sequence_length: int,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """T5 embedding of "" from ``path/text_encoder`` + ``path/tokenizer`` via the pipeline."""
    from diffusers import CogVideoXPipeline
    from transformers import AutoTokenizer, T5EncoderModel

    parts = {"tokenizer": AutoTokenizer, "text_encoder": T5EncoderModel}
    embeds, _ = encode_prompt_with_pipeline(
        CogVideoXPipeline,
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
    name: str = "cogvideox",
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    timestep_mode: str = DEFAULT_TIMESTEP_MODE,
    vae_dtype: torch.dtype = torch.float32,
) -> CogVideoXBackbone:
    """Load a diffusers CogVideoX folder (``transformer/``, ``vae/``, optional ``scheduler/``, and
    ``text_encoder/`` + ``tokenizer/`` or ``empty_prompt_embedding.safetensors``)."""
    from diffusers import AutoencoderKLCogVideoX, CogVideoXTransformer3DModel

    path = Path(path)
    transformer, vae = load_models(
        path, CogVideoXTransformer3DModel, AutoencoderKLCogVideoX, dtype, vae_dtype
    )
    length = int(transformer.config.max_text_seq_length)
    prompt = empty_prompt_from_dir(
        path,
        ("text_encoder", "tokenizer"),
        lambda: {"prompt_embeds": encode_empty_prompt(path, length, device=device, dtype=dtype)},
        {"prompt_embeds": (1, length, int(transformer.config.text_embed_dim))},
    )
    scheduler = load_scheduler(path, default_scheduler())
    backbone = CogVideoXBackbone(
        name, transformer, vae, scheduler, prompt["prompt_embeds"], timestep_mode=timestep_mode
    )
    return finish(backbone, device, dtype, vae_dtype, cast_transformer=False)  # type: ignore[return-value]


def tiny_configs(rotary: bool = False) -> tuple[dict[str, Any], dict[str, Any]]:
    """(transformer, VAE) configs of the tiny model: 2 blocks of width 32, 4 latent channels.

    ``rotary=True`` gives the CogVideoX-5b flavour (3D RoPE instead of sin-cos positions).
    """
    transformer = {
        "num_attention_heads": 2,
        "attention_head_dim": 16,
        "in_channels": 4,
        "out_channels": 4,
        "time_embed_dim": 16,
        "text_embed_dim": 16,
        "num_layers": 2,
        "sample_width": 4,
        "sample_height": 4,
        "sample_frames": 5,
        "patch_size": 2,
        "temporal_compression_ratio": 4,
        "max_text_seq_length": 8,
        "use_rotary_positional_embeddings": rotary,
    }
    vae = {
        "block_out_channels": (8, 8, 8, 8),
        "latent_channels": 4,
        "layers_per_block": 1,
        "norm_num_groups": 2,
        "temporal_compression_ratio": 4,
        "scaling_factor": 0.7,
    }
    return transformer, vae


def build_random(
    transformer_config: dict[str, Any],
    vae_config: dict[str, Any] | None = None,
    name: str = "cogvideox",
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    seed: int = 0,
    timestep_mode: str = DEFAULT_TIMESTEP_MODE,
) -> CogVideoXBackbone:
    """A random-initialised CogVideoX backbone from configs, with a zero empty-prompt embedding."""
    from diffusers import AutoencoderKLCogVideoX, CogVideoXTransformer3DModel

    def zero_prompt(transformer: nn.Module) -> dict[str, torch.Tensor]:
        cfg = transformer.config
        length, width = int(cfg.max_text_seq_length), int(cfg.text_embed_dim)
        return {"prompt_embeds": torch.zeros(1, length, width)}

    return build_random_backbone(  # type: ignore[return-value]
        CogVideoXBackbone,
        lambda: CogVideoXTransformer3DModel(**transformer_config),
        lambda: AutoencoderKLCogVideoX(**(vae_config or {})),
        zero_prompt,
        default_scheduler,
        name,
        device,
        dtype,
        seed,
        timestep_mode=timestep_mode,
    )


def tiny(
    name: str = "cogvideox",
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    seed: int = 0,
    timestep_mode: str = DEFAULT_TIMESTEP_MODE,
    rotary: bool = False,
) -> CogVideoXBackbone:
    """Tiny random CogVideoX (same classes): 2 blocks, width 32; 5 frames at 32x32 -> 2x2x2."""
    transformer_config, vae_config = tiny_configs(rotary=rotary)
    return build_random(
        transformer_config,
        vae_config,
        name=name,
        device=device,
        dtype=dtype,
        seed=seed,
        timestep_mode=timestep_mode,
    )
