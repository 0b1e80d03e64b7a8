"""Joint training of generation and reconstruction (JOG3R): ``L = L_gen + lambda L_rec``.

- ``L_gen``: wan-mini's flow-matching loss (`vfm3d.zoo.wan_mini`, on `vfm3d.models.wan_flow`):
  ``sigma ~ sigmoid(N(0, 1))``, ``z_sigma = (1 - sigma) z0 + sigma eps``, MSE of the predicted
  velocity against ``eps - z0`` at model timestep ``1000 sigma``, on normalised VAE latents
  (posterior modes, computed once).
- ``L_rec``: the probe's losses (`vfm3d.probe.losses.probe_loss`: confidence-weighted point and
  depth terms, Huber camera term on ``absT_quaR_FoV`` over the refinement iterations, weighted by
  the head's `ProbeConfig`) of the head's predictions against the clip's ground truth, made by
  `vfm3d.geometry.probe_targets` (frame 0's camera, frame 0's mean point distance 1) for the
  predicted frames. The head reads the block outputs of the same forward as ``L_gen`` (noisy
  latents at the sampled sigma), so one DiT pass gives both losses.
- ``lambda_rec = 1`` (default) is JOG3R; ``lambda_rec = 0`` is the paper's comparison twin: the
  head is not run and its weights are frozen (left exactly at their initialisation), and the
  generator's training is step for step the generation-only training of the same seed (batches,
  caption dropout, flips, sigma and noise are drawn identically with or without a head).

Conditioning: each clip's caption (`vfm3d.jointgen.captions.clip_caption`) through the text
encoder; with probability ``caption_dropout`` (0.1) a sample gets the empty prompt instead, so
unconditional generation (and classifier-free guidance) stays available. The miniature text
encoder trains with the DiT; a loaded Wan2.1 UMT5 stays frozen.

Augmentation (``flip``): a mirrored sample uses the latents of the horizontally flipped frames
(encoded alongside the originals, never flipped latents) and the mirrored ground truth (depth and
valid columns reversed, ``cx -> W - 1 - cx``, ``cam_to_world -> M cam_to_world M`` with
``M = diag(-1, 1, 1, 1)``, which negates x in every camera), and its caption with left and right
swapped.

Loop: `vfm3d.utils.training.Trainer` (AdamW, warm-up + cosine, gradient clipping, resumable
checkpoint ``OUT/checkpoint_joint.safetensors``, JSONL curve ``OUT/train_joint.jsonl`` with
``loss``, ``gen``, ``rec``, ``point``, ``depth``, ``camera``). Step ``k``'s batch, dropout,
flips, sigma and noise come from ``batch_generator(seed + 1, k)`` for the whole global batch;
under ``torchrun`` each rank takes its contiguous share and the objective runs through
``DistributedDataParallel`` (gradients averaged), so a run gives the same global batches for
every world size; rank 0 alone writes logs (its share's losses), checkpoints and the model (the
other ranks resume from its checkpoint). ``L_gen`` is a mean over equal shares, so its gradient
is the single-process one (tested); ``L_rec``, like the probe's losses, averages over each
rank's valid pixels, so under torchrun it is the mean of the ranks' ``L_rec``, which equals the
single-process value only when the ranks hold equally many valid pixels. Held-out numbers before and after (``OUT/heldout_metrics.json``): ``gen``
and ``rec`` at fixed noise (sigma 0.5, seed 0) and V2C camera accuracy (RRA/RTA@30, AUC@30,
VGGT mode, no smoothing) at `vfm3d.jointgen.modes.V2C_TIMESTEP`.

Output ``OUT/model/``: the `JointGenerator` folder (``jog3r.json`` records lambda and the init).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vfm3d.jointgen.model import DEFAULT_INIT, JointGenerator
from vfm3d.utils.distributed import Distributed, RankTrainer, init_distributed
from vfm3d.utils.training import ClipTensors, Trainer, batch_generator

STAGE = "joint"
STAGES = (STAGE,)
HELDOUT_FILE = "heldout_metrics.json"
#: Sigma of the fixed-noise held-out losses.
EVAL_SIGMA = 0.5

_MIRROR = torch.diag(torch.tensor([-1.0, 1.0, 1.0, 1.0], dtype=torch.float64))


@dataclass(frozen=True)
class JointTrainConfig:
    """Settings of a joint training run (module docstring); the head's sizes and loss weights
    are its `ProbeConfig` (on the model)."""

    lambda_rec: float = 1.0
    batch: int = 8
    lr: float = 5e-4
    warmup: int = 100
    caption_dropout: float = 0.1
    flip: bool = True
    checkpoint_every: int = 200
    log_every: int = 10
    eval_clips: int = 16

    def __post_init__(self) -> None:
        if self.lambda_rec < 0:
            raise ValueError(f"lambda_rec must be >= 0, got {self.lambda_rec}")
        if not 0.0 <= self.caption_dropout <= 1.0:
            raise ValueError(f"caption_dropout must lie in [0, 1], got {self.caption_dropout}")
        if self.batch < 1:
            raise ValueError(f"batch must be >= 1, got {self.batch}")


# ---------------------------------------------------------------------- data
def load_captioned_clips(
    folders: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
) -> tuple[ClipTensors, list[str]]:
    """`vfm3d.utils.training.load_clips` of clip folders plus each clip's caption (same order)."""
    from vfm3d.clip import ClipFolder
    from vfm3d.jointgen.captions import clip_caption
    from vfm3d.utils.training import load_clips

    paths = (
        [Path(folders)] if isinstance(folders, (str, os.PathLike)) else [Path(f) for f in folders]
    )
    captions = [clip_caption(clip) for folder in paths for clip in ClipFolder(folder)]
    return load_clips(paths), captions


def mirror_caption(text: str) -> str:
    """The caption of a horizontally flipped clip: "left" and "right" swapped."""
    words = text.split(" ")
    swap = {"left": "right", "right": "left", "left,": "right,", "right,": "left,"}
    return " ".join(swap.get(w, w) for w in words)


def mirror_geometry(
    depth: torch.Tensor, valid: torch.Tensor, intrinsics: torch.Tensor, cam_to_world: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Ground truth of horizontally flipped frames: ``depth, valid [..., T, H, W]``,
    ``intrinsics [..., T, 3, 3]`` (``cx -> W - 1 - cx``), ``cam_to_world [..., T, 4, 4]``
    (``M cam_to_world M``, ``M = diag(-1, 1, 1, 1)``: x negated in every camera and the world)."""
    width = depth.shape[-1]
    k = intrinsics.clone()
    k[..., 0, 2] = (width - 1) - k[..., 0, 2]
    m = _MIRROR.to(cam_to_world.device, cam_to_world.dtype)
    return depth.flip(-1), valid.flip(-1), k, m @ cam_to_world @ m


def clip_targets(
    depth: torch.Tensor,
    valid: torch.Tensor,
    intrinsics: torch.Tensor,
    cam_to_world: torch.Tensor,
    frames: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """Head targets for the input ``frames [S]`` (frame ``frames[0]`` must be 0) of clips
    ``depth [B, T, H, W]``, ``valid``, ``intrinsics [B, T, 3, 3]``, ``cam_to_world [B, T, 4, 4]``.

    Returns ``points [B, S, H, W, 3]``, ``depth``, ``valid`` ``[B, S, H, W]``, ``pose_enc
    [B, S, 9]`` (float32) in frame 0's camera, normalised by `vfm3d.geometry.probe_targets`.
    """
    from vfm3d.geometry import encode_pose, probe_targets

    if int(frames[0]) != 0:
        raise ValueError(f"the first predicted frame must be frame 0, got {int(frames[0])}")
    idx = frames.to(depth.device)
    targets = probe_targets(
        depth[:, idx].double(), valid[:, idx], intrinsics[:, idx], cam_to_world[:, idx].double()
    )
    hw = (int(depth.shape[-2]), int(depth.shape[-1]))
    pose_enc = encode_pose(targets.world_to_cam, intrinsics[:, idx].double(), hw)
    return {
        "points": targets.points.float(),
        "depth": targets.depth.float(),
        "valid": targets.valid,
        "pose_enc": pose_enc.float(),
    }


@torch.no_grad()
def encode_latents(
    generator: JointGenerator, data: ClipTensors, flip: bool, chunk: int = 32
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Normalised latents of every clip ``[N, C, T', h', w']`` and, with ``flip``, of the
    horizontally flipped clips (on the generator's device)."""
    plain, flipped = [], []
    for start in range(0, len(data), chunk):
        index = torch.arange(start, min(start + chunk, len(data)))
        video = data.video(index, generator.device)
        plain.append(generator.encode_video(video))
        if flip:
            flipped.append(generator.encode_video(video.flip(-1)))
    return torch.cat(plain), (torch.cat(flipped) if flip else None)


# ---------------------------------------------------------------------- losses
def flow_loss(velocity: torch.Tensor, z0: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """wan-mini's flow-matching MSE: ``mean((v - (eps - z0))^2)``."""
    return F.mse_loss(velocity.float(), (eps - z0).float())


def joint_loss(
    generator: JointGenerator,
    z0: torch.Tensor,
    context: torch.Tensor,
    sigma: torch.Tensor,
    eps: torch.Tensor,
    targets: Mapping[str, torch.Tensor] | None = None,
    lambda_rec: float = 1.0,
) -> dict[str, torch.Tensor]:
    """``L_gen + lambda_rec L_rec`` of one batch (module docstring).

    ``z0, eps [B, C, T', h', w']`` (normalised latents, noise); ``context [B, L, text_dim]``;
    ``sigma [B]``; ``targets``: `clip_targets` of every input frame (``[B, T, ...]``; the head's
    predicted frames are picked from them), required when ``lambda_rec > 0``.
    Returns ``{"loss", "gen"}`` plus, with the head, ``"rec", "point", "depth", "camera"``.
    """
    from vfm3d.probe.losses import probe_loss

    s = sigma.to(z0.device, z0.dtype).view(-1, 1, 1, 1, 1)
    noisy = (1.0 - s) * z0 + s * eps
    run_head = lambda_rec > 0
    if run_head and targets is None:
        raise ValueError("lambda_rec > 0 needs targets")
    out = generator(noisy, sigma.to(z0.device) * 1000.0, context, run_head=run_head)
    gen = flow_loss(out["velocity"], z0, eps)
    losses = {"gen": gen}
    total = gen
    if run_head:
        assert targets is not None and generator.head is not None
        frames = out["frames"]
        batch = {
            "points": targets["points"][:, frames],
            "depth": targets["depth"][:, frames],
            "valid": targets["valid"][:, frames],
            "pose_enc": targets["pose_enc"][:, frames],
        }
        rec = probe_loss(out, batch, generator.head.config)
        losses.update(rec=rec["loss"], point=rec["point"], depth=rec["depth"], camera=rec["camera"])
        total = gen + float(lambda_rec) * rec["loss"]
    return {"loss": total, **losses}


class _Objective(nn.Module):
    """`joint_loss` as a module call (what ``DistributedDataParallel`` synchronises): token ids
    -> context (through the trainable text encoder, if any) -> losses."""

    def __init__(self, generator: JointGenerator, lambda_rec: float) -> None:
        super().__init__()
        self.generator = generator
        self.lambda_rec = float(lambda_rec)

    def forward(
        self,
        z0: torch.Tensor,
        ids: torch.Tensor | None,
        mask: torch.Tensor | None,
        sigma: torch.Tensor,
        eps: torch.Tensor,
        targets: dict[str, torch.Tensor] | None,
    ) -> dict[str, torch.Tensor]:
        gen = self.generator
        if gen.text is not None:
            assert ids is not None and mask is not None
            context = gen.text.encode_ids(ids, mask)
        else:
            context = gen.empty_prompt.to(z0.device).expand(z0.shape[0], -1, -1)
        return joint_loss(gen, z0, context, sigma, eps, targets, self.lambda_rec)


# ---------------------------------------------------------------------- evaluation
@torch.no_grad()
def evaluate(
    generator: JointGenerator,
    data: ClipTensors,
    captions: Sequence[str],
    limit: int = 16,
) -> dict[str, float]:
    """Held-out numbers (module docstring) on the first ``limit`` clips of ``data``."""
    from vfm3d.jointgen.modes import V2C_TIMESTEP, video_to_cameras
    from vfm3d.metrics import camera_auc, relative_pose_errors, rra_rta

    n = min(int(limit), len(data))
    if n == 0:
        return {}
    was_training = generator.training
    generator.eval()
    index = torch.arange(n)
    video = data.video(index, generator.device)
    z0 = generator.encode_video(video)
    eps = torch.randn(z0.shape, generator=torch.Generator().manual_seed(0)).to(z0)
    sigma = torch.full((n,), EVAL_SIGMA)
    prompts = list(captions[:n]) if generator.text is not None else [None] * n
    context = generator.encode_prompts(prompts)
    has_head = generator.head is not None
    targets = None
    if has_head:
        all_frames = torch.arange(data.frames.shape[1])
        targets = clip_targets(
            data.depth[index],
            data.valid[index],
            data.intrinsics[index],
            data.cam_to_world[index],
            all_frames,
        )
        targets = {k: v.to(generator.device) for k, v in targets.items()}
    losses = joint_loss(generator, z0, context, sigma, eps, targets, 1.0 if has_head else 0.0)
    out = {k: float(v) for k, v in losses.items() if k != "loss"}
    if has_head:
        pred = video_to_cameras(generator, video, V2C_TIMESTEP, seed=0, smooth=False)
        frames = pred.frames
        gt = data.cam_to_world[index][:, frames]
        rot, trans = relative_pose_errors(pred.cam_to_world, gt)
        out.update({k: v for k, v in rra_rta(rot, trans, (30,)).items()})
        out.update(camera_auc(pred.cam_to_world, gt, thresholds=(30,)))
    generator.train(was_training)
    return out


# ---------------------------------------------------------------------- training
def train_jog3r(
    out: str | os.PathLike[str],
    data: ClipTensors,
    captions: Sequence[str],
    steps: int,
    seed: int = 0,
    device: str | torch.device = "cpu",
    init: str | os.PathLike[str] = DEFAULT_INIT,
    config: JointTrainConfig | None = None,
    generator: JointGenerator | None = None,
    heldout: ClipTensors | None = None,
    heldout_captions: Sequence[str] | None = None,
    progress: bool = True,
    deadline: float | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Train a `JointGenerator` on ``data`` (clips with depth and cameras) and ``captions`` (one
    per clip) for ``steps`` steps into ``out`` (resumable); returns a summary.

    ``generator``: the model to train (tests); default `JointGenerator.from_wan` of ``init``
    (``zoo/wan-mini`` or a local Wan2.1 folder) with a text encoder built on ``captions`` and
    ``model_kwargs`` (``head_config``, ``head_blocks``, ``time_mapping``, ``max_tokens``). A model
    without a head trains generation only (``lambda_rec`` must then be 0). Under ``torchrun``
    the process group is joined here (module docstring); ``deadline`` is refused there.
    """
    cfg = config or JointTrainConfig()
    run = Path(out)
    run.mkdir(parents=True, exist_ok=True)
    if len(captions) != len(data):
        raise ValueError(f"{len(captions)} captions for {len(data)} clips")
    ctx, dev = init_distributed(torch.device(device))
    if ctx.active and deadline is not None:
        raise ValueError("a time limit is not supported under torchrun (ranks could diverge)")
    try:
        if generator is None:
            generator = JointGenerator.from_wan(
                init, corpus=list(captions), seed=seed, **dict(model_kwargs or {})
            )
        if generator.head is None and cfg.lambda_rec > 0:
            raise ValueError("lambda_rec > 0 needs a model with a reconstruction head")
        generator.to(dev)
        return _train(
            run,
            generator,
            data,
            list(captions),
            steps,
            seed,
            cfg,
            ctx,
            dev,
            heldout,
            heldout_captions,
            progress,
            deadline,
            str(init),
        )
    finally:
        ctx.close()


def _train(
    run: Path,
    generator: JointGenerator,
    data: ClipTensors,
    captions: list[str],
    steps: int,
    seed: int,
    cfg: JointTrainConfig,
    ctx: Distributed,
    dev: torch.device,
    heldout: ClipTensors | None,
    heldout_captions: Sequence[str] | None,
    progress: bool,
    deadline: float | None,
    init: str,
) -> dict[str, Any]:
    t0 = time.perf_counter()
    head = generator.head
    if head is not None:
        head.requires_grad_(cfg.lambda_rec > 0)  # lambda 0: the twin's head stays as initialised
    latents, latents_flipped = encode_latents(generator, data, cfg.flip)
    text = generator.text
    ids = mask = ids_m = mask_m = empty_ids = empty_mask = None
    if text is not None:
        ids, mask = text.tokenize(captions)
        if cfg.flip:
            ids_m, mask_m = text.tokenize([mirror_caption(c) for c in captions])
        empty_ids, empty_mask = text.tokenize([""])
    elif any(captions) and cfg.caption_dropout < 1.0:
        raise ValueError("captions given but the model has no text encoder")
    metrics: dict[str, Any] = {}
    if heldout is not None and ctx.main:
        metrics["before"] = evaluate(
            generator, heldout, heldout_captions or [""] * len(heldout), cfg.eval_clips
        )
    generator.vae.eval()
    objective = _Objective(generator, cfg.lambda_rec)
    net: nn.Module = objective
    if ctx.active:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(
            objective, device_ids=[dev.index] if dev.type == "cuda" else None
        )
    share = ctx.share(cfg.batch)
    all_frames = torch.arange(data.frames.shape[1])

    def step_fn(step: int) -> dict[str, torch.Tensor]:
        gen = batch_generator(seed + 1, step)
        index = torch.randint(len(data), (cfg.batch,), generator=gen)
        flip = torch.rand(cfg.batch, generator=gen) < 0.5
        drop = torch.rand(cfg.batch, generator=gen) < cfg.caption_dropout
        sigma = torch.sigmoid(torch.randn(cfg.batch, generator=gen))
        eps = torch.randn((cfg.batch, *latents.shape[1:]), generator=gen)
        if not cfg.flip:
            flip = torch.zeros_like(flip)
        index, flip, drop, sigma, eps = (x[share] for x in (index, flip, drop, sigma, eps))
        on = index.to(latents.device)
        z0 = latents[on]
        if latents_flipped is not None and bool(flip.any()):
            z0 = torch.where(flip.to(z0.device).view(-1, 1, 1, 1, 1), latents_flipped[on], z0)
        tok = msk = None
        if ids is not None:
            tok, msk = ids[index].clone(), mask[index].clone()
            if ids_m is not None and bool(flip.any()):
                tok[flip], msk[flip] = ids_m[index][flip], mask_m[index][flip]
            tok[drop], msk[drop] = empty_ids, empty_mask
        targets = None
        if cfg.lambda_rec > 0:
            geo = (
                data.depth[index],
                data.valid[index],
                data.intrinsics[index],
                data.cam_to_world[index],
            )
            if bool(flip.any()):
                mirrored = mirror_geometry(*geo)
                geo = tuple(
                    torch.where(flip.view(-1, *[1] * (g.ndim - 1)), m, g)
                    for g, m in zip(geo, mirrored, strict=True)
                )
            targets = {k: v.to(dev) for k, v in clip_targets(*geo, all_frames).items()}
        return net(z0, tok, msk, sigma.to(dev), eps.to(dev), targets)

    modules: dict[str, nn.Module] = {"transformer": generator.transformer}
    if head is not None:
        modules["head"] = head
    if text is not None and text.trainable:
        # the encoder stack (its ``embed_tokens`` is the model's tied ``shared`` embedding: one
        # copy in the checkpoint, which safetensors requires)
        modules["text_encoder"] = text.encoder.encoder
    warmup = max(1, min(cfg.warmup, steps // 5))
    common = dict(lr=cfg.lr, warmup=warmup, log_every=cfg.log_every)
    if ctx.main:
        trainer: Trainer = Trainer(
            run,
            STAGE,
            modules,
            steps,
            progress=progress,
            deadline=deadline,
            checkpoint_every=cfg.checkpoint_every,
            **common,
        )
    else:
        scratch = run / ".ranks" / f"rank{ctx.rank}"
        scratch.mkdir(parents=True, exist_ok=True)
        trainer = RankTrainer(
            scratch,
            STAGE,
            modules,
            steps,
            progress=False,
            deadline=None,
            checkpoint_every=steps + 1,
            shared_checkpoint=run / f"checkpoint_{STAGE}.safetensors",
            **common,
        )
    records = trainer.fit(step_fn)
    generator.eval()
    summary: dict[str, Any] = {
        "init": init,
        "lambda_rec": cfg.lambda_rec,
        "config": asdict(cfg),
        "steps": steps,
        "world_size": ctx.world,
        "train_seconds": round(time.perf_counter() - t0, 1),
    }
    if ctx.main:
        if heldout is not None:
            metrics["after"] = evaluate(
                generator, heldout, heldout_captions or [""] * len(heldout), cfg.eval_clips
            )
            from vfm3d.utils.atomic import atomic_write_json

            atomic_write_json(run / HELDOUT_FILE, metrics)
            summary["heldout"] = metrics
        t, h, w = (int(x) for x in data.frames.shape[1:4])
        train_info = {"steps": steps, "seed": seed, "frames": t, "height": h, "width": w}
        extra = {"lambda_rec": cfg.lambda_rec, "train": train_info}
        generator.save_pretrained(run / "model", extra=extra)
        if records:
            summary["final"] = {k: v for k, v in records[-1].items() if k not in ("step", "time_s")}
    ctx.barrier()
    return summary


def twin_config(config: JointTrainConfig | None = None) -> JointTrainConfig:
    """The comparison twin's settings: the same with ``lambda_rec = 0``."""
    return replace(config or JointTrainConfig(), lambda_rec=0.0)


def read_curve(run: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The JSONL records of a run's joint stage."""
    path = Path(run) / f"train_{STAGE}.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


__all__ = [
    "STAGES",
    "JointTrainConfig",
    "clip_targets",
    "encode_latents",
    "evaluate",
    "flow_loss",
    "joint_loss",
    "load_captioned_clips",
    "mirror_caption",
    "mirror_geometry",
    "train_jog3r",
    "twin_config",
]
