"""The ``oracle`` backbone: features built from the clip's ground truth (the ceiling).

``needs_geometry = True``: ``prepare`` needs ``aux`` with ``depth`` / ``valid`` ``[B,T,H,W]`` and
``intrinsics`` ``[B,T,3,3]`` (OpenCV pinhole, pixel centres at integers). No world coordinates and
no poses are used: each frame is described in its own camera frame only.

Per pixel: camera-frame point ``(x, y, z) = z * K^-1 [u, v, 1]``, divided by the clip's scale
(mean distance of frame 0's valid points, as the probe targets are normalised), and ``log z``
of the normalised depth. Layer 0 pools each ``patch x patch`` token into ``sub x sub`` cells and
takes the valid-masked mean of ``(x, y, z, log z)`` plus the valid fraction of each cell:
``C = 5 * sub**2`` channels, ordered cell-major (cells row-major, then the 5 values).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from vfm3d.backbones.base import Backbone, Prepared
from vfm3d.backbones.baselines import PatchBaseline

NEEDS_WEIGHTS = False
DEFAULT_PATCH = 8
_VALUES_PER_CELL = 5


def camera_points(depth: torch.Tensor, intrinsics: torch.Tensor) -> torch.Tensor:
    """Unproject z-depth ``[..., H, W]`` with ``intrinsics`` ``[..., 3, 3]`` -> ``[..., H, W, 3]``.

    Camera coordinates, OpenCV (x right, y down, z forward); pixel ``(u, v)`` centres at integers.
    """
    h, w = depth.shape[-2:]
    v, u = torch.meshgrid(
        torch.arange(h, dtype=depth.dtype, device=depth.device),
        torch.arange(w, dtype=depth.dtype, device=depth.device),
        indexing="ij",
    )
    k = intrinsics.to(depth.dtype)
    fx, fy = k[..., 0, 0, None, None], k[..., 1, 1, None, None]
    cx, cy = k[..., 0, 2, None, None], k[..., 1, 2, None, None]
    x = (u - cx) / fx * depth
    y = (v - cy) / fy * depth
    return torch.stack([x, y, depth], dim=-1)


class _GeometryPooling(nn.Module):
    """``[N, T, 5, H, W]`` (x, y, z, log z, valid) -> ``[N, T, H/p, W/p, 5 * sub**2]``."""

    def __init__(self, patch: int, sub: int) -> None:
        super().__init__()
        self.patch = patch
        self.sub = sub

    def forward(self, geometry: torch.Tensor) -> torch.Tensor:
        n, t, c, h, w = geometry.shape
        cell = self.patch // self.sub
        x = geometry.reshape(n * t, c, h, w)
        valid = x[:, -1:]
        sums = nn.functional.avg_pool2d(x[:, :-1] * valid, cell)
        frac = nn.functional.avg_pool2d(valid, cell)
        means = sums / frac.clamp_min(1e-6)
        cells = torch.cat([means, frac], dim=1)  # [NT, 5, H/cell, W/cell]
        gh, gw = h // self.patch, w // self.patch
        cells = cells.reshape(n, t, c, gh, self.sub, gw, self.sub)
        cells = cells.permute(0, 1, 3, 5, 4, 6, 2)  # n, t, gh, gw, sy, sx, c
        return cells.reshape(n, t, gh, gw, self.sub * self.sub * c)


class OracleBackbone(PatchBaseline):
    """Ground-truth geometry features (see module docstring)."""

    is_diffusion = False
    needs_geometry = True

    def __init__(self, name: str = "oracle", patch: int = DEFAULT_PATCH, sub: int = 2) -> None:
        if patch < 1 or sub < 1 or patch % sub:
            raise ValueError(f"patch must be a positive multiple of sub, got {patch}, {sub}")
        super().__init__(name, patch)
        self.sub = sub
        self.blocks = nn.ModuleList([_GeometryPooling(patch, sub)])

    def layer_width(self, layer: int) -> int:
        return _VALUES_PER_CELL * self.sub * self.sub

    def prepare(
        self,
        frames: torch.Tensor,
        timesteps: Sequence[int] | None,
        generator: torch.Generator,
        aux: dict[str, torch.Tensor] | None = None,
    ) -> Prepared:
        if aux is None:
            raise ValueError("aux: the oracle needs ground truth (depth, valid, intrinsics)")
        n, t, _, h, w = frames.shape
        depth = aux["depth"].to(device=self.device, dtype=torch.float32)
        valid = aux["valid"].to(device=self.device).bool() & torch.isfinite(depth) & (depth > 0)
        depth = torch.where(valid, depth, torch.ones_like(depth))
        points = camera_points(depth, aux["intrinsics"].to(self.device))  # [N, T, H, W, 3]
        dist0 = points[:, 0].norm(dim=-1)
        count0 = valid[:, 0].flatten(1).sum(1).clamp_min(1)
        scale = (dist0 * valid[:, 0]).flatten(1).sum(1) / count0  # [N]
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))[:, None, None, None, None]
        points = points / scale
        log_z = torch.log(points[..., 2:3].clamp_min(1e-6))
        geometry = torch.cat([points, log_z, valid[..., None].float()], dim=-1)
        geometry = torch.where(valid[..., None], geometry, torch.zeros_like(geometry))
        geometry = geometry.permute(0, 1, 4, 2, 3).to(self.dtype)  # [N, T, 5, H, W]
        return Prepared(
            batch={"input": geometry},
            num_clips=n,
            timesteps=None,
            feature_shape=(t, *self.grid.spatial_shape(h, w)),
        )


def build(
    name: str = "oracle",
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
    **config: Any,
) -> Backbone:
    """Build the oracle (``seed`` is unused: nothing is random)."""
    return OracleBackbone(name=name, **config).to(device=device, dtype=dtype).eval()


#: The oracle is already small: ``tiny`` is ``build``.
tiny = build
