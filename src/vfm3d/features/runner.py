"""`extract_to_store`: clips -> backbone -> `FeatureStore`, resumable and rank-aware.

For each clip (ranks take clips ``rank, rank + world_size, ...`` of the dataset order) and each
timestep batch, the keys of every requested layer are checked against the store; only a batch
with something missing is run, through one forward that stops after the deepest missing layer,
and its results go into one shard. A crashed run, rerun, redoes only what is missing.

Frames fed to the model: the first ``T`` frames of the clip, where ``T`` is ``num_frames`` or,
by default, the largest count the backbone's frame rule allows (``InputRules.largest_valid_frames``).
Frames whose size breaks the backbone's rule are refused unless ``resize=(H, W)`` is given
(bilinear for RGB, nearest for depth/valid, intrinsics rescaled with pixel centres at integers).
With ``window=W`` the clip is read as consecutive windows of ``W`` frames instead (`extract_windows`).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vfm3d.backbones.base import Backbone, UnsupportedInputError
from vfm3d.clip import Clip, ClipFolder
from vfm3d.features.extract import (
    Features,
    _chunks,
    extract,
    validate_layers,
    validate_timesteps,
)
from vfm3d.features.store import FeatureKey, FeatureStore


@dataclass
class ExtractSummary:
    """What one `extract_to_store` call did (counts are cache entries, one per layer x timestep)."""

    clips: int
    computed: int
    skipped: int
    forwards: int
    seconds: float
    rank: int = 0
    world_size: int = 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        return (
            f"{self.clips} clips: {self.computed} entries computed, {self.skipped} skipped "
            f"(already cached), {self.forwards} forwards, {self.seconds:.1f} s"
        )


@dataclass
class _ClipRef:
    clip_id: str
    shape: tuple[int, int, int]  # (T, H, W) stored
    load: Callable[[], Clip]
    first_frames: Callable[[int], np.ndarray]  # uint8 [T, H, W, 3] without loading the rest


def frames_digest(frames: np.ndarray) -> str:
    """sha256 (16 hex digits) of uint8 frames ``[T, H, W, 3]``: tells same-id clips apart."""
    return hashlib.sha256(np.ascontiguousarray(frames).tobytes()).hexdigest()[:16]


def _read_frames(path: Path, num: int) -> np.ndarray:
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as handle:
        return handle.get_slice("frames")[:num]


class _LazyClipRef:
    """A clip of a source with ``ids``/``load`` (a video, an image folder): loaded on first use
    (its shape too), kept until `release`, so one clip at a time is in memory."""

    def __init__(self, source: Any, clip_id: str) -> None:
        self.clip_id = clip_id
        self._source = source
        self._clip: Clip | None = None

    def load(self) -> Clip:
        if self._clip is None:
            self._clip = self._source.load(self.clip_id)
        return self._clip

    @property
    def shape(self) -> tuple[int, int, int]:
        clip = self.load()
        return (clip.num_frames, clip.height, clip.width)

    def first_frames(self, num: int) -> np.ndarray:
        return self.load().frames[:num]

    def release(self) -> None:
        self._clip = None


def _clip_refs(clips: Any) -> list[_ClipRef] | list[_LazyClipRef]:
    """Clip ids, sizes and lazy loaders, without reading frames from disk (a `ClipFolder`), or
    loading one clip at a time (any source with ``ids`` and ``load``, e.g. `open_clips`)."""
    if isinstance(clips, ClipFolder):
        from safetensors import safe_open

        refs = []
        for clip_id in clips.ids:
            path = clips.path_of(clip_id)
            if not path.is_file():
                raise FileNotFoundError(f"clip file not found: {path}")
            with safe_open(str(path), framework="numpy") as handle:
                t, h, w, _ = handle.get_slice("frames").get_shape()
            refs.append(
                _ClipRef(
                    clip_id,
                    (t, h, w),
                    lambda c=clip_id: clips.load(c),
                    lambda num, p=path: _read_frames(p, num),
                )
            )
        return refs
    if hasattr(clips, "ids") and hasattr(clips, "load") and not isinstance(clips, Sequence):
        ids = list(clips.ids)
        if len(set(ids)) != len(ids):
            raise ValueError("clips: duplicate clip ids")
        return [_LazyClipRef(clips, clip_id) for clip_id in ids]
    refs = []
    for clip in clips:
        if not clip.id:
            raise ValueError("clips: every clip needs meta['id'] to be cached")
        refs.append(
            _ClipRef(
                clip.id,
                (clip.num_frames, clip.height, clip.width),
                lambda c=clip: c,
                lambda num, c=clip: c.frames[:num],
            )
        )
    ids = [r.clip_id for r in refs]
    if len(set(ids)) != len(ids):
        raise ValueError("clips: duplicate clip ids")
    return refs


def choose_num_frames(backbone: Backbone, available: int, num_frames: int | None) -> int:
    """``num_frames`` if given (checked), else the largest count the backbone's rule allows."""
    if num_frames is None:
        return backbone.rules.largest_valid_frames(available)
    if num_frames > available:
        raise ValueError(f"num_frames: {num_frames} requested but the clip has {available}")
    if not backbone.rules.frames_ok(num_frames):
        nearest = [t for t in backbone.rules.nearest_valid_frames(num_frames) if t <= available]
        note = (
            f"; nearest counts that work (clip has {available}): {', '.join(map(str, nearest))}"
            if nearest
            else f"; no count <= {available} (the clip's frames) works"
        )
        raise UnsupportedInputError(
            f"num_frames: {num_frames} frames not supported by {backbone.name}: "
            f"the rule is {backbone.rules.describe()}{note}"
        )
    return num_frames


def windowed_fingerprint(fingerprint: str, window: int | None) -> str:
    """The feature-store identity of ``fingerprint``'s features read in windows of ``window``."""
    return fingerprint if window is None else f"{fingerprint}|window={window}"


def window_coverage(backbone: Backbone, available: int, window: int, clip_id: str) -> int:
    """Frames covered by whole windows of ``window`` frames in a clip of ``available`` frames.

    Raises `UnsupportedInputError` when the backbone's rule rejects ``window`` or the clip is
    shorter than one window.
    """
    if not backbone.rules.frames_ok(window):
        raise UnsupportedInputError(
            f"window: {window} frames not supported by {backbone.name}: the rule is "
            f"{backbone.rules.describe()}"
        )
    if available < window:
        raise UnsupportedInputError(
            f"clip {clip_id}: {available} frames, shorter than one window of {window}"
        )
    return (available // window) * window


#: Windows per forward in `extract_windows` (bounds memory on long clips).
WINDOW_BATCH = 16


def extract_windows(
    backbone: Backbone,
    inputs: tuple[torch.Tensor, dict[str, torch.Tensor] | None],
    window: int,
    layers: Sequence[int],
    timesteps: Sequence[int] | None,
    seed: int,
) -> dict[tuple[int, int | None], Features]:
    """Features of a ``[1, n * window, 3, H, W]`` clip read as ``n`` windows of ``window`` frames.

    Windows are batched (`WINDOW_BATCH` per forward; diffusion noise is drawn per batch from
    ``seed``); each window's tokens ``[T'_w, h, w, C]`` are concatenated in time, and the
    returned ``frame_index`` maps clip frame ``k * window + j`` to ``k * T'_w + index_w[j]``.
    """
    frames, aux = inputs
    total = frames.shape[1]
    n = total // window
    windows = frames[0, : n * window].reshape(n, window, *frames.shape[2:])
    aux_w = None
    if aux is not None:
        aux_w = {k: v[0, : n * window].reshape(n, window, *v.shape[2:]) for k, v in aux.items()}
    parts: list[dict[tuple[int, int | None], Features]] = []
    for s in range(0, n, WINDOW_BATCH):
        sub_aux = None if aux_w is None else {k: v[s : s + WINDOW_BATCH] for k, v in aux_w.items()}
        parts.append(
            extract(backbone, windows[s : s + WINDOW_BATCH], layers, timesteps, seed, aux=sub_aux)
        )
    out = {}
    for key in parts[0]:
        tokens = torch.cat([p[key].tokens for p in parts])  # [n, T'_w, h, w, C]
        per = tokens.shape[1]
        index = parts[0][key].frame_index.long()
        offsets = torch.arange(n, device=index.device).repeat_interleave(window) * per
        out[key] = Features(
            tokens=tokens.reshape(1, n * per, *tokens.shape[2:]),
            frame_index=index.repeat(n) + offsets,
            layer=parts[0][key].layer,
            timestep=parts[0][key].timestep,
        )
    return out


def clip_to_inputs(
    clip: Clip,
    num_frames: int,
    resize: tuple[int, int] | None = None,
    with_geometry: bool = False,
) -> tuple[torch.Tensor, dict[str, torch.Tensor] | None]:
    """First ``num_frames`` frames as ``[1, T, 3, H, W]`` float in [0, 1] (+ ground truth ``aux``).

    ``aux`` (when ``with_geometry``): ``depth``/``valid`` ``[1,T,H,W]``, ``intrinsics``
    ``[1,T,3,3]``, ``cam_to_world`` ``[1,T,4,4]``.
    """
    frames = torch.from_numpy(np.ascontiguousarray(clip.frames[:num_frames]))
    frames = frames.permute(0, 3, 1, 2).float().div(255.0)[None]
    aux = None
    if with_geometry:
        if clip.depth is None or clip.valid is None:
            raise ValueError(f"clip {clip.id}: this backbone needs depth, the clip has none")
        aux = {
            "depth": torch.from_numpy(clip.depth[:num_frames].copy())[None],
            "valid": torch.from_numpy(clip.valid[:num_frames].copy())[None],
            "intrinsics": torch.from_numpy(clip.intrinsics[:num_frames].copy())[None],
            "cam_to_world": torch.from_numpy(clip.cam_to_world[:num_frames].copy())[None],
        }
    if resize is not None and tuple(resize) != tuple(frames.shape[-2:]):
        frames, aux = resize_inputs(frames, aux, resize)
    return frames, aux


def resize_inputs(
    frames: torch.Tensor, aux: dict[str, torch.Tensor] | None, size: tuple[int, int]
) -> tuple[torch.Tensor, dict[str, torch.Tensor] | None]:
    """Resize ``[B, T, 3, H, W]`` frames (bilinear, antialiased) and ``aux`` to ``size`` (H, W).

    Depth and valid use nearest-exact; intrinsics follow ``u' = (u + 0.5) * s - 0.5``.
    """
    b, t, c, h, w = frames.shape
    new_h, new_w = size
    if new_h < 1 or new_w < 1:
        raise ValueError(f"resize: size must be positive, got {size}")
    out = torch.nn.functional.interpolate(
        frames.reshape(b * t, c, h, w), size=size, mode="bilinear", antialias=True
    )
    out = out.clamp(0.0, 1.0).reshape(b, t, c, new_h, new_w)
    if aux is None:
        return out, None
    sx, sy = new_w / w, new_h / h
    aux = dict(aux)
    for name in ("depth", "valid"):
        grid = aux[name].reshape(b * t, 1, h, w).float()
        grid = torch.nn.functional.interpolate(grid, size=size, mode="nearest-exact")
        aux[name] = grid.reshape(b, t, new_h, new_w).to(aux[name].dtype)
    k = aux["intrinsics"].clone()
    k[..., 0, 0] *= sx
    k[..., 1, 1] *= sy
    k[..., 0, 2] = (k[..., 0, 2] + 0.5) * sx - 0.5
    k[..., 1, 2] = (k[..., 1, 2] + 0.5) * sy - 0.5
    aux["intrinsics"] = k
    return out, aux


def extract_to_store(
    store: FeatureStore,
    backbone: Backbone,
    clips: ClipFolder | Sequence[Clip] | Any,
    layers: Sequence[int],
    timesteps: Sequence[int] | None = None,
    num_frames: int | None = None,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
    progress: bool = True,
    timestep_batch: int | None = None,
    resize: tuple[int, int] | None = None,
    merge: bool = True,
    window: int | None = None,
) -> ExtractSummary:
    """Extract ``layers`` (x ``timesteps``) of every clip of this rank into ``store``.

    ``window``: run the backbone on consecutive, non-overlapping windows of ``window`` frames
    (a count its rule accepts, e.g. the length a zoo model was trained on) and concatenate their
    features in time, so that a long clip is read with the temporal context the model knows;
    the clip's leading ``floor(T / window) * window`` frames are covered. Such features are
    stored under `windowed_fingerprint` (never mixed with whole-clip features).

    ``clips``: a `ClipFolder`, a sequence of clips, or any source with ``ids`` and
    ``load(id)`` (`vfm3d.data.inputs.open_clips`: videos, image folders), loaded one at a time.
    Skips entries already stored. With ``world_size > 1`` this rank handles clips
    ``rank::world_size``; if ``torch.distributed`` is initialised, all ranks meet at a barrier and
    rank 0 merges the manifest parts (with ``merge``); a single process merges at the end.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank: must lie in [0, {world_size - 1}], got {rank}")
    layer_list = validate_layers(backbone, layers)
    ts = validate_timesteps(backbone, timesteps)
    refs = _clip_refs(clips)[rank::world_size]
    start = time.perf_counter()
    computed = skipped = forwards = 0
    from tqdm.auto import tqdm

    desc = f"extract {backbone.name}" + (f" [rank {rank}]" if world_size > 1 else "")
    bar = tqdm(refs, desc=desc, unit="clip", disable=not progress, position=rank)
    fingerprint = windowed_fingerprint(backbone.fingerprint, window)
    for ref in bar:
        t_avail, h, w = ref.shape
        size = (h, w) if resize is None else tuple(resize)
        if window is None:
            t = choose_num_frames(backbone, t_avail, num_frames)
        else:
            t = window_coverage(backbone, t_avail, window, ref.clip_id)
        try:
            backbone.rules.check(t if window is None else window, *size)
        except UnsupportedInputError as error:
            raise UnsupportedInputError(
                f"clip {ref.clip_id}: {error} (pass resize=(H, W), e.g. --resize HxW)"
            ) from error
        base = FeatureKey(
            backbone=fingerprint,
            layer=0,
            timestep=None,
            clip_id=ref.clip_id,
            input_size=(t, *size),
            frame_indices=tuple(range(t)),
            seed=seed,
        )
        inputs = None
        digest = frames_digest(ref.first_frames(t))
        for chunk in _chunks(ts, timestep_batch):
            chunk_ts: list[int | None] = [None] if chunk is None else list(chunk)
            missing = [
                (lay, tt)
                for tt in chunk_ts
                for lay in layer_list
                if not store.has(replace(base, layer=lay, timestep=tt))
            ]
            present = [
                replace(base, layer=lay, timestep=tt)
                for tt in chunk_ts
                for lay in layer_list
                if (lay, tt) not in missing
            ]
            _check_same_frames(store, present[:1], digest, ref.clip_id)
            skipped += len(present)
            if not missing:
                continue
            if inputs is None:
                inputs = clip_to_inputs(ref.load(), t, resize, backbone.needs_geometry)
            run_layers = sorted({lay for lay, _ in missing})
            run_ts = None if chunk is None else sorted({tt for _, tt in missing}, key=chunk.index)
            if window is None:
                feats = extract(backbone, inputs[0], run_layers, run_ts, seed=seed, aux=inputs[1])
                forwards += 1
            else:
                feats = extract_windows(backbone, inputs, window, run_layers, run_ts, seed)
                forwards += t // window
            items = []
            for lay, tt in missing:
                f = feats[(lay, tt)]
                meta = {
                    "feature_shape": list(f.tokens.shape[1:4]),
                    "backbone_name": backbone.name,
                    "frames_sha256": digest,
                }
                items.append((replace(base, layer=lay, timestep=tt), f.tokens, f.frame_index, meta))
            store.put_many(items)
            computed += len(items)
        if isinstance(ref, _LazyClipRef):
            ref.release()
        bar.set_postfix(computed=computed, skipped=skipped)
    summary = ExtractSummary(
        clips=len(refs),
        computed=computed,
        skipped=skipped,
        forwards=forwards,
        seconds=time.perf_counter() - start,
        rank=rank,
        world_size=world_size,
    )
    if merge:
        _finish(store, rank, world_size)
    return summary


def _check_same_frames(
    store: FeatureStore, keys: list[FeatureKey], digest: str, clip_id: str
) -> None:
    """Refuse to reuse cached entries computed from other frames under the same clip id."""
    for key in keys:
        entry = store.entry(key)
        stored = None if entry is None else entry.meta.get("frames_sha256")
        if stored is not None and stored != digest:
            raise ValueError(
                f"clip {clip_id!r}: the cache {store.root} holds features of a different clip "
                "with the same id (frames differ); use another --out cache or unique clip ids"
            )


def _finish(store: FeatureStore, rank: int, world_size: int) -> None:
    """Barrier (if distributed), then rank 0 merges the manifest parts."""
    import torch.distributed as dist

    distributed = world_size > 1 and dist.is_available() and dist.is_initialized()
    if world_size > 1 and not distributed:
        return  # independent shards (--shard I/N): merged later by `FeatureStore.merge`
    if distributed:
        dist.barrier()
    if rank == 0:
        store.merge()
    if distributed:
        dist.barrier()


def rank_from_env() -> tuple[int, int]:
    """``(RANK, WORLD_SIZE)`` from the environment (torchrun), ``(0, 1)`` otherwise."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
