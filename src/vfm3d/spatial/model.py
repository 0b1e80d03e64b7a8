"""VG-LLM: a Qwen2.5-VL multimodal LM whose visual tokens are summed with 3D geometry tokens.

Architecture (VG-LLM, LaVi-Lab/VG-LLM ``Qwen2_5_VLForConditionalGenerationWithVGGT``):

- transformers' ``Qwen2_5_VLForConditionalGeneration`` (vision tower ``model.visual``, LM
  ``model.language_model``, ``lm_head``), any size (`VGLLMConfig.tiny` for tests,
  `VGLLMConfig.build` whose defaults are the mini sizes, Qwen2.5-VL-3B's config.json);
- frames go in as separate images (``grid_t = 1`` each), so frame k's visual tokens pair with the
  geometry encoder's frame k;
- geometry encoder ``vggt``: a frozen VGGT aggregator (`vfm3d.models.vggt`: ``zoo/vggt-mini``, or
  VGGT-1B from a local folder). All frames of a sample go through it together (global attention
  across frames; frame 0 is its reference frame). Its layer ``geometry_layer`` (default -2, the
  second-to-last; frame ⊕ global, ``2 * embed_dim`` wide) gives patch tokens only (the camera and
  ``R`` register tokens are dropped) on the vision tower's patch grid (same patch size; the grid
  is cropped to even rows / columns as the vision input is);
- ``merger`` (`GeometryMerger`, VG-LLM's ``VGGTMerger``): RMSNorm over each patch token, 2x2
  merge in Qwen's merger order (merged tokens raster over ``(h/2, w/2)``, the 4 patches of a
  block row-major inside), Linear(4C, ``vggt_merger_hidden_dim``) -> GELU -> Linear(->
  LM width), **added** to the vision tower's merged tokens before they are scattered into the
  sequence (`VGLLMModel.get_image_features`, the method transformers 5 calls both in the forward
  and when ``generate`` encodes the images before prefill).

``use_vggt_feature=False`` is the twin without geometry: the same model minus ``vggt`` and
``merger`` (a plain Qwen2.5-VL).

Checkpoint layout (config.json + model.safetensors, `save_pretrained` / `from_pretrained`, no
remote code). transformers 5 keeps the vision tower inside the inner model, and so does this
module with the geometry branch (`VGLLMModel`: ``model.visual``, ``model.vggt``,
``model.merger``, ``model.language_model``; ``lm_head``). VG-LLM's released folders
(transformers 4.5x) hold ``visual.*``, ``model.*`` (the LM), ``lm_head.weight``, ``merger.ln_q.weight``,
``merger.mlp.{0,2}.{weight,bias}``, ``vggt.aggregator.*`` (official VGGT names) and
``vggt.{depth,point}_head.*``: `VGLEGACY_KEY_MAPPING` renames them on load (always applied; it
touches no name of the new layout) and VGGT's heads are skipped (unused). Config keys are
VG-LLM's: ``use_vggt_feature``, ``vggt_merger_hidden_dim`` (absent: 4096), ``reference_frame``
(``"first"``; ``"last"`` flips the frames for VGGT and the tokens back), plus ``vggt_config``
(vfm3d's `VGGTConfig` as a dict; absent: VGGT-1B) and ``geometry_layer`` (absent: -2).

Inputs are built here, not by Qwen's processor (which needs torchvision): `VGLLMProcessor`
turns frames ``[S, 3, H, W]`` in [0, 1] into ``pixel_values`` in Qwen's flattened patch order
(CLIP-normalised, each frame repeated over ``temporal_patch_size``), ``image_grid_thw``,
``geometry_pixel_values`` (the same frames, [0, 1], VGGT normalises them itself), and the chat
text of Qwen2.5-VL's template with ``<|vision_start|><|image_pad|>*n<|vision_end|>`` per frame, and
``mm_token_type_ids`` (1 on image tokens): transformers 5 computes 3-axis M-RoPE positions only
when it gets ``mm_token_type_ids`` (without them positions fall back to 1-D silently).

Tokenizer: `train_tokenizer` trains a byte-level BPE (``tokenizers``; Qwen2's pre-tokenizer
split, one digit per token) on a question corpus, with Qwen2.5-VL's special tokens, wrapped as a
``PreTrainedTokenizerFast``. Generation (`generate_answers`): greedy, 16 new tokens (VSI-Bench's
setting), prompts from `vfm3d.spatial.prompts.build_prompt`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import PreTrainedTokenizerFast, Qwen2_5_VLConfig
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import (
    Qwen2_5_VisionTransformerPretrainedModel,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLModel,
    Qwen2_5_VLPreTrainedModel,
    Qwen2_5_VLRMSNorm,
    Qwen2_5_VLTextModel,
)

from vfm3d.models.vggt import VGGT, VGGTConfig

#: Qwen2.5-VL's special tokens, in Qwen's id order (151643...151656 there; 0...13 in ours).
SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
#: Qwen2.5-VL's default system message (its chat template, and VG-LLM's evaluation).
SYSTEM_PROMPT = "You are a helpful assistant."
#: Qwen2 / Qwen2.5 pre-tokenizer pattern (one digit per token).
QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
#: Qwen2-VL's image normalisation (OpenAI CLIP statistics).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
#: VG-LLM's released checkpoints (transformers 4.5x layout) -> transformers 5's names.
VGLEGACY_KEY_MAPPING: dict[str, str] = {
    r"^visual\.": "model.visual.",
    r"^merger\.": "model.merger.",
    r"^vggt\.": "model.vggt.",
    r"^model\.(?!language_model\.|visual\.|merger\.|vggt\.)": "model.language_model.",
}
#: VSI-Bench's generation budget (new tokens).
MAX_NEW_TOKENS = 16
PROCESSOR_FILE = "preprocessor_config.json"


# --------------------------------------------------------------------------- config
def _heads_off(config: VGGTConfig) -> VGGTConfig:
    """``config`` without VGGT's heads (the geometry encoder is the aggregator alone)."""
    return config.replace(
        enable_camera=False, enable_depth=False, enable_point=False, enable_track=False, extra={}
    )


class VGLLMConfig(Qwen2_5_VLConfig):
    """A ``Qwen2_5_VLConfig`` with VG-LLM's geometry keys (``model_type`` stays ``qwen2_5_vl``).

    ``use_vggt_feature``: build the geometry branch (False = the twin without it);
    ``vggt_merger_hidden_dim``: the merger's hidden width (VG-LLM: 4096);
    ``reference_frame``: ``"first"`` (VGGT's reference is frame 0) or ``"last"``;
    ``vggt_config``: `VGGTConfig.to_dict()` of the geometry encoder (None = VGGT-1B);
    ``geometry_layer``: the aggregator layer used (negative counts from the end; -2 as VG-LLM).
    """

    use_vggt_feature: bool = True
    vggt_merger_hidden_dim: int = 4096
    reference_frame: str = "first"
    vggt_config: dict | None = None
    geometry_layer: int = -2

    def geometry_config(self) -> VGGTConfig:
        """The geometry encoder's `VGGTConfig`, heads off (only the aggregator is built)."""
        base = VGGTConfig() if self.vggt_config is None else VGGTConfig.from_dict(self.vggt_config)
        return _heads_off(base)

    def geometry_layer_index(self) -> int:
        depth = self.geometry_config().depth
        index = self.geometry_layer + depth if self.geometry_layer < 0 else self.geometry_layer
        if not 0 <= index < depth:
            raise ValueError(f"geometry_layer {self.geometry_layer} outside a {depth}-layer VGGT")
        return index

    @classmethod
    def build(
        cls,
        tokenizer: PreTrainedTokenizerFast,
        geometry: VGGTConfig | None,
        hidden_size: int = 128,
        num_layers: int = 4,
        num_heads: int = 4,
        num_kv_heads: int = 2,
        intermediate_size: int = 384,
        vision_hidden_size: int = 128,
        vision_depth: int = 4,
        vision_heads: int = 4,
        vision_intermediate_size: int = 256,
        patch_size: int | None = None,
        window_merged: int = 4,
        merger_hidden_dim: int | None = None,
        max_position_embeddings: int = 8192,
        **changes: Any,
    ) -> VGLLMConfig:
        """A config for ``tokenizer`` (vocabulary, special token ids) and a geometry encoder of
        config ``geometry`` (None: the twin without geometry; its patch size is still the
        vision tower's when ``patch_size`` is None: 14).

        M-RoPE: ``mrope_section`` splits ``head_dim / 2`` as Qwen2.5-VL's ``[16, 24, 24]`` of 64
        (1/4 temporal, 3/8 height, 3/8 width). Vision windows span ``window_merged`` merged
        tokens a side (Qwen2.5-VL: 112 px / 14 / 2 = 4); full attention in every second block
        from the second (Qwen2.5-VL-3B: every eighth).
        """
        head_dim = hidden_size // num_heads
        if head_dim % 2 or hidden_size % num_heads:
            raise ValueError(
                f"hidden_size {hidden_size} / num_heads {num_heads}: need an even head"
            )
        half = head_dim // 2
        temporal = max(1, half // 4)
        height = (half - temporal) // 2
        section = [temporal, height, half - temporal - height]
        patch = patch_size or (geometry.patch_size if geometry is not None else 14)
        if geometry is not None and geometry.patch_size != patch:
            raise ValueError(
                f"the geometry encoder's patch size {geometry.patch_size} must equal the vision "
                f"tower's {patch} (geometry tokens pair with visual patches)"
            )
        ids = {name: tokenizer.convert_tokens_to_ids(name) for name in SPECIAL_TOKENS}
        text = dict(
            vocab_size=len(tokenizer),
            hidden_size=hidden_size,
            intermediate_size=intermediate_size,
            num_hidden_layers=num_layers,
            num_attention_heads=num_heads,
            num_key_value_heads=num_kv_heads,
            max_position_embeddings=max_position_embeddings,
            rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": section},
            bos_token_id=None,
            eos_token_id=ids["<|im_end|>"],
            pad_token_id=ids["<|endoftext|>"],
        )
        vision = dict(
            depth=vision_depth,
            hidden_size=vision_hidden_size,
            intermediate_size=vision_intermediate_size,
            num_heads=vision_heads,
            patch_size=patch,
            spatial_merge_size=2,
            temporal_patch_size=2,
            window_size=window_merged * 2 * patch,
            out_hidden_size=hidden_size,
            fullatt_block_indexes=list(range(1, vision_depth, 2)),
        )
        kwargs: dict[str, Any] = dict(
            text_config=text,
            vision_config=vision,
            image_token_id=ids["<|image_pad|>"],
            video_token_id=ids["<|video_pad|>"],
            vision_start_token_id=ids["<|vision_start|>"],
            vision_end_token_id=ids["<|vision_end|>"],
            use_vggt_feature=geometry is not None,
            vggt_merger_hidden_dim=merger_hidden_dim or 4 * hidden_size,
            vggt_config=None if geometry is None else _heads_off(geometry).to_dict(),
        )
        kwargs.update(changes)
        return cls(**kwargs)

    @classmethod
    def tiny(
        cls, tokenizer: PreTrainedTokenizerFast, geometry: VGGTConfig | None, **changes: Any
    ) -> VGLLMConfig:
        """Seconds-on-CPU sizes for tests: width 32, 2 LM layers, 2 vision blocks."""
        base: dict[str, Any] = dict(
            hidden_size=32,
            num_layers=2,
            num_heads=2,
            num_kv_heads=1,
            intermediate_size=64,
            vision_hidden_size=32,
            vision_depth=2,
            vision_heads=2,
            vision_intermediate_size=64,
            window_merged=2,
            merger_hidden_dim=64,
            max_position_embeddings=2048,
        )
        base.update(changes)
        return cls.build(tokenizer, geometry, **base)


# --------------------------------------------------------------------------- model
class GeometryMerger(nn.Module):
    """VG-LLM's ``VGGTMerger``: ``[N, 4, C]`` 2x2 blocks of geometry patch tokens (Qwen's merge
    order) -> ``[N, out_dim]``: RMSNorm(C) per token, concat the 4, Linear -> GELU -> Linear.
    Names ``ln_q``, ``mlp.0``, ``mlp.2`` as VG-LLM's checkpoint."""

    def __init__(self, context_dim: int, hidden_dim: int, out_dim: int, merge: int = 2) -> None:
        super().__init__()
        self.input_dim = context_dim * merge * merge
        self.ln_q = Qwen2_5_VLRMSNorm(context_dim, eps=1e-6)
        self.mlp = nn.Sequential(
            nn.Linear(self.input_dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, out_dim)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.ln_q(x).reshape(-1, self.input_dim))


class VGLLMModel(Qwen2_5_VLModel):
    """transformers' ``Qwen2_5_VLModel`` (``visual``, ``language_model``) plus the geometry branch
    beside the vision tower: ``vggt`` (frozen VGGT aggregator) and ``merger``
    (`GeometryMerger`). Its `get_image_features` is the fusion point: transformers 5 calls this
    method both in ``forward`` and when ``generate`` encodes the images before prefill."""

    config: VGLLMConfig

    def __init__(self, config: VGLLMConfig) -> None:
        # Qwen2_5_VLModel.__init__, with the geometry branch built before post_init (so
        # transformers initialises and tracks it like the rest)
        Qwen2_5_VLPreTrainedModel.__init__(self, config)
        self.visual = Qwen2_5_VisionTransformerPretrainedModel._from_config(config.vision_config)
        self.language_model = Qwen2_5_VLTextModel._from_config(config.text_config)
        self.rope_deltas = None
        self.vggt: VGGT | None = None
        self.merger: GeometryMerger | None = None
        if config.use_vggt_feature:
            geometry = config.geometry_config()
            if geometry.patch_size != config.vision_config.patch_size:
                raise ValueError(
                    f"geometry patch size {geometry.patch_size} != vision patch size "
                    f"{config.vision_config.patch_size}"
                )
            if config.reference_frame not in ("first", "last"):
                raise ValueError(
                    f"reference_frame must be 'first' or 'last', got {config.reference_frame!r}"
                )
            self.vggt = VGGT(geometry)
            self.merger = GeometryMerger(
                geometry.head_dim_in,
                config.vggt_merger_hidden_dim,
                config.text_config.hidden_size,
                config.vision_config.spatial_merge_size,
            )
        self.post_init()
        if self.vggt is not None:
            self.vggt.requires_grad_(False)

    def train(self, mode: bool = True) -> VGLLMModel:
        super().train(mode)
        if self.vggt is not None:
            self.vggt.eval()  # frozen: always in inference mode
        return self

    # ------------------------------------------------------------------ geometry
    def encode_geometry(self, images: torch.Tensor) -> torch.Tensor:
        """``images`` ``[S, 3, H, W]`` in [0, 1] (one sample's frames, jointly) -> the geometry
        encoder's patch tokens ``[S, H/p, W/p, 2C]`` of layer ``geometry_layer`` (camera and
        register tokens dropped). Frozen: no gradient; cacheable for fixed frames."""
        if self.vggt is None:
            raise ValueError("this model has no geometry branch (use_vggt_feature=False)")
        p = self.config.vision_config.patch_size
        gh, gw = images.shape[-2] // p, images.shape[-1] // p
        layer = self.config.geometry_layer_index()
        frames = images if self.config.reference_frame == "first" else images.flip(0)
        ref = next(self.vggt.parameters())
        with torch.no_grad():
            layers, start = self.vggt.aggregator(
                frames[None].to(device=ref.device, dtype=ref.dtype), keep_layers=(layer,)
            )
        tokens = layers[layer][0, :, start:]  # [S, gh*gw, 2C]
        if self.config.reference_frame != "first":
            tokens = tokens.flip(0)
        return tokens.reshape(tokens.shape[0], gh, gw, tokens.shape[-1])

    def merge_geometry(self, grid: torch.Tensor, grid_hw: tuple[int, int]) -> torch.Tensor:
        """Patch tokens ``[S, gh, gw, 2C]`` -> merged geometry embeddings
        ``[S * h/2 * w/2, hidden]`` for a vision grid of ``grid_hw`` (h, w) patches per frame
        (the top-left h x w patches: the vision input's even crop), in the vision tower's
        merged-token order: blocks raster over (h/2, w/2), the 4 patches row-major inside."""
        if self.merger is None:
            raise ValueError("this model has no geometry branch (use_vggt_feature=False)")
        h, w = grid_hw
        m = self.config.vision_config.spatial_merge_size
        s, gh, gw, c = grid.shape
        if h > gh or w > gw or h % m or w % m:
            raise ValueError(f"vision grid {h}x{w} does not fit the geometry grid {gh}x{gw}")
        blocks = grid[:, :h, :w].reshape(s, h // m, m, w // m, m, c).permute(0, 1, 3, 2, 4, 5)
        merger_dtype = self.merger.mlp[0].weight.dtype
        return self.merger(blocks.reshape(-1, m * m, c).to(merger_dtype))

    def geometry_tokens(self, images: torch.Tensor, grid_hw: tuple[int, int]) -> torch.Tensor:
        """`encode_geometry` then `merge_geometry`: ``[S, 3, H, W]`` ->
        ``[S * h/2 * w/2, hidden]``."""
        return self.merge_geometry(self.encode_geometry(images), grid_hw)

    def geometry_embeds(
        self,
        image_grid_thw: torch.Tensor,
        geometry_pixel_values: torch.Tensor | Sequence[torch.Tensor] | None = None,
        geometry_patch_tokens: torch.Tensor | Sequence[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Geometry embeddings of every image of the batch ``[sum_k h_k w_k / 4, hidden]``, from
        each sample's frames (``geometry_pixel_values``) or its cached `encode_geometry` tokens
        (``geometry_patch_tokens``: ``[B, S, gh, gw, 2C]`` or a list of ``[S_b, gh, gw, 2C]``)."""
        if (geometry_pixel_values is None) == (geometry_patch_tokens is None):
            raise ValueError("pass one of geometry_pixel_values / geometry_patch_tokens")
        samples = geometry_pixel_values if geometry_patch_tokens is None else geometry_patch_tokens
        out: list[torch.Tensor] = []
        row = 0
        for item in samples:  # type: ignore[union-attr]
            count = int(item.shape[0])
            grids = image_grid_thw[row : row + count]
            if len(grids) != count or not bool((grids == grids[0]).all()) or int(grids[0, 0]) != 1:
                raise ValueError(
                    "each sample's images must be its geometry frames, one grid_t=1 grid each "
                    f"(rows {row}..{row + count} of image_grid_thw {image_grid_thw.tolist()})"
                )
            grid = self.encode_geometry(item) if geometry_patch_tokens is None else item
            out.append(self.merge_geometry(grid, (int(grids[0, 1]), int(grids[0, 2]))))
            row += count
        if row != len(image_grid_thw):
            raise ValueError(f"{row} geometry frames for {len(image_grid_thw)} images")
        return torch.cat(out, dim=0)

    def get_image_features(  # type: ignore[override]
        self,
        pixel_values: torch.Tensor,
        image_grid_thw: torch.LongTensor | None = None,
        geometry_pixel_values: torch.Tensor | Sequence[torch.Tensor] | None = None,
        geometry_patch_tokens: torch.Tensor | Sequence[torch.Tensor] | None = None,
        **kwargs: Any,
    ) -> BaseModelOutputWithPooling:
        """Qwen's image features (``pooler_output``: one ``[n_k, hidden]`` per image, merged
        tokens), plus the geometry embeddings when the model has the branch (VG-LLM's fusion: a
        sum, before the features are scattered into the sequence)."""
        kwargs["return_dict"] = True
        out = super().get_image_features(pixel_values, image_grid_thw, **kwargs)
        if self.merger is None:
            return out
        if geometry_pixel_values is None and geometry_patch_tokens is None:
            raise ValueError("this model needs geometry_pixel_values with its images")
        embeds = torch.cat(list(out.pooler_output), dim=0)
        geo = self.geometry_embeds(image_grid_thw, geometry_pixel_values, geometry_patch_tokens)
        if geo.shape != embeds.shape:
            raise ValueError(f"geometry tokens {tuple(geo.shape)} != visual {tuple(embeds.shape)}")
        fused = embeds + geo.to(embeds.dtype)
        out.pooler_output = torch.split(fused, [int(e.shape[0]) for e in out.pooler_output])
        return out

    def forward(  # type: ignore[override]
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.Tensor | None = None,
        image_grid_thw: torch.LongTensor | None = None,
        geometry_pixel_values: torch.Tensor | Sequence[torch.Tensor] | None = None,
        geometry_patch_tokens: torch.Tensor | Sequence[torch.Tensor] | None = None,
        mm_encoder_outputs: dict[str, BaseModelOutputWithPooling] | None = None,
        **kwargs: Any,
    ) -> Any:
        """``Qwen2_5_VLModel.forward``; images are encoded here (with their geometry) and handed
        over as ``mm_encoder_outputs``, so the geometry inputs never reach the LM."""
        if pixel_values is not None:
            if mm_encoder_outputs is not None and mm_encoder_outputs.get("image") is not None:
                raise ValueError("pass pixel_values or pre-encoded images, not both")
            mm_encoder_outputs = dict(mm_encoder_outputs or {})
            mm_encoder_outputs["image"] = self.get_image_features(
                pixel_values,
                image_grid_thw,
                geometry_pixel_values=geometry_pixel_values,
                geometry_patch_tokens=geometry_patch_tokens,
            )
        return super().forward(
            input_ids=input_ids,
            pixel_values=None,
            image_grid_thw=image_grid_thw,
            mm_encoder_outputs=mm_encoder_outputs,
            **kwargs,
        )


class VGLLMForConditionalGeneration(Qwen2_5_VLForConditionalGeneration):
    """Qwen2.5-VL + frozen VGGT geometry tokens (see the module docstring); ``model`` is a
    `VGLLMModel`.

    ``forward`` / ``generate`` take Qwen2.5-VL's inputs (``input_ids``, ``attention_mask``,
    ``mm_token_type_ids``, ``pixel_values``, ``image_grid_thw``, ``labels``) plus
    ``geometry_pixel_values``: ``[B, S, 3, H, W]`` in [0, 1] (or a list of ``[S_b, 3, H, W]``), the
    frames of each sample in the order of their images (H, W multiples of the patch size; the
    vision input is these frames cropped to an even patch grid). ``loss`` is the mean
    cross-entropy over the tokens whose ``labels`` are not -100.
    """

    config_class = VGLLMConfig
    config: VGLLMConfig
    #: VGGT's heads in VG-LLM's checkpoints (its ``vggt`` kept depth / point heads): unused here.
    _keys_to_ignore_on_load_unexpected = [  # noqa: RUF012 - transformers' attribute
        r"^(model\.)?vggt\.(depth|point|camera|track)_head\."
    ]

    def __init__(self, config: VGLLMConfig) -> None:
        # Qwen2_5_VLForConditionalGeneration.__init__ with a VGLLMModel
        Qwen2_5_VLPreTrainedModel.__init__(self, config)
        self.model = VGLLMModel(config)
        text = config.text_config
        self.lm_head = nn.Linear(text.hidden_size, text.vocab_size, bias=False)
        self.post_init()
        if self.vggt is not None:
            self.vggt.requires_grad_(False)

    @property
    def vggt(self) -> VGGT | None:
        """The frozen geometry encoder (``model.vggt``), None in the twin."""
        return self.model.vggt

    @property
    def merger(self) -> GeometryMerger | None:
        """The geometry merger (``model.merger``), None in the twin."""
        return self.model.merger

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: Any, *args: Any, **kwargs: Any) -> Any:
        """transformers' ``from_pretrained`` (local folders; no remote code), reading VG-LLM's
        released layout too (`VGLEGACY_KEY_MAPPING`); the geometry encoder stays frozen."""
        kwargs.setdefault("key_mapping", dict(VGLEGACY_KEY_MAPPING))
        kwargs["trust_remote_code"] = False
        loaded = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded  # output_loading_info
        if model.vggt is not None:
            model.vggt.requires_grad_(False).eval()
        return loaded

    def load_geometry_encoder(self, path: str | os.PathLike[str]) -> None:
        """Replace the geometry encoder's weights by a VGGT weights folder (``zoo/vggt-mini``,
        VGGT-1B): VG-LLM's ``vggt_model_path``. Its config must match ``vggt_config``."""
        if self.vggt is None:
            raise ValueError("this model has no geometry branch (use_vggt_feature=False)")
        source = VGGT.from_pretrained(
            resolve_zoo(path), device="cpu", dtype=torch.float32, aggregator_only=True
        )
        if _heads_off(source.config).to_dict() != self.config.geometry_config().to_dict():
            raise ValueError(f"{path}: its VGGT config differs from this model's vggt_config")
        ref = next(self.vggt.parameters())
        self.vggt.aggregator.load_state_dict(source.aggregator.state_dict(), strict=True)
        self.vggt.to(device=ref.device, dtype=ref.dtype).requires_grad_(False).eval()

    def forward(  # type: ignore[override]
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        pixel_values: torch.Tensor | None = None,
        image_grid_thw: torch.LongTensor | None = None,
        mm_token_type_ids: torch.IntTensor | None = None,
        geometry_pixel_values: torch.Tensor | Sequence[torch.Tensor] | None = None,
        geometry_patch_tokens: torch.Tensor | Sequence[torch.Tensor] | None = None,
        mm_encoder_outputs: dict[str, BaseModelOutputWithPooling] | None = None,
        **kwargs: Any,
    ) -> Any:
        """Qwen2.5-VL's forward with ``geometry_pixel_values`` (or cached
        ``geometry_patch_tokens``, `VGLLMModel.encode_geometry` per sample; see the class
        docstring); returns its ``MultimodalCausalLMOutputWithPast``."""
        if geometry_pixel_values is not None:  # for VGLLMModel.forward
            kwargs["geometry_pixel_values"] = geometry_pixel_values
        if geometry_patch_tokens is not None:
            kwargs["geometry_patch_tokens"] = geometry_patch_tokens
        return super().forward(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            labels=labels,
            pixel_values=pixel_values,
            image_grid_thw=image_grid_thw,
            mm_token_type_ids=mm_token_type_ids,
            mm_encoder_outputs=mm_encoder_outputs,
            **kwargs,
        )

    def rope_positions(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The M-RoPE positions ``[3, B, L]`` (temporal, height, width) of a `VGLLMProcessor`
        batch, as the forward computes them (``get_rope_index`` with ``mm_token_type_ids``)."""
        positions, _ = self.model.get_rope_index(
            batch["input_ids"],
            mm_token_type_ids=batch["mm_token_type_ids"],
            image_grid_thw=batch.get("image_grid_thw"),
            attention_mask=batch.get("attention_mask"),
        )
        return positions


# --------------------------------------------------------------------------- tokenizer
def train_tokenizer(
    texts: Iterable[str], vocab_size: int = 1024, min_frequency: int = 2
) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on ``texts`` (any text encodes: byte fallback),
    Qwen2's pre-tokenizer split (digits one by one), Qwen2.5-VL's `SPECIAL_TOKENS` at ids
    0..13 (eos ``<|im_end|>``, pad ``<|endoftext|>``, no BOS), as transformers' fast tokenizer."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=int(vocab_size),
        min_frequency=int(min_frequency),
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(texts), trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens=[
            t for t in SPECIAL_TOKENS if t not in ("<|im_end|>", "<|endoftext|>")
        ],
    )


def tokenizer_corpus(records: Iterable[Mapping[str, Any]]) -> list[str]:
    """Texts to train the tokenizer on: every record's official prompt and answer, the chat
    template's words and the digits (so numbers always tokenize)."""
    from vfm3d.spatial.prompts import build_prompt

    texts = [SYSTEM_PROMPT, "system\nuser\nassistant\n", "0 1 2 3 4 5 6 7 8 9 . -"]
    for record in records:
        texts.append(build_prompt(record))
        texts.append(str(record.get("ground_truth", "")))
    return texts


# --------------------------------------------------------------------------- inputs
def chat_segments(prompt: str, num_images: int, system: str | None = SYSTEM_PROMPT) -> list[str]:
    """Qwen2.5-VL's chat template for one user turn of ``num_images`` images then ``prompt``,
    with the generation prompt, split at the image placeholders (``None`` marks one image)."""
    head = ""
    if system is not None:
        head = f"<|im_start|>system\n{system}<|im_end|>\n"
    parts: list[Any] = [head + "<|im_start|>user\n"]
    for _ in range(num_images):
        parts.append(None)
    parts.append(f"{prompt}<|im_end|>\n<|im_start|>assistant\n")
    return parts


@dataclass
class VGLLMProcessor:
    """Frames + prompts -> model inputs (Qwen2.5-VL's layout, built without its processor).

    ``size``: (H, W) frames are resized to (multiples of ``patch_size``; None = VG-LLM's rule,
    width 518, height scaled and rounded to the patch size); the vision input crops the grid to
    even rows / columns. Saved as ``preprocessor_config.json`` (Qwen's keys + ``size_hw``).
    """

    tokenizer: PreTrainedTokenizerFast
    patch_size: int = 14
    merge_size: int = 2
    temporal_patch_size: int = 2
    image_mean: tuple[float, ...] = CLIP_MEAN
    image_std: tuple[float, ...] = CLIP_STD
    size: tuple[int, int] | None = None
    system_prompt: str | None = SYSTEM_PROMPT
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.size is not None:
            h, w = (int(v) for v in self.size)
            if h % self.patch_size or w % self.patch_size:
                raise ValueError(f"size {h}x{w} must be a multiple of the patch size")
            self.size = (h, w)

    @property
    def image_token_id(self) -> int:
        return int(self.tokenizer.convert_tokens_to_ids("<|image_pad|>"))

    # ------------------------------------------------------------------ frames
    def frame_size(self, in_hw: tuple[int, int]) -> tuple[int, int]:
        """(H, W) the frames of an ``in_hw`` video are resized to: ``size``, else VGGT's /
        VG-LLM's preprocessing (width 518, height scaled and rounded to the patch size, taller
        than 518 centre-cropped to 518)."""
        if self.size is not None:
            return self.size
        h, w = in_hw
        width = 518 - 518 % self.patch_size
        height = max(self.patch_size, round(h * width / w / self.patch_size) * self.patch_size)
        return int(min(height, width)), int(width)

    def prepare_frames(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 RGB ``[T, H, W, 3]`` -> float ``[T, 3, H', W']`` in [0, 1] at `frame_size`
        (cover and centre crop, bicubic)."""
        from vfm3d.data.readers.video import fit_transform

        arr = np.asarray(frames)
        if arr.dtype != np.uint8:
            arr = np.clip(np.rint(arr * 255.0), 0, 255).astype(np.uint8)
        hw = (int(arr.shape[1]), int(arr.shape[2]))
        transform = fit_transform(hw, self.frame_size(hw), "crop")
        if transform is not None:
            arr = transform.warp_image(arr)
        return torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2).float() / 255.0

    def sample(self, frames: np.ndarray, num_frames: int) -> tuple[torch.Tensor, list[int]]:
        """``num_frames`` frames of uint8 ``[T, H, W, 3]`` sampled as VSI-Bench (lmms-eval's
        uniform indices, first and last included), prepared: (``[S, 3, H', W']``, indices)."""
        from vfm3d.spatial.vsibench import uniform_indices

        index = uniform_indices(len(frames), num_frames)
        return self.prepare_frames(np.asarray(frames)[index]), [int(i) for i in index]

    def vision_grid(self, hw: tuple[int, int]) -> tuple[int, int]:
        """Patches (h, w) of the vision input of ``hw`` frames (cropped to even counts)."""
        unit = self.merge_size
        h, w = hw[0] // self.patch_size, hw[1] // self.patch_size
        return h - h % unit, w - w % unit

    def image_inputs(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``frames`` ``[S, 3, H, W]`` in [0, 1] -> (``pixel_values`` ``[S * h * w, 3 * tp * p * p]``
        in Qwen's order: per frame, merged blocks raster over (h/2, w/2), the 4 patches row-major,
        each patch (channel, time, row, column); ``image_grid_thw`` ``[S, 3]`` of ``(1, h, w)``)."""
        s, c, height, width = frames.shape
        p, m, tp = self.patch_size, self.merge_size, self.temporal_patch_size
        h, w = self.vision_grid((height, width))
        if h == 0 or w == 0:
            raise ValueError(f"frames {height}x{width} are smaller than one merged patch")
        x = frames[:, :, : h * p, : w * p].float()
        mean = torch.tensor(self.image_mean, dtype=x.dtype).view(1, c, 1, 1)
        std = torch.tensor(self.image_std, dtype=x.dtype).view(1, c, 1, 1)
        x = (x - mean) / std
        x = x.reshape(s, c, h // m, m, p, w // m, m, p).permute(0, 2, 5, 3, 6, 1, 4, 7)
        x = x.unsqueeze(6).expand(-1, -1, -1, -1, -1, -1, tp, -1, -1)
        pixel_values = x.reshape(s * h * w, c * tp * p * p)
        grid = torch.tensor([[1, h, w]] * s, dtype=torch.long)
        return pixel_values.contiguous(), grid

    # ------------------------------------------------------------------ text
    def encode_text(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def sequence(
        self, prompt: str, num_images: int, tokens_per_image: int, answer: str | None = None
    ) -> tuple[list[int], list[int], list[int]]:
        """(input ids, mm token types, labels) of one sample; labels are -100 except the
        answer's tokens and its closing ``<|im_end|>`` (the stop the model must learn)."""
        start = self.tokenizer.convert_tokens_to_ids("<|vision_start|>")
        end = self.tokenizer.convert_tokens_to_ids("<|vision_end|>")
        ids: list[int] = []
        types: list[int] = []
        for part in chat_segments(prompt, num_images, self.system_prompt):
            if part is None:
                block = [start] + [self.image_token_id] * tokens_per_image + [end]
                ids += block
                types += [0] + [1] * tokens_per_image + [0]
            else:
                piece = self.encode_text(part)
                ids += piece
                types += [0] * len(piece)
        labels = [-100] * len(ids)
        if answer is not None:
            reply = [*self.encode_text(answer), self.tokenizer.eos_token_id]
            ids += reply
            types += [0] * len(reply)
            labels += reply
        return ids, types, labels

    def __call__(
        self,
        videos: Sequence[torch.Tensor],
        prompts: Sequence[str],
        answers: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        """A batch: ``videos[b]`` ``[S_b, 3, H, W]`` in [0, 1] (from `prepare_frames`),
        ``prompts[b]`` the user text, ``answers`` (training) the replies.

        Returns ``input_ids`` / ``attention_mask`` / ``mm_token_type_ids`` ``[B, L]`` (left
        padded with ``<|endoftext|>``), ``labels`` ``[B, L]`` (with answers), ``pixel_values``
        ``[sum S_b h w, 3 tp p p]``, ``image_grid_thw`` ``[sum S_b, 3]`` and
        ``geometry_pixel_values`` (``[B, S, 3, H, W]`` when all samples agree, else a list).
        A sample with 0 frames is text-only (then no sample may have frames)."""
        if len(videos) != len(prompts) or (answers is not None and len(answers) != len(prompts)):
            raise ValueError("videos, prompts (and answers) must have the same length")
        pixel: list[torch.Tensor] = []
        grids: list[torch.Tensor] = []
        rows: list[tuple[list[int], list[int], list[int]]] = []
        for b, (frames, prompt) in enumerate(zip(videos, prompts, strict=True)):
            count = int(frames.shape[0])
            tokens = 0
            if count:
                values, grid = self.image_inputs(frames)
                pixel.append(values)
                grids.append(grid)
                tokens = int(grid[0, 1] * grid[0, 2]) // (self.merge_size**2)
            answer = None if answers is None else answers[b]
            rows.append(self.sequence(prompt, count, tokens, answer))
        if pixel and len(pixel) != len(videos):
            raise ValueError("either every sample has frames or none has")
        length = max(len(r[0]) for r in rows)
        pad = int(self.tokenizer.pad_token_id)
        batch_ids = torch.full((len(rows), length), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), length), dtype=torch.long)
        types = torch.zeros((len(rows), length), dtype=torch.int32)
        labels = torch.full((len(rows), length), -100, dtype=torch.long)
        for b, (ids, kinds, labs) in enumerate(rows):
            n = len(ids)
            batch_ids[b, length - n :] = torch.tensor(ids)
            mask[b, length - n :] = 1
            types[b, length - n :] = torch.tensor(kinds, dtype=torch.int32)
            labels[b, length - n :] = torch.tensor(labs)
        out: dict[str, Any] = {
            "input_ids": batch_ids,
            "attention_mask": mask,
            "mm_token_type_ids": types,
        }
        if answers is not None:
            out["labels"] = labels
        if pixel:
            out["pixel_values"] = torch.cat(pixel, dim=0)
            out["image_grid_thw"] = torch.cat(grids, dim=0)
            shapes = {tuple(v.shape) for v in videos}
            out["geometry_pixel_values"] = (
                torch.stack(list(videos)) if len(shapes) == 1 else [v for v in videos]
            )
        return out

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in asdict(self).items() if k not in ("tokenizer", "extra", "size")}
        data["image_mean"] = list(self.image_mean)
        data["image_std"] = list(self.image_std)
        data["size_hw"] = None if self.size is None else list(self.size)
        return {**self.extra, **data}

    def save_pretrained(self, directory: str | os.PathLike[str]) -> Path:
        """Write the tokenizer files and ``preprocessor_config.json`` into ``directory``."""
        target = Path(directory)
        target.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save_pretrained(str(target))
        (target / PROCESSOR_FILE).write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return target

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike[str]) -> VGLLMProcessor:
        """Read a folder written by `save_pretrained`, or a Qwen2.5-VL / VG-LLM folder (its
        tokenizer files and ``preprocessor_config.json``; no ``size_hw`` there: the 518 rule)."""
        source = Path(directory)
        tokenizer = PreTrainedTokenizerFast.from_pretrained(str(source))
        data: dict[str, Any] = {}
        if (source / PROCESSOR_FILE).is_file():
            data = json.loads((source / PROCESSOR_FILE).read_text())
        known = {"patch_size", "merge_size", "temporal_patch_size", "image_mean", "image_std"}
        kwargs: dict[str, Any] = {k: data[k] for k in known if k in data}
        for key in ("image_mean", "image_std"):
            if key in kwargs:
                kwargs[key] = tuple(float(v) for v in kwargs[key])
        size = data.get("size_hw")
        extra = {k: v for k, v in data.items() if k not in known | {"size_hw", "system_prompt"}}
        return cls(
            tokenizer=tokenizer,
            size=None if size is None else (int(size[0]), int(size[1])),
            system_prompt=data.get("system_prompt", SYSTEM_PROMPT),
            extra=extra,
            **kwargs,
        )

    @classmethod
    def for_model(
        cls,
        tokenizer: PreTrainedTokenizerFast,
        config: VGLLMConfig,
        size: tuple[int, int] | None,
    ) -> VGLLMProcessor:
        vision = config.vision_config
        return cls(
            tokenizer=tokenizer,
            patch_size=int(vision.patch_size),
            merge_size=int(vision.spatial_merge_size),
            temporal_patch_size=int(vision.temporal_patch_size),
            size=size,
        )


# --------------------------------------------------------------------------- generation
def greedy_generation_config(tokenizer: PreTrainedTokenizerFast, max_new_tokens: int) -> Any:
    """VSI-Bench's decoding: greedy (one beam, no sampling), ``max_new_tokens`` new tokens,
    stop at ``<|im_end|>``."""
    from transformers import GenerationConfig

    return GenerationConfig(
        do_sample=False,
        num_beams=1,
        max_new_tokens=int(max_new_tokens),
        eos_token_id=int(tokenizer.eos_token_id),
        pad_token_id=int(tokenizer.pad_token_id),
    )


@torch.no_grad()
def generate_answers(
    model: VGLLMForConditionalGeneration,
    processor: VGLLMProcessor,
    videos: Sequence[torch.Tensor],
    prompts: Sequence[str],
    max_new_tokens: int = MAX_NEW_TOKENS,
) -> list[str]:
    """Greedy answers (raw text, special tokens removed) to ``prompts[b]`` about ``videos[b]``
    (``[S, 3, H, W]`` in [0, 1], `VGLLMProcessor.prepare_frames`). Deterministic: greedy
    decoding, eval mode. The geometry encoder runs once per distinct video object (pass the
    same tensor for questions about one scene)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    batch = processor(videos, prompts)
    batch = {
        k: (v.to(device) if isinstance(v, torch.Tensor) else [t.to(device) for t in v])
        for k, v in batch.items()
    }
    if "pixel_values" in batch:
        batch["pixel_values"] = batch["pixel_values"].to(model.dtype)
    if model.vggt is not None and "geometry_pixel_values" in batch:
        # questions about one scene share its frames: encode each distinct video once (the
        # frozen encoder gives the same tokens for the same frames, so answers are unchanged)
        pixels = batch.pop("geometry_pixel_values")
        encoded: dict[int, torch.Tensor] = {}
        tokens = []
        with torch.no_grad():
            for b, video in enumerate(videos):
                if id(video) not in encoded:
                    encoded[id(video)] = model.model.encode_geometry(pixels[b])
                tokens.append(encoded[id(video)])
        batch["geometry_patch_tokens"] = tokens
    try:
        out = model.generate(
            **batch, generation_config=greedy_generation_config(processor.tokenizer, max_new_tokens)
        )
    finally:
        model.train(was_training)
    new = out[:, batch["input_ids"].shape[1] :]
    return [
        processor.tokenizer.decode(
            row, skip_special_tokens=True, clean_up_tokenization_spaces=False
        )
        for row in new.tolist()
    ]


def record_prompt(record: Mapping[str, Any]) -> str:
    """The official VSI-Bench prompt of a question record (`vfm3d.spatial.prompts`)."""
    from vfm3d.spatial.prompts import build_prompt

    return build_prompt(record)


def question_prompt(question: str, options: Sequence[str] | None = None) -> str:
    """The official prompt for a free question: the numeric post prompt, or with ``options``
    (``["A. ...", ...]``) the choice one, as VSI-Bench builds them."""
    from vfm3d.spatial.prompts import CHOICE_POST_PROMPT, NUMERIC_POST_PROMPT, PRE_PROMPT

    if options:
        listed = "Options:\n" + "\n".join(str(o) for o in options)
        return "\n".join([PRE_PROMPT, question, listed, CHOICE_POST_PROMPT])
    return PRE_PROMPT + "\n" + question + "\n" + NUMERIC_POST_PROMPT


def input_frames(
    path: str | os.PathLike[str],
    num_frames: int,
    processor: VGLLMProcessor,
    clip_id: str | None = None,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """The frames a question is asked about: ``num_frames`` of a video (decoded with
    `vfm3d.spatial.vsibench.load_video_frames`, lmms-eval's uniform sampling), an image folder or
    a clip (``.safetensors`` file, or one clip of a clip folder: ``clip_id``, default the only /
    first one), via `vfm3d.data.inputs.open_clips`. Returns (``[S, 3, H, W]`` in [0, 1] at the
    processor's size, facts: ``source``, ``clip_id``, ``frame_indices``, ``input_hw``)."""
    from vfm3d.data.inputs import open_clips
    from vfm3d.data.readers.video import VideoReader

    source = open_clips(path)
    if isinstance(source, VideoReader):
        from vfm3d.spatial.vsibench import load_video_frames

        clip = load_video_frames(path, num_frames)
        index = list(range(clip.num_frames))
        frames = processor.prepare_frames(clip.frames)
        picked = [int(i) for i in clip.meta.get("frame_indices", index)]
        name = str(clip.meta.get("id", Path(path).stem))
        hw = (int(clip.frames.shape[1]), int(clip.frames.shape[2]))
    else:
        ids = list(source.ids)
        if not ids:
            raise ValueError(f"{path}: no clips")
        name = clip_id if clip_id is not None else ids[0]
        if name not in ids:
            raise ValueError(f"{path}: no clip {name!r} (has {', '.join(ids[:5])})")
        clip = source.load(name)
        frames, picked = processor.sample(clip.frames, num_frames)
        hw = (int(clip.frames.shape[1]), int(clip.frames.shape[2]))
    facts = {"source": str(path), "clip_id": name, "frame_indices": picked, "input_hw": list(hw)}
    return frames, facts


# --------------------------------------------------------------------------- folders
def resolve_zoo(path: str | os.PathLike[str]) -> Path:
    """``zoo/<name>`` -> the shipped folder; any other path as given (must exist)."""
    text = str(path)
    if text.startswith("zoo/"):
        from vfm3d.backbones.registry import zoo_root

        folder = zoo_root() / text.removeprefix("zoo/")
        if not folder.is_dir():
            raise FileNotFoundError(f"{text}: not shipped (looked in {folder})")
        return folder
    folder = Path(text)
    if not folder.exists():
        raise FileNotFoundError(f"model folder not found: {folder}")
    return folder


def save_vgllm(
    model: VGLLMForConditionalGeneration,
    processor: VGLLMProcessor,
    directory: str | os.PathLike[str],
) -> Path:
    """Write ``config.json``, ``model.safetensors``, ``generation_config.json``, the tokenizer
    and ``preprocessor_config.json`` into ``directory`` (loaded back by `load_vgllm`)."""
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    model.generation_config = greedy_generation_config(processor.tokenizer, MAX_NEW_TOKENS)
    model.save_pretrained(str(target), safe_serialization=True)
    processor.save_pretrained(target)
    return target


def load_vgllm(
    path: str | os.PathLike[str],
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    geometry_encoder: str | os.PathLike[str] | None = None,
) -> tuple[VGLLMForConditionalGeneration, VGLLMProcessor]:
    """(model in eval mode, processor) of a folder: ``zoo/vgllm-mini``, a `save_vgllm` folder
    or VG-LLM's released one (then ``geometry_encoder`` may name a VGGT-1B folder to load the
    encoder from, VG-LLM's ``vggt_model_path``).

    Raises:
        ValueError: a weight of the model is not in the checkpoint (transformers would
            initialise it randomly; the encoder's may come from ``geometry_encoder``).
    """
    folder = resolve_zoo(path)
    model, info = VGLLMForConditionalGeneration.from_pretrained(
        str(folder), dtype=dtype, output_loading_info=True
    )
    missing = sorted(info.get("missing_keys") or [])
    if geometry_encoder is not None:
        model.load_geometry_encoder(geometry_encoder)
        missing = [k for k in missing if not k.startswith("model.vggt.")]
    if missing:
        # transformers would leave them randomly initialised: refuse instead
        raise ValueError(
            f"{path}: {len(missing)} weights missing from the checkpoint ({', '.join(missing[:4])}"
            + (", ..." if len(missing) > 4 else "")
            + ")"
            + ("; pass geometry_encoder=VGGT folder" if any("vggt" in k for k in missing) else "")
        )
    processor = VGLLMProcessor.from_pretrained(folder)
    model.name_or_path = str(path)
    return model.to(device).eval(), processor
