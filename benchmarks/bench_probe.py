"""Probe training cost: a CPU-small config measured end to end, the paper config by parts.

(a) ``small``: `ProbeConfig.cpu_small()` on 4 frames of 8 x 12 tokens (C=64), output 64 x 96,
    batch 2, one thread (``--small-threads``): median wall time of full training steps (forward, loss, backward, clip, AdamW) after
    one warm-up, samples/s, and the process's peak RSS.
(b) ``paper``: D=1024, 16 heads, 4 pairs, 4 frames of 30 x 52 tokens, C=1536, DPT output
    294 x 518 (VidFM3D's image size), batch 1. Exact FLOPs and the autograd-saved bytes come from a
    run on the meta device. A full fp32 step needs ~18 GB and ~14 TFLOP, more than a shared
    2-core box can give, so by default it is timed by parts at full size (one frame block, one
    global block, one DPT head on one frame, the camera head: each forward + backward; AdamW on a
    1/16 slice of the parameters) and composed: ``4 x frame + 4 x global + 8 x head-frame +
    camera + 16 x optimiser-slice``. ``--paper-full [--device cuda --peak-tflops 989]`` times
    real steps instead (bf16 autocast on CUDA, heads fp32) and reports the fraction of peak.

The reference step of VidFM3D's probe is about 145 s on these CPUs (fp32), per the project brief;
the JSON records our step time and ``reference_s / ours``. Times depend on machine load: the load
average and the machine's fp32 matmul rate (2048^3 sgemm, before and after) are recorded with
them, and ``efficiency_vs_sgemm`` = achieved GFLOP/s / sgemm GFLOP/s is the load-robust figure.

    python benchmarks/bench_probe.py [--threads N] [--paper-full] [--skip-paper]

Writes ``benchmarks/results/probe.json`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from vfm3d.probe import ProbeConfig, ProbeModel
from vfm3d.probe.losses import probe_loss
from vfm3d.utils.atomic import atomic_write_json

REFERENCE_STEP_S = 145.0
PAPER_GRID = (30, 52)
PAPER_CHANNELS = 1536
PAPER_OUT = (294, 518)


def fake_batch(b: int, s: int, grid: tuple[int, int], c: int, out: tuple[int, int]) -> dict:
    gen = torch.Generator().manual_seed(0)
    h, w = out
    points = torch.randn(b, s, h, w, 3, generator=gen) + torch.tensor([0.0, 0.0, 3.0])
    return {
        "features": torch.randn(b, s, *grid, c, generator=gen),
        "points": points,
        "depth": points[..., 2].clamp_min(0.1),
        "valid": torch.ones(b, s, h, w, dtype=torch.bool),
        "conf": torch.ones(b, s, h, w),
        "pose_enc": torch.randn(b, s, 9, generator=gen),
    }


def train_step(model: ProbeModel, opt: torch.optim.Optimizer, batch: dict, out: tuple) -> float:
    device = batch["features"].device
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
        pred = model(batch["features"], out)
    loss = probe_loss(pred, batch, model.config)["loss"]
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    return float(loss.detach())


def sgemm_gflop_per_s(n: int = 2048, repeats: int = 3) -> float:
    """The machine's fp32 matmul rate right now (load-dependent yardstick for the other numbers)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    return 2 * n**3 / timed(lambda: a @ b, repeats) / 1e9


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def timed(fn, repeats: int = 1) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_small(repeats: int, threads: int) -> dict[str, Any]:
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return {**_bench_small(repeats), "threads": threads}
    finally:
        torch.set_num_threads(previous)


def _bench_small(repeats: int) -> dict[str, Any]:
    cfg = ProbeConfig.cpu_small()
    b, s, grid, c, out = 2, 4, (8, 12), 64, (64, 96)
    torch.manual_seed(0)
    model = ProbeModel(cfg, c)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=0.05)
    batch = fake_batch(b, s, grid, c, out)
    train_step(model, opt, batch, out)  # warm-up
    step = timed(lambda: train_step(model, opt, batch, out), repeats)
    flops = FlopCounterMode(display=False)
    with flops:
        pred = model(batch["features"], out)
        probe_loss(pred, batch, cfg)["loss"].backward()
    return {
        "config": "cpu_small",
        "batch": b,
        "frames": s,
        "grid": list(grid),
        "channels": c,
        "output": list(out),
        "params_M": sum(p.numel() for p in model.parameters()) / 1e6,
        "step_s": step,
        "samples_per_s": b / step,
        "train_step_gflop": flops.get_total_flops() / 1e9,
        "gflop_per_s": flops.get_total_flops() / 1e9 / step,
        "peak_rss_gb": peak_rss_gb(),
    }


def paper_meta() -> dict[str, Any]:
    """FLOPs (forward, forward+backward) and autograd-saved bytes of a paper step, on meta."""
    cfg = ProbeConfig.paper()
    with torch.device("meta"):
        model = ProbeModel(cfg, PAPER_CHANNELS)
        batch = fake_batch_meta(cfg)
    saved = {"bytes": 0}

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved["bytes"] += t.numel() * t.element_size()
        return t

    def surrogate(pred: dict) -> torch.Tensor:  # the loss needs data-dependent indexing
        return sum(pred[k].sum() for k in ("points", "depth", "points_conf", "depth_conf")) + sum(
            x.sum() for x in pred["pose_enc_list"]
        )

    fwd = FlopCounterMode(display=False)
    with fwd, torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        pred = model(batch["features"], PAPER_OUT)
    total = FlopCounterMode(display=False)
    with total:
        surrogate(model(batch["features"], PAPER_OUT)).backward()
    params = sum(p.numel() for p in model.parameters())
    del pred
    return {
        "params_M": params / 1e6,
        "forward_gflop": fwd.get_total_flops() / 1e9,
        "train_step_gflop": total.get_total_flops() / 1e9,
        "saved_activations_gb_upper_bound": saved["bytes"] / 1e9,
        "params_grads_adam_gb": params * 4 * 4 / 1e9,
    }


def fake_batch_meta(cfg: ProbeConfig) -> dict:
    return {"features": torch.randn(1, cfg.num_frames, *PAPER_GRID, PAPER_CHANNELS)}


def paper_by_parts() -> dict[str, Any]:
    """Forward + backward of each part at full paper size; composed into one step."""
    cfg = ProbeConfig.paper()
    s = cfg.num_frames
    d = cfg.embed_dim
    torch.manual_seed(0)
    model = ProbeModel(cfg, PAPER_CHANNELS)
    p = model.patch_start + PAPER_GRID[0] * PAPER_GRID[1]
    rope = model.rope.tables(*PAPER_GRID, model.patch_start, torch.device("cpu"), torch.float32)
    parts: dict[str, float] = {}

    feats = torch.randn(1, s, *PAPER_GRID, PAPER_CHANNELS)

    def input_proj() -> None:
        model.input_proj(feats.reshape(s, -1, PAPER_CHANNELS)).sum().backward()

    parts["input_projection"] = timed(input_proj)
    x_frame = torch.randn(s, p, d, requires_grad=True)
    x_global = torch.randn(1, s * p, d, requires_grad=True)
    parts["frame_block"] = timed(lambda: model.frame_blocks[0](x_frame, rope=rope).sum().backward())
    parts["global_block"] = timed(
        lambda: model.global_blocks[0](x_global, rope=rope, frames=s).sum().backward()
    )
    inter = [torch.randn(1, 1, p, 2 * d, requires_grad=True) for _ in range(cfg.depth)]

    def head_frame() -> None:
        values, conf = model.point_head(inter, PAPER_GRID, model.patch_start, PAPER_OUT)
        (values.sum() + conf.sum()).backward()

    parts["dpt_head_one_frame"] = timed(head_frame)
    cam = torch.randn(1, s, 2 * d, requires_grad=True)
    parts["camera_head"] = timed(lambda: sum(x.sum() for x in model.camera_head(cam)).backward())
    params = list(model.parameters())
    chunk = params[::16]
    for q in chunk:
        q.grad = torch.randn_like(q)
    opt = torch.optim.AdamW(chunk, lr=1e-4, betas=(0.9, 0.95), weight_decay=0.05)
    opt.step()  # allocate state
    slice_frac = sum(q.numel() for q in chunk) / sum(q.numel() for q in params)
    parts["adamw_full_estimate"] = timed(opt.step) / slice_frac
    step = (
        parts["input_projection"]
        + cfg.depth * (parts["frame_block"] + parts["global_block"])
        + 2 * s * parts["dpt_head_one_frame"]
        + parts["camera_head"]
        + parts["adamw_full_estimate"]
    )
    return {"parts_s": parts, "step_s_composed": step, "peak_rss_gb_parts_run": peak_rss_gb()}


def paper_full(device: torch.device, repeats: int) -> dict[str, Any]:
    """A real paper-size training step (bf16 autocast on CUDA, fp32 on CPU)."""
    cfg = ProbeConfig.paper()
    torch.manual_seed(0)
    model = ProbeModel(cfg, PAPER_CHANNELS).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=cfg.betas, weight_decay=0.05)
    batch = fake_batch(1, cfg.num_frames, PAPER_GRID, PAPER_CHANNELS, PAPER_OUT)
    batch = {k: v.to(device) for k, v in batch.items()}

    def step() -> None:
        train_step(model, opt, batch, PAPER_OUT)
        if device.type == "cuda":
            torch.cuda.synchronize()

    if device.type == "cuda":
        step()  # warm-up (kernel selection)
        torch.cuda.reset_peak_memory_stats()
    seconds = timed(step, repeats if device.type == "cuda" else 1)
    out: dict[str, Any] = {"step_s_measured": seconds, "device": str(device)}
    if device.type == "cuda":
        out["dtype"] = "bfloat16 autocast (heads float32)"
        out["peak_gpu_memory_gb"] = torch.cuda.max_memory_allocated() / 1e9
        out["gpu"] = torch.cuda.get_device_name()
    else:
        out["peak_rss_gb"] = peak_rss_gb()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--small-threads",
        type=int,
        default=1,
        help="threads for the small config (default 1: on a shared box, multi-threaded small ops "
        "wait for every thread to be scheduled and run ~40x slower)",
    )
    parser.add_argument("--paper-full", action="store_true", help="time a real paper-size step")
    parser.add_argument("--device", default="cpu", help="device of --paper-full (e.g. cuda)")
    parser.add_argument(
        "--peak-tflops",
        type=float,
        default=None,
        help="the device's peak dense TFLOP/s (e.g. 989 for H100 bf16) to report the fraction",
    )
    parser.add_argument("--skip-paper", action="store_true")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "probe.json"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    result: dict[str, Any] = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "load_average_before": list(os.getloadavg()),
        "sgemm_gflop_per_s_before": sgemm_gflop_per_s(),
        "small": bench_small(args.repeats, args.small_threads),
    }
    if not args.skip_paper:
        paper: dict[str, Any] = {
            "batch": 1,
            "frames": 4,
            "grid": list(PAPER_GRID),
            "channels": PAPER_CHANNELS,
            "output": list(PAPER_OUT),
            "dtype": "float32",
            **paper_meta(),
        }
        if args.paper_full:
            paper.update(paper_full(torch.device(args.device), args.repeats))
        else:
            paper.update(paper_by_parts())
        step = paper.get("step_s_measured", paper.get("step_s_composed"))
        paper["samples_per_s"] = 1.0 / step
        paper["gflop_per_s"] = paper["train_step_gflop"] / step
        paper["reference_step_s"] = REFERENCE_STEP_S
        paper["speedup_vs_reference"] = REFERENCE_STEP_S / step
        if args.peak_tflops:
            paper["fraction_of_peak_flops"] = paper["gflop_per_s"] / (args.peak_tflops * 1e3)
        result["paper"] = paper
    result["load_average_after"] = list(os.getloadavg())
    result["sgemm_gflop_per_s_after"] = sgemm_gflop_per_s()
    sgemm = (result["sgemm_gflop_per_s_before"] + result["sgemm_gflop_per_s_after"]) / 2
    for name in ("small", "paper"):
        if name in result:
            result[name]["efficiency_vs_sgemm"] = result[name]["gflop_per_s"] / sgemm
    atomic_write_json(args.out, result)
    print(result)


if __name__ == "__main__":
    main()
