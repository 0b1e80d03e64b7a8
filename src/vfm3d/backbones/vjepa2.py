"""V-JEPA 2 video encoder (transformers ``VJEPA2Model``), e.g. ``facebook/vjepa2-vith-fpc64-256``.

Input ``[B, T, 3, H, W]`` in [0, 1] is normalised with the preprocessor's ``image_mean`` /
``image_std`` (ImageNet by default) and passed as ``pixel_values_videos`` ``[B, T, 3, H, W]``; only
the encoder runs (the predictor is kept in the module, unused).

Rules (from the config):

- ``H x W = crop_size x crop_size``. The rotary attention derives each token's (t, y, x) position
  from its index with ``grid = crop_size // patch_size`` (``VJEPA2RopeAttention.get_position_ids``),
  whatever the real input size; any other size silently gets wrong positions, so it is refused.
- ``T`` a multiple of ``tubelet_size`` (a Conv3d tubelet embedding would drop leftover frames).
  ``frames_per_clip`` is the pre-training clip length and does not constrain inference.

Token grid: ``TokenGrid(temporal_stride=tubelet_size, patch_size=(p, p))``; input frame ``t`` maps
to feature frame ``t // tubelet_size``.

Layers: layer ``i`` = output of ``encoder.layer[i]`` (no final norm). transformers'
``last_hidden_state`` is ``encoder.layernorm`` applied to the last block output, while
``hidden_states[i + 1]`` (``output_hidden_states=True``) is the raw output of block ``i``, so
``hidden_states[-1]`` == layer ``num_layers - 1`` != ``last_hidden_state``.
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
    from transformers import VJEPA2Config

__all__ = ["TINY_CONFIG", "VJEPA2Backbone", "from_pretrained", "tiny"]

#: A 2-block, width-32 config of the real architecture (16x16 crops, 4x4 patches, tubelets of 2).
TINY_CONFIG: dict[str, Any] = {
    "patch_size": 4,
    "crop_size": 16,
    "frames_per_clip": 4,
    "tubelet_size": 2,
    "hidden_size": 32,
    "num_attention_heads": 2,
    "num_hidden_layers": 2,
    "mlp_ratio": 2.0,
    "pred_hidden_size": 16,
    "pred_num_attention_heads": 2,
    "pred_num_hidden_layers": 1,
    "pred_num_mask_tokens": 2,
    "num_pooler_layers": 1,
}


class VJEPA2Backbone(HFTokenBackbone):
    """V-JEPA 2 encoder blocks as layers ``0..num_hidden_layers-1`` (see the module docstring)."""

    default_name = "vjepa2"
    block_path = "encoder.layer"

    @classmethod
    def layout(cls, config: VJEPA2Config) -> Layout:
        patch_h, patch_w = as_pair(config.patch_size)
        crop = int(config.crop_size)
        tubelet = int(config.tubelet_size)
        if crop % patch_h or crop % patch_w:
            raise ValueError(f"config.crop_size={crop} is not a multiple of patch_size {patch_h}")
        rules = ExplainedRules(
            frame_step=tubelet,
            min_frames=tubelet,
            spatial_multiple=patch_h,
            fixed_size=(crop, crop),
            frames_note=f"V-JEPA 2 embeds tubelets of config.tubelet_size={tubelet} frames",
            size_note=(
                f"V-JEPA 2 derives rotary token positions from config.crop_size={crop}, so other "
                f"sizes would silently get wrong positions; resize/crop frames to {crop}x{crop}"
            ),
        )
        grid = TokenGrid(temporal_stride=tubelet, patch_size=(patch_h, patch_w))
        return Layout(rules=rules, grid=grid, hidden_size=config.hidden_size)

    def _model_inputs(self, pixels: torch.Tensor) -> dict[str, Any]:
        return {"pixel_values_videos": pixels}

    def run(self, prepared: Prepared) -> torch.Tensor:
        """Run the encoder only; returns ``last_hidden_state`` ``[B, T'*h*w, C]`` (final norm)."""
        return self.model.encoder(**prepared.batch).last_hidden_state


def from_pretrained(
    path: str | os.PathLike[str],
    name: str = "vjepa2",
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
) -> VJEPA2Backbone:
    """Load a local ``VJEPA2Model`` directory (``config.json`` + safetensors), offline.

    Raises FileNotFoundError for a missing directory or ``config.json``, ValueError for another
    model type or a checkpoint missing encoder weights.
    """
    from transformers import VJEPA2Model

    return load_backbone(
        VJEPA2Backbone,
        VJEPA2Model,
        path,
        name=name,
        device=device,
        dtype=dtype,
        model_types=("vjepa2",),
        optional_prefixes=("predictor.", "encoder.layernorm."),
    )


def tiny(
    name: str = "vjepa2",
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    seed: int = 0,
    config_overrides: dict[str, Any] | None = None,
) -> VJEPA2Backbone:
    """A random-initialised `TINY_CONFIG` ``VJEPA2Model`` (``config_overrides`` update it)."""
    from transformers import VJEPA2Config, VJEPA2Model

    config = VJEPA2Config(**apply_overrides(TINY_CONFIG, config_overrides))
    return tiny_backbone(
        VJEPA2Backbone, VJEPA2Model, config, name=name, device=device, dtype=dtype, seed=seed
    )
