"""Fast3R adapter: the encoder + all-views fusion decoder of Fast3R as a 3D-expert backbone.

Layer ``i`` is decoder output ``i`` as Fast3R (and the probing paper) counts it: ``0`` = the
encoder output (``enc_norm``, width ``enc_embed_dim``), ``i`` = the output of
``dec_blocks[i - 1]`` for ``1 <= i < dec_depth``, and ``dec_depth`` = the last block's output
after ``dec_norm`` (width ``dec_embed_dim``): the paper's "decoder layer 24" is layer 24 of the
release, ``[B, T, 18, 32, 1024]`` at 288x512 input. ``num_layers = dec_depth + 1`` (25).

All T frames of a clip are fused in one forward (each frame is one Fast3R view, view 0 the
reference view); every frame has its own feature frame (``frame_index`` = identity). Pixels are
normalised as Fast3R expects (``(x - 0.5) / 0.5``, DUSt3R's ``ImgNorm``), inside the model. The
image-index embedding uses the model's fixed eval-mode draw (`Fast3R.image_indices`), so the
features are deterministic and do not depend on other clips in the batch.

Input rules: any T from 1 to 1000 (the image-index table has 1000 rows); H and W multiples of 16
(the patch). Any such size runs (the encoder has no absolute position embedding, RoPE is
relative); the release was trained at long side 512 (512x384 ... 512x160, portrait too), so use
long side 512 for its features (``vfm3d.data`` resizes and crops clips). The forward stops after
the deepest requested layer (only the encoder runs when layer 0 alone is asked for).

Weights: a folder with ``model.safetensors`` and ``config.json`` (vfm3d's or the hub release's
layout; absent = the release), e.g. the downloaded ``jedyang97/Fast3R_ViT_Large_512``. The head
weights are checked by name and shape, then dropped.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from vfm3d.backbones.base import Backbone, InputRules, Prepared, TokenGrid
from vfm3d.models.fast3r import Fast3R, Fast3RConfig


class Fast3RBackbone(Backbone):
    """A frozen Fast3R encoder + decoder exposing its ``dec_depth + 1`` decoder outputs."""

    is_diffusion = False

    def __init__(self, model: Fast3R, name: str = "fast3r") -> None:
        super().__init__()
        self.name = name
        self.model = model
        self.config: Fast3RConfig = model.config
        p = self.config.patch_size
        self.rules = InputRules(spatial_multiple=p, max_frames=self.config.num_image_ids)
        self.grid = TokenGrid(temporal_stride=1, patch_size=(p, p))

    @property
    def num_layers(self) -> int:
        return self.config.num_layers

    def layer_width(self, layer: int) -> int:
        return self.config.layer_width(layer)

    def layer_modules(self) -> Sequence[nn.Module]:
        return self.model.layer_modules()

    def prepare(
        self,
        frames: torch.Tensor,
        timesteps: Sequence[int] | None,
        generator: torch.Generator,
        aux: dict[str, torch.Tensor] | None = None,
    ) -> Prepared:
        """``frames`` ``[B, T, 3, H, W]`` in [0, 1]; the model normalises them itself."""
        b, t, _, h, w = frames.shape
        images = frames.to(device=self.device, dtype=self.dtype)
        gh, gw = self.grid.spatial_shape(h, w)
        return Prepared(
            batch={"images": images}, num_clips=b, timesteps=None, feature_shape=(t, gh, gw)
        )

    @torch.no_grad()
    def run(self, prepared: Prepared) -> Any:
        """Encoder + decoder, keeping nothing (hooks on `layer_modules` capture the layers)."""
        return self.model.decoder_layers(prepared.batch["images"], keep_layers=())

    def layer_output_to_grid(self, layer: int, output: Any, prepared: Prepared) -> torch.Tensor:
        """``enc_norm`` output ``[B*T, h*w, C]`` or a decoder output ``[B, T*h*w, C]`` ->
        ``[B, T, h, w, C]`` (both are (clip, frame, row, column)-ordered)."""
        t, gh, gw = prepared.feature_shape
        b = prepared.num_clips
        return output.reshape(b, t, gh, gw, output.shape[-1])


def _backbone_config(config: Fast3RConfig) -> Fast3RConfig:
    return config.replace(enable_head=False, enable_local_head=False)


def from_pretrained(
    path: str | os.PathLike[str],
    name: str = "fast3r",
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
) -> Fast3RBackbone:
    """Load a Fast3R weights folder (strict by name and shape; heads checked, then dropped)."""
    model = Fast3R.from_pretrained(
        path, device=device, dtype=dtype or torch.float32, backbone_only=True
    )
    backbone = Fast3RBackbone(model, name=name)
    return backbone.eval().requires_grad_(False)


def tiny(
    name: str = "fast3r",
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    seed: int = 0,
    config: Fast3RConfig | None = None,
) -> Fast3RBackbone:
    """A random-initialised tiny Fast3R encoder + decoder (`Fast3RConfig.tiny`, no heads),
    reproducible from ``seed``."""
    cfg = _backbone_config(config or Fast3RConfig.tiny())
    model = Fast3R.random(cfg, seed=seed).to(device=device, dtype=dtype or torch.float32)
    backbone = Fast3RBackbone(model, name=name)
    return backbone.eval().requires_grad_(False)
