"""Issue 14's comparison, one row at a time: generation quality, 3D consistency and V2C cameras.

`evaluate_model` scores one ``--model`` on the held-out clips of ``--data`` (a clip folder with
depth and cameras, e.g. a zoo run's ``data/heldout``) and writes ``OUT/metrics.json`` (per-item
rows, so `compare` can bootstrap over items) and, for rows that generate, ``OUT/features.safetensors``
(the Frechet features) and ``OUT/videos/<id>.mp4``.

**Rows** (`model_kind`):

- ``jointgen``: a `JointGenerator` folder (``jog3r.json``), e.g. ``zoo/jog3r-mini`` (lambda 1) or
  its generation-only twin (lambda 0): generation and, when it has a head trained with
  ``lambda_rec > 0``, V2C (the twin's head stays at its random initialisation: no V2C cells);
- ``wan``: ``zoo/wan-mini`` or a Wan diffusers folder (no ``jog3r.json``): generation only, from
  the empty prompt (no text encoder), noise seeded exactly as the other generators';
- ``gt``: the real held-out clips themselves: their consistency score (same expert as the
  generated videos: the reference row of that column) and, with ``real`` another folder, their
  Frechet distance to it;
- ``vggt``: ``zoo/vggt-mini`` or ``vggt:PATH``: the 3D expert's camera head on the clips (V2C);
- ``probe``: ``probe:RUN`` with ``features``: a trained probe on every frame from the clips'
  cached features (`vfm3d.probe.infer.WholeClipProbe`; V2C).

**Generation** (the first ``prompts`` clips, default all, in index order): clip ``k`` gives the
prompt `vfm3d.jointgen.captions.clip_caption` (None for ``wan``) and the noise seed
``seed * SEED_STRIDE + k`` (`noise_seed`): every generator row draws the same noise for the same
item, so paired differences see common random numbers. T2V as `vfm3d.jointgen.modes.text_to_video`
(Euler, ``steps`` 30, ``guidance`` 1), ``frames`` x ``size`` = the model's training size (for
``wan``: the first clip's frame count rounded down to ``4k + 1`` and its size).

**Metrics**, per item unless said:

- ``consistency``: the MEt3R-style score of each video (`vfm3d.jointgen.consistency`, geometry
  ``zoo/vggt-mini``, features ``zoo/dinov2-mini`` with 2 shifts, as ``vfm3d consistency``): mean
  ``1 - cosine`` over consecutive pairs; lower is more consistent; null when every pair is
  flagged. Row ``gt`` scores the real clips (cut to ``frames`` when given).
- ``frechet`` (one number per run, not per item): the squared Frechet distance
  (`vfm3d.metrics.frechet`) between Gaussians fitted to the generated videos' and the real
  clips' features (the first ``prompts`` clips of ``real``, default ``data``, cut and resized as
  the generated videos). A video's feature (`VideoEmbedder`) is the ``zoo/videomae-mini``
  encoder's last block through its final LayerNorm (VideoMAE's ``last_hidden_state``),
  mean-pooled over all tokens of an 8-frame window; a longer video is covered by windows that
  start every 8 frames, the last one moved back to end at the last frame (9 frames: windows
  0-7 and 1-8), and its feature is the mean over windows (128-d). Lower is closer to the real
  clips. With 16 items in 128 dimensions the estimate is strongly biased upward: compare rows
  with equally many items only (`compare` checks that).
- V2C, per held-out clip (``RRA@15``, ``RTA@15``, ``RRA@30``, ``RTA@30``, ``AUC@30``, ``ate``):
  the row's cameras of the clip's frames against the true ``cam_to_world``: RRA/RTA@t = fraction
  of frame pairs ``i < j`` whose relative rotation / translation-direction error is below t
  degrees, AUC@30 = VGGT's (1-degree bins of max(R, T) error, `vfm3d.metrics.camera`), ATE = RMSE
  of camera centres after a Sim(3) Umeyama alignment (`vfm3d.metrics.trajectory`, in the true
  world's metres). Jointgen rows use V2C (`vfm3d.jointgen.modes.video_to_cameras`: timestep 100,
  noise from ``seed``, the empty prompt, trajectory smoothed as ``vfm3d cameras`` does unless
  ``smooth=False``) on the clip cut to ``frames`` and resized to ``size``; ``vggt`` runs the
  expert once on the clip's first ``frames`` frames (default all) at its input size; ``probe``
  reads features of all frames and predicts on the first ``frames`` (default all). Neither
  baseline is smoothed.

Timings: ``seconds_per_video`` (sampling and decoding), ``seconds_per_consistency_pair``,
``seconds_per_v2c_clip``, ``seconds_frechet_features`` (all videos and real clips).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vfm3d.clip import Clip
from vfm3d.jointgen.modes import SMOOTH_WEIGHT, V2C_TIMESTEP

FORMAT = "vfm3d.jointgen.eval"
VERSION = 1
METRICS_FILE = "metrics.json"
FEATURES_FILE = "features.safetensors"
KINDS = ("jointgen", "wan", "gt", "vggt", "probe")
CONSISTENCY = "consistency"
FRECHET = "frechet"
V2C_METRICS = ("RRA@15", "RTA@15", "RRA@30", "RTA@30", "AUC@30", "ate")
#: Columns of `compare` by default, in this order.
DEFAULT_METRICS = (CONSISTENCY, FRECHET, *V2C_METRICS)
#: Lower is better for these; higher for the rest.
LOWER_IS_BETTER = (CONSISTENCY, FRECHET, "ate")
FRECHET_BACKBONE = "zoo/videomae-mini"
#: Noise seed of item ``k`` in a run of seed ``s``: ``s * SEED_STRIDE + k``.
SEED_STRIDE = 10_000
PROBE_PREFIX, VGGT_PREFIX = "probe:", "vggt:"

__all__ = [
    "DEFAULT_METRICS",
    "FEATURES_FILE",
    "FRECHET_BACKBONE",
    "KINDS",
    "METRICS_FILE",
    "V2C_METRICS",
    "EvalConfig",
    "VideoEmbedder",
    "compare",
    "evaluate_model",
    "load_video_embedder",
    "model_kind",
    "noise_seed",
    "v2c_scores",
]


# ---------------------------------------------------------------------- rows and settings
def model_kind(model: str | os.PathLike[str]) -> str:
    """Which row ``model`` is (one of `KINDS`; module docstring). Raises FileNotFoundError
    for a missing folder, ValueError for a folder that is none of them."""
    text = str(model)
    if text == "gt":
        return "gt"
    if text.startswith(PROBE_PREFIX):
        return "probe"
    if text == "zoo/vggt-mini" or text.startswith(VGGT_PREFIX):
        return "vggt"
    from vfm3d.jointgen.model import CONFIG_FILE, resolve_model_path

    path = resolve_model_path(text)
    if (path / CONFIG_FILE).is_file():
        return "jointgen"
    if (path / "transformer").is_dir() and (path / "vae").is_dir():
        return "wan"
    raise ValueError(
        f"--model {text}: not a joint generator folder (no {CONFIG_FILE}) nor a Wan diffusers "
        "folder (transformer/, vae/); other rows: gt, zoo/vggt-mini, vggt:PATH, probe:RUN"
    )


def noise_seed(seed: int, index: int) -> int:
    """The noise seed of item ``index`` in a run of ``seed``: ``seed * SEED_STRIDE + index``."""
    if not 0 <= int(index) < SEED_STRIDE:
        raise ValueError(f"item index must lie in [0, {SEED_STRIDE}), got {index}")
    return int(seed) * SEED_STRIDE + int(index)


@dataclass
class EvalConfig:
    """Settings of one evaluation run (module docstring). ``frames`` / ``size`` default to the
    model's training size (generators) or the clips' own (the other rows)."""

    prompts: int | None = None
    seed: int = 0
    frames: int | None = None
    size: tuple[int, int] | None = None
    steps: int = 30
    guidance: float = 1.0
    batch: int = 8
    timestep: float = V2C_TIMESTEP
    smooth: bool = True
    smooth_weight: float = SMOOTH_WEIGHT
    write_videos: bool = True
    progress: bool = True

    def __post_init__(self) -> None:
        if self.prompts is not None and self.prompts < 1:
            raise ValueError(f"--prompts must be >= 1, got {self.prompts}")
        if self.steps < 1 or self.batch < 1:
            raise ValueError("--steps and --batch must be >= 1")
        if self.seed < 0:
            raise ValueError(f"--seed must be >= 0, got {self.seed}")


def v2c_scores(pred_cam_to_world: torch.Tensor, gt_cam_to_world: torch.Tensor) -> dict[str, float]:
    """RRA/RTA@15/30, AUC@30 (VGGT mode) and ATE (Sim(3)) of ``[S, 4, 4]`` poses (S >= 2)."""
    from vfm3d.jointgen.cameras_cli import camera_scores
    from vfm3d.metrics import ate

    pred = torch.as_tensor(pred_cam_to_world, dtype=torch.float64)
    gt = torch.as_tensor(gt_cam_to_world, dtype=torch.float64)
    if pred.shape[0] < 2:
        raise ValueError(f"V2C scores need at least 2 frames, got {pred.shape[0]}")
    return {**camera_scores(pred, gt), "ate": ate(pred, gt, "sim3")}


# ---------------------------------------------------------------------- Frechet features
class VideoEmbedder:
    """One feature vector per video from a video backbone (module docstring, ``frechet``).

    ``backbone``: a `vfm3d.backbones.base.Backbone` (default ``zoo/videomae-mini``); ``layer``:
    block index (default the last), through the model's final ``layernorm`` when it has one.
    Frames are centre-cropped to the backbone's fixed aspect and resized to its fixed size.
    """

    def __init__(self, backbone: Any, layer: int | None = None, name: str | None = None) -> None:
        last = backbone.num_layers - 1
        self.layer = last if layer is None else int(layer)
        if not 0 <= self.layer <= last:
            raise ValueError(f"feature layer must lie in 0..{last}, got {layer}")
        if backbone.is_diffusion:
            raise ValueError(
                f"{backbone.name}: Frechet features need an encoder, not a diffusion model"
            )
        self.backbone = backbone
        self.window = backbone.rules.fixed_frames
        self.size = backbone.rules.fixed_size
        self.norm = getattr(getattr(backbone, "model", None), "layernorm", None)
        self.name = name or backbone.name

    def windows(self, num_frames: int) -> list[tuple[int, int]]:
        """``[start, stop)`` spans of the backbone's frame count covering ``num_frames``."""
        w = self.window or num_frames
        if num_frames < w:
            raise ValueError(
                f"{self.name} takes {w} frames per window ({self.backbone.rules.describe()}); "
                f"the video has {num_frames}"
            )
        spans = [(a, a + w) for a in range(0, num_frames - w + 1, w)]
        if spans[-1][1] != num_frames:
            spans.append((num_frames - w, num_frames))
        return spans

    @torch.no_grad()
    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """``frames`` uint8 ``[T, H, W, 3]`` -> float64 ``[C]``."""
        from vfm3d.data.transforms import crop_to_aspect, resize
        from vfm3d.features.extract import extract

        video = np.asarray(frames)
        if video.ndim != 4 or video.shape[-1] != 3 or video.dtype != np.uint8:
            raise ValueError(f"frames must be uint8 [T, H, W, 3], got {video.dtype} {video.shape}")
        hw = (int(video.shape[1]), int(video.shape[2]))
        if self.size is not None and hw != tuple(self.size):
            size = (int(self.size[0]), int(self.size[1]))
            crop = crop_to_aspect(hw, size[1], size[0])
            video = crop.then(resize(crop.out_hw, size)).warp_image(video)
        spans = self.windows(video.shape[0])
        pixels = torch.from_numpy(np.stack([video[a:b] for a, b in spans]))
        pixels = pixels.to(self.backbone.device).permute(0, 1, 4, 2, 3).float().div(255.0)
        tokens = extract(self.backbone, pixels, [self.layer])[(self.layer, None)].tokens
        if self.norm is not None:
            tokens = self.norm(tokens)
        return tokens.double().mean(dim=(1, 2, 3)).mean(dim=0).cpu().numpy()


def load_video_embedder(
    spec: str | os.PathLike[str] = FRECHET_BACKBONE, device: str | torch.device = "cpu"
) -> VideoEmbedder:
    """``zoo/videomae-mini`` (or another shipped video encoder) or a local VideoMAE folder."""
    from vfm3d.backbones import registry

    text = str(spec)
    if text.startswith("zoo/"):
        backbone = registry.load(text, device=device)
    else:
        if not Path(text).is_dir():
            raise FileNotFoundError(f"Frechet backbone folder not found: {text}")
        backbone = registry.load("videomae", weights=text, device=device)
    return VideoEmbedder(backbone, name=text)


# ---------------------------------------------------------------------- evaluation
def _generated_clip(frames: np.ndarray, clip_id: str) -> Clip:
    """A camera-less `Clip` of generated frames uint8 ``[T, H, W, 3]`` (placeholder K)."""
    from vfm3d.data.readers.video import placeholder_intrinsics

    n, h, w = frames.shape[:3]
    k = placeholder_intrinsics((h, w)).astype(np.float32)
    return Clip(
        frames=np.ascontiguousarray(frames),
        intrinsics=np.repeat(k[None], n, axis=0),
        cam_to_world=np.repeat(np.eye(4)[None], n, axis=0),
        meta={
            "id": clip_id,
            "source": "generated",
            "intrinsics_known": False,
            "poses_known": False,
        },
    )


def _load_clips(folder: str | os.PathLike[str], count: int | None, what: str) -> list[Clip]:
    """The first ``count`` clips (default all) of a clip folder, each with ground truth."""
    from vfm3d.clip import INDEX_NAME, ClipFolder

    root = Path(folder)
    if not (root / INDEX_NAME).is_file():
        raise FileNotFoundError(f"{what} {root}: not a clip folder (no {INDEX_NAME})")
    source = ClipFolder(root)
    ids = source.ids[: count or len(source)]
    if count is not None and len(ids) < count:
        raise ValueError(f"{what} {root}: --prompts {count} but the folder holds {len(ids)} clips")
    clips = [source.load(i) for i in ids]
    for clip in clips:
        if not clip.poses_known:
            raise ValueError(f"{what} {root}: clip {clip.id!r} has no true cameras")
    return clips


def _cut(clip: Clip, frames: int | None) -> Clip:
    """The first ``frames`` frames of ``clip`` (all when None or when it is shorter)."""
    return clip.subset(range(min(frames, clip.num_frames))) if frames else clip


@dataclass
class _Run:
    """What one evaluation collects: per-item rows, timings, skipped columns, settings."""

    items: dict[str, dict[str, Any]]
    config: EvalConfig
    seconds: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)

    def timed(self, key: str, start: float, count: int = 0) -> None:
        """Add the time since ``start`` (``time.perf_counter``) and ``count`` units to ``key``."""
        self.seconds[key] = self.seconds.get(key, 0.0) + time.perf_counter() - start
        self.counts[key] = self.counts.get(key, 0) + count

    def per_unit(self, key: str) -> float | None:
        return self.seconds[key] / self.counts[key] if self.counts.get(key) else None


def _score_videos(scorer: Any, clips: Sequence[Clip], run: _Run) -> None:
    """The consistency score of each clip into its item row."""
    from tqdm import tqdm

    for clip in tqdm(clips, desc="consistency", unit="video", disable=not run.config.progress):
        start = time.perf_counter()
        result = scorer.score_clip(clip)
        run.timed("consistency", start, len(result.pairs))
        run.items[clip.id].update(
            {
                CONSISTENCY: result.score,
                "consistency_pairs": len(result.pairs),
                "consistency_flagged": result.flagged,
            }
        )


def _v2c(
    clips: Sequence[Clip],
    predict: Callable[[Clip], tuple[np.ndarray, torch.Tensor, Clip]],
    run: _Run,
) -> None:
    """``predict(clip) -> (frames [S], cam_to_world [S, 4, 4], the clip as seen)`` scored
    against the clip's true cameras of those frames, into each item row."""
    from tqdm import tqdm

    for clip in tqdm(clips, desc="V2C", unit="clip", disable=not run.config.progress):
        start = time.perf_counter()
        frames, cam_to_world, seen = predict(clip)
        run.timed("v2c", start, 1)
        truth = torch.from_numpy(seen.cam_to_world[frames])
        run.items[clip.id].update({**v2c_scores(cam_to_world, truth), "v2c_frames": len(frames)})


def _generator_size(
    generator: Any, kind: str, clips: Sequence[Clip], config: EvalConfig
) -> tuple[int, tuple[int, int]]:
    """``(frames, (H, W))`` the generator samples at (module docstring)."""
    from vfm3d.jointgen.generate_cli import training_size

    if kind == "jointgen":
        frames, hw = training_size(getattr(generator, "meta", {}))
    else:
        stride = generator.vae_factors[0]
        frames = clips[0].num_frames - (clips[0].num_frames - 1) % stride
        hw = (clips[0].height, clips[0].width)
    frames = config.frames or frames
    hw = (int((config.size or hw)[0]), int((config.size or hw)[1]))
    generator.check_size(frames, *hw)
    return frames, hw


def _v2c_skip_reason(generator: Any, kind: str) -> str | None:
    """Why a generator's V2C is not scored, or None."""
    if kind == "wan" or generator.head is None:
        return "no reconstruction head"
    lam = getattr(generator, "meta", {}).get("lambda_rec")
    if lam is not None and float(lam) == 0.0:
        return "trained with lambda_rec = 0: the head stayed at its random initialisation"
    return None


def _generator_row(
    model: str,
    kind: str,
    clips: Sequence[Clip],
    real: Path | None,
    run: _Run,
    out_dir: Path,
    device: str,
) -> tuple[list[Clip], list[Clip]]:
    """Generate every item and score the generator's V2C -> ``(videos, real clips)``."""
    from vfm3d.jointgen.cameras_cli import prepare_clip
    from vfm3d.jointgen.captions import clip_caption
    from vfm3d.jointgen.model import JointGenerator
    from vfm3d.jointgen.modes import video_to_cameras

    config = run.config
    if kind == "jointgen":
        generator = JointGenerator.from_pretrained(model, device=device)
    else:
        generator = JointGenerator.from_wan(model, device=device, head=False).eval()
    frames, hw = _generator_size(generator, kind, clips, config)
    lam = getattr(generator, "meta", {}).get("lambda_rec")
    run.settings.update({"frames": frames, "size": list(hw), "lambda_rec": lam})
    for k, clip in enumerate(clips):
        run.items[clip.id]["prompt"] = clip_caption(clip) if generator.text is not None else None
        run.items[clip.id]["noise_seed"] = noise_seed(config.seed, k)
    videos = _generate(generator, clips, frames, hw, run, out_dir)
    stride = generator.vae_factors[0]
    others = clips if real is None else _load_clips(real, len(clips), "--real")
    real_clips = [prepare_clip(c, frames, hw, stride) for c in others]
    skip = _v2c_skip_reason(generator, kind)
    if skip is not None:
        run.skipped["v2c"] = skip
        return videos, real_clips

    def predict(clip: Clip) -> tuple[np.ndarray, torch.Tensor, Clip]:
        seen = prepare_clip(clip, frames, hw, stride)
        video = torch.from_numpy(seen.frames).permute(0, 3, 1, 2).float()[None] / 255.0
        pred = video_to_cameras(
            generator,
            video,
            config.timestep,
            seed=config.seed,
            smooth=config.smooth,
            smooth_weight=config.smooth_weight,
        )
        return pred.frames.numpy(), pred.cam_to_world[0], seen

    _v2c(clips, predict, run)
    weight = config.smooth_weight if config.smooth else 0.0
    run.settings["v2c"] = {"timestep": config.timestep, "smooth_weight": weight}
    return videos, real_clips


def _frechet(
    scored: Sequence[Clip],
    real_clips: Sequence[Clip],
    real: Path,
    backbone: str,
    run: _Run,
    out_dir: Path,
    device: str,
) -> dict[str, Any]:
    """The Frechet distance of ``scored`` vs ``real_clips``; writes ``OUT/features.safetensors``."""
    from safetensors.numpy import save_file

    from vfm3d.metrics.frechet import frechet_distance
    from vfm3d.utils.atomic import atomic_path

    embedder = load_video_embedder(backbone, device=device)
    start = time.perf_counter()
    side_a = np.stack([embedder(c.frames) for c in scored])
    side_b = np.stack([embedder(c.frames) for c in real_clips])
    run.timed("frechet_features", start, len(side_a) + len(side_b))
    meta = {
        "generated_ids": json.dumps([c.id for c in scored]),
        "real_ids": json.dumps([c.id for c in real_clips]),
        "backbone": embedder.name,
    }
    with atomic_path(out_dir / FEATURES_FILE) as tmp:
        save_file({"generated": side_a, "real": side_b}, str(tmp), metadata=meta)
    return {
        "value": frechet_distance(side_a, side_b),
        "backbone": embedder.name,
        "layer": embedder.layer,
        "windows": [list(s) for s in embedder.windows(scored[0].num_frames)],
        "generated": len(side_a),
        "real": len(side_b),
        "real_data": str(real.resolve()),
        "features": FEATURES_FILE,
    }


def evaluate_model(
    model: str,
    data: str | os.PathLike[str],
    out: str | os.PathLike[str],
    config: EvalConfig | None = None,
    geometry: str = "zoo/vggt-mini",
    features: str = "zoo/dinov2-mini",
    frechet_backbone: str = FRECHET_BACKBONE,
    real: str | os.PathLike[str] | None = None,
    probe_features: str | os.PathLike[str] | None = None,
    device: str = "cpu",
) -> dict[str, Any]:
    """Score one row (module docstring); writes ``OUT/metrics.json`` (and the features and
    videos of generator rows) atomically and returns the record."""
    from vfm3d.utils.atomic import atomic_write_json

    config = config or EvalConfig()
    kind = model_kind(model)
    if kind == "probe" and probe_features is None:
        raise ValueError(f"--model {model} needs --features CACHE, the clips' feature cache")
    if kind != "probe" and probe_features is not None:
        raise ValueError("--features (a feature cache) is only for --model probe:RUN")
    clips = _load_clips(data, config.prompts, "--data")
    real_path = Path(real if real is not None else data)
    other_real = real_path if real_path.resolve() != Path(data).resolve() else None
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    run = _Run({c.id: {"id": c.id} for c in clips}, config)
    run.settings["config"] = asdict(config)
    frechet: dict[str, Any] | None = None

    if kind in ("vggt", "probe"):
        run.skipped[FRECHET] = run.skipped[CONSISTENCY] = f"{kind} row: cameras only"
        predict, info = _baseline_predictor(kind, model, probe_features, config, device)
        run.settings.update(info)
        _v2c(clips, predict, run)
    else:
        from vfm3d.jointgen.consistency import ConsistencyScorer, load_features, load_geometry

        scorer = ConsistencyScorer(
            load_geometry(geometry, device=device),
            load_features(features, device=device),
            progress=False,
        )
        run.settings.update({"geometry": geometry, "features": features})
        real_clips: list[Clip] | None = None
        if kind == "gt":
            scored = [_cut(c, config.frames) for c in clips]
            if other_real is not None:
                others = _load_clips(other_real, len(clips), "--real")
                real_clips = [_cut(c, config.frames) for c in others]
            else:
                run.skipped[FRECHET] = "gt row: pass --real OTHER to compare with another real set"
            run.skipped["v2c"] = "the true cameras themselves"
        else:
            scored, real_clips = _generator_row(
                model, kind, clips, other_real, run, out_dir, device
            )
        _score_videos(scorer, scored, run)
        if real_clips is not None:
            frechet = _frechet(
                scored, real_clips, real_path, frechet_backbone, run, out_dir, device
            )

    rows = [run.items[c.id] for c in clips]
    summary = {}
    for metric in (CONSISTENCY, *V2C_METRICS):
        vals = [r[metric] for r in rows if isinstance(r.get(metric), (int, float))]
        if vals:
            summary[metric] = float(np.mean(vals))
    if frechet is not None:
        summary[FRECHET] = frechet["value"]
    record = {
        "format": FORMAT,
        "version": VERSION,
        "model": str(model),
        "kind": kind,
        "data": str(Path(data).resolve()),
        "clip_ids": [c.id for c in clips],
        "seed": config.seed,
        "summary": summary,
        "frechet": frechet,
        "skipped": run.skipped,
        "timings": {
            "seconds_per_video": run.per_unit("generate"),
            "seconds_per_consistency_pair": run.per_unit("consistency"),
            "seconds_per_v2c_clip": run.per_unit("v2c"),
            "seconds_frechet_features": run.seconds.get("frechet_features"),
        },
        "settings": run.settings,
        "items": rows,
    }
    atomic_write_json(out_dir / METRICS_FILE, record)
    return record


def _generate(
    generator: Any,
    clips: Sequence[Clip],
    frames: int,
    hw: tuple[int, int],
    run: _Run,
    out_dir: Path,
) -> list[Clip]:
    """T2V of every item (its prompt and noise seed), in batches; optionally writes mp4s."""
    from tqdm import tqdm

    from vfm3d.jointgen.generate_cli import _to_uint8, write_mp4
    from vfm3d.jointgen.modes import text_to_video

    config, items = run.config, run.items
    out: list[Clip] = []
    ids = [c.id for c in clips]
    bar = tqdm(total=len(ids), desc="generate", unit="video", disable=not config.progress)
    for lo in range(0, len(ids), config.batch):
        chunk = ids[lo : lo + config.batch]
        start = time.perf_counter()
        result = text_to_video(
            generator,
            [items[i]["prompt"] for i in chunk],
            [items[i]["noise_seed"] for i in chunk],
            frames,
            *hw,
            steps=config.steps,
            guidance=config.guidance,
        )
        run.timed("generate", start, len(chunk))
        for clip_id, video in zip(chunk, _to_uint8(result.videos), strict=True):
            out.append(_generated_clip(video, clip_id))
            if config.write_videos:
                name = "".join(c if c.isalnum() or c in "-_." else "_" for c in clip_id)
                items[clip_id]["video"] = f"videos/{name}.mp4"
                (out_dir / "videos").mkdir(exist_ok=True)
                write_mp4(out_dir / "videos" / f"{name}.mp4", video)
        bar.update(len(chunk))
    bar.close()
    return out


def _baseline_predictor(
    kind: str, model: str, probe_features: Any, config: EvalConfig, device: str
) -> tuple[Callable[[Clip], tuple[np.ndarray, torch.Tensor, Clip]], dict[str, Any]]:
    """The V2C predictor of a ``vggt`` or ``probe`` row and what the record keeps of it."""

    if kind == "vggt":
        from vfm3d.data.transforms import apply_to_clip, resize
        from vfm3d.jointgen.consistency import load_geometry

        expert = load_geometry(model.removeprefix(VGGT_PREFIX), device=device)

        def run_vggt(clip: Clip) -> tuple[np.ndarray, torch.Tensor, Clip]:
            seen = _cut(clip, config.frames)
            size = expert.default_size((seen.height, seen.width))
            if (seen.height, seen.width) != tuple(size):
                seen = apply_to_clip(seen, resize((seen.height, seen.width), tuple(size)))
            cam_to_world = expert.predict(seen.frames[None])[2][0]
            return np.arange(seen.num_frames), cam_to_world, seen

        return run_vggt, {"expert": model, "input": "all frames in one forward, not smoothed"}
    from vfm3d.probe.infer import WholeClipProbe

    probe = WholeClipProbe(model.removeprefix(PROBE_PREFIX), probe_features, device=device)

    def run_probe(clip: Clip) -> tuple[np.ndarray, torch.Tensor, Clip]:
        seen = _cut(clip, config.frames)
        pred = probe(clip, count=seen.num_frames)
        return np.arange(seen.num_frames), pred["cam_to_world"], seen

    info = {"probe": probe.settings}
    return run_probe, info


# ---------------------------------------------------------------------- compare
def load_eval(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``metrics.json`` of an `evaluate_model` output folder."""
    path = Path(folder) / METRICS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found (run `vfm3d jointgen eval ... --out {folder}`)")
    record = json.loads(path.read_text())
    if record.get("format") != FORMAT or not isinstance(record.get("items"), list):
        raise ValueError(
            f"{path}: not a `vfm3d jointgen eval` output (format {record.get('format')!r})"
        )
    return record


def _feature_sets(
    folder: Path, record: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray, tuple[Any, ...]] | None:
    """``(generated [N, D], real [M, D], key)`` with rows sorted by item id (so that a bootstrap
    draw picks the same items in every row), ``key`` = (backbone, layer, real folder, generated
    ids, real ids); None for a run without a Frechet distance."""
    frechet = record.get("frechet")
    if frechet is None:
        return None
    from safetensors import safe_open

    path = folder / FEATURES_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing (metrics.json reports a Frechet distance)")
    sets, keys = [], []
    with safe_open(str(path), "np") as handle:
        meta = handle.metadata() or {}
        for name in ("generated", "real"):
            ids = json.loads(meta[f"{name}_ids"])
            order = sorted(range(len(ids)), key=ids.__getitem__)
            sets.append(handle.get_tensor(name)[order])
            keys.append(tuple(ids[i] for i in order))
    key = (frechet["backbone"], frechet["layer"], frechet["real_data"], *keys)
    return sets[0], sets[1], key


def compare(
    rows: Sequence[tuple[str, Sequence[Path]]],
    metrics: Sequence[str] = DEFAULT_METRICS,
    reference: str | None = None,
    samples: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """One table (`vfm3d.report.comparison`) of `evaluate_model` folders, seeds pooled per row:
    per-item metrics bootstrapped over clips, ``frechet`` over the rows of both feature sets
    (`set_statistic_cells`). Every folder must have scored the same clips; Frechet distances
    must share a backbone and set sizes."""
    from vfm3d.metrics.frechet import frechet_distance
    from vfm3d.report.comparison import (
        BOOTSTRAP_SAMPLES,
        add_columns,
        comparison_table,
        set_statistic_cells,
    )

    samples = BOOTSTRAP_SAMPLES if samples is None else int(samples)
    per_item: dict[str, list[dict[str, dict[str, Any]]]] = {}
    sets: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    pairing: dict[str, tuple[Any, ...]] = {}
    ids: list[str] | None = None
    for name, folders in rows:
        if name in per_item:
            raise ValueError(f"row {name!r} given twice")
        if not folders:
            raise ValueError(f"row {name!r}: no folders")
        per_item[name], sets[name] = [], []
        for folder in folders:
            record = load_eval(folder)
            if ids is None:
                ids = list(record["clip_ids"])
            elif list(record["clip_ids"]) != ids:
                raise ValueError(
                    f"{folder}: scored {len(record['clip_ids'])} clips, not the same ones as the "
                    f"first row ({len(ids)}); compare evaluations of one --data and --prompts"
                )
            per_item[name].append({str(r["id"]): r for r in record["items"]})
            found = _feature_sets(Path(folder), record)
            if found is None:
                continue
            generated, real, key = found
            backbones = {k[:2] for k in pairing.values()}
            if backbones and key[:2] not in backbones:
                raise ValueError(
                    f"{folder}: Frechet features of {key[0]} layer {key[1]}; other rows used "
                    f"{sorted(backbones)}: a distance is comparable only on one feature space"
                )
            if pairing.setdefault(name, key) != key:
                raise ValueError(
                    f"row {name!r}: {folder} computed its Frechet distance on other items or "
                    "another real folder than the row's first seed"
                )
            sets[name].append((generated, real))
        if sets[name] and len(sets[name]) != len(folders):
            raise ValueError(f"row {name!r}: some seeds have a Frechet distance and some do not")
    item_metrics = [m for m in metrics if m != FRECHET]
    table = comparison_table(
        per_item, item_metrics, reference=reference, samples=samples, seed=seed
    )
    if FRECHET in metrics:
        cells = set_statistic_cells(sets, frechet_distance, reference, samples, seed, pairing)
        add_columns(table, {FRECHET: cells})
    table["metrics"] = list(metrics)
    table["folders"] = {name: [str(f) for f in folders] for name, folders in rows}
    table["notes"] = [
        "lower is better: "
        + ", ".join(m for m in metrics if m in LOWER_IS_BETTER)
        + "; higher is better: "
        + ", ".join(m for m in metrics if m not in LOWER_IS_BETTER),
        f"{FRECHET}: one number per seed; interval from {samples} bootstrap resamples of the "
        "generated and the real feature sets",
    ]
    return table
