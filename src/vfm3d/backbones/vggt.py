"""VGGT adapter: the aggregator of a VGGT-architecture model as a 3D-expert backbone.

Layer ``i`` (0-based) is the output of aggregator block pair ``i``: ``concat(frame_i, global_i)``
of width ``2 * embed_dim``, exactly the "intermediate" tokens VGGT's own heads read. Only patch
tokens are returned (the camera and register tokens are dropped): ``[B, T, H/p, W/p, 2C]``.
Frames are processed jointly (global attention across all T frames); frame 0 is the reference
frame (it has its own camera / register tokens). Any T; H and W multiples of the patch size (14
for VGGT-1B, which was trained at width 518).

Weights: a folder with ``model.safetensors`` (or ``model.pt``) and an optional ``config.json``
(absent = VGGT-1B), as written by `vfm3d.models.vggt.VGGT.save_pretrained` (zoo ``zoo/vggt-mini``)
or the public VGGT-1B checkpoint. Head weights are checked by name but not kept.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from vfm3d.backbones.base import Backbone, InputRules, Prepared, TokenGrid
from vfm3d.models.vggt import VGGT, Aggregator, VGGTConfig


class VGGTBackbone(Backbone):
    """A frozen VGGT aggregator exposing its ``depth`` layers (see the module docstring)."""

    is_diffusion = False

    def __init__(self, aggregator: Aggregator, name: str = "vggt") -> None:
        super().__init__()
        self.name = name
        self.aggregator = aggregator
        self.config: VGGTConfig = aggregator.config
        p = self.config.patch_size
        self.rules = InputRules(spatial_multiple=p)
        self.grid = TokenGrid(temporal_stride=1, patch_size=(p, p))

    @property
    def num_layers(self) -> int:
        return self.config.depth

    def layer_width(self, layer: int) -> int:
        return 2 * self.config.embed_dim

    def layer_modules(self) -> Sequence[nn.Module]:
        return list(self.aggregator.layer_taps)

    def prepare(
        self,
        frames: torch.Tensor,
        timesteps: Sequence[int] | None,
        generator: torch.Generator,
        aux: dict[str, torch.Tensor] | None = None,
    ) -> Prepared:
        """``frames`` ``[B, T, 3, H, W]`` in [0, 1]; VGGT normalises them itself (ImageNet stats)."""
        b, t, _, h, w = frames.shape
        images = frames.to(device=self.device, dtype=self.dtype)
        gh, gw = self.grid.spatial_shape(h, w)
        return Prepared(
            batch={"images": images}, num_clips=b, timesteps=None, feature_shape=(t, gh, gw)
        )

    @torch.no_grad()
    def run(self, prepared: Prepared) -> Any:
        """Run the aggregator keeping no layer in memory (hooks on the layer taps capture them)."""
        layers, _ = self.aggregator(prepared.batch["images"], keep_layers=())
        return layers

    def layer_output_to_grid(self, layer: int, output: Any, prepared: Prepared) -> torch.Tensor:
        """``[B, T, P, 2C]`` -> patch tokens ``[B, T, h, w, 2C]``."""
        t, gh, gw = prepared.feature_shape
        tokens = output[:, :, self.aggregator.patch_start_idx :]
        b = tokens.shape[0]
        return tokens.reshape(b, t, gh, gw, tokens.shape[-1])


def from_pretrained(
    path: str | os.PathLike[str],
    name: str = "vggt",
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
) -> VGGTBackbone:
    """Load a VGGT weights folder (strict by name and shape; heads checked, then dropped)."""
    model = VGGT.from_pretrained(
        path, device=device, dtype=dtype or torch.float32, aggregator_only=True
    )
    backbone = VGGTBackbone(model.aggregator, name=name)
    return backbone.eval().requires_grad_(False)


def tiny(
    name: str = "vggt",
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    seed: int = 0,
    config: VGGTConfig | None = None,
) -> VGGTBackbone:
    """A random-initialised tiny VGGT aggregator (`VGGTConfig.tiny`), reproducible from ``seed``.

    The tiny LayerScale starts at 1.0 instead of VGGT's 0.01 so that random blocks visibly change
    the tokens (a near-identity stack would hide layer-indexing bugs in tests).
    """
    cfg = config or VGGTConfig.tiny(init_values=1.0)
    cfg = cfg.replace(
        enable_camera=False, enable_depth=False, enable_point=False, enable_track=False
    )
    model = VGGT.random(cfg, seed=seed).to(device=device, dtype=dtype or torch.float32)
    backbone = VGGTBackbone(model.aggregator, name=name)
    return backbone.eval().requires_grad_(False)
