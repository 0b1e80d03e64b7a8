"""Building blocks of the Open-Sora 2.0 MMDiT (a Flux-style multimodal diffusion transformer).

Written from the computation of hpcaitech/Open-Sora ``opensora/models/mmdit/{layers,math}.py``
(parameter names kept so the release's state dict loads by name):

- `timestep_embedding`: sinusoid of ``1000 t`` (cos half first), 256 wide.
- `MLPEmbedder`: ``out_layer(silu(in_layer(x)))`` (``time_in``, ``vector_in``).
- `QKNorm`: per-head RMSNorm of queries and keys (``query_norm.scale``, ``key_norm.scale``,
  eps 1e-6, statistics in float32).
- `Modulation`: ``lin(silu(vec))`` split into (shift, scale, gate) x 1 (single) or x 2 (double).
- `RotaryEmbedding3D`: RoPE over (t, h, w) position ids; text tokens have ids (0, 0, 0).
- `DoubleStreamBlock`: image and text streams with their own modulation / projections / MLPs and
  one joint attention over ``[text, image]`` tokens; returns ``(img, txt)``.
- `SingleStreamBlock`: one stream over ``[text, image]`` tokens; attention and MLP in parallel
  (``v_mlp`` holds v and the MLP input, ``linear2`` maps ``attn ⊕ gelu(mlp)`` back).
- `LastLayer`: adaLN (shift, scale) + ``linear`` to the packed latent width.
- `pack` / `unpack`: ``[B, C, T, H, W] <-> [B, T*(H/p)*(W/p), C*p*p]`` (``c ph pw`` order), and
  `position_ids`, the (t, h, w) ids of the packed tokens.

LayerNorms have no affine parameters (eps 1e-6); the MLPs use tanh-approximated GELU.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Rope = tuple[Tensor, Tensor]


# --------------------------------------------------------------------------- embeddings
def timestep_embedding(
    t: Tensor, dim: int = 256, max_period: float = 10_000.0, time_factor: float = 1000.0
) -> Tensor:
    """Sinusoidal embedding ``[N, dim]`` (float32) of timesteps ``t`` ``[N]`` in [0, 1].

    ``args = time_factor * t * exp(-log(max_period) * k / (dim / 2))``; output ``cos(args) ⊕
    sin(args)`` (zero-padded when ``dim`` is odd), as Flux / Open-Sora.
    """
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half
    )
    args = (time_factor * t.float())[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class MLPEmbedder(nn.Module):
    """``[N, in_dim] -> [N, hidden_dim]``: ``out_layer(silu(in_layer(x)))``."""

    def __init__(self, in_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.in_layer = nn.Linear(in_dim, hidden_dim, bias=True)
        self.silu = nn.SiLU()
        self.out_layer = nn.Linear(hidden_dim, hidden_dim, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.out_layer(self.silu(self.in_layer(x)))


class RMSNorm(nn.Module):
    """RMSNorm over the last dim (eps 1e-6, statistics in float32, weight ``scale``)."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.scale = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        rrms = torch.rsqrt(x.float().pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return (x.float() * rrms).to(x.dtype) * self.scale


class QKNorm(nn.Module):
    """RMSNorm of queries and keys ``[B, H, L, D]``, each cast back to the values' dtype."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.query_norm = RMSNorm(dim)
        self.key_norm = RMSNorm(dim)

    def forward(self, q: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        return self.query_norm(q).to(v), self.key_norm(k).to(v)


class Modulation(nn.Module):
    """``vec [B, C]`` -> (shift, scale, gate) triples, each ``[B, 1, C]``: 2 triples if double."""

    def __init__(self, dim: int, double: bool) -> None:
        super().__init__()
        self.multiplier = 6 if double else 3
        self.lin = nn.Linear(dim, self.multiplier * dim, bias=True)

    def forward(self, vec: Tensor) -> list[tuple[Tensor, Tensor, Tensor]]:
        out = self.lin(F.silu(vec))[:, None, :].chunk(self.multiplier, dim=-1)
        return [tuple(out[i : i + 3]) for i in range(0, self.multiplier, 3)]  # type: ignore[misc]


def _modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    return (1 + scale) * x + shift


# --------------------------------------------------------------------------- RoPE
class RotaryEmbedding3D(nn.Module):
    """RoPE tables for (t, h, w) position ids. No parameters.

    ``forward(ids [B, L, 3]) -> (cos, sin)``, each ``[B, 1, L, D/2]`` float32 with ``D =
    sum(axes_dim)``. Frequency ``j`` of axis ``a`` is ``theta ** (-2 j / axes_dim[a])``; the axes'
    frequencies are concatenated in (t, h, w) order (so with (16, 56, 56): pairs 0-7 rotate by the
    frame index, 8-35 by the row, 36-63 by the column).
    """

    def __init__(self, axes_dim: tuple[int, ...], theta: float, pairing: str = "half") -> None:
        super().__init__()
        if pairing not in ("half", "interleaved"):
            raise ValueError(f"pairing must be 'half' or 'interleaved', got {pairing!r}")
        self.axes_dim = tuple(int(d) for d in axes_dim)
        self.theta = float(theta)
        self.pairing = pairing

    def forward(self, ids: Tensor) -> Rope:
        if ids.ndim != 3 or ids.shape[-1] != len(self.axes_dim):
            raise ValueError(f"ids must be [B, L, {len(self.axes_dim)}], got {tuple(ids.shape)}")
        angles = []
        for axis, dim in enumerate(self.axes_dim):
            scale = torch.arange(0, dim, 2, dtype=torch.float64, device=ids.device) / dim
            omega = 1.0 / (self.theta**scale)
            angles.append(ids[..., axis].double()[..., None] * omega)
        angle = torch.cat(angles, dim=-1).float()[:, None]  # [B, 1, L, D/2]
        return torch.cos(angle), torch.sin(angle)


def apply_rope(x: Tensor, rope: Rope, pairing: str = "half") -> Tensor:
    """Rotate ``x`` ``[B, H, L, D]`` by the angles of ``rope`` (in float32; result in x's dtype).

    ``"half"``: pair ``j`` is ``(x[j], x[j + D/2])`` (the Liger RoPE kernel Open-Sora 2.0 was
    trained with); ``"interleaved"``: pair ``j`` is ``(x[2j], x[2j+1])`` (Flux). Each pair
    ``(a, b)`` becomes ``(a cos - b sin, b cos + a sin)``.
    """
    cos, sin = rope
    xf = x.float()
    if pairing == "half":
        a, b = xf.chunk(2, dim=-1)
        return torch.cat([a * cos - b * sin, b * cos + a * sin], dim=-1).to(x.dtype)
    pairs = xf.reshape(*xf.shape[:-1], -1, 2)
    a, b = pairs[..., 0], pairs[..., 1]
    out = torch.stack([a * cos - b * sin, b * cos + a * sin], dim=-1)
    return out.reshape(x.shape).to(x.dtype)


def attention(q: Tensor, k: Tensor, v: Tensor, rope: Rope, pairing: str) -> Tensor:
    """Softmax attention (scale ``1/sqrt(D)``) of ``[B, H, L, D]`` after RoPE -> ``[B, L, H*D]``."""
    q, k = apply_rope(q, rope, pairing), apply_rope(k, rope, pairing)
    out = F.scaled_dot_product_attention(q, k, v)
    b, h, length, d = out.shape
    return out.transpose(1, 2).reshape(b, length, h * d)


def _heads(x: Tensor, num_heads: int) -> Tensor:
    """``[B, L, H*D] -> [B, H, L, D]``."""
    b, length, c = x.shape
    return x.view(b, length, num_heads, c // num_heads).transpose(1, 2)


# --------------------------------------------------------------------------- blocks
class SelfAttention(nn.Module):
    """The projections of one stream of a double block: unfused ``q_proj``/``k_proj``/``v_proj``,
    `QKNorm` ``norm``, output ``proj`` (the attention itself runs jointly in the block)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.q_proj = nn.Linear(dim, dim, bias=qkv_bias)
        self.k_proj = nn.Linear(dim, dim, bias=qkv_bias)
        self.v_proj = nn.Linear(dim, dim, bias=qkv_bias)
        self.norm = QKNorm(dim // num_heads)
        self.proj = nn.Linear(dim, dim)

    def qkv(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``x [B, L, C]`` -> normalised q, k and v, each ``[B, H, L, D]``."""
        q = _heads(self.q_proj(x), self.num_heads)
        k = _heads(self.k_proj(x), self.num_heads)
        v = _heads(self.v_proj(x), self.num_heads)
        q, k = self.norm(q, k, v)
        return q, k, v


def _mlp(hidden: int, mlp_hidden: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(hidden, mlp_hidden, bias=True),
        nn.GELU(approximate="tanh"),
        nn.Linear(mlp_hidden, hidden, bias=True),
    )


class DoubleStreamBlock(nn.Module):
    """``(img [B, Li, C], txt [B, Lt, C], vec [B, C], rope) -> (img, txt)``.

    Each stream: ``x_mod = (1 + scale1) LN(x) + shift1``; q, k, v of both streams are joined as
    ``[text, image]`` for one attention (``rope`` covers that joined sequence); then
    ``x += gate1 * proj(attn)`` and ``x += gate2 * mlp((1 + scale2) LN(x) + shift2)``.
    """

    def __init__(
        self, hidden_size: int, num_heads: int, mlp_ratio: float, qkv_bias: bool, pairing: str
    ) -> None:
        super().__init__()
        mlp_hidden = int(hidden_size * mlp_ratio)
        self.num_heads = num_heads
        self.pairing = pairing
        self.img_mod = Modulation(hidden_size, double=True)
        self.img_norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.img_attn = SelfAttention(hidden_size, num_heads, qkv_bias)
        self.img_norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.img_mlp = _mlp(hidden_size, mlp_hidden)
        self.txt_mod = Modulation(hidden_size, double=True)
        self.txt_norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.txt_attn = SelfAttention(hidden_size, num_heads, qkv_bias)
        self.txt_norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.txt_mlp = _mlp(hidden_size, mlp_hidden)

    def forward(self, img: Tensor, txt: Tensor, vec: Tensor, rope: Rope) -> tuple[Tensor, Tensor]:
        (img_shift1, img_scale1, img_gate1), (img_shift2, img_scale2, img_gate2) = self.img_mod(vec)
        (txt_shift1, txt_scale1, txt_gate1), (txt_shift2, txt_scale2, txt_gate2) = self.txt_mod(vec)
        img_q, img_k, img_v = self.img_attn.qkv(
            _modulate(self.img_norm1(img), img_shift1, img_scale1)
        )
        txt_q, txt_k, txt_v = self.txt_attn.qkv(
            _modulate(self.txt_norm1(txt), txt_shift1, txt_scale1)
        )
        joint = attention(
            torch.cat((txt_q, img_q), dim=2),
            torch.cat((txt_k, img_k), dim=2),
            torch.cat((txt_v, img_v), dim=2),
            rope,
            self.pairing,
        )
        n_txt = txt.shape[1]
        txt_attn, img_attn = joint[:, :n_txt], joint[:, n_txt:]
        img = img + img_gate1 * self.img_attn.proj(img_attn)
        img = img + img_gate2 * self.img_mlp(_modulate(self.img_norm2(img), img_shift2, img_scale2))
        txt = txt + txt_gate1 * self.txt_attn.proj(txt_attn)
        txt = txt + txt_gate2 * self.txt_mlp(_modulate(self.txt_norm2(txt), txt_shift2, txt_scale2))
        return img, txt


class SingleStreamBlock(nn.Module):
    """``(x [B, Lt + Li, C], vec [B, C], rope) -> x`` (``[text, image]`` tokens throughout).

    ``x_mod = (1 + scale) LN(x) + shift``; q = ``q_proj``, k = ``k_proj``, (v, m) = split of
    ``v_mlp``; ``x += gate * linear2(attn(q, k, v) ⊕ gelu(m))``.
    """

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float, pairing: str) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.num_heads = num_heads
        self.mlp_hidden_dim = int(hidden_size * mlp_ratio)
        self.pairing = pairing
        self.q_proj = nn.Linear(hidden_size, hidden_size)
        self.k_proj = nn.Linear(hidden_size, hidden_size)
        self.v_mlp = nn.Linear(hidden_size, hidden_size + self.mlp_hidden_dim)
        self.linear2 = nn.Linear(hidden_size + self.mlp_hidden_dim, hidden_size)
        self.norm = QKNorm(hidden_size // num_heads)
        self.pre_norm = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.mlp_act = nn.GELU(approximate="tanh")
        self.modulation = Modulation(hidden_size, double=False)

    def forward(self, x: Tensor, vec: Tensor, rope: Rope) -> Tensor:
        ((shift, scale, gate),) = self.modulation(vec)
        x_mod = _modulate(self.pre_norm(x), shift, scale)
        v, mlp = torch.split(self.v_mlp(x_mod), [self.hidden_size, self.mlp_hidden_dim], dim=-1)
        q = _heads(self.q_proj(x_mod), self.num_heads)
        k = _heads(self.k_proj(x_mod), self.num_heads)
        v = _heads(v, self.num_heads)
        q, k = self.norm(q, k, v)
        attn = attention(q, k, v, rope, self.pairing)
        return x + gate * self.linear2(torch.cat((attn, self.mlp_act(mlp)), dim=2))


class LastLayer(nn.Module):
    """``(x [B, L, C], vec [B, C]) -> [B, L, out]``: ``linear((1 + scale) LN(x) + shift)`` with
    ``(shift, scale) = adaLN_modulation(vec)`` (SiLU then Linear; shift first)."""

    def __init__(self, hidden_size: int, out_channels: int) -> None:
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden_size, out_channels, bias=True)
        self.adaLN_modulation = nn.Sequential(
            nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size, bias=True)
        )

    def forward(self, x: Tensor, vec: Tensor) -> Tensor:
        shift, scale = self.adaLN_modulation(vec).chunk(2, dim=1)
        return self.linear(_modulate(self.norm_final(x), shift[:, None], scale[:, None]))


# --------------------------------------------------------------------------- packing
def pack(x: Tensor, patch_size: int = 2) -> Tensor:
    """``[B, C, T, H, W] -> [B, T*(H/p)*(W/p), C*p*p]``: tokens in (t, h, w) order, channels in
    (c, ph, pw) order (``b c t (h ph) (w pw) -> b (t h w) (c ph pw)``)."""
    b, c, t, h, w = x.shape
    p = patch_size
    if h % p or w % p:
        raise ValueError(f"latent size {h}x{w} is not a multiple of the patch size {p}")
    x = x.reshape(b, c, t, h // p, p, w // p, p)
    x = x.permute(0, 2, 3, 5, 1, 4, 6)  # b t h w c ph pw
    return x.reshape(b, t * (h // p) * (w // p), c * p * p)


def unpack(x: Tensor, num_frames: int, height: int, width: int, patch_size: int = 2) -> Tensor:
    """Inverse of `pack`: ``[B, T*h*w, C*p*p] -> [B, C, T, h*p, w*p]`` for packed grid
    ``(num_frames, height, width)`` = (T, h, w)."""
    b, length, cpp = x.shape
    p = patch_size
    if length != num_frames * height * width:
        raise ValueError(f"{length} tokens do not make a {num_frames}x{height}x{width} grid")
    c = cpp // (p * p)
    x = x.reshape(b, num_frames, height, width, c, p, p)
    x = x.permute(0, 4, 1, 2, 5, 3, 6)  # b c t h ph w pw
    return x.reshape(b, c, num_frames, height * p, width * p)


def position_ids(
    num_frames: int, height: int, width: int, device: torch.device | str | None = None
) -> Tensor:
    """``[T*h*w, 3]`` float32 (t, h, w) ids of packed tokens in (t, h, w) order."""
    t = torch.arange(num_frames, device=device, dtype=torch.float32)
    h = torch.arange(height, device=device, dtype=torch.float32)
    w = torch.arange(width, device=device, dtype=torch.float32)
    grid = torch.stack(torch.meshgrid(t, h, w, indexing="ij"), dim=-1)
    return grid.reshape(-1, 3)
