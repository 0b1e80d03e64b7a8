"""Transformer building blocks of VGGT: attention with qk-norm and 2D RoPE, LayerScale, the block,
and the DINOv2 patch embedder. Parameter names follow the public VGGT / DINOv2 code so that
checkpoints load by name.

All token tensors are ``[N, L, C]`` (batch, tokens, channels). Positions for RoPE are integer
``[N, L, 2]`` in ``(y, x)`` order (row, column of the patch grid); special tokens use ``(0, 0)``
and patch ``(i, j)`` uses ``(i + 1, j + 1)`` (VGGT's convention).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class Mlp(nn.Module):
    """``fc1 -> GELU -> fc2`` (ViT MLP). ``Mlp(in_features, hidden_features, out_features)``."""

    def __init__(
        self,
        in_features: int,
        hidden_features: int | None = None,
        out_features: int | None = None,
        bias: bool = True,
    ) -> None:
        super().__init__()
        hidden_features = hidden_features or in_features
        out_features = out_features or in_features
        self.fc1 = nn.Linear(in_features, hidden_features, bias=bias)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_features, out_features, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class LayerScale(nn.Module):
    """Per-channel learnable scale ``gamma`` (initialised to ``init_values``)."""

    def __init__(self, dim: int, init_values: float = 1e-5) -> None:
        super().__init__()
        self.gamma = nn.Parameter(init_values * torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


def grid_positions(
    batch: int, height: int, width: int, device: torch.device | None = None
) -> torch.Tensor:
    """``[batch, height * width, 2]`` int64 ``(y, x)`` positions of a patch grid in raster order."""
    ys = torch.arange(height, device=device)
    xs = torch.arange(width, device=device)
    positions = torch.cartesian_prod(ys, xs)
    return positions.view(1, height * width, 2).expand(batch, -1, -1).clone()


class RotaryPositionEmbedding2D(nn.Module):
    """2D rotary position embedding (VGGT / CroCo style).

    The head features are split in two halves: the first half is rotated by the y position, the
    second by the x position, each with standard 1D RoPE (``rotate_half`` layout) of base
    ``frequency`` (VGGT: 100). No parameters.

    ``forward(tokens [N, heads, L, D], positions [N, L, 2] int64 (y, x)) -> [N, heads, L, D]``;
    ``D`` must be a multiple of 4.
    """

    def __init__(self, frequency: float = 100.0, scaling_factor: float = 1.0) -> None:
        super().__init__()
        self.base_frequency = float(frequency)
        self.scaling_factor = float(scaling_factor)
        self._cache: dict[tuple[int, int, torch.device, torch.dtype], tuple[torch.Tensor, ...]] = {}

    def _components(
        self, dim: int, length: int, device: torch.device, dtype: torch.dtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        key = (dim, length, device, dtype)
        if key not in self._cache:
            exponents = torch.arange(0, dim, 2, device=device).float() / dim
            inv_freq = 1.0 / (self.base_frequency**exponents)
            positions = torch.arange(length, device=device, dtype=inv_freq.dtype)
            angles = torch.einsum("i,j->ij", positions, inv_freq).to(dtype)
            angles = torch.cat((angles, angles), dim=-1)
            self._cache[key] = (angles.cos().to(dtype), angles.sin().to(dtype))
        cos, sin = self._cache[key]
        return cos, sin

    @staticmethod
    def _rotate_half(x: torch.Tensor) -> torch.Tensor:
        half = x.shape[-1] // 2
        return torch.cat((-x[..., half:], x[..., :half]), dim=-1)

    def _rope_1d(
        self, tokens: torch.Tensor, positions: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
    ) -> torch.Tensor:
        cos_p = F.embedding(positions, cos)[:, None]
        sin_p = F.embedding(positions, sin)[:, None]
        return tokens * cos_p + self._rotate_half(tokens) * sin_p

    def forward(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        if tokens.shape[-1] % 4:
            raise ValueError(f"RoPE 2D: head width must be a multiple of 4, got {tokens.shape[-1]}")
        if positions.shape[-1] != 2 or positions.shape[:2] != (tokens.shape[0], tokens.shape[2]):
            raise ValueError(
                f"RoPE 2D: positions must be [N, L, 2] matching tokens {tuple(tokens.shape)}, "
                f"got {tuple(positions.shape)}"
            )
        half = tokens.shape[-1] // 2
        length = int(positions.max()) + 1
        cos, sin = self._components(half, length, tokens.device, tokens.dtype)
        vertical, horizontal = tokens.chunk(2, dim=-1)
        vertical = self._rope_1d(vertical, positions[..., 0], cos, sin)
        horizontal = self._rope_1d(horizontal, positions[..., 1], cos, sin)
        return torch.cat((vertical, horizontal), dim=-1)


class Attention(nn.Module):
    """Multi-head self-attention with optional qk LayerNorm and 2D RoPE (SDPA kernel).

    Parameters: ``qkv`` (Linear C -> 3C), ``q_norm`` / ``k_norm`` (LayerNorm over the head width,
    only when ``qk_norm``), ``proj`` (Linear C -> C). ``forward(x [N, L, C], pos [N, L, 2] | None)``.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        qkv_bias: bool = True,
        proj_bias: bool = True,
        qk_norm: bool = False,
        rope: RotaryPositionEmbedding2D | None = None,
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"Attention: dim ({dim}) must be divisible by num_heads ({num_heads})")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.q_norm = nn.LayerNorm(self.head_dim) if qk_norm else nn.Identity()
        self.k_norm = nn.LayerNorm(self.head_dim) if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim, bias=proj_bias)
        self.rope = rope

    def forward(self, x: torch.Tensor, pos: torch.Tensor | None = None) -> torch.Tensor:
        n, length, channels = x.shape
        qkv = self.qkv(x).reshape(n, length, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        if self.rope is not None and pos is not None:
            q = self.rope(q, pos)
            k = self.rope(k, pos)
        out = F.scaled_dot_product_attention(q, k, v)
        out = out.transpose(1, 2).reshape(n, length, channels)
        return self.proj(out)


class Block(nn.Module):
    """Pre-norm transformer block: ``x + ls1(attn(norm1(x))); x + ls2(mlp(norm2(x)))``.

    Args:
        dim: token width C. num_heads: attention heads. mlp_ratio: MLP hidden width / C.
        qkv_bias, proj_bias, ffn_bias: biases of the projections.
        init_values: LayerScale init (``None`` or 0 = no LayerScale; VGGT uses 0.01, DINOv2 1.0).
        qk_norm: LayerNorm on queries and keys per head (VGGT aggregator: True).
        rope: a shared `RotaryPositionEmbedding2D` or ``None``.
        norm_eps: LayerNorm epsilon (1e-5 in VGGT's own blocks, 1e-6 in DINOv2).

    ``forward(x [N, L, C], pos [N, L, 2] | None) -> [N, L, C]``.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        proj_bias: bool = True,
        ffn_bias: bool = True,
        init_values: float | None = None,
        qk_norm: bool = False,
        rope: RotaryPositionEmbedding2D | None = None,
        norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, qkv_bias, proj_bias, qk_norm=qk_norm, rope=rope)
        self.ls1: nn.Module = LayerScale(dim, init_values) if init_values else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), bias=ffn_bias)
        self.ls2: nn.Module = LayerScale(dim, init_values) if init_values else nn.Identity()

    def forward(self, x: torch.Tensor, pos: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x), pos=pos))
        return x + self.ls2(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    """Non-overlapping patches by a strided conv ``proj``: ``[N, 3, H, W] -> [N, H/p * W/p, C]``."""

    def __init__(self, patch_size: int = 14, in_chans: int = 3, embed_dim: int = 1024) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        _, _, height, width = images.shape
        p = self.patch_size
        if height % p or width % p:
            raise ValueError(
                f"image size {height}x{width} must be a multiple of the patch size {p}"
            )
        return self.proj(images).flatten(2).transpose(1, 2)


class DinoVisionTransformer(nn.Module):
    """The DINOv2-with-registers ViT used by VGGT as its patch embedder.

    Parameters (DINOv2 names): ``cls_token [1, 1, C]``, ``pos_embed [1, 1 + (img/p)^2, C]``,
    ``register_tokens [1, R, C]``, ``mask_token [1, C]`` (unused at inference), ``patch_embed``,
    ``blocks.{i}`` (LayerScale 1.0, LayerNorm eps 1e-6, no qk-norm), ``norm``.

    ``forward(images [N, 3, H, W] normalised) -> [N, H/p * W/p, C]``: the normalised patch tokens
    (DINOv2's ``x_norm_patchtokens``). The position embedding is bicubically resized (with
    antialiasing) to the patch grid when it differs from ``img_size / patch_size``.
    """

    def __init__(
        self,
        img_size: int = 518,
        patch_size: int = 14,
        embed_dim: int = 1024,
        depth: int = 24,
        num_heads: int = 16,
        mlp_ratio: float = 4.0,
        num_register_tokens: int = 4,
        init_values: float = 1.0,
    ) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.num_register_tokens = num_register_tokens
        grid = img_size // patch_size
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid + 1, embed_dim))
        self.register_tokens = nn.Parameter(torch.zeros(1, num_register_tokens, embed_dim))
        self.mask_token = nn.Parameter(torch.zeros(1, embed_dim), requires_grad=False)
        self.patch_embed = PatchEmbed(patch_size, 3, embed_dim)
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio, init_values=init_values, norm_eps=1e-6)
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        nn.init.normal_(self.register_tokens, std=1e-6)

    def _position_embedding(self, grid_h: int, grid_w: int, dtype: torch.dtype) -> torch.Tensor:
        num_pos = self.pos_embed.shape[1] - 1
        side = math.isqrt(num_pos)
        if grid_h == side and grid_w == side:
            return self.pos_embed.to(dtype)
        pos = self.pos_embed.float()
        patch_pos = pos[:, 1:].reshape(1, side, side, -1).permute(0, 3, 1, 2)
        patch_pos = F.interpolate(
            patch_pos, size=(grid_h, grid_w), mode="bicubic", antialias=True, align_corners=False
        )
        patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(1, grid_h * grid_w, -1)
        return torch.cat((pos[:, :1], patch_pos), dim=1).to(dtype)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        n, _, height, width = images.shape
        x = self.patch_embed(images)
        x = torch.cat((self.cls_token.expand(n, -1, -1).to(x.dtype), x), dim=1)
        grid_h, grid_w = height // self.patch_size, width // self.patch_size
        x = x + self._position_embedding(grid_h, grid_w, x.dtype)
        if self.num_register_tokens:
            registers = self.register_tokens.expand(n, -1, -1).to(x.dtype)
            x = torch.cat((x[:, :1], registers, x[:, 1:]), dim=1)
        for block in self.blocks:
            x = block(x)
        x = self.norm(x)
        return x[:, 1 + self.num_register_tokens :]
