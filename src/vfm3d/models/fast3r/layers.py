"""Fast3R's transformer parts: the CroCo ViT encoder with 2D RoPE and the all-views fusion decoder.

Parameter names follow the public Fast3R code (``encoder.patch_embed.proj``,
``encoder.enc_blocks.{i}``, ``encoder.enc_norm``, ``decoder.decoder_embed``,
``decoder.dec_blocks.{i}``, ``decoder.dec_norm``; inside a block ``norm1``, ``attn.qkv``,
``attn.proj``, ``norm2``, ``mlp.fc1``, ``mlp.fc2``), so checkpoints load by name. The block is
vfm3d's VGGT `Block` without qk-norm or LayerScale (the same computation as CroCo's block).

Token tensors are ``[N, L, C]``. RoPE positions are ``[N, L, 2]`` int64 ``(row, column)`` of the
patch grid starting at 0 (CroCo's ``PositionGetter``; RoPE only sees differences, so VGGT's +1
offset would not change anything either).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from vfm3d.models.fast3r.config import Fast3RConfig
from vfm3d.models.vggt.heads import sincos_embed_1d
from vfm3d.models.vggt.layers import (
    Attention,
    Block,
    PatchEmbed,
    RotaryPositionEmbedding2D,
    grid_positions,
)

#: LayerNorm epsilons of the release: encoder blocks, ``enc_norm`` and ``dec_norm`` use 1e-6;
#: the decoder blocks are built with a bare ``nn.LayerNorm`` (1e-5).
ENC_NORM_EPS = 1e-6
DEC_BLOCK_NORM_EPS = 1e-5
DEC_NORM_EPS = 1e-6
#: The reference's inference attention rescaling (``attn_bias_for_inference_enabled``):
#: ``scale = head_dim^-0.5 * sqrt(gamma * log(inference_seqlen) / log(train_seqlen))``.
ATTN_BIAS_TRAIN_SEQLEN = 20
ATTN_BIAS_INFERENCE_SEQLEN = 137
ATTN_BIAS_GAMMA = 1.0
#: Base of the 1-D sin-cos image-index table (MAE's ``get_1d_sincos_pos_embed_from_grid``).
IMAGE_INDEX_BASE = 10000.0


class Fast3RAttention(Attention):
    """VGGT's `Attention` (no qk-norm) with an optional larger scale in eval mode.

    ``inference_scale``: the softmax scale used when ``not self.training`` (``None`` = the
    standard ``head_dim ** -0.5`` always). ``forward(x [N, L, C], pos [N, L, 2] | None)``.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        rope: RotaryPositionEmbedding2D | None = None,
        inference_scale: float | None = None,
    ) -> None:
        super().__init__(dim, num_heads, qkv_bias=True, proj_bias=True, qk_norm=False, rope=rope)
        self.inference_scale = inference_scale

    def forward(self, x: torch.Tensor, pos: torch.Tensor | None = None) -> torch.Tensor:
        n, length, channels = x.shape
        qkv = self.qkv(x).reshape(n, length, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        if self.rope is not None and pos is not None:
            q = self.rope(q, pos)
            k = self.rope(k, pos)
        scale = None if self.training else self.inference_scale
        out = F.scaled_dot_product_attention(q, k, v, scale=scale)
        return self.proj(out.transpose(1, 2).reshape(n, length, channels))


class Fast3RBlock(Block):
    """Pre-norm ViT block ``x + attn(norm1(x)); x + mlp(norm2(x))`` (qkv bias, GELU MLP).

    ``forward(x [N, L, C], pos [N, L, 2] | None) -> [N, L, C]``.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float,
        norm_eps: float,
        rope: RotaryPositionEmbedding2D | None = None,
        inference_scale: float | None = None,
    ) -> None:
        super().__init__(dim, num_heads, mlp_ratio, init_values=None, rope=rope, norm_eps=norm_eps)
        # same attribute name, same place in the state dict: a drop-in replacement
        self.attn = Fast3RAttention(dim, num_heads, rope=rope, inference_scale=inference_scale)


class Fast3REncoder(nn.Module):
    """CroCo ViT encoder: ``patch_embed`` (conv p x p) -> ``enc_blocks`` (2D RoPE) -> ``enc_norm``.

    ``forward(images [N, 3, H, W] normalised to [-1, 1]) -> (tokens [N, h*w, C_enc],
    positions [N, h*w, 2])``, raster order; ``H, W`` multiples of ``patch_size``.
    """

    def __init__(self, config: Fast3RConfig) -> None:
        super().__init__()
        c = config
        self.patch_size = c.patch_size
        self.patch_embed = PatchEmbed(c.patch_size, 3, c.enc_embed_dim)
        self.rope = RotaryPositionEmbedding2D(c.rope_freq)
        self.enc_blocks = nn.ModuleList(
            Fast3RBlock(c.enc_embed_dim, c.enc_num_heads, c.mlp_ratio, ENC_NORM_EPS, self.rope)
            for _ in range(c.enc_depth)
        )
        self.enc_norm = nn.LayerNorm(c.enc_embed_dim, eps=ENC_NORM_EPS)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n, _, height, width = images.shape
        x = self.patch_embed(images)  # raises naming the patch size if H, W do not fit
        pos = grid_positions(n, height // self.patch_size, width // self.patch_size, images.device)
        for block in self.enc_blocks:
            x = block(x, pos=pos)
        return self.enc_norm(x), pos


def image_index_table(num: int, dim: int, device: torch.device | None = None) -> torch.Tensor:
    """``[num, dim]`` float32: the 1-D sin-cos embedding of indices ``0..num-1`` (base 10000):
    ``[sin(i * w_k), cos(i * w_k)]`` with ``w_k = 10000^(-2k/dim)``, computed in float64."""
    return sincos_embed_1d(dim, torch.arange(num, device=device), omega_0=IMAGE_INDEX_BASE)


class Fast3RDecoder(nn.Module):
    """The all-views fusion transformer.

    Tokens of all ``T`` views of a sample are concatenated (view-major) and attend to each other
    in every block; ``decoder_embed`` projects them to the decoder width and the image-index
    embedding ``image_idx_emb[ids[b, t]]`` is added to every token of view ``t``. No RoPE.

    ``image_idx_emb`` is a non-persistent buffer ``[num_image_ids, C_dec]`` (recomputed, never
    stored; `reset_buffers` rebuilds it, e.g. after loading on the meta device).

    ``forward(tokens [B, T, N, C_enc], image_ids [B, T] int64, keep_layers=None, taps=None,
    max_layer=None) -> dict[int, [B, T*N, C]]``: decoder output ``i`` for every kept ``i``
    (``None`` = all ``0..depth``): 0 is the input (the encoder output, before
    ``decoder_embed``), ``i`` the output of ``dec_blocks[i - 1]`` and ``depth`` the last block's
    output after ``dec_norm`` (Fast3R's ``final_output`` list). ``max_layer`` stops after that
    output.
    """

    def __init__(self, config: Fast3RConfig) -> None:
        super().__init__()
        c = config
        self.depth = c.dec_depth
        self.decoder_embed = nn.Linear(c.enc_embed_dim, c.dec_embed_dim, bias=True)
        scale = None
        if c.attn_bias_for_inference:
            head_dim = c.dec_embed_dim // c.dec_num_heads
            ratio = math.log(ATTN_BIAS_INFERENCE_SEQLEN) / math.log(ATTN_BIAS_TRAIN_SEQLEN)
            scale = head_dim**-0.5 * (ATTN_BIAS_GAMMA * ratio) ** 0.5
        self.dec_blocks = nn.ModuleList(
            Fast3RBlock(
                c.dec_embed_dim, c.dec_num_heads, c.mlp_ratio, DEC_BLOCK_NORM_EPS, None, scale
            )
            for _ in range(c.dec_depth)
        )
        self.register_buffer(
            "image_idx_emb", image_index_table(c.num_image_ids, c.dec_embed_dim), persistent=False
        )
        self.dec_norm = nn.LayerNorm(c.dec_embed_dim, eps=DEC_NORM_EPS)

    def reset_buffers(self, device: torch.device | str | None = None) -> None:
        """Recompute ``image_idx_emb`` (on ``device``, default the parameters' device)."""
        if device is None:
            device = self.decoder_embed.weight.device
        table = image_index_table(*self.image_idx_emb.shape, device=torch.device(device))
        self.image_idx_emb = table.to(self.decoder_embed.weight.dtype)

    def forward(
        self,
        tokens: torch.Tensor,
        image_ids: torch.Tensor,
        keep_layers: Iterable[int] | None = None,
        max_layer: int | None = None,
    ) -> dict[int, torch.Tensor]:
        b, t, n, channels = tokens.shape
        if image_ids.shape != (b, t):
            raise ValueError(f"image_ids must be [B, T] = {(b, t)}, got {tuple(image_ids.shape)}")
        last = self.depth if max_layer is None else int(max_layer)
        keep = set(range(self.depth + 1)) if keep_layers is None else {int(i) for i in keep_layers}
        x = tokens.reshape(b, t * n, channels)
        outputs: dict[int, torch.Tensor] = {}
        if 0 in keep:
            outputs[0] = x
        if last == 0:
            return outputs
        x = self.decoder_embed(x)
        index = self.image_idx_emb[image_ids.to(self.image_idx_emb.device)]  # [B, T, C]
        x = x + index.to(x.dtype)[:, :, None, :].expand(b, t, n, -1).reshape(b, t * n, -1)
        for i, block in enumerate(self.dec_blocks, start=1):
            x = block(x)
            if i == self.depth:
                x = self.dec_norm(x)
            if i in keep:
                outputs[i] = x
            if i >= last:
                break
        return outputs
