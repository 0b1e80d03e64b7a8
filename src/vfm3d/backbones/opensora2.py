"""Open-Sora 2.0 adapter: HunyuanVideo VAE (diffusers ``AutoencoderKLHunyuanVideo``) + the MMDiT of
`vfm3d.models.opensora2`.

The VAE: Open-Sora 2.0 ships ``hunyuan_vae.safetensors`` and builds it as ``type="hunyuan_vae"``
(``AutoencoderKLCausal3D``, "Modified from HunyuanVideo": 16 latent channels, blocks
(128, 256, 512, 512), 2 layers per block, 4x temporal / 8x spatial, ``scale_factor`` 0.476986,
``shift_factor`` 0). Its state dict has exactly the names and shapes of diffusers'
``AutoencoderKLHunyuanVideo()`` at its default config (248 tensors, checked on the meta device),
and the two encoders agree numerically (posterior mode, and Open-Sora's spatial tiling = diffusers'
``enable_tiling`` with frame-wise encoding off); so the released file loads into the diffusers class
with no name map (strictly: a mismatch names the tensors). Open-Sora samples with spatial tiling on
(256 px tiles, 192 px stride) and temporal tiling off; this adapter does the same (``vae_tiling``).

Recipe (Open-Sora's training-time noising, as VidFM3D's ``opensora_features.py`` reproduces it):

1. frames -> [-1, 1] -> VAE posterior **mode** (Open-Sora samples the posterior; vfm3d is
   deterministic) -> ``z = 0.476986 * (z - 0)`` (``vae.config.scaling_factor``, Open-Sora's
   ``shift_factor`` 0).
2. image-to-video condition (``condition="first_frame"``, the paper's): the first frame is encoded
   alone; ``cond = pack(mask ⊕ mask * ref)`` with ``mask`` 1 on latent frame 0 (68 channels).
   ``condition="none"``: ``cond`` = zeros (text-to-video, the unconditional branch of Open-Sora's
   sampler).
3. timestep ``t`` (0..1000) is the noise level ``s = t / 1000`` **before** the SD3 time shift
   (the paper's 0.25 = ``t=250``); ``alpha = (1 + (n - 256) * 2 / 3840) * sqrt(T')`` with ``n`` the
   packed tokens per latent frame (``get_res_lin_function`` from (256, 1) to (4096, 3)) and ``T'``
   the latent frames; shifted ``s' = alpha s / (1 + (alpha - 1) s)``.
4. ``x_t = (1 - s') x_0 + (1 - (1 - sigma_min)(1 - s')) noise`` with ``sigma_min = 1e-5`` (larger
   = noisier: Open-Sora's flow convention), then 2x2 packed.
5. The MMDiT runs with ``timesteps = s'`` (embedded as ``1000 s'``), the empty-prompt T5 tokens and
   CLIP pooled vector; ``Prepared.info`` records ``noise_levels`` (s), ``shift_alpha`` and
   ``model_timesteps`` (s', what the transformer got).

Layer numbering: layers ``0..depth-1`` are ``double_blocks[i]`` (image stream of the returned
``(img, txt)``), then ``depth + j`` is ``single_blocks[j]`` (its ``[text, image]`` output with the
text tokens dropped): 19 + 38 = 57 layers for the release; the paper's "single block 20" is
layer 39. Features are image tokens on the **packed** grid ``[N, T', H/16, W/16, 3072]``
(480x848 -> 30x53).

Input rules: ``T = 4k+1`` (causal 4x temporal VAE), H, W multiples of 16 (8x VAE x 2x2 packing).

Weights folder (the release's own layout, ``huggingface-cli download hpcai-tech/Open-Sora-v2``)::

    Open_Sora_v2.safetensors           # or transformer/ (OpenSora2.save_pretrained layout)
    hunyuan_vae.safetensors            # or vae/ (a diffusers AutoencoderKLHunyuanVideo folder)
    google/t5-v1_1-xxl/                # T5 tokenizer + encoder (safetensors)   } or
    openai/clip-vit-large-patch14/     # CLIP tokenizer + text model (safetensors) } empty_prompt_embedding.safetensors

The empty prompt as Open-Sora encodes it: T5 ``last_hidden_state`` of "" padded to 512 tokens
(no attention mask) -> ``prompt_embeds`` ``[1, 512, 4096]``; CLIP ``pooler_output`` of "" padded
to 77 tokens -> ``pooled_prompt_embeds`` ``[1, 768]``. `tiny` uses zeros (8 tokens).
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vfm3d.backbones._diffusers_common import (
    DiffusersVideoBackbone,
    build_random_backbone,
    draw_noise,
    empty_prompt_from_dir,
    finish,
)
from vfm3d.backbones.base import Prepared, UnsupportedInputError
from vfm3d.models._checkpoint import check_state_dict, read_safetensors, safetensors_shapes
from vfm3d.models.opensora2 import OpenSora2, OpenSora2Config, pack, position_ids

NEEDS_WEIGHTS = True
#: ``max_length`` of Open-Sora's T5 and CLIP embedders (configs/diffusion/inference/256px.py).
T5_TOKENS = 512
CLIP_TOKENS = 77
TINY_PROMPT_TOKENS = 8
TRANSFORMER_FILE = "Open_Sora_v2.safetensors"
VAE_FILE = "hunyuan_vae.safetensors"
T5_FOLDER = "google/t5-v1_1-xxl"
CLIP_FOLDER = "openai/clip-vit-large-patch14"
#: Open-Sora's ``AutoEncoder3DConfig.shift_factor`` (``z = scale * (z - shift)``).
LATENT_SHIFT = 0.0
CONDITIONS = ("first_frame", "none")
#: Open-Sora's spatial VAE tiling: ``sample_size`` 256, ``tile_overlap_factor`` 0.25.
VAE_TILE, VAE_TILE_STRIDE = 256, 192


@dataclass(frozen=True)
class OpenSora2NoiseSchedule:
    """Open-Sora 2.0's flow-matching noise (``opensora/utils/sampling.py`` and ``train.py``).

    A timestep ``t`` in 0..``num_train_timesteps`` means the noise level ``t / 1000`` before the
    shift. ``alpha = lin(n) * sqrt(T')`` with ``lin`` the line through (``base_tokens``,
    ``base_shift``) and (``max_tokens``, ``max_shift``), ``n`` packed tokens per latent frame and
    ``T'`` latent frames (``temporal_shift``); ``time_shift=False`` skips the shift.
    """

    sigma_min: float = 1e-5
    base_shift: float = 1.0
    max_shift: float = 3.0
    base_tokens: int = 256
    max_tokens: int = 4096
    time_shift: bool = True
    temporal_shift: bool = True
    num_train_timesteps: int = 1000

    def shift_alpha(self, tokens_per_frame: int, latent_frames: int) -> float:
        """The shift for a latent of ``latent_frames`` frames of ``tokens_per_frame`` tokens."""
        if not self.time_shift:
            return 1.0
        slope = (self.max_shift - self.base_shift) / (self.max_tokens - self.base_tokens)
        alpha = self.base_shift + slope * (tokens_per_frame - self.base_tokens)
        if self.temporal_shift:
            alpha *= math.sqrt(latent_frames)
        return float(alpha)

    def shifted(self, levels: torch.Tensor, alpha: float) -> torch.Tensor:
        """``alpha s / (1 + (alpha - 1) s)`` (SD3's time shift) of noise levels ``s`` in [0, 1]."""
        return alpha * levels / (1 + (alpha - 1) * levels)

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``(1 - t) x0 + (1 - (1 - sigma_min)(1 - t)) noise``; ``t`` ``[N]`` (shifted), ``x0`` and
        ``noise`` ``[N, ...]``."""
        keep = (1 - t).to(x0.dtype).view(-1, *([1] * (x0.ndim - 1)))
        return keep * x0 + (1 - (1 - self.sigma_min) * keep) * noise


class OpenSora2Backbone(DiffusersVideoBackbone):
    """Open-Sora 2.0 features; layers = double-stream blocks, then single-stream blocks.

    Prompt tensors: ``prompt_embeds`` ``[1, L, context_in_dim]`` (T5) and ``pooled_prompt_embeds``
    ``[1, vec_in_dim]`` (CLIP). ``condition``: ``"first_frame"`` (image-to-video, the paper's) or
    ``"none"``. ``vae_tiling``: Open-Sora's spatial tiling of the VAE encoder.
    """

    def __init__(
        self,
        name: str,
        transformer: OpenSora2,
        vae: nn.Module,
        scheduler: OpenSora2NoiseSchedule | None,
        prompt_embeds: torch.Tensor,
        pooled_prompt_embeds: torch.Tensor,
        condition: str = "first_frame",
        vae_tiling: bool = True,
    ) -> None:
        cfg = transformer.config
        if condition not in CONDITIONS:
            raise ValueError(f"condition must be one of {CONDITIONS}, got {condition!r}")
        if condition != "none" and not cfg.cond_embed:
            raise ValueError("condition='first_frame' needs a transformer with cond_in")
        latent = int(vae.config.latent_channels)
        if cfg.latent_channels != latent:
            raise ValueError(
                f"transformer takes {cfg.latent_channels}-channel latents "
                f"(in_channels {cfg.in_channels} / {cfg.patch_size}^2), the VAE makes {latent}"
            )
        if prompt_embeds.ndim != 3 or tuple(prompt_embeds.shape[::2]) != (1, cfg.context_in_dim):
            raise ValueError(
                f"prompt_embeds must be [1, L, {cfg.context_in_dim}], "
                f"got {list(prompt_embeds.shape)}"
            )
        if tuple(pooled_prompt_embeds.shape) != (1, cfg.vec_in_dim):
            raise ValueError(
                f"pooled_prompt_embeds must be [1, {cfg.vec_in_dim}], "
                f"got {list(pooled_prompt_embeds.shape)}"
            )
        super().__init__(
            name,
            transformer,
            vae,
            scheduler or OpenSora2NoiseSchedule(),
            {"embeds": prompt_embeds, "pooled": pooled_prompt_embeds},
            "value",
        )
        self.condition = condition
        # Open-Sora encodes whole clips (temporal tiling off) with optional spatial tiling.
        vae.use_framewise_encoding = False
        if vae_tiling:
            vae.enable_tiling(VAE_TILE, VAE_TILE, None, VAE_TILE_STRIDE, VAE_TILE_STRIDE)
        else:
            vae.use_tiling = False
        p = int(cfg.patch_size)
        vae_cfg = vae.config
        self._set_geometry(
            int(vae_cfg.temporal_compression_ratio),
            int(vae_cfg.spatial_compression_ratio),
            (1, p, p),
        )

    # ---------------------------------------------------------------- description
    def _blocks(self) -> list[nn.Module]:
        return self.transformer.blocks()

    @property
    def num_double_layers(self) -> int:
        """Layers ``0..num_double_layers-1`` are double-stream blocks, the rest single-stream."""
        return len(self.transformer.double_blocks)

    def layer_width(self, layer: int) -> int:
        return int(self.transformer.config.hidden_size)

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info["timestep_mode"] = "noise_level"  # t / 1000 before the SD3 time shift
        info["schedule"] = asdict(self.scheduler)
        info["condition"] = self.condition
        info["double_layers"] = self.num_double_layers
        return info

    # ---------------------------------------------------------------- recipe
    def _normalise_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """``scaling_factor * (z - shift)`` (Open-Sora's ``AutoencoderKLCausal3D.encode``)."""
        return float(self.vae.config.scaling_factor) * (latents - LATENT_SHIFT)

    def _condition(self, frames: torch.Tensor, latents: torch.Tensor) -> torch.Tensor | None:
        """Packed ``mask ⊕ mask * reference`` ``[B, L, in_channels + p^2]`` (or None without
        ``cond_in``). ``frames`` ``[B, T, 3, H, W]``, ``latents`` ``[B, C, T', h', w']``."""
        if not self.transformer.config.cond_embed:
            return None
        b, _, t_, h_, w_ = latents.shape
        mask = torch.zeros(b, 1, t_, h_, w_, device=latents.device, dtype=latents.dtype)
        reference = torch.zeros_like(latents)
        if self.condition == "first_frame":
            mask[:, :, 0] = 1.0
            # encoded alone, as Open-Sora does ("to prevent information leakage")
            reference[:, :, :1] = self.encode(frames[:, :1])
        cond = torch.cat((mask, mask * reference), dim=1)
        return pack(cond, self.transformer.config.patch_size)

    # ---------------------------------------------------------------- Backbone API
    @torch.no_grad()
    def prepare(
        self,
        frames: torch.Tensor,
        timesteps: Any,
        generator: torch.Generator,
        aux: dict[str, torch.Tensor] | None = None,
    ) -> Prepared:
        """VAE-encode, condition, noise at each level; batch ``len(timesteps) * B`` (sample
        ``i * B + b`` = timestep ``i``, clip ``b``). ``frames`` ``[B, T, 3, H, W]`` in [0, 1]."""
        if frames.ndim != 5 or frames.shape[2] != 3:
            raise ValueError(f"frames must be [B, T, 3, H, W], got {tuple(frames.shape)}")
        if not timesteps:
            raise ValueError(f"{self.name} is a diffusion backbone: pass timesteps (e.g. [250])")
        schedule: OpenSora2NoiseSchedule = self.scheduler
        n_train = schedule.num_train_timesteps
        for t in timesteps:
            if int(t) != t or not 0 <= int(t) <= n_train:
                raise ValueError(
                    f"timestep {t} out of range: expected an integer in [0, {n_train}]"
                )
        b, t, _, h, w = frames.shape
        self.rules.check(t, h, w)
        latents = self.encode(frames)
        expected = self._expected_latent_shape(t, h, w)
        if tuple(latents.shape[2:]) != expected:
            raise UnsupportedInputError(
                f"VAE produced latents {tuple(latents.shape[2:])} for {t}x{h}x{w}, expected "
                f"{expected}; the rule is {self.rules.describe()}"
            )
        cond = self._condition(frames, latents)
        p = int(self.transformer.config.patch_size)
        t_, h_, w_ = (int(s) for s in latents.shape[2:])
        alpha = schedule.shift_alpha((h_ * w_) // (p * p), t_)
        levels = torch.tensor([int(v) / n_train for v in timesteps], dtype=torch.float64)
        shifted = schedule.shifted(levels, alpha).float()
        n_t = len(timesteps)
        noise = draw_noise(latents.shape, generator, latents.device, latents.dtype)
        t_per_sample = shifted.repeat_interleave(b).to(latents.device)
        noisy = schedule.add_noise(
            latents.repeat(n_t, 1, 1, 1, 1), noise.repeat(n_t, 1, 1, 1, 1), t_per_sample
        )
        n = n_t * b
        dtype = self.transformer.dtype
        txt = self.prompt_tensor("embeds").to(latents.device, dtype)
        ids = position_ids(t_, h_ // p, w_ // p, device=latents.device)
        batch: dict[str, Any] = {
            "img": pack(noisy, p).to(dtype),
            "img_ids": ids[None].expand(n, -1, -1),
            "txt": txt.expand(n, -1, -1),
            "txt_ids": torch.zeros(n, txt.shape[1], 3, device=latents.device),
            "timesteps": t_per_sample,
            "y_vec": self.prompt_tensor("pooled").to(latents.device, dtype).expand(n, -1),
            "cond": None if cond is None else cond.repeat(n_t, 1, 1).to(dtype),
        }
        info: dict[str, Any] = {
            "model_timesteps": [float(v) for v in shifted],
            "noise_levels": [float(v) for v in levels],
            "shift_alpha": alpha,
            "latent_shape": tuple(latents.shape[1:]),
            "text_tokens": int(txt.shape[1]),
            "timestep_mode": "noise_level",
            "condition": self.condition,
        }
        return Prepared(
            batch=batch,
            num_clips=b,
            timesteps=[int(v) for v in timesteps],
            feature_shape=self._feature_shape(latents.shape[2:]),
            info=info,
        )

    @torch.no_grad()
    def run(self, prepared: Prepared) -> Any:
        """Run the MMDiT on ``prepared.batch`` (hooks on the blocks capture the layers)."""
        return self.transformer(**prepared.batch)

    def layer_output_to_grid(self, layer: int, output: Any, prepared: Prepared) -> torch.Tensor:
        """Image tokens of block ``layer`` -> ``[N, T', h, w, C]``: a double block's ``img``, or a
        single block's ``[text, image]`` output without its leading text tokens."""
        if layer < self.num_double_layers:
            tokens = output[0] if isinstance(output, tuple) else output
        else:
            n_txt = int(prepared.info["text_tokens"])
            t_, h_, w_ = prepared.feature_shape
            if output.shape[1] != n_txt + t_ * h_ * w_:
                raise ValueError(
                    f"{self.name}: block {layer} output has {output.shape[1]} tokens, expected "
                    f"{n_txt} text + {t_}*{h_}*{w_} image tokens"
                )
            tokens = output[:, n_txt:]
        return super().layer_output_to_grid(layer, tokens, prepared)


# --------------------------------------------------------------------------- loading
def load_transformer(path: Path, dtype: torch.dtype | None = None) -> OpenSora2:
    """``path/transformer/`` (`OpenSora2.save_pretrained` layout) or the release's
    ``path/Open_Sora_v2.safetensors`` (release preset), loaded strictly."""
    if (path / "transformer").is_dir():
        return OpenSora2.from_pretrained(path / "transformer", dtype=dtype)
    if (path / TRANSFORMER_FILE).is_file():
        return OpenSora2.from_pretrained(
            path / TRANSFORMER_FILE, dtype=dtype, config=OpenSora2Config()
        )
    raise FileNotFoundError(
        f"{path}: no Open-Sora 2.0 transformer: expected {TRANSFORMER_FILE} or transformer/ "
        "(config.json + model.safetensors)"
    )


def load_vae(path: Path, dtype: torch.dtype = torch.float32) -> nn.Module:
    """``path/vae/`` (a diffusers folder) or the release's ``path/hunyuan_vae.safetensors`` read
    into ``AutoencoderKLHunyuanVideo()`` (its default config is Open-Sora's VAE) strictly."""
    from diffusers import AutoencoderKLHunyuanVideo

    if (path / "vae").is_dir():
        return AutoencoderKLHunyuanVideo.from_pretrained(
            str(path / "vae"), torch_dtype=dtype, use_safetensors=True
        )
    file = path / VAE_FILE
    if not file.is_file():
        raise FileNotFoundError(
            f"{path}: no VAE: expected {VAE_FILE} (Open-Sora's HunyuanVideo VAE) or vae/ "
            "(a diffusers AutoencoderKLHunyuanVideo folder)"
        )
    with torch.device("meta"):
        vae = AutoencoderKLHunyuanVideo()
    check_state_dict(
        vae.state_dict(), safetensors_shapes(file), source=str(file), model="HunyuanVideo VAE"
    )
    vae.load_state_dict(read_safetensors(file), strict=True, assign=True)
    return vae.to(dtype).eval()


def encode_empty_prompt(
    t5_folder: str | os.PathLike[str],
    clip_folder: str | os.PathLike[str],
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    t5_tokens: int = T5_TOKENS,
    clip_tokens: int = CLIP_TOKENS,
) -> dict[str, torch.Tensor]:
    """The empty prompt as Open-Sora's ``HFEmbedder`` encodes it, from local folders (each with
    its tokenizer and safetensors weights): T5 ``last_hidden_state`` of "" padded to ``t5_tokens``
    without an attention mask ``[1, t5_tokens, d]``, CLIP ``pooler_output`` ``[1, d_clip]``.
    The encoders run in bfloat16 when ``dtype`` is bfloat16, else float32."""
    from transformers import AutoTokenizer, CLIPTextModel, T5EncoderModel

    run_dtype = torch.bfloat16 if dtype == torch.bfloat16 else torch.float32
    out: dict[str, torch.Tensor] = {}
    for key, folder, model_cls, length, output in (
        ("prompt_embeds", t5_folder, T5EncoderModel, t5_tokens, "last_hidden_state"),
        ("pooled_prompt_embeds", clip_folder, CLIPTextModel, clip_tokens, "pooler_output"),
    ):
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
        ids = tokenizer(
            [""], padding="max_length", max_length=length, truncation=True, return_tensors="pt"
        ).input_ids
        model = model_cls.from_pretrained(str(folder), torch_dtype=run_dtype, use_safetensors=True)
        model = model.to(device).eval()
        with torch.no_grad():
            result = model(input_ids=ids.to(device), attention_mask=None)
        out[key] = getattr(result, output).detach().to("cpu", torch.float32)
        del model
    return out


def from_pretrained(
    path: str | os.PathLike[str],
    name: str = "opensora2",
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    vae_dtype: torch.dtype = torch.float32,
    condition: str = "first_frame",
    vae_tiling: bool = True,
) -> OpenSora2Backbone:
    """Load an Open-Sora 2.0 folder (see the module docstring for the layout)."""
    path = Path(path)
    transformer = load_transformer(path, dtype)
    vae = load_vae(path, vae_dtype)
    cfg = transformer.config
    prompt = empty_prompt_from_dir(
        path,
        (T5_FOLDER, CLIP_FOLDER),
        lambda: encode_empty_prompt(path / T5_FOLDER, path / CLIP_FOLDER, device, dtype),
        {
            "prompt_embeds": (1, None, int(cfg.context_in_dim)),
            "pooled_prompt_embeds": (1, int(cfg.vec_in_dim)),
        },
    )
    backbone = OpenSora2Backbone(
        name,
        transformer,
        vae,
        OpenSora2NoiseSchedule(),
        **prompt,
        condition=condition,
        vae_tiling=vae_tiling,
    )
    return finish(backbone, device, dtype, vae_dtype)  # type: ignore[return-value]


def tiny_vae_config() -> dict[str, Any]:
    """``AutoencoderKLHunyuanVideo`` config of the tiny model: the release's 16 latent channels,
    4x temporal / 8x spatial, 8-wide blocks."""
    return {
        "latent_channels": 16,
        "block_out_channels": (8, 8, 8, 8),
        "layers_per_block": 1,
        "norm_num_groups": 4,
        "scaling_factor": 0.476986,
    }


def build_random(
    transformer_config: OpenSora2Config,
    vae_config: dict[str, Any] | None = None,
    name: str = "opensora2",
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    seed: int = 0,
    prompt_tokens: int = TINY_PROMPT_TOKENS,
    condition: str = "first_frame",
) -> OpenSora2Backbone:
    """A random-initialised backbone (zero prompt ``[1, prompt_tokens, d]``, zero pooled vector).

    ``build_random(OpenSora2Config(), {}, prompt_tokens=512)`` is the real 11B architecture with
    the real VAE architecture (GPU benchmarks).
    """
    from diffusers import AutoencoderKLHunyuanVideo

    def prompt(model: OpenSora2) -> dict[str, torch.Tensor]:
        c = model.config
        return {
            "prompt_embeds": torch.zeros(1, prompt_tokens, c.context_in_dim),
            "pooled_prompt_embeds": torch.zeros(1, c.vec_in_dim),
        }

    return build_random_backbone(  # type: ignore[return-value]
        OpenSora2Backbone,
        lambda: OpenSora2(transformer_config),
        lambda: AutoencoderKLHunyuanVideo(**(vae_config or {})),
        prompt,
        OpenSora2NoiseSchedule,
        name,
        device,
        dtype,
        seed,
        condition=condition,
    )


def tiny(
    name: str = "opensora2",
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    seed: int = 0,
    condition: str = "first_frame",
) -> OpenSora2Backbone:
    """Tiny random Open-Sora 2.0 (same classes): 2 double + 2 single blocks of width 32, a tiny
    HunyuanVideo VAE with 16 latent channels; 5 frames at 32x32 -> 2x2x2 tokens."""
    return build_random(
        OpenSora2Config.tiny(), tiny_vae_config(), name, device, dtype, seed, condition=condition
    )
