"""Training Sora3R on clips with ground truth (world clips, static and dynamic): two stages.

Initialisation: a Wan-architecture video model (``init``: ``zoo/wan-mini`` by default, or a local
Wan2.1 diffusers folder with ``transformer/``, ``vae/`` and a text encoder or a stored empty
prompt), loaded by `vfm3d.backbones.wan.from_pretrained`. Its VAE stays frozen and gives the
DiT's condition; its DiT initialises the joint DiT.

Stage ``pointmap_vae``: `PointmapVAE.from_video_vae` (a copy of the video VAE) is fine-tuned with
`pointmap_vae_loss` (Huber + sky term + KL) on the clips' point maps (`pointmap_targets`: frame
0's camera, frame 0's mean valid-point distance 1), whole clips, AdamW lr 1e-4 (a fine-tune), then
its latent statistics are set from the posterior modes of every training point map
(`latent_statistics`, flipped copies included when flips are on). The result is saved as
``OUT/pointmap_vae_stage/`` (a rerun with that folder skips the stage).

Stage ``dit``: the video latents (frozen video VAE, `encode_video`) and the normalised point-map
latents of every training clip are computed once; the joint DiT (`JointDiT.from_video_dit`, or
`JointDiT.random_init` of the same config with ``random_init``: the twin that asks whether the
video prior helps) learns `joint_flow_loss` on ``[video latent ⊕ noisy point-map latent]``, AdamW
lr 3e-4. Both stages run on `vfm3d.utils.training.Trainer` (resumable checkpoints, JSONL curves
``OUT/train_<stage>.jsonl``); warm-up is ``min(configured, steps // 5)`` so short runs train.

Augmentation: horizontal flips (probability 1/2 per sample). A mirrored clip's point map is the
original's with its image columns reversed **and X negated** (OpenCV x right), so flips are
applied to frames and point maps *before* encoding (never to latents): the flipped copies'
latents are encoded alongside the originals.

Held-out metrics (``OUT/heldout_metrics.json`` and the summary), on the held-out clips, before
and after each stage:

- VAE: reconstruction (posterior mode, decoded) ``point_error`` = mean Euclidean distance to the
  target in normalised units, per-frame ``depth_abs_rel`` (decoded points put into each frame's
  true camera; z vs the normalised true depth), ``valid_accuracy`` (predicted sky mask vs true);
- DiT: the same metrics of one sampled point map (``eval_steps`` Euler steps, seed 0), plus
  ``depth_abs_rel_median`` (one median scale per clip) and the ``flow_loss`` at fixed noise.
All on pixels valid in both prediction and truth.

Distributed (``torchrun``): the process group is initialised from the environment (gloo on CPU,
NCCL on CUDA, device ``cuda:LOCAL_RANK``); in both stages the loss runs through
``DistributedDataParallel`` (gradients averaged across ranks), each rank takes its contiguous
share of the same global batch (``batch`` must divide by the world size), rank 0 alone writes
logs, checkpoints and models (other ranks read its checkpoint when resuming), held-out metrics
are computed by rank 0. Per-rank noise is drawn from ``(seed, step, rank)``, so runs are
reproducible for a given world size. ``--time-limit`` is refused under torchrun (ranks could
stop at different steps). The rank handling is `vfm3d.utils.distributed`'s.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vfm3d.recon4d.joint_dit import JointDiT, joint_flow_loss
from vfm3d.recon4d.pointmap_vae import (
    DEFAULT_MAX_DISTANCE,
    PointmapVAE,
    latent_statistics,
    pointmap_targets,
    pointmap_vae_loss,
    vae_to_points,
)
from vfm3d.utils.distributed import Distributed, RankTrainer, init_distributed
from vfm3d.utils.training import ClipTensors, Trainer, batch_generator, read_jsonl

STAGES = ("pointmap_vae", "dit")
DEFAULT_INIT = "zoo/wan-mini"
VAE_STAGE_DIR = "pointmap_vae_stage"
HELDOUT_FILE = "heldout_metrics.json"
#: Points kept per stage in the summary's ``curves`` (the JSONL logs keep every record).
CURVE_POINTS = 200


@dataclass(frozen=True)
class TrainConfig:
    """Settings of a Sora3R training run (sizes of the data and steps are given separately)."""

    vae_batch: int = 8
    dit_batch: int = 16
    vae_lr: float = 1e-4
    vae_warmup: int = 50
    dit_lr: float = 3e-4
    dit_warmup: int = 200
    flip: bool = True
    pointmap_init: str = "zeros"
    random_init: bool = False
    max_distance: float = DEFAULT_MAX_DISTANCE
    eval_steps: int = 5
    eval_clips: int = 32
    checkpoint_every: int = 200


def _trainer(
    ctx: Distributed,
    out: Path,
    stage: str,
    modules: Mapping[str, nn.Module],
    steps: int,
    lr: float,
    warmup: int,
    cfg: TrainConfig,
    progress: bool,
    deadline: float | None,
) -> Trainer:
    warmup = max(1, min(int(warmup), steps // 5))
    if ctx.main:
        return Trainer(
            out,
            stage,
            modules,
            steps,
            lr=lr,
            warmup=warmup,
            progress=progress,
            deadline=deadline,
            checkpoint_every=cfg.checkpoint_every,
        )
    scratch = out / ".ranks" / f"rank{ctx.rank}"
    scratch.mkdir(parents=True, exist_ok=True)
    return RankTrainer(
        scratch,
        stage,
        modules,
        steps,
        lr=lr,
        warmup=warmup,
        progress=False,
        deadline=None,
        checkpoint_every=steps + 1,  # only the stage's last save
        shared_checkpoint=out / f"checkpoint_{stage}.safetensors",
    )


class _VAEObjective(nn.Module):
    """`pointmap_vae_loss` as a module call (what DDP synchronises)."""

    def __init__(self, pm_vae: PointmapVAE) -> None:
        super().__init__()
        self.pm_vae = pm_vae

    def forward(
        self, points: torch.Tensor, valid: torch.Tensor, generator: torch.Generator
    ) -> dict[str, torch.Tensor]:
        return pointmap_vae_loss(self.pm_vae, points, valid, generator=generator)


class _FlowObjective(nn.Module):
    """`joint_flow_loss` as a module call (what DDP synchronises)."""

    def __init__(self, dit: JointDiT) -> None:
        super().__init__()
        self.dit = dit

    def forward(
        self,
        video_latent: torch.Tensor,
        pm_latent: torch.Tensor,
        sigma: torch.Tensor,
        generator: torch.Generator,
    ) -> dict[str, torch.Tensor]:
        return {"loss": joint_flow_loss(self.dit, video_latent, pm_latent, generator, sigma)}


# --------------------------------------------------------------------------- data
def load_video_model(init: str | os.PathLike[str], device: torch.device) -> dict[str, Any]:
    """The video model to start from: ``zoo/<name>`` or a local Wan diffusers folder.

    Returns ``{"vae", "transformer", "prompt_embeds", "source", "vae_dir"}`` (frozen modules).
    """
    from vfm3d.backbones import wan

    text = str(init)
    if text.startswith("zoo/"):
        from vfm3d.backbones.registry import zoo_root

        path = zoo_root() / text.removeprefix("zoo/")
        if not path.is_dir():
            raise FileNotFoundError(f"--init {text}: not shipped (looked in {path})")
    else:
        path = Path(text)
        if not path.is_dir():
            raise FileNotFoundError(f"--init {text}: no such folder (a Wan diffusers folder)")
    backbone = wan.from_pretrained(path, device=device)
    return {
        "vae": backbone.vae.float(),
        "transformer": backbone.transformer,
        "prompt_embeds": backbone.prompt_tensor("embeds").detach().float().cpu(),
        "source": text,
        "vae_dir": path / "vae",
    }


def clip_pointmaps(data: ClipTensors, chunk: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised point maps of every clip: ``(points [N, T, H, W, 3] float32, valid [N, T, H,
    W])`` (`pointmap_targets`), computed ``chunk`` clips at a time."""
    points, valid = [], []
    for start in range(0, len(data), chunk):
        s = slice(start, min(start + chunk, len(data)))
        p, v = pointmap_targets(
            data.depth[s], data.valid[s], data.intrinsics[s], data.cam_to_world[s]
        )
        points.append(p.float())
        valid.append(v)
    return torch.cat(points), torch.cat(valid)


def flip_pointmaps(points: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Point maps ``[..., H, W, 3]`` of the horizontally mirrored clip: columns reversed, X
    negated (the mirror of an OpenCV camera frame is ``x -> -x``); ``valid`` ``[..., H, W]``."""
    flipped = points.flip(-2).clone()
    flipped[..., 0] = -flipped[..., 0]
    return flipped, valid.flip(-1)


def _select_flipped(
    points: torch.Tensor, valid: torch.Tensor, flip: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sample ``flip`` ``[B]`` bool: the mirrored point map, else the original."""
    fp, fv = flip_pointmaps(points, valid)
    sel = flip.view(-1, *([1] * (points.ndim - 1)))
    return torch.where(sel, fp, points), torch.where(sel[..., 0], fv, valid)


@torch.no_grad()
def encode_latents(
    video_vae: nn.Module,
    pm_vae: PointmapVAE,
    data: ClipTensors,
    points: torch.Tensor,
    valid: torch.Tensor,
    device: torch.device,
    flip: bool,
    chunk: int = 16,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(normalised video latents, raw point-map posterior modes)`` ``[M, C, T', h', w']`` of
    every clip, ``M = N`` (or ``2N`` with ``flip``: rows ``N + i`` are clip ``i`` mirrored)."""
    from vfm3d.recon4d.sampling import encode_video

    videos, pms = [], []
    for mirrored in (False, True) if flip else (False,):
        for start in range(0, len(data), chunk):
            index = torch.arange(start, min(start + chunk, len(data)))
            frames = data.video(index, device)
            p, v = points[index], valid[index]
            if mirrored:
                frames = frames.flip(-1)
                p, v = flip_pointmaps(p, v)
            videos.append(encode_video(video_vae, frames).float())
            pms.append(pm_vae.posterior(p.to(device), v.to(device)).mode().float())
    return torch.cat(videos), torch.cat(pms)


# --------------------------------------------------------------------------- metrics
@dataclass
class HeldOut:
    """Held-out clips and their normalised targets (`pointmap_targets` / `probe_targets`)."""

    data: ClipTensors
    points: torch.Tensor
    valid: torch.Tensor
    depth: torch.Tensor
    world_to_cam: torch.Tensor


def heldout_targets(data: ClipTensors, limit: int) -> HeldOut:
    """The first ``limit`` held-out clips with their normalised targets."""
    from vfm3d.geometry import probe_targets

    n = min(limit, len(data))
    s = slice(0, n)
    sub = ClipTensors(
        frames=data.frames[s],
        depth=data.depth[s],
        valid=data.valid[s],
        intrinsics=data.intrinsics[s],
        cam_to_world=data.cam_to_world[s],
        kinds=data.kinds[:n],
    )
    t = probe_targets(sub.depth, sub.valid, sub.intrinsics, sub.cam_to_world)
    return HeldOut(sub, t.points.float(), t.valid, t.depth.float(), t.world_to_cam.float())


def pointmap_metrics(
    points: torch.Tensor, valid: torch.Tensor, target: HeldOut
) -> dict[str, float]:
    """Metrics of predicted point maps ``[N, T, H, W, 3]`` (normalised, frame 0's camera) and
    validity vs the held-out targets: ``point_error``, ``depth_abs_rel`` (each frame's true
    camera, no alignment), ``depth_abs_rel_median`` (one median scale per clip, on the pixels in
    front of the true camera; clips with fewer than 16 such pixels are left out),
    ``valid_accuracy``; on pixels valid in both."""
    from vfm3d.geometry import transform_points

    points, valid = points.float().cpu(), valid.cpu()
    both = valid & target.valid
    if not bool(both.any()):
        return {"point_error": float("nan"), "depth_abs_rel": float("nan"), "valid_pixels": 0}
    error = torch.linalg.vector_norm(points - target.points, dim=-1)[both].mean()
    z = transform_points(target.world_to_cam, points)[..., 2]
    gt = target.depth
    use = both & (gt > 0)
    abs_rel = ((z - gt).abs() / gt.clamp_min(1e-12))[use].mean()
    scaled = []
    for i in range(points.shape[0]):
        m = use[i] & (z[i] > 1e-6)  # in front of the true camera
        if int(m.sum()) >= 16:
            s = gt[i][m].median() / z[i][m].median()
            scaled.append(((s * z[i][m] - gt[i][m]).abs() / gt[i][m]).mean())
    return {
        "point_error": float(error),
        "depth_abs_rel": float(abs_rel),
        "depth_abs_rel_median": float(torch.stack(scaled).mean()) if scaled else float("nan"),
        "valid_accuracy": float((valid == target.valid).float().mean()),
        "valid_pixels": int(both.sum()),
    }


@torch.no_grad()
def evaluate_pointmap_vae(
    pm_vae: PointmapVAE, target: HeldOut, device: torch.device, chunk: int = 8
) -> dict[str, float]:
    """Round trip (posterior mode -> decode) of the held-out point maps -> `pointmap_metrics`."""
    was = pm_vae.training
    pm_vae.eval()
    points, valid = [], []
    for start in range(0, target.points.shape[0], chunk):
        s = slice(start, start + chunk)
        z = pm_vae.posterior(target.points[s].to(device), target.valid[s].to(device)).mode()
        out = pm_vae.vae.decode(z).sample.float()
        p, v = vae_to_points(out, pm_vae.max_distance)
        points.append(p.cpu())
        valid.append(v.cpu())
    pm_vae.train(was)
    return pointmap_metrics(torch.cat(points), torch.cat(valid), target)


@torch.no_grad()
def fixed_flow_loss(
    dit: JointDiT, video: torch.Tensor, z0: torch.Tensor, seed: int = 0, chunk: int = 32
) -> float:
    """`joint_flow_loss` averaged over ``video``/``z0`` latents with noise fixed by ``seed``
    (comparable before / after training and between runs)."""
    was = dit.training
    dit.eval()
    total, count = 0.0, 0
    device = next(dit.parameters()).device
    for start in range(0, video.shape[0], chunk):
        s = slice(start, start + chunk)
        gen = batch_generator(seed, start)
        n = int(video[s].shape[0])
        loss = joint_flow_loss(dit, video[s].to(device), z0[s].to(device), gen)
        total += float(loss) * n
        count += n
    dit.train(was)
    return total / max(count, 1)


@torch.no_grad()
def evaluate_joint_dit(
    dit: JointDiT,
    pm_vae: PointmapVAE,
    video_latents: torch.Tensor,
    pm_latents: torch.Tensor,
    target: HeldOut,
    steps: int,
    chunk: int = 8,
) -> dict[str, float]:
    """One sampled point map per held-out clip (``steps`` Euler steps, seed 0) ->
    `pointmap_metrics`, plus the fixed-noise ``flow_loss``."""
    from vfm3d.recon4d.sampling import sample_pointmaps

    was = dit.training
    dit.eval()
    points, valid = [], []
    for start in range(0, video_latents.shape[0], chunk):
        out = sample_pointmaps(dit, pm_vae, video_latents[start : start + chunk], steps=steps)
        points.append(out["points"].cpu())
        valid.append(out["valid"].cpu())
    dit.train(was)
    metrics = pointmap_metrics(torch.cat(points), torch.cat(valid), target)
    metrics["flow_loss"] = fixed_flow_loss(dit, video_latents, pm_latents)
    return metrics


def _curve(path: Path) -> list[list[float]]:
    records = read_jsonl(path)
    stride = max(1, math.ceil(len(records) / CURVE_POINTS))
    keep = records[::stride] + ([records[-1]] if records and (len(records) - 1) % stride else [])
    return [[int(r["step"]), round(float(r["loss"]), 6)] for r in keep]


def _fov_deg(data: ClipTensors) -> float:
    """Median horizontal field of view of the clips (degrees)."""
    width = int(data.frames.shape[3])
    fx = data.intrinsics[..., 0, 0].flatten().double()
    return float(torch.rad2deg(2 * torch.atan((width / 2) / fx)).median())


def copy_pointmap_vae_stage(source: str | os.PathLike[str], run: Path) -> None:
    """Copy a finished stage-1 VAE (``source``: a run folder or its ``pointmap_vae_stage/``) into
    ``run`` with its curve and held-out VAE metrics; no-op when ``run`` already has one."""
    import shutil

    from vfm3d.utils.atomic import atomic_write_json

    src = Path(source)
    src_run = src.parent if src.name == VAE_STAGE_DIR else src
    src_stage = src_run / VAE_STAGE_DIR
    if not (src_stage / "pointmap_vae.json").is_file():
        raise FileNotFoundError(
            f"--pointmap-vae {source}: no finished point-map VAE stage "
            f"({src_stage / 'pointmap_vae.json'} is missing)"
        )
    stage = run / VAE_STAGE_DIR
    if (stage / "pointmap_vae.json").is_file():
        return
    tmp = run / (VAE_STAGE_DIR + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src_stage, tmp)
    for name in ("train_pointmap_vae.jsonl", "stage_pointmap_vae.json"):  # curve, steps done
        if (src_run / name).is_file():
            shutil.copyfile(src_run / name, run / name)
    metrics: dict[str, Any] = {"pointmap_vae_source": str(src_stage.resolve())}
    if (src_run / HELDOUT_FILE).is_file():
        previous = json.loads((src_run / HELDOUT_FILE).read_text())
        metrics.update({k: v for k, v in previous.items() if k.startswith("pointmap_vae")})
    atomic_write_json(run / HELDOUT_FILE, metrics)
    tmp.rename(stage)


# --------------------------------------------------------------------------- training
def train_sora3r(
    out: str | os.PathLike[str],
    data: ClipTensors,
    heldout: ClipTensors | None,
    steps: Mapping[str, int],
    seed: int = 0,
    device: torch.device | str = "cpu",
    init: str | os.PathLike[str] = DEFAULT_INIT,
    config: TrainConfig | None = None,
    progress: bool = True,
    deadline: float | None = None,
    pointmap_vae_from: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Train both stages into ``out`` (resumable; module docstring); the model goes to
    ``out/model`` (`vfm3d.recon4d.sora3r.Sora3RModel` folder). Returns the summary
    (initialisation, parameters, data, held-out metrics before / after each stage, curves).

    ``pointmap_vae_from``: a finished run folder (or its ``pointmap_vae_stage/``) whose stage-1
    point-map VAE is copied in instead of training one (with its curve and held-out metrics), so
    runs that differ only in stage 2 (the random-init twin, another DiT seed) share one VAE; the
    source is recorded in the held-out metrics as ``pointmap_vae_source``."""
    from vfm3d.recon4d.sora3r import Sora3RModel
    from vfm3d.utils.atomic import atomic_write_json

    cfg = config or TrainConfig()
    run = Path(out)
    device = torch.device(device)
    ctx, device = init_distributed(device)
    try:
        if ctx.world > 1 and deadline is not None:
            raise ValueError(
                "--time-limit is not supported under torchrun (ranks could stop at different steps)"
            )
        for stage in STAGES:
            if int(steps[stage]) < 1:
                raise ValueError(f"steps of stage {stage!r} must be >= 1, got {steps[stage]}")
        frames, height, width = (int(v) for v in data.frames.shape[1:4])
        if len(data) < 1:
            raise ValueError("no training clips")
        ctx.share(cfg.vae_batch)
        ctx.share(cfg.dit_batch)
        run.mkdir(parents=True, exist_ok=True)
        video = load_video_model(init, device)
        video_vae = video["vae"]
        from vfm3d.backbones.wan import _vae_factors

        ft, fs = _vae_factors(video_vae)
        if (frames - 1) % ft or height % fs or width % fs:
            raise ValueError(
                f"clips of {frames} frames at {height}x{width} do not fit the video VAE: need "
                f"T = {ft}k+1 and H, W multiples of {fs}"
            )
        t_start = time.perf_counter()
        vae_deadline = None if deadline is None else time.time() + 0.3 * (deadline - time.time())
        points, valid = clip_pointmaps(data)
        target = heldout_targets(heldout, cfg.eval_clips) if heldout is not None else None
        metrics: dict[str, Any] = {}

        # ---- stage 1: the point-map VAE
        stage_dir = run / VAE_STAGE_DIR
        if pointmap_vae_from is not None and ctx.main:
            copy_pointmap_vae_stage(pointmap_vae_from, run)
        ctx.barrier()
        probe_index = torch.arange(min(16, len(data)))
        if (stage_dir / "pointmap_vae.json").is_file():
            pm_vae = PointmapVAE.from_pretrained(stage_dir, device=device)
            previous = run / HELDOUT_FILE
            if previous.is_file():
                metrics = {
                    k: v
                    for k, v in json.loads(previous.read_text()).items()
                    if k.startswith("pointmap_vae")
                }
        else:
            pm_vae = PointmapVAE.from_video_vae(video_vae, max_distance=cfg.max_distance)
            pm_vae.to(device)

            def vae_probe() -> float:
                gen = torch.Generator().manual_seed(seed)
                with torch.no_grad():
                    p, v = points[probe_index].to(device), valid[probe_index].to(device)
                    return float(pointmap_vae_loss(pm_vae, p, v, generator=gen)["loss"])

            metrics["pointmap_vae_train_loss_before"] = vae_probe()
            if target is not None and ctx.main:
                metrics["pointmap_vae_heldout_before"] = evaluate_pointmap_vae(
                    pm_vae, target, device
                )
            objective = ctx.wrap(_VAEObjective(pm_vae), device)
            n = len(data)

            def vae_step(step: int) -> dict[str, torch.Tensor]:
                gen = batch_generator(seed + 10, step)
                index = torch.randint(n, (cfg.vae_batch,), generator=gen)
                flip = torch.rand(cfg.vae_batch, generator=gen) < 0.5
                if not cfg.flip:
                    flip = torch.zeros_like(flip)
                local = ctx.share(cfg.vae_batch)
                p, v = _select_flipped(points[index[local]], valid[index[local]], flip[local])
                noise = batch_generator(seed + 11, step * ctx.world + ctx.rank)
                return objective(p.to(device), v.to(device), noise)

            trainer = _trainer(
                ctx, run, "pointmap_vae", {"pointmap_vae": pm_vae}, int(steps["pointmap_vae"]),
                cfg.vae_lr, cfg.vae_warmup, cfg, progress, vae_deadline,
            )  # fmt: skip
            trainer.fit(vae_step)
            pm_vae.eval()
            metrics["pointmap_vae_train_loss_after"] = vae_probe()
            # latent statistics over every training point map (and its mirror)
            raw = []
            with torch.no_grad():
                for mirrored in (False, True) if cfg.flip else (False,):
                    for start in range(0, n, 16):
                        p, v = points[start : start + 16], valid[start : start + 16]
                        if mirrored:
                            p, v = flip_pointmaps(p, v)
                        raw.append(pm_vae.posterior(p.to(device), v.to(device)).mode().float())
            mean, std = latent_statistics(torch.cat(raw))
            pm_vae.set_latent_statistics(mean.cpu(), std.cpu())
            if target is not None and ctx.main:
                metrics["pointmap_vae_heldout_after"] = evaluate_pointmap_vae(
                    pm_vae, target, device
                )
            if ctx.main:
                pm_vae.save_pretrained(stage_dir)
                atomic_write_json(run / HELDOUT_FILE, metrics)
            ctx.barrier()
        pm_vae.eval().requires_grad_(False)

        # ---- stage 2: the joint DiT
        video_latents, pm_raw = encode_latents(
            video_vae, pm_vae, data, points, valid, device, cfg.flip
        )
        pm_latents = pm_vae.normalise(pm_raw)
        if cfg.random_init:
            dit = JointDiT.random_init(
                video["transformer"].config, video["prompt_embeds"], seed=seed
            ).to(device)
        else:
            dit = JointDiT.from_video_dit(
                video["transformer"], video["prompt_embeds"], pointmap_init=cfg.pointmap_init
            )
        dit.to(device).train()
        del video["transformer"]
        held_video = held_pm = None
        if target is not None:
            held_video, held_raw = encode_latents(
                video_vae, pm_vae, target.data, target.points, target.valid, device, False
            )
            held_pm = pm_vae.normalise(held_raw)
        probe = probe_index.to(video_latents.device)
        metrics["dit_train_flow_loss_before"] = fixed_flow_loss(
            dit, video_latents[probe], pm_latents[probe]
        )
        if target is not None and ctx.main:
            metrics["dit_heldout_before"] = evaluate_joint_dit(
                dit, pm_vae, held_video, held_pm, target, cfg.eval_steps
            )
        objective = ctx.wrap(_FlowObjective(dit), device)
        n = len(data)

        def dit_step(step: int) -> dict[str, torch.Tensor]:
            gen = batch_generator(seed + 20, step)
            index = torch.randint(n, (cfg.dit_batch,), generator=gen)
            if cfg.flip:
                index = index + n * (torch.rand(cfg.dit_batch, generator=gen) < 0.5).long()
            sigma = torch.sigmoid(torch.randn(cfg.dit_batch, generator=gen))
            local = ctx.share(cfg.dit_batch)
            rows = index[local].to(video_latents.device)
            noise = batch_generator(seed + 21, step * ctx.world + ctx.rank)
            return objective(video_latents[rows], pm_latents[rows], sigma[local], noise)

        dit_deadline = None if deadline is None else deadline - 30.0
        trainer = _trainer(
            ctx, run, "dit", {"dit": dit}, int(steps["dit"]), cfg.dit_lr, cfg.dit_warmup, cfg,
            progress, dit_deadline,
        )  # fmt: skip
        trainer.fit(dit_step)
        dit.eval().requires_grad_(False)
        metrics["dit_train_flow_loss_after"] = fixed_flow_loss(
            dit, video_latents[probe], pm_latents[probe]
        )
        model_config = {
            "frames": frames,
            "height": height,
            "width": width,
            "steps": cfg.eval_steps,
            "fallback_fov_deg": _fov_deg(data),
            "trained_on": {
                "clips": len(data),
                "kinds": dict(Counter(data.kinds)),
                "flip": cfg.flip,
                "video_model": video["source"],
                "random_init": cfg.random_init,
            },
        }
        if ctx.main:
            model = Sora3RModel(video_vae.cpu(), pm_vae.cpu(), dit.cpu(), model_config)
            model.save_pretrained(run / "model", video_vae_source=video["vae_dir"])
            model.to(device)
            if target is not None:
                metrics["dit_heldout_after"] = evaluate_joint_dit(
                    dit, pm_vae, held_video, held_pm, target, cfg.eval_steps
                )
            atomic_write_json(run / HELDOUT_FILE, metrics)
        ctx.barrier()
        return {
            "init": {
                "video_model": video["source"],
                "dit": dit.init,
                "random_init": cfg.random_init,
            },
            "parameters": {
                "video_vae": sum(p.numel() for p in video_vae.parameters()),
                "pointmap_vae": sum(p.numel() for p in pm_vae.parameters()),
                "joint_dit": sum(p.numel() for p in dit.parameters()),
            },
            "data": {
                "train_clips": len(data),
                "heldout_clips": 0 if target is None else int(target.points.shape[0]),
                "kinds": dict(Counter(data.kinds)),
                "frames": frames,
                "height": height,
                "width": width,
            },
            "heldout": metrics,
            "latents_mean": [float(v) for v in pm_vae.vae.config.latents_mean],
            "latents_std": [float(v) for v in pm_vae.vae.config.latents_std],
            "curves": {s: _curve(run / f"train_{s}.jsonl") for s in STAGES},
            "config": asdict(cfg),
            "world_size": ctx.world,
            "seconds": round(time.perf_counter() - t_start, 1),
            "objective": "stage 1 Huber + sky + KL on point maps; stage 2 flow matching of "
            "point-map latents given the clean video latent",
        }
    finally:
        ctx.close()


__all__ = [
    "DEFAULT_INIT",
    "STAGES",
    "Distributed",
    "TrainConfig",
    "clip_pointmaps",
    "copy_pointmap_vae_stage",
    "encode_latents",
    "evaluate_joint_dit",
    "evaluate_pointmap_vae",
    "flip_pointmaps",
    "init_distributed",
    "load_video_model",
    "pointmap_metrics",
    "train_sora3r",
]
