"""The `Backbone` interface every model family implements, with its input rules and token grid.

Extraction (``vfm3d.features.extract``) only talks to this interface:

1. ``rules.check(T, H, W)`` refuses unsupported input with a message naming the rule;
2. ``prepare(frames, timesteps, generator)`` does everything before the blocks (normalise pixels,
   VAE-encode, add noise at each timestep, text conditioning) and returns an opaque ``Prepared``;
   for a diffusion model the batch of the prepared input is ``len(timesteps) * B`` (timestep-major);
3. ``run(prepared)`` runs the block stack; forward hooks on ``layer_modules()[i]`` capture outputs
   (the extractor raises from the deepest hook to stop early);
4. ``layer_output_to_grid(i, output, prepared)`` turns the raw output of block ``i`` into
   ``[N, T', h, w, C]`` tokens (dropping CLS/register/text tokens).

Layer ``i`` means "the output of block ``i``" (0-based), before any final norm; an adapter may
count as its paper does when it says so (Fast3R: 0 = encoder output, 24 = after the final norm).

Noise convention (added with the extraction runner; adapters follow it and the shared contract
``tests/backbones/contract.py`` checks it): ``prepare`` draws the noise of the clip batch once
from ``generator`` and reuses it for every timestep of the call (common random numbers), so the
features of timestep ``t`` do not depend on which other timesteps share the batch; the cache
relies on this.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn


class UnsupportedInputError(ValueError):
    """Input frames violate a backbone's rule; the message states the rule."""


@dataclass(frozen=True)
class InputRules:
    """What a backbone accepts. T must satisfy ``(T - frame_offset) % frame_step == 0``.

    Examples: Wan2.1 ``frame_step=4, frame_offset=1`` (T = 4k+1); VideoMAE ``fixed_frames=16,
    fixed_size=(224, 224)``; DINOv2 any T, ``spatial_multiple=14``.
    """

    frame_step: int = 1
    frame_offset: int = 0
    min_frames: int = 1
    max_frames: int | None = None
    fixed_frames: int | None = None
    spatial_multiple: int = 1
    fixed_size: tuple[int, int] | None = None
    square: bool = False

    def describe(self) -> str:
        """A one-line human description of the rules."""
        parts = []
        if self.fixed_frames is not None:
            parts.append(f"T = {self.fixed_frames}")
        elif self.frame_step > 1:
            parts.append(f"T = {self.frame_step}k+{self.frame_offset % self.frame_step}")
        else:
            parts.append("any T")
        if self.min_frames > 1:
            parts.append(f"T >= {self.min_frames}")
        if self.max_frames is not None:
            parts.append(f"T <= {self.max_frames}")
        if self.fixed_size is not None:
            parts.append(f"H x W = {self.fixed_size[0]} x {self.fixed_size[1]}")
        elif self.spatial_multiple > 1:
            parts.append(f"H, W multiples of {self.spatial_multiple}")
        if self.square:
            parts.append("square frames")
        return ", ".join(parts)

    def frames_ok(self, num_frames: int) -> bool:
        if self.fixed_frames is not None:
            return num_frames == self.fixed_frames
        if num_frames < self.min_frames:
            return False
        if self.max_frames is not None and num_frames > self.max_frames:
            return False
        return (num_frames - self.frame_offset) % self.frame_step == 0

    def nearest_valid_frames(self, num_frames: int) -> list[int]:
        """``[num_frames]`` if it is valid, else the nearest valid counts below and above it
        (one or both, ascending; empty if no count is valid), e.g. T = 4k+1: 10 -> [9, 13]."""
        if self.frames_ok(num_frames):
            return [num_frames]
        if self.fixed_frames is not None:
            return [self.fixed_frames] if self.frames_ok(self.fixed_frames) else []
        step = max(1, self.frame_step)
        below = None
        top = num_frames - 1 if self.max_frames is None else min(num_frames - 1, self.max_frames)
        for t in range(top, max(0, top - step), -1):
            if self.frames_ok(t):
                below = t
                break
        above = None
        low = max(num_frames + 1, self.min_frames)
        for t in range(low, low + step):
            if self.max_frames is not None and t > self.max_frames:
                break
            if self.frames_ok(t):
                above = t
                break
        return [t for t in (below, above) if t is not None]

    def _nearest_note(self, num_frames: int) -> str:
        nearest = self.nearest_valid_frames(num_frames)
        if not nearest:
            return "; no frame count satisfies it"
        return f"; nearest counts that work: {', '.join(str(t) for t in nearest)}"

    def largest_valid_frames(self, available: int) -> int:
        """The largest valid frame count <= ``available`` (for the CLI's automatic choice)."""
        for t in range(available, 0, -1):
            if self.frames_ok(t):
                return t
        raise UnsupportedInputError(
            f"no valid frame count <= {available} for rule: {self.describe()}"
            f"{self._nearest_note(available)}"
        )

    def check(self, num_frames: int, height: int, width: int) -> None:
        """Raise `UnsupportedInputError` naming the violated rule (and, for a frame count, the
        nearest counts that work)."""
        if not self.frames_ok(num_frames):
            raise UnsupportedInputError(
                f"{num_frames} frames not supported: the rule is {self.describe()}"
                f"{self._nearest_note(num_frames)}"
            )
        if self.fixed_size is not None and (height, width) != tuple(self.fixed_size):
            raise UnsupportedInputError(
                f"frame size {height}x{width} not supported: the rule is {self.describe()}"
            )
        m = self.spatial_multiple
        if height % m or width % m:
            raise UnsupportedInputError(
                f"frame size {height}x{width} not supported: the rule is {self.describe()}"
            )
        if self.square and height != width:
            raise UnsupportedInputError(
                f"frame size {height}x{width} not supported: the rule is {self.describe()}"
            )


@dataclass(frozen=True)
class TokenGrid:
    """How input frames map to feature frames and pixels to tokens.

    - ``temporal_stride``: input frames per feature frame (VAE temporal compression x temporal
      patch, or tubelet size).
    - ``causal_first_frame``: causal video VAEs (Wan, HunyuanVideo, CogVideoX) encode frame 0 alone,
      then groups of ``temporal_stride`` frames.
    - ``patch_size``: input pixels per token along (H, W).
    """

    temporal_stride: int = 1
    causal_first_frame: bool = False
    patch_size: tuple[int, int] = (1, 1)

    def num_feature_frames(self, num_frames: int) -> int:
        s = self.temporal_stride
        if self.causal_first_frame:
            return 1 + (num_frames - 1 + s - 1) // s if num_frames > 1 else 1
        return (num_frames + s - 1) // s

    def frame_index(self, num_frames: int) -> torch.Tensor:
        """``[T]`` int64: the feature frame holding each input frame."""
        t = torch.arange(num_frames)
        s = self.temporal_stride
        if self.causal_first_frame:
            return torch.where(t == 0, 0, (t - 1) // s + 1)
        return t // s

    def spatial_shape(self, height: int, width: int) -> tuple[int, int]:
        return height // self.patch_size[0], width // self.patch_size[1]


@dataclass
class Prepared:
    """Input ready for the block stack. ``batch`` = model inputs; ``info`` = shapes for regridding."""

    batch: dict[str, Any]
    num_clips: int
    timesteps: list[int] | None
    feature_shape: tuple[int, int, int]  # (T', h, w)
    info: dict[str, Any] = field(default_factory=dict)


class Backbone(nn.Module, ABC):
    """A frozen video/image model exposing per-block features. Subclasses set the attributes below."""

    name: str = "backbone"
    is_diffusion: bool = False
    #: True for backbones built from ground truth (the ``oracle``): ``prepare`` then needs ``aux``.
    needs_geometry: bool = False
    rules: InputRules = InputRules()
    grid: TokenGrid = TokenGrid()

    def __init__(self) -> None:
        super().__init__()
        self._fingerprint: str | None = None

    # ---------------------------------------------------------------- description
    @property
    @abstractmethod
    def num_layers(self) -> int:
        """Number of blocks whose outputs are exposed as layers ``0..num_layers-1``."""

    @abstractmethod
    def layer_width(self, layer: int) -> int:
        """Feature width C of layer ``layer``."""

    @abstractmethod
    def layer_modules(self) -> Sequence[nn.Module]:
        """The modules whose forward outputs are the layers, in order."""

    @property
    def fingerprint(self) -> str:
        """``name`` + a short hash of the weights; identifies cached features."""
        if self._fingerprint is None:
            digest = hashlib.sha256()
            for key, tensor in sorted(self.state_dict().items()):
                digest.update(key.encode())
                flat = tensor.detach().reshape(-1)  # sample on the device, copy ~4096 values
                sample = flat[:: max(1, flat.numel() // 4096)].float().cpu().numpy().tobytes()
                digest.update(sample)
                digest.update(str(tuple(tensor.shape)).encode())
            self._fingerprint = f"{self.name}-{digest.hexdigest()[:16]}"
        return self._fingerprint

    def describe(self) -> dict[str, Any]:
        """A JSON-able summary (used by ``vfm3d backbones``)."""
        return {
            "name": self.name,
            "layers": self.num_layers,
            "widths": sorted({self.layer_width(i) for i in range(self.num_layers)}),
            "diffusion": self.is_diffusion,
            "rules": self.rules.describe(),
            "temporal_stride": self.grid.temporal_stride,
            "causal_first_frame": self.grid.causal_first_frame,
            "patch_size": list(self.grid.patch_size),
        }

    # ---------------------------------------------------------------- running
    @abstractmethod
    def prepare(
        self,
        frames: torch.Tensor,
        timesteps: Sequence[int] | None,
        generator: torch.Generator,
        aux: dict[str, torch.Tensor] | None = None,
    ) -> Prepared:
        """Everything before the blocks. ``frames`` ``[B, T, 3, H, W]`` in [0, 1] (already checked).

        ``aux`` carries ground truth for backbones with ``needs_geometry`` (keys ``depth``
        ``[B,T,H,W]``, ``valid`` ``[B,T,H,W]``, ``intrinsics`` ``[B,T,3,3]``, ``cam_to_world``
        ``[B,T,4,4]``); every other backbone ignores it.
        """

    @abstractmethod
    def run(self, prepared: Prepared) -> Any:
        """Run the block stack on ``prepared.batch`` (hooks capture the layers)."""

    @abstractmethod
    def layer_output_to_grid(self, layer: int, output: Any, prepared: Prepared) -> torch.Tensor:
        """Raw output of ``layer_modules()[layer]`` -> ``[N, T', h, w, C]`` tokens."""

    @property
    def device(self) -> torch.device:
        for p in self.parameters():
            return p.device
        return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        for p in self.parameters():
            return p.dtype
        return torch.float32
