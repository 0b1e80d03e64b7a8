"""VGGT's track head: a DPT feature extractor plus a CoTracker-style iterative tracker.

Parameter names follow the public VGGT code (``heads/track_head.py``, ``track_modules/``), including
its spelling ``virual_tracks``. Attention uses `torch.nn.functional.scaled_dot_product_attention`
through `MultiheadAttention`, a drop-in for ``nn.MultiheadAttention(batch_first=True)`` with the
same parameter names (``in_proj_weight``, ``in_proj_bias``, ``out_proj``).

Coordinates are pixels ``(x, y)`` of the input images (pixel centres at integers).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from vfm3d.models.vggt.heads import DPTHead, TokenLayers
from vfm3d.models.vggt.layers import Mlp


class MultiheadAttention(nn.Module):
    """``nn.MultiheadAttention(embed_dim, num_heads, batch_first=True)`` without masks, on SDPA.

    ``forward(query [N, Lq, E], key [N, Lk, E], value [N, Lk, E]) -> [N, Lq, E]``.
    """

    def __init__(self, embed_dim: int, num_heads: int) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(
                f"embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})"
            )
        self.num_heads = num_heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * embed_dim, embed_dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * embed_dim))
        self.out_proj = nn.Linear(embed_dim, embed_dim)
        nn.init.xavier_uniform_(self.in_proj_weight)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        n, length, dim = x.shape
        return x.view(n, length, self.num_heads, dim // self.num_heads).transpose(1, 2)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        w_q, w_k, w_v = self.in_proj_weight.chunk(3)
        b_q, b_k, b_v = self.in_proj_bias.chunk(3)
        q = self._heads(F.linear(query, w_q, b_q))
        k = self._heads(F.linear(key, w_k, b_k))
        v = self._heads(F.linear(value, w_v, b_v))
        out = F.scaled_dot_product_attention(q, k, v)
        out = out.transpose(1, 2).reshape(query.shape)
        return self.out_proj(out)


class AttnBlock(nn.Module):
    """Self-attention block of the update-former: ``x = norm1(x); x += attn(x); x += mlp(norm2(x))``
    (the residual starts from the *normalised* input, as in VGGT)."""

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_size)
        self.norm2 = nn.LayerNorm(hidden_size)
        self.attn = MultiheadAttention(hidden_size, num_heads)
        self.mlp = Mlp(hidden_size, int(hidden_size * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x)
        x = x + self.attn(x, x, x)
        return x + self.mlp(self.norm2(x))


class CrossAttnBlock(nn.Module):
    """Cross-attention block: ``x = norm1(x); x += attn(x, norm_context(ctx)); x += mlp(norm2(x))``."""

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_size)
        self.norm_context = nn.LayerNorm(hidden_size)
        self.norm2 = nn.LayerNorm(hidden_size)
        self.cross_attn = MultiheadAttention(hidden_size, num_heads)
        self.mlp = Mlp(hidden_size, int(hidden_size * mlp_ratio))

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x)
        context = self.norm_context(context)
        x = x + self.cross_attn(x, context, context)
        return x + self.mlp(self.norm2(x))


class UpdateFormer(nn.Module):
    """Time attention per track interleaved with space attention through virtual tracks.

    ``forward(x [B, N, S, input_dim]) -> [B, N, S, output_dim]``.
    """

    def __init__(
        self,
        depth: int = 6,
        input_dim: int = 388,
        hidden_size: int = 384,
        num_heads: int = 8,
        output_dim: int = 130,
        mlp_ratio: float = 4.0,
        num_virtual_tracks: int = 64,
    ) -> None:
        super().__init__()
        self.num_virtual_tracks = num_virtual_tracks
        self.input_norm = nn.LayerNorm(input_dim)
        self.input_transform = nn.Linear(input_dim, hidden_size)
        self.output_norm = nn.LayerNorm(hidden_size)
        self.flow_head = nn.Linear(hidden_size, output_dim)
        self.virual_tracks = nn.Parameter(torch.randn(1, num_virtual_tracks, 1, hidden_size))
        self.time_blocks = nn.ModuleList(
            AttnBlock(hidden_size, num_heads, mlp_ratio) for _ in range(depth)
        )
        self.space_virtual_blocks = nn.ModuleList(
            AttnBlock(hidden_size, num_heads, mlp_ratio) for _ in range(depth)
        )
        self.space_point2virtual_blocks = nn.ModuleList(
            CrossAttnBlock(hidden_size, num_heads, mlp_ratio) for _ in range(depth)
        )
        self.space_virtual2point_blocks = nn.ModuleList(
            CrossAttnBlock(hidden_size, num_heads, mlp_ratio) for _ in range(depth)
        )
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.trunc_normal_(self.flow_head.weight, std=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.input_transform(self.input_norm(x))
        init_tokens = tokens
        b, _, s, _ = tokens.shape
        tokens = torch.cat([tokens, self.virual_tracks.repeat(b, 1, s, 1).to(tokens.dtype)], dim=1)
        _, n, _, c = tokens.shape
        nv = self.num_virtual_tracks
        for i, time_block in enumerate(self.time_blocks):
            tokens = time_block(tokens.reshape(b * n, s, c)).view(b, n, s, c)
            space = tokens.permute(0, 2, 1, 3).reshape(b * s, n, c)
            points, virtual = space[:, : n - nv], space[:, n - nv :]
            virtual = self.space_virtual2point_blocks[i](virtual, points)
            virtual = self.space_virtual_blocks[i](virtual)
            points = self.space_point2virtual_blocks[i](points, virtual)
            space = torch.cat([points, virtual], dim=1)
            tokens = space.view(b, s, n, c).permute(0, 2, 1, 3)
        tokens = tokens[:, : n - nv] + init_tokens
        return self.flow_head(self.output_norm(tokens))


# ---------------------------------------------------------------------- sampling helpers
def bilinear_sample(
    inputs: torch.Tensor, coords: torch.Tensor, padding_mode: str = "border"
) -> torch.Tensor:
    """``grid_sample`` with pixel coordinates: ``inputs [N, C, H, W]``, ``coords [N, Ho, Wo, 2]``
    ``(x, y)`` in pixels (align_corners) -> ``[N, C, Ho, Wo]``."""
    height, width = inputs.shape[-2:]
    scale = torch.tensor(
        [2 / max(width - 1, 1), 2 / max(height - 1, 1)], device=inputs.device, dtype=inputs.dtype
    )
    grid = coords.detach().to(inputs.dtype) * scale - 1
    return F.grid_sample(inputs, grid, align_corners=True, padding_mode=padding_mode)


def sample_features(fmaps: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """``fmaps [B, C, H, W]`` at ``coords [B, N, 2]`` (pixels) -> ``[B, N, C]``."""
    feats = bilinear_sample(fmaps, coords.unsqueeze(2))
    return feats.squeeze(-1).permute(0, 2, 1)


def sincos_embed_2d_xy(xy: torch.Tensor, dim: int) -> torch.Tensor:
    """``[B, N, 2]`` -> ``[B, N, 2 * dim]`` interleaved sin/cos of x then y (CoTracker style)."""
    div = torch.arange(0, dim, 2, device=xy.device, dtype=torch.float32) * (1000.0 / dim)
    parts = []
    for axis in range(2):
        angle = xy[..., axis : axis + 1].float() * div
        pe = torch.stack([torch.sin(angle), torch.cos(angle)], dim=-1).flatten(-2)
        parts.append(pe)
    return torch.cat(parts, dim=-1)


def sincos_grid_embed(dim: int, height: int, width: int) -> torch.Tensor:
    """``[1, dim, H, W]`` 2D sin-cos embedding: first half from x (column), second from y."""

    def one_d(half: int, pos: torch.Tensor) -> torch.Tensor:
        omega = torch.arange(half // 2, dtype=torch.float64) / (half / 2.0)
        omega = 1.0 / 10000**omega
        angles = torch.einsum("m,d->md", pos.reshape(-1).double(), omega)
        return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1).float()

    rows = torch.arange(height, dtype=torch.float32)
    cols = torch.arange(width, dtype=torch.float32)
    ys, xs = torch.meshgrid(rows, cols, indexing="ij")
    emb = torch.cat([one_d(dim // 2, xs), one_d(dim // 2, ys)], dim=1)
    return emb.reshape(1, height, width, dim).permute(0, 3, 1, 2)


class CorrBlock:
    """Correlation pyramid of ``fmaps [B, S, C, H, W]`` sampled in a ``(2r+1)^2`` window."""

    def __init__(self, fmaps: torch.Tensor, num_levels: int, radius: int) -> None:
        self.radius = radius
        self.pyramid = [fmaps]
        for _ in range(num_levels - 1):
            b, s, c, h, w = self.pyramid[-1].shape
            pooled = F.avg_pool2d(self.pyramid[-1].reshape(b * s, c, h, w), 2, stride=2)
            self.pyramid.append(pooled.reshape(b, s, c, *pooled.shape[-2:]))
        r = radius
        offsets = torch.linspace(-r, r, 2 * r + 1, device=fmaps.device, dtype=fmaps.dtype)
        # (dy, dx) stacked and added to (x, y) coordinates, exactly as VGGT / CoTracker do.
        self.delta = torch.stack(torch.meshgrid(offsets, offsets, indexing="ij"), dim=-1)

    def sample(self, targets: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
        """``targets [B, S, N, C]``, ``coords [B, S, N, 2]`` -> ``[B, S, N, levels * (2r+1)^2]``."""
        b, s, n, _ = targets.shape
        window = 2 * self.radius + 1
        out = []
        for level, fmaps in enumerate(self.pyramid):
            _, _, c, h, w = fmaps.shape
            corrs = torch.matmul(targets, fmaps.view(b, s, c, h * w)) / math.sqrt(c)
            centre = coords.reshape(b * s * n, 1, 1, 2) / (2**level)
            grid = centre + self.delta.to(coords.dtype).view(1, window, window, 2)
            sampled = bilinear_sample(corrs.reshape(b * s * n, 1, h, w), grid, padding_mode="zeros")
            out.append(sampled.view(b, s, n, -1))
        return torch.cat(out, dim=-1)


class TrackerPredictor(nn.Module):
    """Iterative point tracker (VGGT ``BaseTrackerPredictor``).

    ``forward(query_points [B, N, 2], fmaps [B, S, C, H', W'], iters) ->
    (coords list of [B, S, N, 2] in input pixels, vis [B, S, N], conf [B, S, N] | None)``.
    ``stride`` = input pixels per feature-map pixel.
    """

    def __init__(
        self,
        stride: int = 2,
        corr_levels: int = 7,
        corr_radius: int = 4,
        latent_dim: int = 128,
        hidden_size: int = 384,
        depth: int = 6,
        num_heads: int = 8,
        num_virtual_tracks: int = 64,
        max_scale: int = 518,
        predict_conf: bool = True,
    ) -> None:
        super().__init__()
        self.stride = stride
        self.latent_dim = latent_dim
        self.corr_levels = corr_levels
        self.corr_radius = corr_radius
        self.max_scale = max_scale
        self.predict_conf = predict_conf
        self.flows_emb_dim = latent_dim // 2
        self.corr_mlp = Mlp(corr_levels * (2 * corr_radius + 1) ** 2, hidden_size, latent_dim)
        self.transformer_dim = 3 * latent_dim + 4
        self.query_ref_token = nn.Parameter(torch.randn(1, 2, self.transformer_dim))
        self.updateformer = UpdateFormer(
            depth=depth,
            input_dim=self.transformer_dim,
            hidden_size=hidden_size,
            num_heads=num_heads,
            output_dim=latent_dim + 2,
            num_virtual_tracks=num_virtual_tracks,
        )
        self.fmap_norm = nn.LayerNorm(latent_dim)
        self.ffeat_norm = nn.GroupNorm(1, latent_dim)
        self.ffeat_updater = nn.Sequential(nn.Linear(latent_dim, latent_dim), nn.GELU())
        self.vis_predictor = nn.Sequential(nn.Linear(latent_dim, 1))
        if predict_conf:
            self.conf_predictor = nn.Sequential(nn.Linear(latent_dim, 1))

    def forward(
        self, query_points: torch.Tensor, fmaps: torch.Tensor, iters: int = 4
    ) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor | None]:
        b, n, _ = query_points.shape
        _, s, _, hh, ww = fmaps.shape
        ld = self.latent_dim
        fmaps = self.fmap_norm(fmaps.permute(0, 1, 3, 4, 2)).permute(0, 1, 4, 2, 3)
        coords = (query_points / float(self.stride)).reshape(b, 1, n, 2).repeat(1, s, 1, 1)
        query_feat = sample_features(fmaps[:, 0], coords[:, 0])
        track_feats = query_feat.unsqueeze(1).repeat(1, s, 1, 1)
        coords_query = coords[:, 0].clone()
        corr = CorrBlock(fmaps, self.corr_levels, self.corr_radius)
        pos_embed = sincos_grid_embed(self.transformer_dim, hh, ww).to(fmaps.device, fmaps.dtype)
        sampled_pos = sample_features(pos_embed.expand(b, -1, -1, -1), coords[:, 0])
        sampled_pos = sampled_pos.reshape(b * n, 1, -1)
        ref = torch.cat(
            [self.query_ref_token[:, 0:1], self.query_ref_token[:, 1:2].expand(-1, s - 1, -1)],
            dim=1,
        )
        preds = []
        for _ in range(iters):
            coords = coords.detach()
            fcorrs = corr.sample(track_feats, coords)
            fcorrs = self.corr_mlp(fcorrs.permute(0, 2, 1, 3).reshape(b * n, s, -1))
            flows = (coords - coords[:, 0:1]).permute(0, 2, 1, 3).reshape(b * n, s, 2)
            flows_emb = sincos_embed_2d_xy(flows, self.flows_emb_dim).to(flows.dtype)
            flows_emb = torch.cat([flows_emb, flows / self.max_scale, flows / self.max_scale], -1)
            feats = track_feats.permute(0, 2, 1, 3).reshape(b * n, s, ld)
            x = torch.cat([flows_emb, fcorrs, feats], dim=2) + sampled_pos + ref.to(flows.dtype)
            delta = self.updateformer(x.reshape(b, n, s, -1)).reshape(b * n, s, -1)
            delta_coords, delta_feats = delta[..., :2], delta[..., 2:]
            feats = feats.reshape(b * n * s, ld)
            feats = self.ffeat_updater(self.ffeat_norm(delta_feats.reshape(b * n * s, ld))) + feats
            track_feats = feats.reshape(b, n, s, ld).permute(0, 2, 1, 3)
            coords = coords + delta_coords.reshape(b, n, s, 2).permute(0, 2, 1, 3)
            coords[:, 0] = coords_query
            preds.append(coords * self.stride)
        flat = track_feats.reshape(b * s * n, ld)
        vis = torch.sigmoid(self.vis_predictor(flat).reshape(b, s, n))
        conf = None
        if self.predict_conf:
            conf = torch.sigmoid(self.conf_predictor(flat).reshape(b, s, n))
        return preds, vis, conf


class TrackHead(nn.Module):
    """Track head: ``feature_extractor`` (feature-only `DPTHead` at half resolution) + ``tracker``.

    ``forward(layers, images [B, S, 3, H, W], patch_start_idx, query_points [B, N, 2], iters=None)
    -> (tracks list of [B, S, N, 2], vis [B, S, N], conf [B, S, N])``; query points are ``(x, y)``
    pixels in frame 0.
    """

    def __init__(
        self,
        dim_in: int,
        patch_size: int = 14,
        features: int = 128,
        iters: int = 4,
        predict_conf: bool = True,
        stride: int = 2,
        corr_levels: int = 7,
        corr_radius: int = 4,
        hidden_size: int = 384,
        depth: int = 6,
        num_heads: int = 8,
        num_virtual_tracks: int = 64,
        intermediate_layer_idx: tuple[int, ...] = (4, 11, 17, 23),
        out_channels: tuple[int, ...] = (256, 512, 1024, 1024),
    ) -> None:
        super().__init__()
        self.iters = iters
        self.feature_extractor = DPTHead(
            dim_in,
            patch_size=patch_size,
            features=features,
            out_channels=out_channels,
            intermediate_layer_idx=intermediate_layer_idx,
            feature_only=True,
            down_ratio=2,
            pos_embed=True,
        )
        self.tracker = TrackerPredictor(
            stride=stride,
            corr_levels=corr_levels,
            corr_radius=corr_radius,
            latent_dim=features,
            hidden_size=hidden_size,
            depth=depth,
            num_heads=num_heads,
            num_virtual_tracks=num_virtual_tracks,
            predict_conf=predict_conf,
        )

    def forward(
        self,
        layers: TokenLayers,
        images: torch.Tensor,
        patch_start_idx: int,
        query_points: torch.Tensor,
        iters: int | None = None,
    ) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor | None]:
        if query_points.ndim != 3 or query_points.shape[-1] != 2:
            raise ValueError(f"query_points must be [B, N, 2], got {tuple(query_points.shape)}")
        fmaps = self.feature_extractor(layers, images, patch_start_idx)
        return self.tracker(query_points, fmaps, iters=self.iters if iters is None else iters)  # type: ignore[arg-type]
