"""Fast3R's DPT head (DUSt3R's ``PixelwiseTaskWithDPT`` on CroCo's ``DPTOutputAdapter``).

State-dict layout under ``<head>.dpt``: ``act_postprocess.{k}`` (1x1 projection to
``layer_dims[k]``, then 4x / 2x transposed conv, nothing, or a stride-2 3x3 conv),
``scratch.layer{k+1}_rn`` (3x3 to ``feature_dim``, no bias) with the tied aliases
``scratch.layer_rn.{k}`` (the same modules registered again in a ``ModuleList``, as CroCo does),
``scratch.refinenet{1..4}`` (``out_conv``, ``resConfUnit1``, ``resConfUnit2``; refinenet4's
``resConfUnit1`` exists but is unused) and ``head`` (``0`` 3x3 conv, ``1`` resize by
``patch / 8``, ``2`` 3x3 conv, ``3`` ReLU, ``4`` 1x1 conv to the output channels).

Differences from VGGT's DPT head (so it is not reused): no token LayerNorm and no uv position
embedding; the residual unit adds ``x`` (not ``relu(x)``); the coarsest stage is upsampled 2x and
cropped to the next stage (not resized to it); the output convs sit on both sides of the final
2x resize.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class ResidualConvUnit(nn.Module):
    """``x + conv2(relu(conv1(relu(x))))`` (3x3 convs with bias; CroCo, no batch norm)."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, kernel_size=3, padding=1, bias=True)
        self.conv2 = nn.Conv2d(features, features, kernel_size=3, padding=1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(F.relu(self.conv1(F.relu(x)))) + x


class FeatureFusionBlock(nn.Module):
    """``out_conv(up2(rcu2(x + rcu1(skip))))``; bilinear 2x with ``align_corners=True``.

    The 1x1 ``out_conv`` is applied before the upsampling: with align_corners the bilinear
    weights sum to 1, so the two commute exactly, at a quarter of the cost.
    ``forward(x [N, F, h, w], skip [N, F, h, w] | None) -> [N, F, 2h, 2w]``.
    """

    def __init__(self, features: int) -> None:
        super().__init__()
        self.out_conv = nn.Conv2d(features, features, kernel_size=1, bias=True)
        self.resConfUnit1 = ResidualConvUnit(features)
        self.resConfUnit2 = ResidualConvUnit(features)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        if skip is not None:
            x = x + self.resConfUnit1(skip)
        x = self.out_conv(self.resConfUnit2(x))
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)


class Interpolate(nn.Module):
    """Bilinear resize by ``scale_factor`` (align_corners); no parameters (``head.1``)."""

    def __init__(self, scale_factor: float) -> None:
        super().__init__()
        self.scale_factor = float(scale_factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale_factor == 1.0:
            return x
        return F.interpolate(x, scale_factor=self.scale_factor, mode="bilinear", align_corners=True)


class DPTAdapter(nn.Module):
    """The ``dpt`` module: 4 token maps -> ``[N, num_channels, H, W]`` raw output.

    Args:
        dim_tokens: widths of the 4 hooked decoder outputs (release ``(1024,) * 4``; hook 0 is
            the encoder output, of width ``enc_embed_dim``).
        patch_size: pixels per token (16).
        num_channels: output channels (xyz + confidence = 4).
        layer_dims: per-stage projection widths (96, 192, 384, 768).
        feature_dim: fusion width (256). last_dim: width of the last hidden conv (128).

    ``forward(tokens: 4 x [N, h*w, C_k], grid (h, w)) -> [N, num_channels, h*p, w*p]``.
    """

    def __init__(
        self,
        dim_tokens: Sequence[int],
        patch_size: int = 16,
        num_channels: int = 4,
        layer_dims: Sequence[int] = (96, 192, 384, 768),
        feature_dim: int = 256,
        last_dim: int = 128,
    ) -> None:
        super().__init__()
        dims = [int(d) for d in layer_dims]
        self.patch_size = patch_size
        scratch = nn.Module()
        for k, d in enumerate(dims, start=1):
            conv = nn.Conv2d(d, feature_dim, kernel_size=3, padding=1, bias=False)
            setattr(scratch, f"layer{k}_rn", conv)
        # CroCo registers the same four convs a second time: tied state-dict aliases
        scratch.layer_rn = nn.ModuleList(getattr(scratch, f"layer{k}_rn") for k in range(1, 5))
        for k in range(1, 5):
            setattr(scratch, f"refinenet{k}", FeatureFusionBlock(feature_dim))
        self.scratch = scratch
        self.head = nn.Sequential(
            nn.Conv2d(feature_dim, feature_dim // 2, kernel_size=3, padding=1),
            Interpolate(patch_size / 8),
            nn.Conv2d(feature_dim // 2, last_dim, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(last_dim, num_channels, kernel_size=1),
        )
        t = [int(d) for d in dim_tokens]
        self.act_postprocess = nn.ModuleList(
            [
                nn.Sequential(
                    nn.Conv2d(t[0], dims[0], kernel_size=1),
                    nn.ConvTranspose2d(dims[0], dims[0], kernel_size=4, stride=4),
                ),
                nn.Sequential(
                    nn.Conv2d(t[1], dims[1], kernel_size=1),
                    nn.ConvTranspose2d(dims[1], dims[1], kernel_size=2, stride=2),
                ),
                nn.Sequential(nn.Conv2d(t[2], dims[2], kernel_size=1)),
                nn.Sequential(
                    nn.Conv2d(t[3], dims[3], kernel_size=1),
                    nn.Conv2d(dims[3], dims[3], kernel_size=3, stride=2, padding=1),
                ),
            ]
        )

    def forward(self, tokens: Sequence[torch.Tensor], grid: tuple[int, int]) -> torch.Tensor:
        h, w = grid
        sc = self.scratch
        maps = []
        for k, x in enumerate(tokens):
            n = x.shape[0]
            x = x.transpose(1, 2).reshape(n, -1, h, w)
            maps.append(sc.layer_rn[k](self.act_postprocess[k](x)))
        out = sc.refinenet4(maps[3])[:, :, : maps[2].shape[2], : maps[2].shape[3]]
        out = sc.refinenet3(out, maps[2])
        out = sc.refinenet2(out, maps[1])
        out = sc.refinenet1(out, maps[0])
        return self.head(out)


def reg_dense_depth(xyz: torch.Tensor, mode: str = "exp") -> torch.Tensor:
    """Raw ``[..., 3]`` -> points (DUSt3R, unbounded): ``linear`` as is; ``square`` /
    ``exp``: direction ``xyz / max(|xyz|, 1e-8)`` times ``|xyz|^2`` / ``expm1(|xyz|)``."""
    if mode == "linear":
        return xyz
    d = xyz.norm(dim=-1, keepdim=True)
    direction = xyz / d.clamp(min=1e-8)
    if mode == "square":
        return direction * d.square()
    if mode == "exp":
        return direction * torch.expm1(d)
    raise ValueError(f"unknown depth_mode {mode!r}")


def reg_dense_conf(
    x: torch.Tensor, mode: str = "exp", vmin: float = 1.0, vmax: float | None = None
) -> torch.Tensor:
    """Raw confidence -> ``vmin + exp(x)`` (clipped to ``vmax - vmin``) or a scaled sigmoid."""
    if mode == "exp":
        conf = x.exp()
        if vmax is not None:
            conf = conf.clamp(max=vmax - vmin)
        return vmin + conf
    if mode == "sigmoid":
        if vmax is None:
            raise ValueError("conf_mode 'sigmoid' needs a finite vmax")
        return (vmax - vmin) * torch.sigmoid(x) + vmin
    raise ValueError(f"unknown conf_mode {mode!r}")


class PixelwiseTaskWithDPT(nn.Module):
    """One Fast3R point-map head (``downstream_head`` / ``downstream_head_local``).

    ``hooks``: the 4 decoder outputs it reads. ``forward(layers, grid, chunk=None)`` with
    ``layers`` a mapping decoder-output index -> ``[N, h*w, C]`` (``N`` = views x batch)
    returns ``(points [N, H, W, 3], conf [N, H, W])``; ``chunk`` limits views per pass.
    """

    def __init__(
        self,
        hooks: Sequence[int],
        dim_tokens: Sequence[int],
        patch_size: int = 16,
        layer_dims: Sequence[int] = (96, 192, 384, 768),
        feature_dim: int = 256,
        last_dim: int = 128,
        depth_mode: str = "exp",
        conf_mode: str = "exp",
        conf_vmin: float = 1.0,
        conf_vmax: float | None = None,
    ) -> None:
        super().__init__()
        self.hooks = tuple(int(i) for i in hooks)
        self.depth_mode = depth_mode
        self.conf_mode, self.conf_vmin, self.conf_vmax = conf_mode, conf_vmin, conf_vmax
        self.dpt = DPTAdapter(dim_tokens, patch_size, 4, layer_dims, feature_dim, last_dim)

    def forward(
        self,
        layers: dict[int, torch.Tensor],
        grid: tuple[int, int],
        chunk: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = [layers[i] for i in self.hooks]
        n = tokens[0].shape[0]
        step = n if chunk is None or chunk >= n else max(1, int(chunk))
        outs = [self.dpt([t[s : s + step] for t in tokens], grid) for s in range(0, n, step)]
        fmap = torch.cat(outs, dim=0).permute(0, 2, 3, 1)
        points = reg_dense_depth(fmap[..., :3], self.depth_mode)
        conf = reg_dense_conf(fmap[..., 3], self.conf_mode, self.conf_vmin, self.conf_vmax)
        return points, conf
