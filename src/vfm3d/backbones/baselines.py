"""Floor baselines: ``random`` (fixed random patch projection), ``pixels``, ``constant``.

Every probe result needs a floor to compare with. These are real `Backbone` s (``nn.Module`` with
one module per layer) so hooks, early exit and the cache treat them like any model.

- ``random``: patchify RGB (``patch x patch``), a fixed random linear projection to ``width``
  (layer 0), then ``num_layers - 1`` blocks ``x <- LayerNorm(x + GELU(W x))`` with fixed random
  ``W`` (layers 1..). Weights come from ``seed``.
- ``pixels``: patchified RGB, one layer, ``C = 3 * patch * patch`` (channel order: RGB fastest
  inside each pixel, pixels row-major inside the patch).
- ``constant``: the same fixed vector for every token, one layer: a probe on it can only learn
  the dataset mean (the floor).

No temporal compression (``frame_index[t] = t``); H and W must be multiples of ``patch``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from vfm3d.backbones.base import Backbone, InputRules, Prepared, TokenGrid

NEEDS_WEIGHTS = False
DEFAULT_PATCH = 8


def patchify(frames: torch.Tensor, patch: int) -> torch.Tensor:
    """``[N, T, C, H, W]`` -> ``[N, T, H/p, W/p, C*p*p]`` (channel fastest, then x, then y)."""
    n, t, c, h, w = frames.shape
    x = frames.reshape(n, t, c, h // patch, patch, w // patch, patch)
    x = x.permute(0, 1, 3, 5, 4, 6, 2)  # n, t, hp, wp, py, px, c
    return x.reshape(n, t, h // patch, w // patch, patch * patch * c)


class _Patchify(nn.Module):
    def __init__(self, patch: int) -> None:
        super().__init__()
        self.patch = patch

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return patchify(frames, self.patch)


class _RandomBlock(nn.Module):
    """``x <- LayerNorm(x + GELU(W x))`` with fixed random ``W`` (no learned affine)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.linear = nn.Linear(width, width)
        self.norm = nn.LayerNorm(width, elementwise_affine=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x + nn.functional.gelu(self.linear(x)))


class _PatchProjection(nn.Module):
    def __init__(self, patch: int, width: int) -> None:
        super().__init__()
        self.patch = patch
        self.proj = nn.Linear(3 * patch * patch, width)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.proj(patchify(frames * 2.0 - 1.0, self.patch))


class _Constant(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.register_buffer("value", torch.zeros(width))

    def forward(self, frames: torch.Tensor, grid_hw: tuple[int, int]) -> torch.Tensor:
        n, t = frames.shape[:2]
        return self.value.expand(n, t, grid_hw[0], grid_hw[1], -1).to(frames.dtype)


class PatchBaseline(Backbone):
    """Shared plumbing: frames -> ``[N, T, h, w, C]`` through ``self.blocks`` in order.

    No temporal compression; H, W multiples of ``patch``; subclasses set ``self.blocks``.
    """

    blocks: nn.ModuleList

    def __init__(self, name: str, patch: int) -> None:
        super().__init__()
        if patch < 1:
            raise ValueError(f"patch: must be >= 1, got {patch}")
        self.name = name
        self.patch = patch
        self.rules = InputRules(spatial_multiple=patch)
        self.grid = TokenGrid(temporal_stride=1, patch_size=(patch, patch))
        # Parameter-free models still need a dtype/device anchor.
        self.register_buffer("_anchor", torch.zeros(1))

    @property
    def dtype(self) -> torch.dtype:
        return self._anchor.dtype

    @property
    def device(self) -> torch.device:
        return self._anchor.device

    @property
    def num_layers(self) -> int:
        return len(self.blocks)

    def layer_modules(self) -> Sequence[nn.Module]:
        return list(self.blocks)

    def prepare(
        self,
        frames: torch.Tensor,
        timesteps: Sequence[int] | None,
        generator: torch.Generator,
        aux: dict[str, torch.Tensor] | None = None,
    ) -> Prepared:
        n, t, _, h, w = frames.shape
        frames = frames.to(device=self.device, dtype=self.dtype)
        return Prepared(
            batch={"input": frames},
            num_clips=n,
            timesteps=None,
            feature_shape=(t, *self.grid.spatial_shape(h, w)),
        )

    def run(self, prepared: Prepared) -> torch.Tensor:
        x = self.blocks[0](prepared.batch["input"])
        for block in self.blocks[1:]:
            x = block(x)
        return x

    def layer_output_to_grid(self, layer: int, output: Any, prepared: Prepared) -> torch.Tensor:
        return output


class RandomBackbone(PatchBaseline):
    """Fixed random patch projection plus fixed random MLP blocks (see module docstring)."""

    def __init__(
        self,
        name: str = "random",
        patch: int = DEFAULT_PATCH,
        width: int = 128,
        num_layers: int = 4,
        seed: int = 0,
    ) -> None:
        super().__init__(name, patch)
        if num_layers < 1 or width < 1:
            raise ValueError(f"num_layers and width must be >= 1, got {num_layers}, {width}")
        gen = torch.Generator().manual_seed(int(seed))
        self.blocks = nn.ModuleList(
            [_PatchProjection(patch, width)] + [_RandomBlock(width) for _ in range(num_layers - 1)]
        )
        with torch.no_grad():
            for module in self.modules():
                if isinstance(module, nn.Linear):
                    fan_in = module.in_features
                    module.weight.copy_(torch.randn(module.weight.shape, generator=gen))
                    module.weight.div_(math.sqrt(fan_in))
                    module.bias.zero_()
        self.width = width

    def layer_width(self, layer: int) -> int:
        return self.width


class PixelsBackbone(PatchBaseline):
    """Patchified RGB in [0, 1] (one layer, ``C = 3 * patch**2``)."""

    def __init__(self, name: str = "pixels", patch: int = DEFAULT_PATCH) -> None:
        super().__init__(name, patch)
        self.blocks = nn.ModuleList([_Patchify(patch)])

    def layer_width(self, layer: int) -> int:
        return 3 * self.patch * self.patch


class ConstantBackbone(PatchBaseline):
    """The same fixed vector (drawn from ``seed``) for every token; one layer."""

    def __init__(
        self, name: str = "constant", patch: int = DEFAULT_PATCH, width: int = 16, seed: int = 0
    ) -> None:
        super().__init__(name, patch)
        self.blocks = nn.ModuleList([_Constant(width)])
        gen = torch.Generator().manual_seed(int(seed))
        self.blocks[0].value.copy_(torch.randn(width, generator=gen))
        self.width = width

    def layer_width(self, layer: int) -> int:
        return self.width

    def run(self, prepared: Prepared) -> torch.Tensor:
        return self.blocks[0](prepared.batch["input"], prepared.feature_shape[1:])


_BUILDERS = {"random": RandomBackbone, "pixels": PixelsBackbone, "constant": ConstantBackbone}


def build(
    name: str = "random",
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
    **config: Any,
) -> Backbone:
    """Build baseline ``name`` (``random``, ``pixels`` or ``constant``); ``config`` overrides sizes."""
    if name not in _BUILDERS:
        raise ValueError(f"unknown baseline {name!r}; choose one of {sorted(_BUILDERS)}")
    cls = _BUILDERS[name]
    if name != "pixels":
        config.setdefault("seed", seed)
    model = cls(name=name, **config)
    return model.to(device=device, dtype=dtype).eval().requires_grad_(False)


#: Baselines are already small: ``tiny`` is ``build``.
tiny = build
