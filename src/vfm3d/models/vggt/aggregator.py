"""The VGGT aggregator: patch embedding, then ``depth`` pairs of frame / global attention blocks.

Tokens per frame: 1 camera token, ``R`` register tokens, then the ``h * w`` patch tokens (raster
order). The first frame has its own camera / register tokens (index 0 of ``camera_token``
``[1, 2, 1, C]`` and ``register_token`` ``[1, 2, R, C]``); every other frame shares index 1.
Frame blocks attend within a frame (``[B*S, P, C]``), global blocks across all frames
(``[B, S*P, C]``). Layer ``i`` of the aggregator is ``concat(frame_i, global_i)`` ``[B, S, P, 2C]``,
the "intermediate" output VGGT's heads read.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from vfm3d.models.vggt.config import VGGTConfig
from vfm3d.models.vggt.layers import (
    Block,
    DinoVisionTransformer,
    PatchEmbed,
    RotaryPositionEmbedding2D,
    grid_positions,
)

#: ImageNet statistics used by VGGT to normalise [0, 1] images before the patch embedder.
RESNET_MEAN = (0.485, 0.456, 0.406)
RESNET_STD = (0.229, 0.224, 0.225)


class LayerTap(nn.Identity):
    """Identity module called on each layer output so forward hooks can capture (and stop) it."""


def first_and_rest(tokens: torch.Tensor, batch: int, frames: int) -> torch.Tensor:
    """``[1, 2, X, C]`` special tokens -> ``[batch * frames, X, C]``: index 0 for frame 0 only,
    index 1 for frames 1..S-1."""
    first = tokens[:, 0:1].expand(batch, 1, *tokens.shape[2:])
    rest = tokens[:, 1:2].expand(batch, frames - 1, *tokens.shape[2:])
    return torch.cat([first, rest], dim=1).reshape(batch * frames, *tokens.shape[2:])


class Aggregator(nn.Module):
    """Alternating-attention trunk of VGGT, built from a `VGGTConfig`.

    ``forward(images [B, S, 3, H, W] in [0, 1], keep_layers=None) -> (layers, patch_start_idx)``
    where ``layers`` maps layer index -> ``[B, S, P, 2C]`` (``P = patch_start_idx + h * w``) for
    every index in ``keep_layers`` (``None`` = all ``depth`` layers). A layer that is kept, or whose
    ``layer_taps[i]`` (an identity) carries a forward hook, passes through that tap, so hooks see
    it (and may stop the forward there) even when it is not kept.
    """

    def __init__(self, config: VGGTConfig) -> None:
        super().__init__()
        c = config
        self.config = c
        self.patch_size = c.patch_size
        self.embed_dim = c.embed_dim
        self.depth = c.depth
        self.aa_order = tuple(c.aa_order)
        self.aa_block_size = c.aa_block_size
        self.patch_start_idx = c.patch_start_idx
        self.camera_token = nn.Parameter(torch.randn(1, 2, 1, c.embed_dim) * 1e-6)
        self.register_token = nn.Parameter(
            torch.randn(1, 2, c.num_register_tokens, c.embed_dim) * 1e-6
        )
        self.patch_embed: nn.Module
        if c.patch_embed == "conv":
            self.patch_embed = PatchEmbed(c.patch_size, 3, c.embed_dim)
        else:
            self.patch_embed = DinoVisionTransformer(
                img_size=c.img_size,
                patch_size=c.patch_size,
                embed_dim=c.embed_dim,
                depth=c.dino_depth,
                num_heads=c.dino_num_heads,
                mlp_ratio=c.mlp_ratio,
                num_register_tokens=c.num_register_tokens,
                init_values=1.0,
            )
        self.rope = RotaryPositionEmbedding2D(c.rope_freq) if c.rope_freq > 0 else None

        def make_block() -> Block:
            return Block(
                c.embed_dim,
                c.num_heads,
                c.mlp_ratio,
                init_values=c.init_values,
                qk_norm=c.qk_norm,
                rope=self.rope,
            )

        self.frame_blocks = nn.ModuleList(make_block() for _ in range(c.depth))
        self.global_blocks = nn.ModuleList(make_block() for _ in range(c.depth))
        self.layer_taps = nn.ModuleList(LayerTap() for _ in range(c.depth))

    def _positions(self, n: int, grid_h: int, grid_w: int, device: torch.device) -> torch.Tensor:
        pos = grid_positions(n, grid_h, grid_w, device=device) + 1
        special = torch.zeros(n, self.patch_start_idx, 2, dtype=pos.dtype, device=device)
        return torch.cat([special, pos], dim=1)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """``[B, S, 3, H, W]`` in [0, 1] -> tokens ``[B*S, P, C]`` (camera, registers, patches)."""
        if images.ndim != 5 or images.shape[2] != 3:
            raise ValueError(f"images must be [B, S, 3, H, W], got {tuple(images.shape)}")
        b, s, _, h, w = images.shape
        p = self.patch_size
        if h % p or w % p:
            raise ValueError(f"image size {h}x{w} must be a multiple of the patch size {p}")
        mean = torch.tensor(RESNET_MEAN, device=images.device, dtype=images.dtype)
        std = torch.tensor(RESNET_STD, device=images.device, dtype=images.dtype)
        normed = (images - mean.view(1, 1, 3, 1, 1)) / std.view(1, 1, 3, 1, 1)
        patches = self.patch_embed(normed.reshape(b * s, 3, h, w))
        camera = first_and_rest(self.camera_token, b, s).to(patches.dtype)
        registers = first_and_rest(self.register_token, b, s).to(patches.dtype)
        return torch.cat([camera, registers, patches], dim=1)

    def forward(
        self, images: torch.Tensor, keep_layers: Iterable[int] | None = None
    ) -> tuple[dict[int, torch.Tensor], int]:
        b, s, _, h, w = images.shape
        keep = set(range(self.depth)) if keep_layers is None else {int(i) for i in keep_layers}
        tokens = self.embed(images)
        _, num_tokens, channels = tokens.shape
        pos = None
        if self.rope is not None:
            pos = self._positions(b * s, h // self.patch_size, w // self.patch_size, images.device)
        frame_idx = global_idx = layer_idx = 0
        outputs: dict[int, torch.Tensor] = {}
        for _ in range(self.depth // self.aa_block_size):
            frame_out: list[torch.Tensor] = []
            global_out: list[torch.Tensor] = []
            for kind in self.aa_order:
                if kind == "frame":
                    tokens = tokens.reshape(b * s, num_tokens, channels)
                    for _ in range(self.aa_block_size):
                        tokens = self.frame_blocks[frame_idx](tokens, pos=pos)
                        frame_idx += 1
                        frame_out.append(tokens.reshape(b, s, num_tokens, channels))
                else:
                    tokens = tokens.reshape(b, s * num_tokens, channels)
                    global_pos = None if pos is None else pos.reshape(b, s * num_tokens, 2)
                    for _ in range(self.aa_block_size):
                        tokens = self.global_blocks[global_idx](tokens, pos=global_pos)
                        global_idx += 1
                        global_out.append(tokens.reshape(b, s, num_tokens, channels))
            for frame_tokens, global_tokens in zip(frame_out, global_out, strict=True):
                tap = self.layer_taps[layer_idx]
                if layer_idx in keep or tap._forward_hooks or tap._forward_pre_hooks:
                    layer = tap(torch.cat([frame_tokens, global_tokens], dim=-1))
                    if layer_idx in keep:
                        outputs[layer_idx] = layer
                layer_idx += 1
        return outputs, self.patch_start_idx
