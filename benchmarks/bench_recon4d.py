"""Benchmark of Sora3R 4D reconstruction (`vfm3d reconstruct --model zoo/sora3r-mini`): seconds
per frame and peak memory vs video length, and the real-size setting on a GPU.

Mini rows: for T in ``--lengths`` frames (default 17, 33, 65) of a dynamic world video at the
model's size and K in ``--samples`` (default 1, 4), times `Sora3RReconstructor.reconstruct`
(windows of the model's frames, overlap ``(F-1)//2``, the model's default Euler steps), one
thread, best of ``--repeats``; each row runs in a fresh subprocess so ``peak_rss_mb`` is its own.
A window's cost does not depend on T, so time grows linearly with the number of windows and the
peak memory stays that of one window (the memory budget of long videos).

Real size (``--real-size``, CUDA only): a randomly initialised Sora3R at the Wan2.1-1.3B
architecture (the default ``AutoencoderKLWan`` = Wan2.1's VAE, the 1.3B DiT widened to 32 input
channels) in bf16, Sora3R's runtime setting of 17 frames at 384x512, one window; without a GPU
the row says it was not measured.

Writes ``benchmarks/results/recon4d.json``. Run:
``.venv/bin/python benchmarks/bench_recon4d.py [--model zoo/sora3r-mini] [--lengths 17,33,65]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def run_mini(model: str, frames: int, samples: int, repeats: int) -> dict[str, Any]:
    """Reconstruct a ``frames``-long dynamic world clip with ``model``; timing of this process."""
    import torch

    from vfm3d.recon4d.sora3r import Sora3RReconstructor, load_sora3r
    from vfm3d.world import render_clip

    torch.set_num_threads(1)
    loaded = load_sora3r(model)
    height, width = loaded.size
    clip = render_clip("dynamic", 0, frames, height, width)
    runner = Sora3RReconstructor(loaded, samples=samples, seed=0, progress=False)
    runner.reconstruct(clip.subset(range(loaded.frames)))  # warm-up
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        recon = runner.reconstruct(clip)
        seconds.append(time.perf_counter() - start)
    best = min(seconds)
    return {
        "frames": frames,
        "samples": samples,
        "steps": runner.steps,
        "window": loaded.frames,
        "windows": len(recon.meta["windows"]),
        "input_hw": [height, width],
        "seconds": best,
        "seconds_per_frame": best / frames,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def run_real_size(frames: int = 17, height: int = 384, width: int = 512) -> dict[str, Any]:
    """A random Wan2.1-1.3B-sized Sora3R, bf16 on CUDA, one window of ``frames`` frames."""
    import torch

    if not torch.cuda.is_available():
        return {"status": "not measured: no GPU on this machine", "frames": frames}
    from diffusers import AutoencoderKLWan, WanTransformer3DModel

    from vfm3d.backbones.wan import WAN_PROMPT_TOKENS, wan21_1_3b_config
    from vfm3d.recon4d.joint_dit import JointDiT
    from vfm3d.recon4d.pointmap_vae import PointmapVAE
    from vfm3d.recon4d.sora3r import Sora3RModel, Sora3RReconstructor
    from vfm3d.world import render_clip

    cfg = wan21_1_3b_config()
    vae = AutoencoderKLWan()
    prompt = torch.zeros(1, WAN_PROMPT_TOKENS, int(cfg["text_dim"]))
    dit = JointDiT.from_video_dit(WanTransformer3DModel(**cfg), prompt)
    config = {"frames": frames, "height": height, "width": width, "steps": 4}
    model = Sora3RModel(
        vae, PointmapVAE.from_video_vae(vae), dit, {**config, "fallback_fov_deg": 60.0}
    )
    model.to("cuda", torch.bfloat16)
    clip = render_clip("dynamic", 0, frames, height, width)
    runner = Sora3RReconstructor(model, device="cuda", progress=False)
    runner.reconstruct(clip)  # warm-up
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    runner.reconstruct(clip)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return {
        "status": "measured",
        "frames": frames,
        "input_hw": [height, width],
        "dtype": "bfloat16",
        "steps": runner.steps,
        "seconds": seconds,
        "seconds_per_frame": seconds / frames,
        "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20,
        "device": torch.cuda.get_device_name(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="zoo/sora3r-mini", help="a Sora3R model or run folder")
    parser.add_argument("--lengths", default="17,33,65")
    parser.add_argument("--samples", default="1,4", help="K values (comma-separated)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--real-size", action="store_true", help="add the Wan2.1-1.3B GPU row")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "recon4d.json"))
    args = parser.parse_args()
    if args.child:
        frames, samples = (int(v) for v in args.child.split(","))
        print(json.dumps(run_mini(args.model, frames, samples, args.repeats)))
        return
    rows: list[dict[str, Any]] = []
    for samples in (int(v) for v in args.samples.split(",")):
        for frames in (int(v) for v in args.lengths.split(",")):
            cmd = [sys.executable, __file__, "--child", f"{frames},{samples}"]
            cmd += ["--model", args.model, "--repeats", str(args.repeats)]
            env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
            out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
            row = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(
                f"T={frames:3d} K={samples}: {row['windows']} windows, "
                f"{row['seconds_per_frame'] * 1000:.1f} ms/frame, peak {row['peak_rss_mb']:.0f} MB"
            )
    real = run_real_size() if args.real_size else {"status": "not run (pass --real-size on a GPU)"}
    from vfm3d.utils.atomic import atomic_write_json

    atomic_write_json(
        args.out,
        {
            "benchmark": "recon4d",
            "model": args.model,
            "threads": 1,
            "machine": platform.processor() or platform.machine(),
            "rows": rows,
            "real_size": real,
        },
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
