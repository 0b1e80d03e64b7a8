"""VGGT's prediction heads: the DPT dense head (depth / point map / track features) and the
iterative camera head. Parameter names follow the public VGGT code.

Both read the aggregator's layer outputs ``[B, S, P, C_in]`` (``C_in = 2 * embed_dim``; the first
``patch_start_idx`` tokens of each frame are camera / register tokens).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from vfm3d.models.vggt.layers import Block, Mlp

TokenLayers = Mapping[int, torch.Tensor] | Sequence[torch.Tensor]


# ---------------------------------------------------------------------- activations
def inverse_log_transform(y: torch.Tensor) -> torch.Tensor:
    """``sign(y) * (exp(|y|) - 1)``: the ``inv_log`` activation of VGGT's point head."""
    return torch.sign(y) * torch.expm1(torch.abs(y))


def activate_head(
    out: torch.Tensor, activation: str = "inv_log", conf_activation: str = "expp1"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw DPT output ``[N, D + 1, H, W]`` -> ``(values [N, H, W, D], confidence [N, H, W])``.

    ``activation``: ``inv_log`` | ``exp`` | ``norm_exp`` | ``relu`` | ``sigmoid`` | ``linear``;
    ``conf_activation``: ``expp1`` (``1 + exp``, VGGT) | ``expp0`` | ``sigmoid``.
    """
    fmap = out.permute(0, 2, 3, 1)
    values, conf = fmap[..., :-1], fmap[..., -1]
    if activation == "inv_log":
        values = inverse_log_transform(values)
    elif activation == "exp":
        values = torch.exp(values)
    elif activation == "norm_exp":
        norm = values.norm(dim=-1, keepdim=True).clamp(min=1e-8)
        values = values / norm * torch.expm1(norm)
    elif activation == "relu":
        values = F.relu(values)
    elif activation == "sigmoid":
        values = torch.sigmoid(values)
    elif activation != "linear":
        raise ValueError(f"unknown activation {activation!r}")
    if conf_activation == "expp1":
        conf = 1 + conf.exp()
    elif conf_activation == "expp0":
        conf = conf.exp()
    elif conf_activation == "sigmoid":
        conf = torch.sigmoid(conf)
    else:
        raise ValueError(f"unknown conf_activation {conf_activation!r}")
    return values, conf


def activate_pose(
    pose_enc: torch.Tensor,
    trans_act: str = "linear",
    quat_act: str = "linear",
    fl_act: str = "relu",
) -> torch.Tensor:
    """Activations of the 9-d pose encoding: translation, quaternion, field of view."""

    def act(x: torch.Tensor, kind: str) -> torch.Tensor:
        if kind == "linear":
            return x
        if kind == "relu":
            return F.relu(x)
        if kind == "inv_log":
            return inverse_log_transform(x)
        if kind == "exp":
            return torch.exp(x)
        raise ValueError(f"unknown pose activation {kind!r}")

    return torch.cat(
        [
            act(pose_enc[..., :3], trans_act),
            act(pose_enc[..., 3:7], quat_act),
            act(pose_enc[..., 7:], fl_act),
        ],
        dim=-1,
    )


# ---------------------------------------------------------------------- position embeddings
def create_uv_grid(
    width: int,
    height: int,
    aspect_ratio: float | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | None = None,
) -> torch.Tensor:
    """``[height, width, 2]`` normalised (u, v) pixel-centre grid spanning a unit-diagonal box.

    The box is ``±span_x`` by ``±span_y`` with ``span_x = a / sqrt(a² + 1)``, ``span_y = 1 /
    sqrt(a² + 1)`` (``a`` the aspect ratio); the ``n`` samples along an axis are the centres of
    ``n`` equal cells, so they reach ``±span · (n - 1) / n``, not the box edge (VGGT).
    """
    if aspect_ratio is None:
        aspect_ratio = float(width) / float(height)
    diag = (aspect_ratio**2 + 1.0) ** 0.5
    span_x, span_y = aspect_ratio / diag, 1.0 / diag
    x_lim = span_x * (width - 1) / width
    y_lim = span_y * (height - 1) / height
    xs = torch.linspace(-x_lim, x_lim, steps=width, dtype=dtype, device=device)
    ys = torch.linspace(-y_lim, y_lim, steps=height, dtype=dtype, device=device)
    uu, vv = torch.meshgrid(xs, ys, indexing="xy")
    return torch.stack((uu, vv), dim=-1)


def sincos_embed_1d(dim: int, pos: torch.Tensor, omega_0: float = 100.0) -> torch.Tensor:
    """``[M] -> [M, dim]`` ``[sin(pos * w), cos(pos * w)]`` with ``w_k = omega_0^(-2k/dim)``."""
    if dim % 2:
        raise ValueError(f"sin-cos embedding width must be even, got {dim}")
    dtype = torch.float32 if pos.device.type == "mps" else torch.float64
    omega = torch.arange(dim // 2, dtype=dtype, device=pos.device) / (dim / 2.0)
    omega = 1.0 / omega_0**omega
    angles = torch.einsum("m,d->md", pos.reshape(-1).to(dtype), omega)
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1).float()


def position_grid_to_embed(
    pos_grid: torch.Tensor, embed_dim: int, omega_0: float = 100
) -> torch.Tensor:
    """``[H, W, 2]`` grid -> ``[H, W, embed_dim]``: x then y sin-cos embeddings."""
    height, width, _ = pos_grid.shape
    flat = pos_grid.reshape(-1, 2)
    emb_x = sincos_embed_1d(embed_dim // 2, flat[:, 0], omega_0)
    emb_y = sincos_embed_1d(embed_dim // 2, flat[:, 1], omega_0)
    return torch.cat([emb_x, emb_y], dim=-1).view(height, width, embed_dim)


@functools.lru_cache(maxsize=64)
def _uv_embedding_cached(
    height: int, width: int, channels: int, aspect: float, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    grid = create_uv_grid(width, height, aspect_ratio=aspect, dtype=torch.float64)
    emb = position_grid_to_embed(grid, channels) * 0.1
    return emb.permute(2, 0, 1).to(device=device, dtype=dtype).contiguous()


def uv_embedding(
    height: int, width: int, channels: int, aspect: float, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """``[channels, height, width]``: the DPT head's position embedding, already scaled by 0.1.

    ``position_grid_to_embed(create_uv_grid(width, height, aspect)) * 0.1`` (VGGT's
    ``_apply_pos_embed``), computed once per (size, channels, aspect, device, dtype) and cached;
    ``aspect`` is the output image's width / height.
    """
    return _uv_embedding_cached(
        int(height), int(width), int(channels), round(float(aspect), 9), device, dtype
    )


# ---------------------------------------------------------------------- DPT
class ResidualConvUnit(nn.Module):
    """``relu(x) + conv2(relu(conv1(relu(x))))`` (3x3 convs).

    VGGT applies an in-place ReLU to the input, so its skip connection adds ``relu(x)``, not
    ``x``; this reproduces that exactly.
    """

    def __init__(self, features: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, kernel_size=3, padding=1, bias=True)
        self.conv2 = nn.Conv2d(features, features, kernel_size=3, padding=1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(x)
        return self.conv2(F.relu(self.conv1(x))) + x


class FeatureFusionBlock(nn.Module):
    """DPT fusion: ``out_conv(upsample(rcu2(x + rcu1(skip))))`` (bilinear, align_corners).

    The two residual units are registered under ``unit_names`` (VGGT: ``resConfUnit1/2``; a
    subclass may rename them for its own state-dict layout without changing the function). The
    1x1 ``out_conv`` runs before the upsampling: it commutes exactly with bilinear resizing
    (weights summing to 1), so the result is VGGT's at a quarter of the convolution cost.
    """

    unit_names: tuple[str, str] = ("resConfUnit1", "resConfUnit2")

    def __init__(self, features: int, has_residual: bool = True) -> None:
        super().__init__()
        self.has_residual = has_residual
        self.out_conv = nn.Conv2d(features, features, kernel_size=1, bias=True)
        if has_residual:
            setattr(self, self.unit_names[0], ResidualConvUnit(features))
        setattr(self, self.unit_names[1], ResidualConvUnit(features))

    def forward(
        self,
        x: torch.Tensor,
        skip: torch.Tensor | None = None,
        size: Sequence[int] | None = None,
    ) -> torch.Tensor:
        """``x, skip [N, F, h, w]`` -> ``[N, F, *size]`` (``size`` default ``2h, 2w``)."""
        if self.has_residual and skip is not None:
            x = x + getattr(self, self.unit_names[0])(skip)
        x = self.out_conv(getattr(self, self.unit_names[1])(x))
        if size is None:
            size = (x.shape[-2] * 2, x.shape[-1] * 2)
        return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=True)


def dpt_resize_layers(out_channels: Sequence[int]) -> nn.ModuleList:
    """The four per-stage resamplers: 4x and 2x transposed convs, identity, a stride-2 conv."""
    oc = list(out_channels)
    return nn.ModuleList(
        [
            nn.ConvTranspose2d(oc[0], oc[0], kernel_size=4, stride=4),
            nn.ConvTranspose2d(oc[1], oc[1], kernel_size=2, stride=2),
            nn.Identity(),
            nn.Conv2d(oc[3], oc[3], kernel_size=3, stride=2, padding=1),
        ]
    )


def dpt_output_convs(features: int, output_dim: int) -> tuple[nn.Conv2d, nn.Sequential]:
    """``output_conv1`` (3x3, ``features -> features / 2``) and ``output_conv2`` (3x3 -> ReLU ->
    1x1 to ``output_dim``)."""
    conv1 = nn.Conv2d(features, features // 2, kernel_size=3, padding=1)
    conv2 = nn.Sequential(
        nn.Conv2d(features // 2, 32, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.Conv2d(32, output_dim, kernel_size=1),
    )
    return conv1, conv2


@dataclass(frozen=True)
class DPTParts:
    """The modules of one DPT head, in computation order, whatever their state-dict names.

    ``fusion[i]`` fuses stage ``i`` (``fusion[3]``, VGGT's ``refinenet4``, has no skip);
    ``output_conv2`` is ``None`` for a feature-only head.
    """

    norm: nn.Module
    projects: Sequence[nn.Module]
    resize: Sequence[nn.Module]
    layer_rn: Sequence[nn.Module]
    fusion: Sequence[FeatureFusionBlock]
    output_conv1: nn.Module
    output_conv2: nn.Module | None


def dpt_forward(
    parts: DPTParts,
    tokens: Sequence[torch.Tensor],
    grid: tuple[int, int],
    out_size: tuple[int, int],
    pos_embed: bool = True,
    aspect: float | None = None,
) -> torch.Tensor:
    """THE DPT computation (VGGT ``heads/dpt_head.py``), shared by VGGT and the probe.

    Args:
        parts: the head's modules.
        tokens: 4 stage inputs ``[N, h*w, C_in]`` (patch tokens only, row-major).
        grid: ``(h, w)`` of the tokens.
        out_size: ``(H, W)`` of the output (one bilinear resize, align_corners, reaches it).
        pos_embed: add the 0.1-scaled uv sin-cos embedding (`uv_embedding`) after each
            projection and after the final resize.
        aspect: width / height of the image the embedding spans (default ``W / H``).

    Returns ``[N, D, H, W]``: the raw output (before activation, ``D = output_dim``), or the
    ``output_conv1`` feature map when ``parts.output_conv2`` is None.
    """
    h, w = grid
    height, width = int(out_size[0]), int(out_size[1])
    aspect = width / height if aspect is None else float(aspect)
    maps = []
    for i, x in enumerate(tokens):
        n = x.shape[0]
        x = parts.norm(x).transpose(1, 2).reshape(n, -1, h, w)
        x = parts.projects[i](x)
        if pos_embed:
            x = x + uv_embedding(h, w, x.shape[1], aspect, x.device, x.dtype)
        maps.append(parts.layer_rn[i](parts.resize[i](x)))
    out = parts.fusion[3](maps[3], size=maps[2].shape[-2:])
    out = parts.fusion[2](out, maps[2], size=maps[1].shape[-2:])
    out = parts.fusion[1](out, maps[1], size=maps[0].shape[-2:])
    out = parts.fusion[0](out, maps[0])
    out = parts.output_conv1(out)
    out = F.interpolate(out, size=(height, width), mode="bilinear", align_corners=True)
    if pos_embed:
        out = out + uv_embedding(height, width, out.shape[1], aspect, out.device, out.dtype)
    if parts.output_conv2 is None:
        return out
    return parts.output_conv2(out)


class DPTHead(nn.Module):
    """Dense prediction head over 4 aggregator layers (DPT; VGGT ``heads/dpt_head.py``).

    Args:
        dim_in: token width (``2 * embed_dim``).
        patch_size: pixels per token.
        output_dim: channels before activation (point map 3 + 1 confidence; depth 1 + 1).
        activation / conf_activation: see `activate_head` (point: ``inv_log``; depth: ``exp``).
        features: fusion width (VGGT 256; track features 128).
        out_channels: per-layer projection widths (VGGT ``(256, 512, 1024, 1024)``).
        intermediate_layer_idx: the 4 aggregator layers read.
        pos_embed: add the scaled sin-cos (u, v) embedding after projection and at the end.
        feature_only: return the fused feature map ``[B, S, features, H/r, W/r]`` instead.
        down_ratio: output resolution divisor ``r`` (track head: 2).

    ``forward(layers, images [B, S, 3, H, W], patch_start_idx, frames_chunk_size=8)`` returns
    ``(values [B, S, H, W, output_dim - 1], conf [B, S, H, W])`` or the feature map. ``layers`` is
    indexable by layer index (a list or the aggregator's dict). The computation is `dpt_forward`
    (shared with the probe's DPT head).
    """

    def __init__(
        self,
        dim_in: int,
        patch_size: int = 14,
        output_dim: int = 4,
        activation: str = "inv_log",
        conf_activation: str = "expp1",
        features: int = 256,
        out_channels: Sequence[int] = (256, 512, 1024, 1024),
        intermediate_layer_idx: Sequence[int] = (4, 11, 17, 23),
        pos_embed: bool = True,
        feature_only: bool = False,
        down_ratio: int = 1,
    ) -> None:
        super().__init__()
        oc = list(out_channels)
        if len(oc) != 4 or len(intermediate_layer_idx) != 4:
            raise ValueError("DPTHead: out_channels and intermediate_layer_idx need 4 entries each")
        self.patch_size = patch_size
        self.activation = activation
        self.conf_activation = conf_activation
        self.pos_embed = pos_embed
        self.feature_only = feature_only
        self.down_ratio = down_ratio
        self.intermediate_layer_idx = tuple(int(i) for i in intermediate_layer_idx)
        self.norm = nn.LayerNorm(dim_in)
        self.projects = nn.ModuleList(nn.Conv2d(dim_in, c, kernel_size=1) for c in oc)
        self.resize_layers = dpt_resize_layers(oc)
        scratch = nn.Module()
        for i, c in enumerate(oc, start=1):
            setattr(scratch, f"layer{i}_rn", nn.Conv2d(c, features, 3, padding=1, bias=False))
        scratch.refinenet1 = FeatureFusionBlock(features)
        scratch.refinenet2 = FeatureFusionBlock(features)
        scratch.refinenet3 = FeatureFusionBlock(features)
        scratch.refinenet4 = FeatureFusionBlock(features, has_residual=False)
        if feature_only:
            scratch.output_conv1 = nn.Conv2d(features, features, kernel_size=3, padding=1)
        else:
            scratch.output_conv1, scratch.output_conv2 = dpt_output_convs(features, output_dim)
        self.scratch = scratch

    def parts(self) -> DPTParts:
        """This head's modules for `dpt_forward`."""
        sc = self.scratch
        return DPTParts(
            norm=self.norm,
            projects=self.projects,
            resize=self.resize_layers,
            layer_rn=[sc.layer1_rn, sc.layer2_rn, sc.layer3_rn, sc.layer4_rn],
            fusion=[sc.refinenet1, sc.refinenet2, sc.refinenet3, sc.refinenet4],
            output_conv1=sc.output_conv1,
            output_conv2=None if self.feature_only else sc.output_conv2,
        )

    def forward(
        self,
        layers: TokenLayers,
        images: torch.Tensor,
        patch_start_idx: int,
        frames_chunk_size: int | None = 8,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        num_frames = images.shape[1]
        if frames_chunk_size is None or frames_chunk_size >= num_frames:
            return self._forward_chunk(layers, images, patch_start_idx, 0, num_frames)
        if frames_chunk_size < 1:
            raise ValueError(f"frames_chunk_size must be >= 1, got {frames_chunk_size}")
        chunks = [
            self._forward_chunk(
                layers, images, patch_start_idx, start, min(start + frames_chunk_size, num_frames)
            )
            for start in range(0, num_frames, frames_chunk_size)
        ]
        if self.feature_only:
            return torch.cat(chunks, dim=1)  # type: ignore[arg-type]
        values = torch.cat([c[0] for c in chunks], dim=1)  # type: ignore[index]
        conf = torch.cat([c[1] for c in chunks], dim=1)  # type: ignore[index]
        return values, conf

    def _forward_chunk(
        self, layers: TokenLayers, images: torch.Tensor, patch_start_idx: int, start: int, end: int
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        b, _, _, height, width = images.shape
        s = end - start
        grid = (height // self.patch_size, width // self.patch_size)
        size = (
            int(grid[0] * self.patch_size / self.down_ratio),
            int(grid[1] * self.patch_size / self.down_ratio),
        )
        tokens = []
        for layer_idx in self.intermediate_layer_idx:
            x = layers[layer_idx][:, start:end, patch_start_idx:]
            tokens.append(x.reshape(b * s, -1, x.shape[-1]))
        out = dpt_forward(self.parts(), tokens, grid, size, self.pos_embed, width / height)
        if self.feature_only:
            return out.view(b, s, *out.shape[1:])
        values, conf = activate_head(out, self.activation, self.conf_activation)
        return values.view(b, s, *values.shape[1:]), conf.view(b, s, *conf.shape[1:])


# ---------------------------------------------------------------------- camera
class CameraHead(nn.Module):
    """Iterative camera head (VGGT ``heads/camera_head.py``): predicts ``absT_quaR_FoV``.

    Args:
        dim_in: token width (``2 * embed_dim``). trunk_depth: transformer blocks in the trunk.
        num_heads, mlp_ratio, init_values: trunk block settings (no qk-norm, no RoPE).
        trans_act / quat_act / fl_act: activations of translation / quaternion / field of view.

    ``forward(tokens [B, S, P, dim_in], num_iterations=4) -> list of [B, S, 9]`` (one per
    refinement iteration, the last is the final estimate). Only token 0 of each frame (the camera
    token) is read. The encoding is of **world_to_cam** with an XYZW quaternion, then
    ``fov_h, fov_w`` in radians.
    """

    target_dim = 9

    def __init__(
        self,
        dim_in: int = 2048,
        trunk_depth: int = 4,
        num_heads: int = 16,
        mlp_ratio: float = 4.0,
        init_values: float = 0.01,
        trans_act: str = "linear",
        quat_act: str = "linear",
        fl_act: str = "relu",
    ) -> None:
        super().__init__()
        self.trans_act, self.quat_act, self.fl_act = trans_act, quat_act, fl_act
        self.trunk = nn.Sequential(
            *(
                Block(dim_in, num_heads, mlp_ratio, init_values=init_values)
                for _ in range(trunk_depth)
            )
        )
        self.token_norm = nn.LayerNorm(dim_in)
        self.trunk_norm = nn.LayerNorm(dim_in)
        self.empty_pose_tokens = nn.Parameter(torch.zeros(1, 1, self.target_dim))
        self.embed_pose = nn.Linear(self.target_dim, dim_in)
        self.poseLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim_in, 3 * dim_in, bias=True))
        self.adaln_norm = nn.LayerNorm(dim_in, elementwise_affine=False, eps=1e-6)
        self.pose_branch = Mlp(dim_in, dim_in // 2, self.target_dim)

    def forward(self, tokens: torch.Tensor, num_iterations: int = 4) -> list[torch.Tensor]:
        if tokens.ndim != 4:
            raise ValueError(f"CameraHead: tokens must be [B, S, P, C], got {tuple(tokens.shape)}")
        pose_tokens = self.token_norm(tokens[:, :, 0])
        b, s, _ = pose_tokens.shape
        pred: torch.Tensor | None = None
        preds = []
        for _ in range(num_iterations):
            if pred is None:
                module_input = self.embed_pose(self.empty_pose_tokens.expand(b, s, -1))
            else:
                module_input = self.embed_pose(pred.detach())
            shift, scale, gate = self.poseLN_modulation(module_input).chunk(3, dim=-1)
            modulated = gate * (self.adaln_norm(pose_tokens) * (1 + scale) + shift) + pose_tokens
            delta = self.pose_branch(self.trunk_norm(self.trunk(modulated)))
            pred = delta if pred is None else pred.detach() + delta
            preds.append(activate_pose(pred, self.trans_act, self.quat_act, self.fl_act))
        return preds
