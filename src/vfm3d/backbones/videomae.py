"""VideoMAE video encoder (transformers ``VideoMAEModel``), e.g. ``MCG-NJU/videomae-base``.

Input ``[B, T, 3, H, W]`` in [0, 1] is normalised with the preprocessor's ``image_mean`` /
``image_std`` (ImageNet by default) and passed as ``pixel_values`` ``[B, T, 3, H, W]`` with
``bool_masked_pos=None``: no token is masked at feature time. The pre-training checkpoints
(``VideoMAEForPreTraining``) load too; their decoder is dropped.

Rules (from the config): exactly ``T = num_frames`` and ``H x W = image_size``. The position
embeddings are a fixed sinusoidal table with one row per token of that configuration (no
interpolation), so any other size is refused.

Token grid: ``TokenGrid(temporal_stride=tubelet_size, patch_size=patch_size)``; input frame ``t``
maps to feature frame ``t // tubelet_size``.

Layers: layer ``i`` = output of ``encoder.layer[i]``. The model's own head (``layernorm`` when
``use_mean_pooling=False``, or mean pooling + ``fc_norm`` in the classifier) comes after the blocks
and is not part of any layer.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import torch

from vfm3d.backbones._hf_common import (
    ExplainedRules,
    HFTokenBackbone,
    Layout,
    apply_overrides,
    as_pair,
    load_backbone,
    tiny_backbone,
)
from vfm3d.backbones.base import Prepared, TokenGrid

if TYPE_CHECKING:
    from transformers import VideoMAEConfig

__all__ = ["TINY_CONFIG", "VideoMAEBackbone", "from_pretrained", "tiny"]

#: A 2-block, width-32 config of the real architecture (4 frames of 16x16, 4x4 patches, tubelets 2).
TINY_CONFIG: dict[str, Any] = {
    "image_size": 16,
    "patch_size": 4,
    "num_frames": 4,
    "tubelet_size": 2,
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "decoder_hidden_size": 16,
    "decoder_num_hidden_layers": 1,
    "decoder_num_attention_heads": 2,
    "decoder_intermediate_size": 32,
}


class VideoMAEBackbone(HFTokenBackbone):
    """VideoMAE encoder blocks as layers ``0..num_hidden_layers-1`` (see the module docstring)."""

    default_name = "videomae"
    block_path = "encoder.layer"

    @classmethod
    def layout(cls, config: VideoMAEConfig) -> Layout:
        patch = as_pair(config.patch_size)
        size = as_pair(config.image_size)
        tubelet = int(config.tubelet_size)
        num_frames = int(config.num_frames)
        if num_frames % tubelet:
            raise ValueError(
                f"config.num_frames={num_frames} is not a multiple of tubelet_size={tubelet}"
            )
        table = "VideoMAE's sinusoidal position table is built for config."
        rules = ExplainedRules(
            fixed_frames=num_frames,
            fixed_size=size,
            frames_note=f"{table}num_frames={num_frames}",
            size_note=f"{table}image_size={size[0]}x{size[1]}; resize/crop frames to that size",
        )
        grid = TokenGrid(temporal_stride=tubelet, patch_size=patch)
        return Layout(rules=rules, grid=grid, hidden_size=config.hidden_size)

    def _model_inputs(self, pixels: torch.Tensor) -> dict[str, Any]:
        return {"pixel_values": pixels, "bool_masked_pos": None}

    def run(self, prepared: Prepared) -> torch.Tensor:
        """Run the model unmasked; returns ``last_hidden_state`` ``[B, T'*h*w, C]``."""
        return self.model(**prepared.batch).last_hidden_state


def from_pretrained(
    path: str | os.PathLike[str],
    name: str = "videomae",
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
) -> VideoMAEBackbone:
    """Load a local VideoMAE directory (``VideoMAEModel`` or a pre-training checkpoint), offline.

    Raises FileNotFoundError for a missing directory or ``config.json``, ValueError for another
    model type or a checkpoint missing encoder weights.
    """
    from transformers import VideoMAEModel

    return load_backbone(
        VideoMAEBackbone,
        VideoMAEModel,
        path,
        name=name,
        device=device,
        dtype=dtype,
        model_types=("videomae",),
        optional_prefixes=("layernorm.",),
    )


def tiny(
    name: str = "videomae",
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    seed: int = 0,
    config_overrides: dict[str, Any] | None = None,
) -> VideoMAEBackbone:
    """A random-initialised `TINY_CONFIG` ``VideoMAEModel`` (``config_overrides`` update it)."""
    from transformers import VideoMAEConfig, VideoMAEModel

    config = VideoMAEConfig(**apply_overrides(TINY_CONFIG, config_overrides))
    return tiny_backbone(
        VideoMAEBackbone, VideoMAEModel, config, name=name, device=device, dtype=dtype, seed=seed
    )
