"""Prediction heads of the probe (VGGT's designs, re-implemented): camera head and DPT head.

Both read the trunk's intermediate outputs ``[B, S, P, 2D]`` (frame ⊕ global tokens), where the
first ``patch_start`` tokens of each frame are the camera and register tokens.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from vfm3d.probe.layers import Block, Mlp


# ---------------------------------------------------------------------- activations
def inv_log(x: torch.Tensor) -> torch.Tensor:
    """``sign(x) * (exp(|x|) - 1)`` (VGGT's ``inv_log`` point activation)."""
    return torch.sign(x) * torch.expm1(x.abs())


def conf_activation(x: torch.Tensor) -> torch.Tensor:
    """Confidence ``1 + exp(x)`` (always > 1)."""
    return 1.0 + torch.exp(x)


# ---------------------------------------------------------------------- camera head
class CameraHead(nn.Module):
    """Iterative camera head on ``absT_quaR_FoV`` (9-d: translation, quaternion XYZW, fov_h, fov_w).

    Each iteration embeds the current (detached) encoding, modulates the camera tokens with it
    (adaLN: shift, scale, gate), runs a small trunk over the S frames and adds a predicted delta.
    Activations: translation and quaternion linear, FoV ReLU.
    """

    def __init__(
        self,
        dim: int,
        trunk_depth: int = 4,
        num_heads: int = 16,
        mlp_ratio: float = 4.0,
        init_values: float = 0.01,
        iters: int = 4,
    ):
        super().__init__()
        self.iters = iters
        self.trunk = nn.ModuleList(
            [
                Block(dim, num_heads, mlp_ratio, init_values, qk_norm=False)
                for _ in range(trunk_depth)
            ]
        )
        self.token_norm = nn.LayerNorm(dim)
        self.trunk_norm = nn.LayerNorm(dim)
        self.empty_pose = nn.Parameter(torch.zeros(1, 1, 9))
        self.embed_pose = nn.Linear(9, dim)
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 3 * dim))
        self.adaln_norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.pose_branch = Mlp(dim, dim // 2, 9)

    def forward(self, camera_tokens: torch.Tensor) -> list[torch.Tensor]:
        """``camera_tokens [B, S, dim]`` -> list of ``iters`` encodings ``[B, S, 9]`` (last = best)."""
        b, s, _ = camera_tokens.shape
        tokens = self.token_norm(camera_tokens)
        pred: torch.Tensor | None = None
        outputs: list[torch.Tensor] = []
        for _ in range(self.iters):
            if pred is None:
                cond = self.embed_pose(self.empty_pose.expand(b, s, 9))
            else:
                cond = self.embed_pose(pred.detach())
            shift, scale, gate = self.modulation(cond).chunk(3, dim=-1)
            x = gate * (self.adaln_norm(tokens) * (1 + scale) + shift) + tokens
            for block in self.trunk:
                x = block(x)
            delta = self.pose_branch(self.trunk_norm(x))
            pred = delta if pred is None else pred + delta
            fov = F.relu(pred[..., 7:])
            outputs.append(torch.cat([pred[..., :7], fov], dim=-1))
        return outputs


# ---------------------------------------------------------------------- DPT head
def _uv_embedding(
    h: int, w: int, channels: int, aspect: float, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """``[channels, h, w]`` sin/cos embedding of a centred uv grid spanning the image's aspect."""
    diag = math.sqrt(aspect**2 + 1.0)
    span_x, span_y = aspect / diag, 1.0 / diag
    xs = torch.linspace(-span_x, span_x, w, dtype=torch.float64)
    ys = torch.linspace(-span_y, span_y, h, dtype=torch.float64)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    half = channels // 2
    quarter = half // 2
    omega = 1.0 / 100.0 ** (torch.arange(quarter, dtype=torch.float64) / max(quarter, 1))

    def sincos(pos: torch.Tensor) -> torch.Tensor:
        ang = pos[..., None] * omega
        return torch.cat([ang.sin(), ang.cos()], dim=-1)

    emb = torch.cat([sincos(grid_x), sincos(grid_y)], dim=-1)  # [h, w, 4*quarter]
    if emb.shape[-1] < channels:
        emb = F.pad(emb, (0, channels - emb.shape[-1]))
    return emb.permute(2, 0, 1).to(device=device, dtype=dtype).contiguous()


class _ResidualConvUnit(nn.Module):
    def __init__(self, features: int):
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, padding=1)
        self.conv2 = nn.Conv2d(features, features, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class _FusionBlock(nn.Module):
    """``out = conv1x1(rcu2(x + rcu1(skip)))`` upsampled (bilinear) to ``size`` or 2x."""

    def __init__(self, features: int, has_skip: bool = True):
        super().__init__()
        self.rcu1 = _ResidualConvUnit(features) if has_skip else None
        self.rcu2 = _ResidualConvUnit(features)
        self.out_conv = nn.Conv2d(features, features, 1)

    def forward(
        self,
        x: torch.Tensor,
        skip: torch.Tensor | None = None,
        size: tuple[int, int] | None = None,
    ) -> torch.Tensor:
        if skip is not None and self.rcu1 is not None:
            x = x + self.rcu1(skip)
        x = self.rcu2(x)
        if size is None:
            size = (x.shape[-2] * 2, x.shape[-1] * 2)
        # The 1x1 conv commutes with bilinear resizing (weights sum to 1), so it runs before the
        # upsampling: same result as VGGT's resize-then-conv at 1/4 of the cost.
        x = self.out_conv(x)
        return F.interpolate(x, size=size, mode="bilinear", align_corners=True)


class DPTHead(nn.Module):
    """DPT dense head: 4 token maps -> multi-scale fusion -> ``out_dim`` channels at (H, W).

    Stage i takes intermediate ``layers[i]`` (``[B, S, P, dim]``), LayerNorm, 1x1 conv to
    ``out_channels[i]``, then resamples by 4x, 2x, 1x, 1/2x; fusion goes coarse to fine (each
    step 2x), a 3x3 conv halves the channels, one bilinear resize reaches (H, W), and a
    3x3 conv -> ReLU -> 1x1 conv gives the outputs. ``activation`` maps the first ``out_dim - 1``
    channels (``"inv_log"`` or ``"exp"``); the last channel is confidence ``1 + exp``.
    """

    def __init__(
        self,
        dim: int,
        out_dim: int,
        activation: str,
        features: int = 256,
        out_channels: tuple[int, int, int, int] = (256, 512, 1024, 1024),
        layers: tuple[int, int, int, int] = (0, 1, 2, 3),
    ):
        super().__init__()
        if activation not in ("inv_log", "exp"):
            raise ValueError(f"DPTHead: activation must be 'inv_log' or 'exp', got {activation!r}")
        self.activation = activation
        self.layers = tuple(layers)
        self.norm = nn.LayerNorm(dim)
        self.projects = nn.ModuleList([nn.Conv2d(dim, oc, 1) for oc in out_channels])
        self.resize = nn.ModuleList(
            [
                nn.ConvTranspose2d(out_channels[0], out_channels[0], 4, stride=4),
                nn.ConvTranspose2d(out_channels[1], out_channels[1], 2, stride=2),
                nn.Identity(),
                nn.Conv2d(out_channels[3], out_channels[3], 3, stride=2, padding=1),
            ]
        )
        self.layer_rn = nn.ModuleList(
            [nn.Conv2d(oc, features, 3, padding=1, bias=False) for oc in out_channels]
        )
        self.fusion = nn.ModuleList(
            [_FusionBlock(features) for _ in range(3)] + [_FusionBlock(features, has_skip=False)]
        )
        self.output_conv1 = nn.Conv2d(features, features // 2, 3, padding=1)
        self.output_conv2 = nn.Sequential(
            nn.Conv2d(features // 2, 32, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(32, out_dim, 1),
        )
        self._pos_cache: dict[tuple, torch.Tensor] = {}

    def _pos(self, x: torch.Tensor, aspect: float) -> torch.Tensor:
        key = (x.shape[-3], x.shape[-2], x.shape[-1], round(aspect, 6), x.device, x.dtype)
        emb = self._pos_cache.get(key)
        if emb is None:
            if len(self._pos_cache) > 32:
                self._pos_cache.clear()
            emb = _uv_embedding(x.shape[-2], x.shape[-1], x.shape[-3], aspect, x.device, x.dtype)
            self._pos_cache[key] = emb
        return emb

    def forward(
        self,
        intermediates: list[torch.Tensor],
        grid: tuple[int, int],
        patch_start: int,
        out_size: tuple[int, int],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(values [B, S, out_dim - 1, H, W], conf [B, S, H, W])``.

        ``intermediates[i]``: ``[B, S, P, dim]``; ``grid = (h, w)`` of the patch tokens.
        """
        h, w = grid
        height, width = out_size
        aspect = width / height
        b, s = intermediates[0].shape[:2]
        maps = []
        for stage, layer in enumerate(self.layers):
            x = intermediates[layer][:, :, patch_start:]
            x = self.norm(x).reshape(b * s, h, w, -1).permute(0, 3, 1, 2)
            x = self.projects[stage](x)
            x = x + self._pos(x, aspect) * 0.1
            maps.append(self.layer_rn[stage](self.resize[stage](x)))
        out = self.fusion[3](maps[3], size=maps[2].shape[-2:])
        out = self.fusion[2](out, maps[2], size=maps[1].shape[-2:])
        out = self.fusion[1](out, maps[1], size=maps[0].shape[-2:])
        out = self.fusion[0](out, maps[0])
        out = self.output_conv1(out)
        out = F.interpolate(out, size=(height, width), mode="bilinear", align_corners=True)
        out = out + self._pos(out, aspect) * 0.1
        out = self.output_conv2(out).view(b, s, -1, height, width)
        raw, conf = out[:, :, :-1], out[:, :, -1]
        values = inv_log(raw) if self.activation == "inv_log" else torch.exp(raw)
        return values, conf_activation(conf)
