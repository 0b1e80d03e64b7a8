"""Probe training: AdamW (fused where possible) + warm-up/cosine, gradient clipping, exact resume, DDP,
JSONL logs.

Run folder layout (``out_dir``):

- ``run.json``: the settings (backbone, layer, timestep, data and feature paths, steps, seed,
  global batch size, input channels, feature grid) and the probe config;
- ``config.json``: the `ProbeConfig`; ``eval_samples.json``: the fixed evaluation samples;
- ``checkpoint.safetensors``: latest step (model, optimiser, RNG; see `vfm3d.probe.checkpoint`),
  written atomically every ``config.checkpoint_every`` steps and at the end;
- ``model.safetensors``: final weights (+ ``config.json`` beside it);
- ``log.jsonl``: one JSON object per logged step (``step, loss, point, depth, camera, lr,
  grad_norm, samples_per_s``); ``tb/`` TensorBoard events when tensorboard is installed.

Determinism: training sample ``i`` (global, across ranks) depends only on ``(seed, i)``; step
``k`` uses samples ``k*B .. k*B + B - 1`` (rank ``r`` of ``W`` takes its contiguous ``B / W``
share), the learning rate is a pure function of the step, and the checkpoint holds the RNG
states, so an interrupted run resumed from its checkpoint ends with the same weights as an
uninterrupted one. Under ``torchrun`` the process group is initialised here (gloo on CPU, NCCL
on CUDA) and the model wrapped in DDP; the global batch stays ``batch_size``.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vfm3d.clip import ClipFolder
from vfm3d.probe.checkpoint import load_checkpoint, save_checkpoint, save_weights
from vfm3d.probe.config import ProbeConfig
from vfm3d.probe.data import (
    FeatureSource,
    ProbeDataset,
    StoreFeatureSource,
    check_pairing,
    collate,
    make_eval_samples,
    num_frames,
    write_samples,
)
from vfm3d.probe.losses import probe_loss
from vfm3d.probe.model import ProbeModel
from vfm3d.utils.atomic import atomic_write_json, atomic_write_text
from vfm3d.utils.optim import adamw

CHECKPOINT = "checkpoint.safetensors"
WEIGHTS = "model.safetensors"
RUN_INFO = "run.json"
CONFIG = "config.json"
EVAL_SAMPLES = "eval_samples.json"
LOG = "log.jsonl"


def learning_rate(step: int, total_steps: int, config: ProbeConfig) -> float:
    """Linear warm-up over ``warmup_steps`` to ``lr``, then cosine to ``min_lr`` at the end."""
    warmup = min(config.warmup_steps, max(total_steps - 1, 0))
    if warmup > 0 and step < warmup:
        return config.lr * (step + 1) / warmup
    span = max(total_steps - warmup, 1)
    progress = min(max(step - warmup, 0) / span, 1.0)
    return config.min_lr + 0.5 * (config.lr - config.min_lr) * (1.0 + math.cos(math.pi * progress))


@dataclass
class _Dist:
    rank: int = 0
    world: int = 1
    initialised_here: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0


def _setup_distributed(device: torch.device) -> _Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist()
    import torch.distributed as dist

    here = False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        here = True
    return _Dist(rank=dist.get_rank(), world=dist.get_world_size(), initialised_here=here)


def _barrier(d: _Dist) -> None:
    if d.world > 1:
        import torch.distributed as dist

        dist.barrier()


def _mean_across(values: dict[str, float], d: _Dist) -> dict[str, float]:
    if d.world <= 1:
        return values
    import torch.distributed as dist

    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64)
    dist.all_reduce(t)
    return {k: float(v) / d.world for k, v in zip(keys, t.tolist())}


def open_features(
    features: FeatureSource | str | os.PathLike[str],
    clips: ClipFolder,
    backbone: str | None,
    layer: int | None,
    timestep: int | None,
) -> FeatureSource:
    """A `FeatureSource` as given, or the cache at a path filtered to (backbone, layer, timestep)."""
    if isinstance(features, (str, os.PathLike)):
        if backbone is None or layer is None:
            raise ValueError("a feature cache path needs --backbone and --layer")
        return StoreFeatureSource(
            features, backbone, layer, timestep, num_frames=lambda cid: num_frames(clips, cid)
        )
    return features


def _truncate_log(path: Path, step: int) -> None:
    """Keep log lines with ``step <= step`` (drop the tail an interrupted run wrote)."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        if line.strip():
            try:
                if int(json.loads(line)["step"]) <= step:
                    kept.append(line)
            except (ValueError, KeyError):
                continue
    atomic_write_text(path, "".join(k + "\n" for k in kept))


def _tensorboard(out_dir: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    try:
        return SummaryWriter(str(out_dir / "tb"))
    except Exception:  # tensorboard half-installed: logging to JSONL is enough
        return None


def train(
    config: ProbeConfig,
    data_dir: str | os.PathLike[str],
    features: FeatureSource | str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    steps: int,
    backbone: str | None = None,
    layer: int | None = None,
    timestep: int | None = None,
    seed: int = 0,
    resume: bool = True,
    device: str | torch.device | None = None,
    progress: bool = True,
    stop_after: int | None = None,
    full_scan: bool = True,
) -> dict[str, Any]:
    """Train a probe on ``features`` of the clips in ``data_dir``; write the run folder.

    Args:
        config: probe, loss and optimiser settings (``config.batch_size`` = global batch).
        data_dir: a clip folder (`vfm3d.clip.ClipFolder`).
        features: a `FeatureSource`, or the feature cache path (then ``backbone``/``layer``/
            ``timestep`` select the entries).
        out_dir: the run folder (see module docstring).
        steps: total optimiser steps of the run (the schedule's length).
        seed: seeds initialisation and frame sampling.
        resume: continue from ``out_dir/checkpoint.safetensors`` if present (settings must match).
        device: default CUDA when available, else CPU.
        stop_after: stop once this many steps are done (writing a checkpoint), as an
            interruption would; a later call with ``resume=True`` finishes the run.
        full_scan: read every clip's features before training to check them (NaN, frame
            counts); ``False`` reads one frame per clip and checks each sample as it is loaded.

    Returns the summary written to ``run.json`` plus ``{"final_loss", "step"}``.
    Raises `ProbeDataError` (a `ValueError`) before training when clips and features do not match.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    dev = (
        torch.device(device)
        if device is not None
        else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    )
    dist_info = _setup_distributed(dev)
    if dev.type == "cuda" and dist_info.world > 1:
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(dev)
    if config.batch_size % dist_info.world:
        raise ValueError(
            f"batch_size {config.batch_size} must be divisible by the number of processes "
            f"({dist_info.world})"
        )
    local_batch = config.batch_size // dist_info.world
    out = Path(out_dir)
    clips = ClipFolder(data_dir)
    source = open_features(features, clips, backbone, layer, timestep)
    pairing = check_pairing(clips, source, config, full_scan=full_scan)
    settings = {
        "backbone": backbone,
        "layer": layer,
        "timestep": timestep,
        "data_dir": str(Path(data_dir).resolve()),
        "features": str(Path(features).resolve())
        if isinstance(features, (str, os.PathLike))
        else None,
        "steps": int(steps),
        "seed": int(seed),
        "batch_size": int(config.batch_size),
        "in_channels": int(pairing["channels"]),
        "grid": list(pairing["grid"]),
        "config": config.to_dict(),
    }
    ckpt_path = out / CHECKPOINT
    if dist_info.main:
        out.mkdir(parents=True, exist_ok=True)
        if (out / RUN_INFO).is_file() and ckpt_path.is_file() and resume:
            previous = json.loads((out / RUN_INFO).read_text())
            for key in (
                "backbone",
                "layer",
                "timestep",
                "seed",
                "batch_size",
                "in_channels",
                "config",
            ):
                if previous.get(key) != settings[key]:
                    raise ValueError(
                        f"{out}: cannot resume: setting {key!r} differs from the run's "
                        f"({previous.get(key)!r} vs {settings[key]!r}); use a new --out"
                    )
        atomic_write_json(out / RUN_INFO, settings)
        atomic_write_json(
            out / CONFIG, {**config.to_dict(), "in_channels": settings["in_channels"]}
        )
        if not (out / EVAL_SAMPLES).is_file():
            write_samples(out / EVAL_SAMPLES, make_eval_samples(clips, source, config, seed))
    _barrier(dist_info)

    torch.manual_seed(seed)
    model = ProbeModel(config, settings["in_channels"]).to(dev)
    optimizer = adamw(
        model.parameters(), lr=config.lr, betas=config.betas, weight_decay=config.weight_decay
    )
    start = 0
    if resume and ckpt_path.is_file():
        meta = load_checkpoint(ckpt_path, model, optimizer)
        start = int(meta["step"])
        if dist_info.main:
            _truncate_log(out / LOG, start)
    elif dist_info.main and (out / LOG).is_file():
        (out / LOG).unlink()
    _barrier(dist_info)

    net: torch.nn.Module = model
    if dist_info.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)

    dataset = ProbeDataset(clips, source, config, seed=seed)
    end = steps if stop_after is None else min(steps, max(start, int(stop_after)))
    tb = _tensorboard(out) if dist_info.main else None
    bar = None
    if progress and dist_info.main:
        from tqdm import tqdm

        bar = tqdm(total=steps, initial=start, desc="probe train", unit="step")
    last: dict[str, float] = {}
    model.train()
    for step in range(start, end):
        tick = time.perf_counter()
        lr = learning_rate(step, steps, config)
        for group in optimizer.param_groups:
            group["lr"] = lr
        first = step * config.batch_size + dist_info.rank * local_batch
        batch = collate(dataset[i] for i in range(first, first + local_batch))
        batch = {k: v.to(dev) if torch.is_tensor(v) else v for k, v in batch.items()}
        out_hw = tuple(batch["depth"].shape[-2:])
        # Free the last step's gradients before this step's activations exist: peak memory is
        # then parameters + optimizer state + activations, not + a gradient copy too.
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            pred = net(batch["features"], out_hw)
        losses = probe_loss(pred, batch, config)
        losses["loss"].backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        done = step + 1
        values = {k: float(v.detach()) for k, v in losses.items()}
        values["grad_norm"] = float(grad_norm)
        values = _mean_across(values, dist_info)
        elapsed = time.perf_counter() - tick
        last = values
        if dist_info.main:
            if done % config.log_every == 0 or done == end:
                record = {
                    "step": done,
                    **values,
                    "lr": lr,
                    "samples_per_s": config.batch_size / elapsed,
                }
                with open(out / LOG, "a") as handle:
                    handle.write(json.dumps(record) + "\n")
                if tb is not None:
                    for key, value in record.items():
                        if key != "step":
                            tb.add_scalar(f"train/{key}", value, done)
            if done % config.checkpoint_every == 0 or done == end:
                save_checkpoint(
                    ckpt_path, model, optimizer, {"step": done, "steps": steps, "seed": seed}
                )
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{values['loss']:.4f}")
        _barrier(dist_info)
    if bar is not None:
        bar.close()
    if tb is not None:
        tb.close()
    if dist_info.main and end == steps:
        save_weights(
            out / WEIGHTS,
            model,
            {"step": steps, **{k: settings[k] for k in ("backbone", "layer", "timestep")}},
        )
    _barrier(dist_info)
    if dist_info.initialised_here:
        import torch.distributed as dist

        dist.destroy_process_group()
    return {**settings, "step": end, "final_loss": last.get("loss")}
