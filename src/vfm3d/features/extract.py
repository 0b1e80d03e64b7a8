"""The extraction runner: many layers (and timesteps) from one forward, with early exit.

``extract(backbone, frames, layers, timesteps)`` runs ``backbone.prepare`` then ``backbone.run``
once per timestep batch, with forward hooks on ``backbone.layer_modules()[i]`` for every
requested layer ``i``. The hook of the deepest requested layer raises a private exception that
stops the forward right there (early exit), so no block after it runs. Hooks are always removed.

Noise convention (diffusion backbones): for every timestep batch a fresh ``torch.Generator``
seeded with ``seed`` is passed to ``backbone.prepare``. Adapters draw the noise of one clip batch
once and reuse it for every timestep in the batch (common random numbers), so the features of
timestep ``t`` do not depend on which other timesteps share the batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from vfm3d.backbones.base import Backbone, Prepared

FeatureDict = dict[tuple[int, int | None], "Features"]


@dataclass
class Features:
    """Tokens of one layer at one timestep.

    - ``tokens``: ``[B, T', h, w, C]`` (one feature frame per ``T'``, channels last).
    - ``frame_index``: ``[T]`` int64, the feature frame holding each input frame.
    - ``layer``: block index (0-based, output of that block).
    - ``timestep``: the requested diffusion timestep (by default an index into the scheduler's
      1000-step schedule, as the VidFM3D code uses it; see ``docs/backbones-diffusion.md``),
      else ``None``.
    """

    tokens: torch.Tensor
    frame_index: torch.Tensor
    layer: int
    timestep: int | None


class _EarlyExit(Exception):
    """Raised from the deepest requested layer's hook to stop the forward."""


def validate_frames(frames: Any, backbone: Backbone | None = None) -> torch.Tensor:
    """Check ``frames`` is ``[B, T, 3, H, W]`` floating point, finite, in [0, 1].

    With ``backbone`` also apply ``backbone.rules.check`` (raises ``UnsupportedInputError``
    stating the rule). Returns ``frames`` unchanged.
    """
    if not isinstance(frames, torch.Tensor):
        raise TypeError(f"frames: must be a torch.Tensor, got {type(frames).__name__}")
    if frames.ndim != 5 or frames.shape[2] != 3:
        raise ValueError(f"frames: shape must be [B, T, 3, H, W], got {tuple(frames.shape)}")
    if not frames.is_floating_point():
        raise ValueError(f"frames: must be floating point in [0, 1], got dtype {frames.dtype}")
    if min(frames.shape) == 0:
        raise ValueError(f"frames: empty tensor of shape {tuple(frames.shape)}")
    if not torch.isfinite(frames).all():
        raise ValueError("frames: contains NaN or Inf")
    lo, hi = float(frames.min()), float(frames.max())
    if lo < 0.0 or hi > 1.0:
        raise ValueError(f"frames: values must lie in [0, 1], got range [{lo:.4g}, {hi:.4g}]")
    if backbone is not None:
        _, t, _, h, w = frames.shape
        backbone.rules.check(t, h, w)
    return frames


def validate_layers(backbone: Backbone, layers: Sequence[int]) -> list[int]:
    """Sorted unique layer indices; raise ``ValueError`` listing the valid range."""
    if isinstance(layers, int):
        layers = [layers]
    layers = list(layers)
    n = backbone.num_layers
    if not layers:
        raise ValueError(f"layers: request at least one layer (valid: 0..{n - 1})")
    for layer in layers:
        if isinstance(layer, bool) or not isinstance(layer, int):
            raise ValueError(f"layers: {layer!r} is not an integer (valid: 0..{n - 1})")
        if not 0 <= layer < n:
            raise ValueError(
                f"layers: {layer} out of range for {backbone.name}; valid layers are 0..{n - 1}"
            )
    return sorted(set(layers))


def validate_timesteps(backbone: Backbone, timesteps: Sequence[int] | None) -> list[int] | None:
    """Diffusion backbones need timesteps (ints in [0, 1000]); the others refuse them."""
    if not backbone.is_diffusion:
        if timesteps is not None and len(list(timesteps)) > 0:
            raise ValueError(
                f"timesteps: {backbone.name} is not a diffusion model; pass timesteps=None"
            )
        return None
    if timesteps is None or len(list(timesteps)) == 0:
        raise ValueError(
            f"timesteps: {backbone.name} is a diffusion model; pass timesteps, e.g. [749]"
        )
    out: list[int] = []
    for t in timesteps:
        if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t <= 1000:
            raise ValueError(f"timesteps: {t!r} is not an integer in [0, 1000]")
        if t not in out:
            out.append(t)
    return out


def _check_aux(backbone: Backbone, aux: dict[str, torch.Tensor] | None, frames: torch.Tensor):
    if not backbone.needs_geometry:
        return None
    if aux is None:
        raise ValueError(
            f"aux: {backbone.name} is built from ground truth; pass aux with depth, valid, "
            "intrinsics (and cam_to_world)"
        )
    b, t, _, h, w = frames.shape
    for name, shape in (
        ("depth", (b, t, h, w)),
        ("valid", (b, t, h, w)),
        ("intrinsics", (b, t, 3, 3)),
    ):
        if name not in aux:
            raise ValueError(f"aux: missing {name!r} (needed by {backbone.name})")
        if tuple(aux[name].shape) != shape:
            raise ValueError(f"aux: {name} must have shape {shape}, got {tuple(aux[name].shape)}")
    return {k: v.to(frames.device) for k, v in aux.items()}


def _chunks(items: list[int] | None, size: int | None) -> list[list[int] | None]:
    if items is None:
        return [None]
    size = len(items) if size is None else size
    if size < 1:
        raise ValueError(f"timestep_batch: must be >= 1, got {size}")
    return [items[i : i + size] for i in range(0, len(items), size)]


def _make_generator(seed: int, device: torch.device) -> torch.Generator:
    gen = torch.Generator(device=device)
    gen.manual_seed(int(seed))
    return gen


def extract(
    backbone: Backbone,
    frames: torch.Tensor,
    layers: Sequence[int],
    timesteps: Sequence[int] | None = None,
    seed: int = 0,
    aux: dict[str, torch.Tensor] | None = None,
    timestep_batch: int | None = None,
    early_exit: bool = True,
) -> FeatureDict:
    """Features of ``layers`` (x ``timesteps``) for ``frames`` from one forward per timestep batch.

    Args:
        backbone: any `Backbone` (in eval mode; no gradients are taken).
        frames: ``[B, T, 3, H, W]`` float in [0, 1]; must satisfy ``backbone.rules``.
        layers: block indices in ``0..num_layers-1``.
        timesteps: scheduler timestep values (diffusion backbones only; required there).
        seed: seeds the noise generator handed to ``backbone.prepare``.
        aux: ground truth for ``needs_geometry`` backbones (``depth``/``valid`` ``[B,T,H,W]``,
            ``intrinsics`` ``[B,T,3,3]``, ``cam_to_world`` ``[B,T,4,4]``).
        timestep_batch: timesteps per forward. ``None`` (default): all in one batch, halved
            automatically on an out-of-memory error (the noise convention keeps results equal).
        early_exit: stop the forward after the deepest requested layer (default).

    Returns:
        ``{(layer, timestep): Features}`` with ``tokens`` ``[B, T', h, w, C]``; ``timestep`` is
        ``None`` for non-diffusion backbones.
    """
    validate_frames(frames, backbone)
    layer_list = validate_layers(backbone, layers)
    ts = validate_timesteps(backbone, timesteps)
    frames = frames.to(backbone.device)
    aux = _check_aux(backbone, aux, frames)
    num_clips, num_frames = frames.shape[:2]
    frame_index = backbone.grid.frame_index(num_frames)
    out: FeatureDict = {}
    pending = _chunks(ts, timestep_batch)
    while pending:
        chunk = pending.pop(0)
        try:
            with torch.no_grad():
                generator = _make_generator(seed, frames.device)
                prepared = backbone.prepare(frames, chunk, generator, aux)
                grids = capture_layers(backbone, prepared, layer_list, early_exit=early_exit)
        except torch.OutOfMemoryError:
            if timestep_batch is not None or chunk is None or len(chunk) == 1:
                raise
            # Automatic batching: halve the timestep batch and retry (same noise, same result).
            prepared = grids = None
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            half = len(chunk) // 2
            pending[:0] = [chunk[:half], chunk[half:]]
            continue
        for index, grid in grids.items():
            _split_timesteps(out, grid, index, chunk, num_clips, frame_index, prepared)
    return out


def capture_layers(
    backbone: Backbone, prepared: Prepared, layers: Sequence[int], early_exit: bool = True
) -> dict[int, torch.Tensor]:
    """Run ``backbone.run(prepared)`` once with hooks; ``{layer: [N, T', h, w, C]}``.

    ``layers`` must be valid (see `validate_layers`); with ``early_exit`` the forward stops after
    the deepest one. Hooks are removed whatever happens.
    """
    layer_list = sorted(set(layers))
    modules = backbone.layer_modules()
    deepest = layer_list[-1]
    captured: dict[int, Any] = {}
    handles = []
    with torch.no_grad():
        try:
            for index in layer_list:
                stop = early_exit and index == deepest
                handles.append(
                    modules[index].register_forward_hook(_capture_hook(captured, index, stop))
                )
            try:
                backbone.run(prepared)
            except _EarlyExit:
                pass
        finally:
            for handle in handles:
                handle.remove()
        missing = [i for i in layer_list if i not in captured]
        if missing:
            raise RuntimeError(
                f"{backbone.name}: layers {missing} were never run by backbone.run "
                "(layer_modules() does not match the forward)"
            )
        return {i: backbone.layer_output_to_grid(i, captured[i], prepared) for i in layer_list}


def _capture_hook(captured: dict[int, Any], index: int, stop: bool):
    """A forward hook storing the first output of layer ``index``; raises `_EarlyExit` if ``stop``."""

    def hook(_module: torch.nn.Module, _inputs: Any, output: Any) -> None:
        if index not in captured:
            captured[index] = output
        if stop:
            raise _EarlyExit

    return hook


def _split_timesteps(
    out: FeatureDict,
    grid: torch.Tensor,
    layer: int,
    chunk: list[int] | None,
    num_clips: int,
    frame_index: torch.Tensor,
    prepared: Prepared,
) -> None:
    """Split ``[len(chunk) * B, T', h, w, C]`` (timestep-major) into per-timestep Features."""
    n_t = 1 if chunk is None else len(chunk)
    if grid.ndim != 5 or grid.shape[0] != n_t * num_clips:
        raise RuntimeError(
            f"layer {layer}: layer_output_to_grid must return [{n_t * num_clips}, T', h, w, C], "
            f"got {tuple(grid.shape)}"
        )
    if tuple(grid.shape[1:4]) != tuple(prepared.feature_shape):
        raise RuntimeError(
            f"layer {layer}: grid {tuple(grid.shape[1:4])} != prepared.feature_shape "
            f"{tuple(prepared.feature_shape)}"
        )
    if int(frame_index.max()) >= grid.shape[1]:
        raise RuntimeError(
            f"layer {layer}: frame_index needs {int(frame_index.max()) + 1} feature frames, "
            f"grid has {grid.shape[1]}"
        )
    for k in range(n_t):
        t = None if chunk is None else chunk[k]
        tokens = grid[k * num_clips : (k + 1) * num_clips]
        out[(layer, t)] = Features(
            tokens=tokens, frame_index=frame_index.clone(), layer=layer, timestep=t
        )


def bare_forward(
    backbone: Backbone,
    frames: torch.Tensor,
    timesteps: Sequence[int] | None = None,
    seed: int = 0,
    aux: dict[str, torch.Tensor] | None = None,
) -> Any:
    """``prepare`` + ``run`` with no hooks (the baseline cost for benchmarks)."""
    validate_frames(frames, backbone)
    ts = validate_timesteps(backbone, timesteps)
    frames = frames.to(backbone.device)
    aux = _check_aux(backbone, aux, frames)
    with torch.no_grad():
        prepared = backbone.prepare(frames, ts, _make_generator(seed, frames.device), aux)
        return backbone.run(prepared)


def quarter_layer(backbone: Backbone) -> int:
    """The layer at a quarter of the depth (used by the early-exit benchmark)."""
    return max(0, math.ceil(backbone.num_layers / 4) - 1)
