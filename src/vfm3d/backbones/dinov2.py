"""DINOv2 image encoder applied per frame (transformers ``Dinov2Model`` or
``Dinov2WithRegistersModel``), e.g. ``facebook/dinov2-large``.

Input ``[B, T, 3, H, W]`` in [0, 1] is normalised with the preprocessor's ``image_mean`` /
``image_std`` (ImageNet by default) and the frames are folded into the batch: ``pixel_values``
``[B*T, 3, H, W]``. Each frame is encoded independently.

Rules: any ``T``; ``H`` and ``W`` multiples of the patch size (14 for the published models). Other
sizes than the configured ``image_size`` are fine: the model interpolates its position embeddings
(bicubic) to the input's patch grid.

Token grid: ``TokenGrid(temporal_stride=1, patch_size=(p, p))``; input frame ``t`` = feature frame
``t``. The CLS token and the register tokens are dropped from every layer.

Layers: layer ``i`` = output of ``encoder.layer[i]`` (before the final ``layernorm``; the paper's
"last hidden state" is that norm applied to layer ``num_layers - 1``).
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
    check_weights_dir,
    load_backbone,
    read_model_type,
    tiny_backbone,
)
from vfm3d.backbones.base import Prepared, TokenGrid

if TYPE_CHECKING:
    from transformers import (
        Dinov2Config,
        Dinov2Model,
        Dinov2WithRegistersConfig,
        Dinov2WithRegistersModel,
    )

__all__ = ["TINY_CONFIG", "Dinov2Backbone", "from_pretrained", "tiny"]

#: A 2-block, width-32 config of the real architecture (16x16 images, 4x4 patches).
TINY_CONFIG: dict[str, Any] = {
    "image_size": 16,
    "patch_size": 4,
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "mlp_ratio": 2,
}


class Dinov2Backbone(HFTokenBackbone):
    """DINOv2 blocks as layers ``0..num_hidden_layers-1``, per frame (see the module docstring)."""

    default_name = "dinov2"
    block_path = "encoder.layer"

    @classmethod
    def layout(cls, config: Dinov2Config | Dinov2WithRegistersConfig) -> Layout:
        patch_h, patch_w = as_pair(config.patch_size)
        if patch_h != patch_w:
            raise ValueError(f"config.patch_size must be square, got {config.patch_size}")
        rules = ExplainedRules(
            spatial_multiple=patch_h,
            size_note=f"DINOv2 embeds {patch_h}x{patch_h} patches (config.patch_size)",
        )
        return Layout(
            rules=rules,
            grid=TokenGrid(temporal_stride=1, patch_size=(patch_h, patch_w)),
            hidden_size=config.hidden_size,
            prefix_tokens=1 + registers_of(config),
        )

    @property
    def num_register_tokens(self) -> int:
        """Register tokens after CLS (0 for plain DINOv2)."""
        return registers_of(self.model.config)

    def _model_inputs(self, pixels: torch.Tensor) -> dict[str, Any]:
        return {"pixel_values": pixels.flatten(0, 1)}

    def run(self, prepared: Prepared) -> torch.Tensor:
        """Run the model on all frames; returns ``last_hidden_state`` ``[B*T, 1+R+h*w, C]``."""
        return self.model(**prepared.batch).last_hidden_state


def registers_of(config: Any) -> int:
    """``config.num_register_tokens`` (0 when the config has none)."""
    return int(getattr(config, "num_register_tokens", 0) or 0)


def _model_class(model_type: str) -> type[Dinov2Model] | type[Dinov2WithRegistersModel]:
    from transformers import Dinov2Model, Dinov2WithRegistersModel

    classes = {"dinov2": Dinov2Model, "dinov2_with_registers": Dinov2WithRegistersModel}
    if model_type not in classes:
        raise ValueError(
            f"model_type {model_type!r} is not a DINOv2 model; expected one of {sorted(classes)}"
        )
    return classes[model_type]


def from_pretrained(
    path: str | os.PathLike[str],
    name: str = "dinov2",
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
) -> Dinov2Backbone:
    """Load a local ``Dinov2Model`` / ``Dinov2WithRegistersModel`` directory, offline.

    Raises FileNotFoundError for a missing directory or ``config.json``, ValueError for another
    model type or a checkpoint missing block weights.
    """
    model_type = read_model_type(check_weights_dir(path))
    return load_backbone(
        Dinov2Backbone,
        _model_class(model_type),
        path,
        name=name,
        device=device,
        dtype=dtype,
        model_types=(model_type,),
        optional_prefixes=("layernorm.", "embeddings.mask_token"),
    )


def tiny(
    name: str = "dinov2",
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    seed: int = 0,
    num_register_tokens: int = 0,
    config_overrides: dict[str, Any] | None = None,
) -> Dinov2Backbone:
    """A random-initialised `TINY_CONFIG` DINOv2; with registers when ``num_register_tokens > 0``."""
    from transformers import Dinov2Config, Dinov2WithRegistersConfig

    settings = apply_overrides(TINY_CONFIG, config_overrides)
    if num_register_tokens > 0:
        config: Any = Dinov2WithRegistersConfig(num_register_tokens=num_register_tokens, **settings)
    else:
        config = Dinov2Config(**settings)
    return tiny_backbone(
        Dinov2Backbone,
        _model_class(config.model_type),
        config,
        name=name,
        device=device,
        dtype=dtype,
        seed=seed,
    )
