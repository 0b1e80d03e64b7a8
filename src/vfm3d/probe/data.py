"""Probe data: clips paired with cached backbone features, frame sampling, normalised targets.

A sample is S frames of one clip (frame 0 of the sample is the reference), their feature frames
(mapped through the cache's ``frame_index``), and targets from THE normalisation
(`probe_targets`: frame 0's camera is the origin, mean distance of frame 0's valid points is 1),
resized to the probe's output size (nearest for depth/valid; intrinsics rescaled exactly, pixel
centres at integers).

Frame sampling (VidFM3D ``_sample_query_frames``): S indices in the first ``first_n`` frames,
starting at frame 0, consecutive gaps ``>= min_gap``; the spare frames are split at random.
Training samples are a pure function of ``(seed, sample index)``; evaluation samples are fixed
once and written to the run folder as JSON.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F

from vfm3d.clip import Clip, ClipFolder
from vfm3d.geometry import encode_pose, probe_targets
from vfm3d.probe.config import ProbeConfig
from vfm3d.utils.atomic import atomic_write_json


class ProbeDataError(ValueError):
    """Clips and features do not match (the message names the clip and the rule)."""


# ---------------------------------------------------------------------- feature sources
@runtime_checkable
class FeatureSource(Protocol):
    """Where the probe reads one backbone's features (one layer, one timestep) per clip."""

    def get(self, clip_id: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(tokens [T', h, w, C], frame_index [T] int64)`` for a clip of T frames.

        ``frame_index[t]`` is the feature frame holding clip frame ``t``, or ``-1`` if frame ``t``
        has no features (it was not fed to the backbone). Raise `KeyError` for an unknown clip.
        """
        ...


def read_frames(
    features: FeatureSource, clip_id: str, feature_frames: Sequence[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(tokens [k, h, w, C] of the given feature frames, frame_index [T])`` of a clip.

    Uses the source's optional ``get_frames(clip_id, feature_frames)`` (reads only those frames,
    e.g. from the memory-mapped cache) and falls back to `FeatureSource.get` + indexing.
    """
    getter = getattr(features, "get_frames", None)
    if getter is not None:
        tokens, frame_index = getter(clip_id, list(feature_frames))
        return torch.as_tensor(tokens), torch.as_tensor(frame_index)
    tokens, frame_index = features.get(clip_id)
    tokens = _squeeze_tokens(torch.as_tensor(tokens), clip_id)
    return tokens[torch.as_tensor(list(feature_frames), dtype=torch.long)], torch.as_tensor(
        frame_index
    )


class InMemoryFeatureSource:
    """A `FeatureSource` over a dict ``clip_id -> (tokens [T',h,w,C], frame_index [T])``."""

    def __init__(self, items: dict[str, tuple[torch.Tensor, torch.Tensor]]):
        self.items = dict(items)

    def get(self, clip_id: str) -> tuple[torch.Tensor, torch.Tensor]:
        if clip_id not in self.items:
            raise KeyError(clip_id)
        return self.items[clip_id]


class StoreFeatureSource:
    """A `FeatureSource` over the feature cache (`vfm3d.features.FeatureStore`).

    Selects the entries of one backbone (its name, or the full fingerprint ``name-<hash>``),
    layer and timestep (and ``seed`` if given). A cache entry covers the clip frames listed in
    its key's ``frame_indices``; `get` returns a clip-length ``frame_index`` with ``-1`` for frames
    that were not fed to the backbone. ``num_frames(clip_id)`` gives a clip's frame count.
    Several entries for one clip (other frame selections or seeds) are an error naming them.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        backbone: str,
        layer: int,
        timestep: int | None,
        num_frames: Callable[[str], int],
        seed: int | None = None,
    ):
        from vfm3d.features import FeatureStore

        self.path = Path(path)
        if not self.path.is_dir():
            raise FileNotFoundError(f"feature cache not found: {self.path}")
        self.store = FeatureStore(self.path)
        self.num_frames = num_frames
        keys = [
            k
            for k in self.store.keys(layer=int(layer), timestep=timestep)
            if (k.backbone == backbone or k.backbone.rsplit("-", 1)[0] == backbone)
            and (seed is None or k.seed == seed)
        ]
        fingerprints = sorted({k.backbone for k in keys})
        if len(fingerprints) > 1:
            raise ProbeDataError(
                f"{self.path}: several backbones named {backbone!r} ({fingerprints}); "
                "pass the full fingerprint as --backbone"
            )
        if not keys:
            raise ProbeDataError(
                f"{self.path}: no cached features for backbone {backbone!r}, layer {layer}, "
                f"timestep {timestep} (run `vfm3d extract` first)"
            )
        self._keys: dict[str, list[Any]] = {}
        for key in keys:
            self._keys.setdefault(key.clip_id, []).append(key)

    def _key(self, clip_id: str) -> Any:
        keys = self._keys.get(clip_id)
        if not keys:
            raise KeyError(clip_id)
        if len(keys) > 1:
            raise ProbeDataError(
                f"clip {clip_id!r}: {len(keys)} cache entries match (frame selections / seeds "
                f"{[(len(k.frame_indices), k.seed) for k in keys]}); pass a seed or clean the cache"
            )
        return keys[0]

    def _full_index(self, clip_id: str, key: Any, frame_index: torch.Tensor) -> torch.Tensor:
        total = self.num_frames(clip_id)
        if max(key.frame_indices) >= total:
            raise ProbeDataError(
                f"clip {clip_id!r}: frame count mismatch: features were extracted from frame "
                f"{max(key.frame_indices)} but the clip has {total} frames"
            )
        full = torch.full((total,), -1, dtype=torch.long)
        full[torch.as_tensor(key.frame_indices)] = torch.as_tensor(frame_index).long()
        return full

    def get(self, clip_id: str) -> tuple[torch.Tensor, torch.Tensor]:
        key = self._key(clip_id)
        feats = self.store.get(key)
        return feats.tokens, self._full_index(clip_id, key, feats.frame_index)

    def get_frames(
        self, clip_id: str, feature_frames: Sequence[int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Like `get` but reads only ``feature_frames`` from the cache -> ``[k, h, w, C]``."""
        key = self._key(clip_id)
        feats = self.store.get(key, feature_frames=list(feature_frames))
        return feats.tokens[0], self._full_index(clip_id, key, feats.frame_index)


def _squeeze_tokens(tokens: torch.Tensor, clip_id: str) -> torch.Tensor:
    if tokens.ndim == 5 and tokens.shape[0] == 1:
        tokens = tokens[0]
    if tokens.ndim != 4:
        raise ProbeDataError(
            f"clip {clip_id!r}: features must be [T', h, w, C] (or [1, T', h, w, C]), "
            f"got shape {tuple(tokens.shape)}"
        )
    return tokens


# ---------------------------------------------------------------------- frame sampling
def sample_frames(
    num_available: int, num_frames: int, first_n: int, min_gap: int, rng: np.random.Generator
) -> list[int]:
    """S frame indices in ``[0, min(first_n, num_available))``, first = 0, gaps >= ``min_gap``."""
    window = min(first_n, num_available)
    needed = (num_frames - 1) * max(min_gap, 0) + 1
    if needed > window:
        raise ProbeDataError(
            f"cannot sample {num_frames} frames with min gap {min_gap} from {window} frames "
            f"(needs {needed})"
        )
    if min_gap <= 0:
        return np.linspace(0, window - 1, num_frames).round().astype(int).tolist()
    slack = window - needed
    cuts = np.sort(rng.integers(0, slack + 1, size=num_frames - 1))
    extras = np.diff(np.concatenate(([0], cuts, [slack])))
    idx = [0]
    for extra in extras[:-1]:
        idx.append(idx[-1] + min_gap + int(extra))
    return idx


def sample_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of training sample ``index`` (independent of order, workers, ranks)."""
    return np.random.default_rng([int(seed), int(index)])


@dataclass(frozen=True)
class SampleSpec:
    """One probe sample: a clip id and its S frame indices (frame 0 of the sample = reference)."""

    clip_id: str
    frames: tuple[int, ...]

    def to_json(self) -> dict[str, Any]:
        return {"clip_id": self.clip_id, "frames": list(self.frames)}


def make_eval_samples(
    clips: ClipFolder,
    features: FeatureSource,
    config: ProbeConfig,
    seed: int,
    per_clip: int | None = None,
) -> list[SampleSpec]:
    """Fixed evaluation samples: ``per_clip`` per clip, deterministic from ``seed``.

    Frames are drawn among the leading frames that have features (see `leading_frames`).
    """
    per_clip = per_clip or config.eval_samples_per_clip
    specs = []
    for n, clip_id in enumerate(clips.ids):
        num = leading_frames(read_frames(features, clip_id, [0])[1])
        for k in range(per_clip):
            rng = np.random.default_rng([int(seed), 1_000_003, n, k])
            frames = sample_frames(num, config.num_frames, config.first_n, config.min_gap, rng)
            specs.append(SampleSpec(clip_id, tuple(frames)))
    return specs


def write_samples(path: str | os.PathLike[str], specs: Sequence[SampleSpec]) -> None:
    atomic_write_json(path, {"samples": [s.to_json() for s in specs]})


def read_samples(path: str | os.PathLike[str]) -> list[SampleSpec]:
    source = Path(path)
    if not source.is_file():
        raise FileNotFoundError(f"evaluation sample file not found: {source}")
    data = json.loads(source.read_text())
    return [
        SampleSpec(str(s["clip_id"]), tuple(int(f) for f in s["frames"])) for s in data["samples"]
    ]


def leading_frames(frame_index: torch.Tensor) -> int:
    """Number of leading clip frames (from frame 0) that have features (``frame_index >= 0``)."""
    missing = (torch.as_tensor(frame_index) < 0).nonzero()
    return int(missing[0, 0]) if missing.numel() else int(frame_index.shape[0])


def num_frames(clips: ClipFolder, clip_id: str) -> int:
    from safetensors import safe_open

    with safe_open(str(clips.path_of(clip_id)), framework="numpy") as handle:
        return int(handle.get_slice("frames").get_shape()[0])


# ---------------------------------------------------------------------- pairing checks
def check_pairing(
    clips: ClipFolder, features: FeatureSource, config: ProbeConfig, full_scan: bool = True
) -> dict[str, Any]:
    """Check every clip has matching features; raise `ProbeDataError` naming the first problem.

    Rules: the clip id is in the feature source; ``len(frame_index) == T`` of the clip;
    ``frame_index`` lies in ``[-1, T')``; the features are finite; all clips share ``(h, w, C)``;
    each clip has enough frames for the sampling rule. Returns ``{"channels", "grid", "clips"}``.
    ``full_scan=False`` reads one feature frame per clip (for very large caches): the finiteness
    of the rest is then checked per sample, when it is loaded.
    """
    missing = []
    shape: tuple[int, int, int] | None = None
    for clip_id in clips.ids:
        try:
            if full_scan:
                tokens, frame_index = features.get(clip_id)
            else:
                tokens, frame_index = read_frames(features, clip_id, [0])
        except KeyError:
            missing.append(clip_id)
            continue
        tokens = _squeeze_tokens(torch.as_tensor(tokens), clip_id)
        frame_index = torch.as_tensor(frame_index)
        num = num_frames(clips, clip_id)
        if frame_index.ndim != 1 or frame_index.shape[0] != num:
            raise ProbeDataError(
                f"clip {clip_id!r}: frame count mismatch: the clip has {num} frames but the "
                f"features' frame_index has {tuple(frame_index.shape)} entries (extracted from "
                "a different frame selection?)"
            )
        if frame_index.numel() and (
            int(frame_index.min()) < -1 or (full_scan and int(frame_index.max()) >= tokens.shape[0])
        ):
            raise ProbeDataError(
                f"clip {clip_id!r}: frame_index points outside the {tokens.shape[0]} feature "
                f"frames (range {int(frame_index.min())}..{int(frame_index.max())})"
            )
        if not bool(torch.isfinite(tokens).all()):
            raise ProbeDataError(f"clip {clip_id!r}: features contain NaN or Inf")
        this = (int(tokens.shape[1]), int(tokens.shape[2]), int(tokens.shape[3]))
        if shape is None:
            shape = this
        elif this != shape:
            raise ProbeDataError(
                f"clip {clip_id!r}: feature grid/channels (h, w, C) = {this} differ from the "
                f"first clip's {shape}"
            )
        needed = (config.num_frames - 1) * config.min_gap + 1
        usable = min(leading_frames(frame_index), config.first_n)
        if usable < needed:
            raise ProbeDataError(
                f"clip {clip_id!r}: {usable} usable frames (with features, within the first "
                f"{config.first_n}) is too short to sample {config.num_frames} frames with min "
                f"gap {config.min_gap} (needs {needed})"
            )
    if missing:
        shown = ", ".join(repr(m) for m in missing[:5])
        more = f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""
        raise ProbeDataError(
            f"features missing for {len(missing)} of {len(clips)} clips: {shown}{more}"
        )
    if shape is None:
        raise ProbeDataError("no clips to train on: the clip folder is empty")
    return {"grid": shape[:2], "channels": shape[2], "clips": len(clips)}


# ---------------------------------------------------------------------- targets
def resize_targets(
    depth: np.ndarray,
    valid: np.ndarray,
    intrinsics: np.ndarray,
    out_size: tuple[int, int],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Nearest-resize ``depth, valid [S, H, W]`` to ``out_size``; rescale ``intrinsics [S, 3, 3]``.

    With pixel centres at integers, output pixel ``u'`` samples source ``floor((u' + 0.5) s)``
    and ``K' = diag(sx, sy, 1) @ (K + 0.5 [0 0 1]) - 0.5 [0 0 1]`` (``f' = f sx``,
    ``c' = (c + 0.5) sx - 0.5``).
    """
    d = torch.from_numpy(np.ascontiguousarray(depth))
    v = torch.from_numpy(np.ascontiguousarray(valid))
    k = torch.from_numpy(np.ascontiguousarray(intrinsics)).double().clone()
    h, w = d.shape[-2:]
    oh, ow = out_size
    if (oh, ow) == (h, w):
        return d.float(), v.bool(), k
    d = F.interpolate(d[:, None].float(), size=(oh, ow), mode="nearest-exact")[:, 0]
    v = F.interpolate(v[:, None].float(), size=(oh, ow), mode="nearest-exact")[:, 0] > 0.5
    sx, sy = ow / w, oh / h
    k[:, 0, 0] *= sx
    k[:, 0, 1] *= sx
    k[:, 0, 2] = (k[:, 0, 2] + 0.5) * sx - 0.5
    k[:, 1, 1] *= sy
    k[:, 1, 2] = (k[:, 1, 2] + 0.5) * sy - 0.5
    return d, v, k


def _resize_images(frames: np.ndarray, out_size: tuple[int, int]) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    if tuple(x.shape[-2:]) != tuple(out_size):
        x = F.interpolate(x, size=out_size, mode="bilinear", align_corners=False, antialias=True)
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)


# ---------------------------------------------------------------------- dataset
class ProbeDataset(torch.utils.data.Dataset):
    """Samples for the probe. Item ``i`` is a dict of tensors (S = ``config.num_frames``):

    - ``features`` ``[S, h, w, C]`` float32: feature frame ``frame_index[f]`` for each frame f.
    - ``points`` ``[S, H, W, 3]``: target point map in frame 0's camera coordinates (normalised).
    - ``depth`` ``[S, H, W]``, ``valid`` ``[S, H, W]`` bool, ``conf`` ``[S, H, W]`` (ones: no GT
      confidence in vfm3d clips).
    - ``world_to_cam``, ``cam_to_world`` ``[S, 4, 4]`` float64 (frame 0 = identity, translations
      normalised), ``intrinsics`` ``[S, 3, 3]``
      at the output size, ``pose_enc`` ``[S, 9]`` absT_quaR_FoV.
    - ``images`` ``[S, H, W, 3]`` uint8, ``frames`` ``[S]`` int64, ``clip_id`` str.

    With ``samples=None`` (training) item ``i`` is clip ``i % n`` with frames drawn from
    ``sample_rng(seed, i)``; ``len`` is the number of clips but any ``i >= 0`` is valid.
    With ``samples`` given (evaluation) item ``i`` is ``samples[i]``.
    """

    def __init__(
        self,
        clips: ClipFolder,
        features: FeatureSource,
        config: ProbeConfig,
        seed: int = 0,
        samples: Sequence[SampleSpec] | None = None,
        cache_clips: bool = True,
    ):
        self.clips = clips
        self.features = features
        self.config = config
        self.seed = int(seed)
        self.samples = list(samples) if samples is not None else None
        self.ids = clips.ids
        self._cache: dict[str, Clip] = {}
        self._cache_clips = cache_clips
        self._usable: dict[str, int] = {}
        self._frame_index: dict[str, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.samples) if self.samples is not None else len(self.ids)

    def spec(self, index: int) -> SampleSpec:
        """The (clip, frames) of item ``index``."""
        if self.samples is not None:
            return self.samples[index]
        clip_id = self.ids[index % len(self.ids)]
        num = self._usable.get(clip_id)
        if num is None:
            clip_index = read_frames(self.features, clip_id, [0])[1]
            num = self._usable[clip_id] = leading_frames(clip_index)
        c = self.config
        frames = sample_frames(
            num, c.num_frames, c.first_n, c.min_gap, sample_rng(self.seed, index)
        )
        return SampleSpec(clip_id, tuple(frames))

    def _clip(self, clip_id: str) -> Clip:
        clip = self._cache.get(clip_id)
        if clip is None:
            clip = self.clips.load(clip_id)
            if self._cache_clips:
                self._cache[clip_id] = clip
        return clip

    def out_size(self, clip: Clip) -> tuple[int, int]:
        size = self.config.output_size
        return (clip.height, clip.width) if size is None else (int(size[0]), int(size[1]))

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.load(self.spec(index))

    def load(self, spec: SampleSpec) -> dict[str, Any]:
        """Build the sample of ``spec`` (see the class docstring)."""
        clip = self._clip(spec.clip_id)
        if clip.depth is None or clip.valid is None:
            raise ProbeDataError(f"clip {spec.clip_id!r}: has no depth; the probe needs depth")
        frames = list(spec.frames)
        if max(frames) >= clip.num_frames or min(frames) < 0:
            raise ProbeDataError(
                f"clip {spec.clip_id!r}: frames {frames} outside [0, {clip.num_frames})"
            )
        frame_index = self._frame_index.get(spec.clip_id)
        if frame_index is None:
            _, frame_index = read_frames(self.features, spec.clip_id, [0])
            frame_index = self._frame_index[spec.clip_id] = frame_index.long()
        if frame_index.shape[0] != clip.num_frames:
            raise ProbeDataError(
                f"clip {spec.clip_id!r}: frame count mismatch: clip has {clip.num_frames} "
                f"frames, frame_index has {frame_index.shape[0]}"
            )
        mapped = frame_index[frames]
        if bool((mapped < 0).any()):
            raise ProbeDataError(
                f"clip {spec.clip_id!r}: frames {frames} include frames without features "
                f"(frame_index {mapped.tolist()})"
            )
        feats = read_frames(self.features, spec.clip_id, mapped.tolist())[0].float()
        if not bool(torch.isfinite(feats).all()):
            raise ProbeDataError(f"clip {spec.clip_id!r}: features contain NaN or Inf")
        out_size = self.out_size(clip)
        depth, valid, intrinsics = resize_targets(
            clip.depth[frames], clip.valid[frames], clip.intrinsics[frames], out_size
        )
        cam_to_world = torch.from_numpy(clip.cam_to_world[frames])
        targets = probe_targets(depth.double(), valid, intrinsics, cam_to_world)
        world_to_cam = targets.world_to_cam.double()
        pose_enc = encode_pose(world_to_cam, intrinsics, out_size).float()
        return {
            "features": feats,
            "points": targets.points.float(),
            "depth": targets.depth.float(),
            "valid": valid,
            "conf": torch.ones(valid.shape, dtype=torch.float32),
            "world_to_cam": world_to_cam,
            "cam_to_world": targets.cam_to_world.double(),
            "intrinsics": intrinsics.float(),
            "pose_enc": pose_enc,
            "images": _resize_images(clip.frames[frames], out_size),
            "frames": torch.as_tensor(frames, dtype=torch.long),
            "clip_id": spec.clip_id,
        }


def collate(items: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Stack tensors along a new batch axis; strings become lists."""
    items = list(items)
    out: dict[str, Any] = {}
    for key in items[0]:
        values = [it[key] for it in items]
        out[key] = torch.stack(values) if torch.is_tensor(values[0]) else values
    return out


def grid_of(features: FeatureSource, clip_id: str) -> tuple[int, int, int]:
    """``(h, w, C)`` of one clip's features."""
    tokens, _ = features.get(clip_id)
    t = _squeeze_tokens(torch.as_tensor(tokens), clip_id)
    return int(t.shape[1]), int(t.shape[2]), int(t.shape[3])


__all__ = [
    "FeatureSource",
    "InMemoryFeatureSource",
    "ProbeDataError",
    "ProbeDataset",
    "SampleSpec",
    "StoreFeatureSource",
    "check_pairing",
    "collate",
    "make_eval_samples",
    "read_frames",
    "read_samples",
    "resize_targets",
    "sample_frames",
    "write_samples",
]
