"""The MEt3R-style 3D-consistency score of a video, from vfm3d's own parts.

For each consecutive frame pair ``(i, i + 1)`` of a clip:

1. **Geometry of the pair** (`ExpertGeometry`, `GroundTruthGeometry`): a point map of each frame
   in one world frame, and camera ``i``. The 3D expert (a VGGT-architecture model, default the
   shipped ``zoo/vggt-mini``; VGGT-1B from a local folder) runs either on the two frames alone
   (``window=2``, as MEt3R runs DUSt3R on a pair) or, by default, on windows of 9 frames
   overlapping by one, each pair taking the geometry of the window that holds it (the mini
   expert, trained on 9-frame clips, predicts poorly from two frames: docs/jointgen.md).
   Points are its depth head unprojected with its camera head
   (``X = cam_to_world_k K_k^-1 (u, v, 1) d_k``), so frame ``i``'s own points fall back on
   their pixels. ``gt`` uses the clip's own depth, valid mask and cameras instead.
2. **Dense features** (`DenseFeatures`): an image backbone (default ``zoo/dinov2-mini``; a local
   DINOv2 folder for real use), one block's tokens (default the last, through the model's final
   LayerNorm: DINOv2's "last hidden state"), bilinearly upsampled to the image size. MEt3R
   sharpens DINO features with FeatUp; vfm3d instead averages the upsampled features over
   ``shifts x shifts`` sub-patch translations of the input (the image shifted by ``k p / shifts``
   pixels, its features shifted back), which makes them far less dependent on where the patch
   grid falls: on ground-truth world clips this lowers the score of a consistent video about
   threefold at ``shifts = 2`` (docs/jointgen.md), for ``shifts^2`` times the backbone cost.
   The mean is computed exactly and cheaply as bilinear interpolation of the interleaved token
   lattice (step ``p / shifts``) smoothed by a discrete tent (`_tent_smooth`).
3. **Score** (`vfm3d.metrics.consistency.pair_consistency`): both frames' feature clouds are
   rendered into camera ``i`` with the soft z-buffered splat of `vfm3d.geometry.splat`
   (MEt3R's point rasteriser: radius ``r`` px, opacity ``1 - d^2 / r^2``, 10 nearest-in-depth
   points per pixel composited front to back) and ``1 - cosine`` is averaged over pixels both
   renders cover. Pairs that share less than ``min_overlap`` of the image are flagged, not
   scored.

A video's score is the mean over its scored pairs (lower is more consistent; 0 = identical
features wherever the views overlap). Everything runs at one working size: the 3D expert's input
size (`vfm3d.recon4d.expert.default_size`: 32 px wide for ``zoo/vggt-mini``) or, with ``gt``, the
clip's own size; ``size`` overrides it (frames, depth and intrinsics are resized together by
`vfm3d.data.transforms`).

Static scenes are assumed, as in MEt3R: a moving object is inconsistent by this measure.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from vfm3d.clip import Clip
from vfm3d.geometry import decode_pose, depth_to_world_points, invert_rigid
from vfm3d.geometry.splat import MET3R_POINTS_PER_PIXEL
from vfm3d.metrics.consistency import (
    MIN_OVERLAP,
    PairConsistency,
    pair_consistency,
    video_score,
)

DEFAULT_GEOMETRY = "zoo/vggt-mini"
DEFAULT_FEATURES = "zoo/dinov2-mini"
#: default frames per 3D-expert forward (the clip length zoo/vggt-mini was trained on)
DEFAULT_WINDOW = 9
#: default sub-patch shifts per axis of `DenseFeatures` (2 -> 4 backbone passes per frame)
DEFAULT_SHIFTS = 2

__all__ = [
    "CORRUPTIONS",
    "DEFAULT_FEATURES",
    "DEFAULT_GEOMETRY",
    "DEFAULT_SHIFTS",
    "DEFAULT_WINDOW",
    "ConsistencyScorer",
    "DenseFeatures",
    "ExpertGeometry",
    "GroundTruthGeometry",
    "PairGeometry",
    "VideoConsistency",
    "corrupt",
    "expert_windows",
    "load_features",
    "load_geometry",
]


# ---------------------------------------------------------------------------------- geometry
@dataclass
class PairGeometry:
    """Geometry of one frame pair in one world frame (float64).

    - ``points_world_1`` / ``points_world_2``: ``[H, W, 3]`` point maps of the two frames.
    - ``valid_1`` / ``valid_2``: ``[H, W]`` bool, pixels with a point.
    - ``world_to_cam_1``: ``[4, 4]`` the first frame's camera (world -> camera, OpenCV).
    - ``intrinsics_1``: ``[3, 3]`` its ``K`` in pixels.
    """

    points_world_1: torch.Tensor
    points_world_2: torch.Tensor
    valid_1: torch.Tensor
    valid_2: torch.Tensor
    world_to_cam_1: torch.Tensor
    intrinsics_1: torch.Tensor


class GroundTruthGeometry:
    """``--geometry gt``: a clip's own depth, valid mask and cameras (world clips, datasets)."""

    name = "gt"
    patch_size = 1

    def default_size(self, hw: tuple[int, int]) -> tuple[int, int]:
        """The clip's own size."""
        return hw

    def check(self, clip: Clip, where: str = "") -> None:
        """ValueError unless ``clip`` has depth, a valid mask and known cameras."""
        if not clip.has_ground_truth or clip.valid is None or clip.depth is None:
            what = []
            if clip.depth is None:
                what.append("no depth")
            if not clip.poses_known:
                what.append("placeholder cameras")
            if not clip.intrinsics_known:
                what.append("unknown intrinsics")
            raise ValueError(
                f"{where or clip.id}: --geometry gt needs clips with depth and true cameras "
                f"(a vfm3d clip folder or .safetensors clip); this input has "
                f"{', '.join(what) or 'no valid mask'}. Use a 3D expert (--geometry "
                f"{DEFAULT_GEOMETRY}) for videos and image folders"
            )

    def pairs(self, clip: Clip, starts: Sequence[int]) -> list[PairGeometry]:
        """Geometry of the pairs ``(i, i + 1)`` for ``i`` in ``starts``."""
        return list(self.iter_pairs(clip, starts))

    def iter_pairs(self, clip: Clip, starts: Sequence[int]) -> Iterator[PairGeometry]:
        """`pairs`, one at a time."""
        for s in starts:
            pick = [s, s + 1]
            depth = torch.from_numpy(clip.depth[pick]).double()  # type: ignore[index]
            valid = torch.from_numpy(clip.valid[pick]) & (depth > 0)  # type: ignore[index]
            pair = _pair_from_depth(
                depth,
                torch.from_numpy(clip.intrinsics[pick]).double(),
                torch.from_numpy(clip.cam_to_world[pick]).double(),
                0,
            )
            pair.valid_1, pair.valid_2 = valid[0], valid[1]
            yield pair


class ExpertGeometry:
    """Geometry of each pair from a VGGT-architecture 3D expert.

    ``model``: a `vfm3d.models.vggt.VGGT` with camera and depth heads (`load_expert`).
    ``window``: frames per expert forward. ``2`` is MEt3R's protocol: the expert sees each
    pair alone, ``batch`` pairs per forward (``[batch, 2, 3, H, W]``). ``window > 2`` (default
    `DEFAULT_WINDOW`, the clip length ``zoo/vggt-mini`` was trained on) runs it on windows of
    that many frames, and each
    pair takes its geometry from the first window holding both frames (`expert_windows`), in
    that window's own frame (no chaining across windows). The pair's points are the depth head
    unprojected with the camera head, in the expert's world frame (its first camera) and scale;
    the forward and the pose decoding are those of `vfm3d.recon4d.expert`.
    """

    def __init__(
        self,
        model: Any,
        device: str | torch.device = "cpu",
        batch: int = 16,
        window: int | None = None,
    ) -> None:
        if (
            getattr(model, "camera_head", None) is None
            or getattr(model, "depth_head", None) is None
        ):
            raise ValueError("the 3D expert needs its camera and depth heads")
        self.model = model
        self.device = torch.device(device)
        self.batch = max(1, int(batch))
        self.window = DEFAULT_WINDOW if window is None else int(window)
        if self.window < 2:
            raise ValueError(f"the expert window must be >= 2 frames, got {window}")
        self.name = str(getattr(model, "name_or_path", "vggt"))
        self.patch_size = int(model.config.patch_size)

    def default_size(self, hw: tuple[int, int]) -> tuple[int, int]:
        """The expert's input size (`vfm3d.recon4d.expert.default_size`)."""
        from vfm3d.recon4d.expert import default_size

        return default_size(self.model, hw)

    def check(self, clip: Clip, where: str = "") -> None:
        if clip.height % self.patch_size or clip.width % self.patch_size:
            raise ValueError(
                f"{where or clip.id}: size {clip.height}x{clip.width} not supported by the 3D "
                f"expert: H and W must be multiples of its patch size {self.patch_size}"
            )

    def pairs(self, clip: Clip, starts: Sequence[int]) -> list[PairGeometry]:
        """Geometry of the pairs ``(i, i + 1)`` for ``i`` in ``starts`` (see the class)."""
        return list(self.iter_pairs(clip, starts))

    def iter_pairs(self, clip: Clip, starts: Sequence[int]) -> Iterator[PairGeometry]:
        """`pairs`, lazily: one forward per ``batch`` pairs or per window."""
        if self.window == 2:
            return self._pairs_alone(clip, starts)
        return self._pairs_in_windows(clip, starts)

    def _pairs_alone(self, clip: Clip, starts: Sequence[int]) -> Iterator[PairGeometry]:
        for lo in range(0, len(starts), self.batch):
            chunk = list(starts[lo : lo + self.batch])
            first = np.asarray(chunk)
            depth, intrinsics, cam_to_world = self.predict(
                np.stack([clip.frames[first], clip.frames[first + 1]], axis=1)
            )
            for b in range(len(chunk)):
                yield _pair_from_depth(depth[b], intrinsics[b], cam_to_world[b], 0)

    def _pairs_in_windows(self, clip: Clip, starts: Sequence[int]) -> Iterator[PairGeometry]:
        spans = expert_windows(clip.num_frames, self.window)
        done: dict[int, tuple[torch.Tensor, ...]] = {}  # the current window's prediction
        for s in starts:
            k = next(i for i, (a, b) in enumerate(spans) if a <= s and s + 1 < b)
            if k not in done:
                a, b = spans[k]
                done = {k: tuple(x[0] for x in self.predict(clip.frames[None, a:b]))}
            depth, intrinsics, cam_to_world = done[k]
            yield _pair_from_depth(depth, intrinsics, cam_to_world, s - spans[k][0])

    @torch.no_grad()
    def predict(self, frames: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """uint8 ``[B, S, H, W, 3]`` -> float64 ``depth [B, S, H, W]``, ``K [B, S, 3, 3]``,
        ``cam_to_world [B, S, 4, 4]`` (decoded as `vfm3d.recon4d.expert` does)."""
        images = torch.from_numpy(np.ascontiguousarray(frames)).to(self.device)
        images = images.permute(0, 1, 4, 2, 3).float().div(255.0)
        hw = (int(frames.shape[2]), int(frames.shape[3]))
        pred = self.model(images)
        enc = pred["pose_enc"].double().cpu().clone()
        enc[..., 7:9] = enc[..., 7:9].clamp_min(1e-3)  # FoV 0 would be an infinite focal
        world_to_cam, intrinsics = decode_pose(enc, hw)
        depth = pred["depth"][..., 0].double().cpu()
        return depth, intrinsics, invert_rigid(world_to_cam)


def expert_windows(num_frames: int, window: int) -> list[tuple[int, int]]:
    """``[start, stop)`` spans of ``window`` frames (fewer only when the clip is shorter) that
    overlap by one frame, the last one moved back to end at ``num_frames`` so that it is full:
    every consecutive pair lies inside a span."""
    if num_frames <= window:
        return [(0, num_frames)]
    spans = [(a, a + window) for a in range(0, num_frames - window, window - 1)]
    return [*spans, (num_frames - window, num_frames)]


def _pair_from_depth(
    depth: torch.Tensor, intrinsics: torch.Tensor, cam_to_world: torch.Tensor, i: int
) -> PairGeometry:
    """Frames ``i`` and ``i + 1`` of depth ``[S, H, W]``, ``K`` ``[S, 3, 3]``, cam_to_world
    ``[S, 4, 4]`` as a `PairGeometry` (valid = finite positive depth)."""
    pick = slice(i, i + 2)
    depth, intrinsics, cam_to_world = depth[pick], intrinsics[pick], cam_to_world[pick]
    valid = torch.isfinite(depth) & (depth > 0)
    points = depth_to_world_points(depth.clamp_min(0), intrinsics, cam_to_world)
    return PairGeometry(
        points[0], points[1], valid[0], valid[1], invert_rigid(cam_to_world[0]), intrinsics[0]
    )


def load_geometry(
    spec: str | os.PathLike[str] = DEFAULT_GEOMETRY,
    device: str | torch.device = "cpu",
    batch: int = 16,
    window: int | None = None,
) -> GroundTruthGeometry | ExpertGeometry:
    """``"gt"`` -> `GroundTruthGeometry`; ``zoo/vggt-mini`` or a local VGGT folder ->
    `ExpertGeometry` (FileNotFoundError / ValueError naming the problem otherwise)."""
    if str(spec) == "gt":
        return GroundTruthGeometry()
    from vfm3d.recon4d.expert import load_expert

    model = load_expert(spec, device=str(device))
    return ExpertGeometry(model, device=device, batch=batch, window=window)


# ---------------------------------------------------------------------------------- features
class DenseFeatures:
    """Per-pixel features ``[T, H, W, C]`` from an image backbone (see the module docstring).

    ``backbone``: a `vfm3d.backbones.base.Backbone` that encodes frames one by one (DINOv2);
    ``layer``: block index (default the last); ``shifts``: sub-patch translations per axis
    (1 = plain bilinear upsampling); ``chunk``: frames per forward (``shifts^2`` images each).
    The model's final ``layernorm`` is applied when it has one.
    """

    def __init__(
        self,
        backbone: Any,
        layer: int | None = None,
        shifts: int = DEFAULT_SHIFTS,
        chunk: int = 8,
        name: str | None = None,
    ) -> None:
        patch_h, patch_w = (int(v) for v in backbone.grid.patch_size)
        if backbone.grid.temporal_stride != 1:
            raise ValueError(
                f"{backbone.name}: features need one feature frame per input frame (an image "
                f"backbone such as DINOv2); this one has temporal stride "
                f"{backbone.grid.temporal_stride}"
            )
        last = backbone.num_layers - 1
        self.layer = last if layer is None else int(layer)
        if not 0 <= self.layer <= last:
            raise ValueError(f"feature layer must lie in 0..{last}, got {layer}")
        self.shifts = int(shifts)
        if self.shifts < 1 or patch_h % self.shifts or patch_w % self.shifts:
            raise ValueError(
                f"shifts must divide the patch size {patch_h}x{patch_w} (a whole-pixel step), "
                f"got {shifts}"
            )
        self.backbone = backbone
        self.patch = (patch_h, patch_w)
        self.chunk = max(1, int(chunk))
        self.norm = getattr(getattr(backbone, "model", None), "layernorm", None)
        self.name = name or backbone.name

    def offsets(self) -> list[tuple[int, int]]:
        """The ``(dy, dx)`` input translations in pixels: ``k p / shifts``, k < shifts."""
        sy, sx = self.patch[0] // self.shifts, self.patch[1] // self.shifts
        return [(ky * sy, kx * sx) for ky in range(self.shifts) for kx in range(self.shifts)]

    @torch.no_grad()
    def __call__(self, frames: np.ndarray) -> torch.Tensor:
        """``frames`` uint8 ``[T, H, W, 3]`` -> float32 ``[T, H, W, C]`` (on the CPU)."""
        from vfm3d.features.extract import extract

        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(
                f"frames must be uint8 [T, H, W, 3], got {frames.dtype} {frames.shape}"
            )
        height, width = int(frames.shape[1]), int(frames.shape[2])
        ph, pw = self.patch
        size = (height + (-height) % ph, width + (-width) % pw)  # padded to the patch grid
        device = self.backbone.device
        parts = []
        for lo in range(0, len(frames), self.chunk):
            pixels = torch.from_numpy(np.ascontiguousarray(frames[lo : lo + self.chunk]))
            pixels = pixels.to(device).permute(0, 3, 1, 2).float().div(255.0)
            padded = F.pad(
                pixels,
                (pw, pw + size[1] - width, ph, ph + size[0] - height),
                mode="replicate",
            )
            n, (sy, sx) = self.shifts, (ph // self.shifts, pw // self.shifts)
            # image k moved by (dy, dx) = (ky sy, kx sx): shifted(v, u) = image(v - dy, u - dx)
            offsets = [(ky, kx) for ky in range(n) for kx in range(n)]
            windows = []
            for ky, kx in offsets:
                top, left = ph - ky * sy, pw - kx * sx
                windows.append(padded[..., top : top + size[0], left : left + size[1]])
            shifted = torch.cat(windows)
            tokens = extract(self.backbone, shifted[None].contiguous(), [self.layer])
            grid = tokens[(self.layer, None)].tokens[0]  # [n^2 t, h, w, C]
            if self.norm is not None:
                grid = self.norm(grid)
            grid = grid.float().permute(0, 3, 1, 2)
            count, (h, w) = pixels.shape[0], grid.shape[-2:]
            # interleave: token row i of shift ky is centred on image row (i n - ky) sy + (p-1)/2
            lattice = grid.new_empty(count, grid.shape[1], n * h, n * w)
            for k, (ky, kx) in enumerate(offsets):
                lattice[:, :, n - 1 - ky :: n, n - 1 - kx :: n] = grid[k * count : (k + 1) * count]
            lattice = _tent_smooth(lattice, n)
            parts.append(_sample_lattice(lattice, (height, width), (ph, pw), (sy, sx), n).cpu())
        return torch.cat(parts)


def _tent_smooth(lattice: torch.Tensor, n: int) -> torch.Tensor:
    """Separable discrete tent ``(n - |j|) / n^2``, ``|j| < n``, over the last two dims
    (replicate borders). Bilinear interpolation of the smoothed lattice equals the mean of the
    ``n^2`` shifted grids each bilinearly upsampled (a tent of half-width ``p = n step`` is
    piecewise linear between lattice points)."""
    if n == 1:
        return lattice
    taps = n - torch.arange(-(n - 1), n, dtype=lattice.dtype, device=lattice.device).abs()
    taps = taps / taps.sum()
    t, c, h, w = lattice.shape
    flat = lattice.reshape(t * c, 1, h, w)
    flat = F.pad(flat, (n - 1, n - 1, n - 1, n - 1), mode="replicate")
    flat = F.conv2d(flat, taps.reshape(1, 1, -1, 1))
    flat = F.conv2d(flat, taps.reshape(1, 1, 1, -1))
    return flat.reshape(t, c, h, w)


def _sample_lattice(
    lattice: torch.Tensor,
    out_hw: tuple[int, int],
    patch: tuple[int, int],
    step: tuple[int, int],
    shifts: int,
) -> torch.Tensor:
    """Bilinear samples ``[T, H, W, C]`` of a token lattice ``[T, C, n h, n w]`` whose entry
    ``L`` (per axis) is centred on image coordinate ``(L - (n - 1)) step + (p - 1) / 2``;
    coordinates beyond the outer centres take the border value."""
    coords = []
    for axis, size in enumerate(out_hw):
        pixel = torch.arange(size, dtype=torch.float32, device=lattice.device)
        index = (pixel - (patch[axis] - 1) / 2) / step[axis] + (shifts - 1)
        extent = lattice.shape[2 + axis] - 1
        coords.append(2 * index / extent - 1 if extent > 0 else torch.zeros_like(index))
    gy, gx = torch.meshgrid(coords[0], coords[1], indexing="ij")
    grid = torch.stack([gx, gy], dim=-1).expand(lattice.shape[0], -1, -1, -1)
    dense = F.grid_sample(lattice, grid, mode="bilinear", padding_mode="border", align_corners=True)
    return dense.permute(0, 2, 3, 1)


def load_features(
    spec: str | os.PathLike[str] = DEFAULT_FEATURES,
    device: str | torch.device = "cpu",
    layer: int | None = None,
    shifts: int = DEFAULT_SHIFTS,
) -> DenseFeatures:
    """``zoo/dinov2-mini`` (a shipped image backbone) or a local DINOv2 folder ->
    `DenseFeatures`."""
    from vfm3d.backbones import registry

    text = str(spec)
    if text.startswith("zoo/"):
        if text not in registry.ZOO:
            raise ValueError(f"unknown zoo model {text!r}; image backbones: zoo/dinov2-mini")
        if registry.ZOO[text][0] != "dinov2":
            raise ValueError(
                f"{text} is not an image backbone; --features takes zoo/dinov2-mini or a local "
                "DINOv2 folder"
            )
        backbone = registry.load(text, device=device)
    else:
        path = Path(text)
        if not path.is_dir():
            raise FileNotFoundError(f"feature backbone folder not found: {path}")
        backbone = registry.load("dinov2", weights=path, device=device)
    return DenseFeatures(backbone, layer=layer, shifts=shifts, name=text)


# ---------------------------------------------------------------------------------- scoring
@dataclass
class VideoConsistency:
    """The score of one video: ``score`` = mean over scored ``pairs`` (``None`` if none).

    ``pairs[k]`` scores frames ``(k, k + 1)``; ``size`` is the working ``(H, W)``;
    ``seconds`` the wall time (features, geometry and rendering).
    """

    path: str
    clip_id: str
    score: float | None
    pairs: list[PairConsistency]
    num_frames: int
    size: tuple[int, int]
    seconds: float
    geometry: str
    features: str

    @property
    def flagged(self) -> int:
        return sum(p.flag is not None for p in self.pairs)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: path, id, score, the pairs (with their ``frames``) and the settings."""
        return {
            "path": self.path,
            "id": self.clip_id,
            "score": self.score,
            "num_frames": self.num_frames,
            "num_pairs": len(self.pairs),
            "flagged_pairs": self.flagged,
            "size": list(self.size),
            "seconds": self.seconds,
            "seconds_per_pair": self.seconds / max(1, len(self.pairs)),
            "geometry": self.geometry,
            "features": self.features,
            "pairs": [{"frames": [k, k + 1], **p.to_dict()} for k, p in enumerate(self.pairs)],
        }


class ConsistencyScorer:
    """Score clips: geometry (`load_geometry`) + features (`load_features`) + the soft splat.

    ``size``: working ``(H, W)`` (default: the geometry's, see the module docstring);
    ``radius`` (px, default `vfm3d.geometry.splat.default_radius`), ``points_per_pixel`` and
    ``min_overlap`` go to `vfm3d.metrics.consistency.pair_consistency`.
    """

    def __init__(
        self,
        geometry: GroundTruthGeometry | ExpertGeometry,
        features: DenseFeatures,
        size: tuple[int, int] | None = None,
        radius: float | None = None,
        points_per_pixel: int = MET3R_POINTS_PER_PIXEL,
        min_overlap: float = MIN_OVERLAP,
        progress: bool = True,
    ) -> None:
        if radius is not None and not (radius > 0 and math.isfinite(radius)):
            raise ValueError(f"radius must be a positive number of pixels, got {radius}")
        if int(points_per_pixel) < 1:
            raise ValueError(f"points per pixel must be >= 1, got {points_per_pixel}")
        if not 0.0 <= float(min_overlap) <= 1.0:
            raise ValueError(f"min overlap must lie in [0, 1], got {min_overlap}")
        self.geometry = geometry
        self.features = features
        self.size = None if size is None else (int(size[0]), int(size[1]))
        self.radius = radius
        self.points_per_pixel = int(points_per_pixel)
        self.min_overlap = float(min_overlap)
        self.progress = progress

    def prepare(self, clip: Clip, where: str = "") -> Clip:
        """``clip`` at the working size (ground truth and intrinsics follow), checked."""
        from vfm3d.data.transforms import apply_to_clip, resize

        name = where or clip.id
        if clip.num_frames < 2:
            raise ValueError(
                f"{name}: {clip.num_frames} frame(s); the consistency score needs at least 2"
            )
        size = self.size or self.geometry.default_size((clip.height, clip.width))
        if (clip.height, clip.width) != tuple(size):
            clip = apply_to_clip(clip, resize((clip.height, clip.width), tuple(size)))
        self.geometry.check(clip, name)
        return clip

    def score_clip(self, clip: Clip, path: str | os.PathLike[str] = "") -> VideoConsistency:
        """Score every consecutive pair of ``clip`` (after `prepare`)."""
        from tqdm import tqdm

        start = time.perf_counter()
        where = f"{path}:{clip.id}" if path and clip.id else str(path or clip.id)
        clip = self.prepare(clip, where)
        feats = self.features(clip.frames)
        num_pairs = clip.num_frames - 1
        hw = (clip.height, clip.width)
        bar = tqdm(total=num_pairs, desc=clip.id or "pairs", unit="pair", disable=not self.progress)
        pairs: list[PairConsistency] = []
        starts = list(range(num_pairs))
        try:
            for s, geo in zip(starts, self.geometry.iter_pairs(clip, starts), strict=True):
                pairs.append(
                    pair_consistency(
                        feats[s],
                        feats[s + 1],
                        geo.points_world_1,
                        geo.points_world_2,
                        geo.valid_1,
                        geo.valid_2,
                        geo.world_to_cam_1,
                        geo.intrinsics_1,
                        image_hw=hw,
                        radius=self.radius,
                        points_per_pixel=self.points_per_pixel,
                        min_overlap=self.min_overlap,
                    )
                )
                bar.update(1)
        finally:
            bar.close()
        return VideoConsistency(
            path=str(path),
            clip_id=clip.id,
            score=video_score(pairs),
            pairs=pairs,
            num_frames=clip.num_frames,
            size=hw,
            seconds=time.perf_counter() - start,
            geometry=self.geometry.name,
            features=self.features.name,
        )


# ---------------------------------------------------------------------------------- validation
#: the three injected inconsistencies of docs/jointgen.md
CORRUPTIONS = ("region", "warp", "splice")
#: at strength 1: the changing square's area fraction, the warp's peak displacement (fraction of
#: the shorter side)
REGION_MAX_AREA = 0.25
WARP_MAX_SHIFT = 0.15
#: control points per axis of the warp's random displacement field
WARP_GRID = 4


def corrupt(
    clip: Clip, kind: str, strength: float, seed: int = 0, other: Clip | None = None
) -> Clip:
    """``clip`` with injected 3D inconsistency of ``kind`` at ``strength`` in [0, 1] (0 leaves
    it unchanged); depth, cameras and the rest of the ground truth are kept, so ``gt`` geometry
    scores the frames against the scene they should show. For a given ``seed`` the corruption
    grows with ``strength`` (the same square, field or frame order, scaled), so a score that
    measures consistency should rise monotonically.

    - ``"region"``: a square of area ``strength * REGION_MAX_AREA`` of the image (fixed
      position) shows new random content in every frame (smooth colour blobs, redrawn per
      frame): content that changes between frames.
    - ``"warp"``: every frame is resampled through its own smooth random displacement field
      (a ``WARP_GRID``-square grid of normal offsets, bicubically upsampled, peak ``strength * WARP_MAX_SHIFT *
      min(H, W)`` px): per-frame non-rigid image warps.
    - ``"splice"``: ``round(strength * n)`` of the ``n`` odd-indexed frames (a fixed random
      order) are replaced by the same-index frames of ``other`` (another clip of the same size
      and length): at strength 1 every pair holds one foreign frame.
    """
    if kind not in CORRUPTIONS:
        raise ValueError(f"corruption must be one of {CORRUPTIONS}, got {kind!r}")
    strength = float(strength)
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must lie in [0, 1], got {strength}")
    rng = np.random.default_rng([int(seed), CORRUPTIONS.index(kind)])
    frames = clip.frames.copy()
    t, h, w = frames.shape[:3]
    if kind == "region":
        side_h = round(h * math.sqrt(strength * REGION_MAX_AREA))
        side_w = round(w * math.sqrt(strength * REGION_MAX_AREA))
        top = int(rng.integers(0, h - round(h * math.sqrt(REGION_MAX_AREA)) + 1))
        left = int(rng.integers(0, w - round(w * math.sqrt(REGION_MAX_AREA)) + 1))
        blobs = torch.from_numpy(rng.uniform(0, 255, size=(t, 3, 4, 4))).float()
        texture = F.interpolate(blobs, size=(h, w), mode="bicubic", align_corners=False)
        texture = texture.clamp(0, 255).round().byte().permute(0, 2, 3, 1).numpy()
        if side_h and side_w:
            region = (slice(None), slice(top, top + side_h), slice(left, left + side_w))
            frames[region] = texture[region]
    elif kind == "warp":
        field = torch.from_numpy(rng.normal(size=(t, 2, WARP_GRID, WARP_GRID))).float()
        field = F.interpolate(field, size=(h, w), mode="bicubic", align_corners=True)
        field = field / field.abs().amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-9)
        shift = field * strength * WARP_MAX_SHIFT * min(h, w)  # pixels, [T, 2 (dx, dy), H, W]
        v, u = torch.meshgrid(
            torch.arange(h, dtype=torch.float32),
            torch.arange(w, dtype=torch.float32),
            indexing="ij",
        )
        x = (u + shift[:, 0]) / max(w - 1, 1) * 2 - 1
        y = (v + shift[:, 1]) / max(h - 1, 1) * 2 - 1
        image = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
        warped = F.grid_sample(
            image,
            torch.stack([x, y], dim=-1),
            mode="bilinear",
            padding_mode="border",
            align_corners=True,
        )
        frames = warped.round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()
    else:
        if other is None:
            raise ValueError("splice needs `other`, the clip whose frames are spliced in")
        if other.frames.shape != clip.frames.shape:
            raise ValueError(
                f"splice: other clip {list(other.frames.shape)} must match {list(clip.frames.shape)}"
            )
        odd = rng.permutation(np.arange(1, t, 2))
        chosen = odd[: round(strength * len(odd))]
        frames[chosen] = other.frames[chosen]
    meta = dict(clip.meta)
    meta["corruption"] = {"kind": kind, "strength": strength, "seed": int(seed)}
    return Clip(
        frames=frames,
        intrinsics=clip.intrinsics,
        cam_to_world=clip.cam_to_world,
        depth=clip.depth,
        valid=clip.valid,
        dynamic=clip.dynamic,
        meta=meta,
    )
