"""Benchmark of `vfm3d reconstruct` with a 3D expert: seconds per frame and peak memory vs video
length, windowed (memory bounded by the window) vs one window over the whole video.

For T in ``--lengths`` frames of a procedural-world video, times `ExpertReconstructor` (the
shipped ``zoo/vggt-mini`` at its 32x32 input, or ``--model DIR`` at ``--size``) with windows of
``--window`` frames (overlap 4) and with a single window of T frames, one thread; the peak RSS of
each run is measured in a fresh subprocess. Writes ``benchmarks/results/reconstruct.json``.
Run: ``.venv/bin/python benchmarks/bench_reconstruct.py [--lengths 16,32,64,128] [--window 32]``.
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


def run_once(model: str, frames: int, window: int, size: tuple[int, int], repeats: int) -> dict:
    """Reconstruct a ``frames``-long world clip; returns timing (this process only)."""
    import torch

    from vfm3d.recon4d import ExpertReconstructor, load_expert
    from vfm3d.world import render_clip

    torch.set_num_threads(1)
    clip = render_clip("scene", 0, frames, *size)
    runner = ExpertReconstructor(
        load_expert(model), window=window, overlap=min(4, window - 1), progress=False
    )
    runner.reconstruct(clip.subset(range(min(frames, 4))))  # warm-up
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        recon = runner.reconstruct(clip)
        seconds.append(time.perf_counter() - start)
    best = min(seconds)
    return {
        "frames": frames,
        "window": window,
        "windows": len(recon.meta["windows"]),
        "seconds": best,
        "seconds_per_frame": best / frames,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="zoo/vggt-mini")
    parser.add_argument("--size", default="32x32", help="HxW of the model input")
    parser.add_argument("--lengths", default="16,32,64,128")
    parser.add_argument("--window", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument(
        "--out", default=str(Path(__file__).parent / "results" / "reconstruct.json")
    )
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    if args.child:
        frames, window = (int(v) for v in args.child.split(","))
        print(json.dumps(run_once(args.model, frames, window, size, args.repeats)))  # type: ignore[arg-type]
        return
    rows: list[dict[str, Any]] = []
    for frames in (int(v) for v in args.lengths.split(",")):
        for window in sorted({min(args.window, frames), frames}):
            cmd = [sys.executable, __file__, "--child", f"{frames},{window}", "--model", args.model]
            cmd += ["--size", args.size, "--repeats", str(args.repeats)]
            env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
            out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
            row = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(
                f"T={frames:4d} window={window:4d}: {row['seconds_per_frame'] * 1000:.1f} ms/frame, "
                f"peak {row['peak_rss_mb']:.0f} MB"
            )
    from vfm3d.utils.atomic import atomic_write_json

    atomic_write_json(
        args.out,
        {
            "benchmark": "reconstruct",
            "model": args.model,
            "input_hw": list(size),
            "threads": 1,
            "machine": platform.processor() or platform.machine(),
            "rows": rows,
        },
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
