"""Transformer building blocks of the probe: 2D RoPE, attention with qk-norm, LayerScale blocks.

Token layout per frame: ``[camera, register x R, patch (h*w, row-major)]``. RoPE rotates only
patch tokens (special tokens get the identity rotation), with patch positions ``(y+1, x+1)`` as
VGGT does. Attention is `attention`: `torch.nn.functional.scaled_dot_product_attention`
(fused kernels) for long sequences, the plain matmul-softmax form for short ones on CPU.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: Largest attention matrix (``N * heads * L * L`` entries) computed as explicit matmul-softmax on
#: CPU (256 K entries = 0.5 MB in bf16). Measured on 2 threads, forward + backward in bf16: 0.87 ms
#: vs 4.1 ms for the fused kernel at 4 x 8 heads x 64 tokens (the probe's frame attention at the
#: small configuration), 2.8 vs 3.1 ms at 256 tokens; above it (the paper's 30x52 grids) the fused
#: kernel's memory savings matter more.
MATH_ATTENTION_MAX = 1 << 18


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``softmax(q k^T / sqrt(d)) v`` for ``[N, heads, L, d]`` inputs (no mask, no dropout).

    The same function either way: fused SDPA on GPUs and for large matrices, the explicit form
    for small ones on CPU, where the fused kernel's fixed cost (mostly in backward) dominates.
    """
    n, heads, length, _ = q.shape
    if q.device.type != "cpu" or n * heads * length * k.shape[-2] > MATH_ATTENTION_MAX:
        return F.scaled_dot_product_attention(q, k, v)
    scores = (q * q.shape[-1] ** -0.5) @ k.transpose(-1, -2)
    return scores.softmax(dim=-1).to(v.dtype) @ v


class RoPE2D(nn.Module):
    """2D rotary position embedding: half the head channels rotate with y, half with x.

    ``tables(h, w, num_special)`` returns ``cos, sin`` of shape ``[num_special + h*w, head_dim]``,
    computed once per (grid, device, dtype) and cached. The rotation of a ``[..., P, head_dim]``
    tensor is ``x * cos + rotate_half(x) * sin`` where ``rotate_half`` acts on each of the y and x
    halves separately (``[a, b] -> [-b, a]``).
    """

    def __init__(self, head_dim: int, base: float = 100.0):
        super().__init__()
        if head_dim % 4:
            raise ValueError(f"RoPE2D: head_dim must be a multiple of 4, got {head_dim}")
        self.head_dim = head_dim
        self.base = float(base)
        self._cache: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def tables(
        self, h: int, w: int, num_special: int, device: torch.device, dtype: torch.dtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        key = (h, w, num_special, device, dtype)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        quarter = self.head_dim // 4
        inv_freq = 1.0 / (self.base ** (torch.arange(quarter, dtype=torch.float32) / quarter))
        ys, xs = torch.meshgrid(
            torch.arange(h, dtype=torch.float32) + 1,
            torch.arange(w, dtype=torch.float32) + 1,
            indexing="ij",
        )
        ang_y = ys.reshape(-1, 1) * inv_freq  # [P, quarter]
        ang_x = xs.reshape(-1, 1) * inv_freq
        angles = torch.cat([ang_y, ang_y, ang_x, ang_x], dim=-1)  # [P, head_dim]
        special = torch.zeros(num_special, self.head_dim)
        angles = torch.cat([special, angles], dim=0)
        cos = angles.cos().to(device=device, dtype=dtype)
        sin = angles.sin().to(device=device, dtype=dtype)
        if len(self._cache) > 16:
            self._cache.clear()
        self._cache[key] = (cos, sin)
        return cos, sin

    @staticmethod
    def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """Rotate ``x [..., P, head_dim]`` with tables ``[P, head_dim]``."""
        q = x.shape[-1] // 4
        x0, x1, x2, x3 = x.split(q, dim=-1)
        rotated = torch.cat([-x1, x0, -x3, x2], dim=-1)
        return x * cos + rotated * sin


class Attention(nn.Module):
    """Multi-head self-attention with optional qk-norm (LayerNorm per head) and 2D RoPE."""

    def __init__(self, dim: int, num_heads: int, qk_norm: bool = True):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.q_norm = nn.LayerNorm(self.head_dim) if qk_norm else nn.Identity()
        self.k_norm = nn.LayerNorm(self.head_dim) if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim)

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,
        frames: int = 1,
    ) -> torch.Tensor:
        """``x [N, L, dim]`` -> ``[N, L, dim]``.

        ``rope``: ``(cos, sin)`` of shape ``[P, head_dim]`` with ``L = frames * P`` (global
        attention concatenates ``frames`` frames of P tokens each).
        """
        n, length, dim = x.shape
        qkv = self.qkv(x).view(n, length, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # [N, heads, L, head_dim]
        q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            cos, sin = rope
            if frames > 1:
                shape = (n, self.num_heads, frames, length // frames, self.head_dim)
                q = RoPE2D.rotate(q.reshape(shape), cos, sin).reshape(q.shape)
                k = RoPE2D.rotate(k.reshape(shape), cos, sin).reshape(k.shape)
            else:
                q = RoPE2D.rotate(q, cos, sin)
                k = RoPE2D.rotate(k, cos, sin)
        out = attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(n, length, dim))


class Mlp(nn.Module):
    """``Linear -> GELU -> Linear``."""

    def __init__(self, dim: int, hidden: int, out_dim: int | None = None):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, out_dim or dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class LayerScale(nn.Module):
    """Per-channel learnable scale, initialised to ``init_values``."""

    def __init__(self, dim: int, init_values: float):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init_values)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Block(nn.Module):
    """Pre-norm transformer block: ``x + ls1(attn(norm1(x))); x + ls2(mlp(norm2(x)))``."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        init_values: float = 0.01,
        qk_norm: bool = True,
    ):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads, qk_norm=qk_norm)
        self.ls1 = LayerScale(dim, init_values)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.ls2 = LayerScale(dim, init_values)

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,
        frames: int = 1,
    ) -> torch.Tensor:
        """``x [N, L, dim]`` -> ``[N, L, dim]`` (see `Attention.forward` for ``rope``/``frames``)."""
        x = x + self.ls1(self.attn(self.norm1(x), rope=rope, frames=frames))
        return x + self.ls2(self.mlp(self.norm2(x)))
