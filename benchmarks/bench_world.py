"""Benchmark of the procedural world renderer: frames per second on one CPU core.

Renders whole clips with `vfm3d.world.render_clip` (world sampling + ray casting + shading) for
each kind at 128x128 and 256x256 and writes ``benchmarks/results/world.json``.
Run: ``.venv/bin/python benchmarks/bench_world.py [--frames 16] [--seeds 4]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from vfm3d.utils.atomic import atomic_write_json
from vfm3d.world import render_clip

TARGET_FPS_128 = 100.0


def bench(kind: str, size: int, frames: int, seeds: int) -> dict[str, float]:
    """Frames per second of `render_clip` for ``seeds`` clips of ``frames`` frames.

    ``fps`` counts this process's CPU time (one thread), so other load on the machine does not
    distort it; ``fps_wall`` is the wall-clock rate seen during the run.
    """
    render_clip(kind, 10_000, 2, size, size)  # warm-up (imports, caches)
    cpu, wall = [], []
    for seed in range(seeds):
        start_cpu, start_wall = time.process_time(), time.perf_counter()
        render_clip(kind, seed, frames, size, size)
        cpu.append(time.process_time() - start_cpu)
        wall.append(time.perf_counter() - start_wall)
    total_cpu, total_wall = float(np.sum(cpu)), float(np.sum(wall))
    return {
        "fps": frames * seeds / total_cpu,
        "fps_wall": frames * seeds / total_wall,
        "ms_per_frame": 1000.0 * total_cpu / (frames * seeds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "world.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    results: dict[str, dict[str, dict[str, float]]] = {}
    for size in (128, 256):
        results[f"{size}x{size}"] = {}
        for kind in ("object", "scene", "dynamic"):
            r = bench(kind, size, args.frames, args.seeds)
            results[f"{size}x{size}"][kind] = {k: round(v, 2) for k, v in r.items()}
            print(
                f"{size}x{size} {kind:8s} {r['fps']:7.1f} frames/s ({r['ms_per_frame']:.2f} ms/frame)"
            )
        fps = [v["fps"] for v in results[f"{size}x{size}"].values()]
        results[f"{size}x{size}"]["all_kinds"] = {
            "fps": round(len(fps) / sum(1 / f for f in fps), 2)
        }
    payload = {
        "benchmark": "world render_clip frames/s per CPU second, one thread (numpy)",
        "frames_per_clip": args.frames,
        "clips_per_kind": args.seeds,
        "target_fps_128": TARGET_FPS_128,
        "meets_target_128": results["128x128"]["all_kinds"]["fps"] >= TARGET_FPS_128,
        "results": results,
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "load_average_1min": round(os.getloadavg()[0], 2),
            "numpy": np.__version__,
        },
    }
    atomic_write_json(args.out, payload)
    print(f"wrote {args.out}")
    print(json.dumps(results["128x128"]["all_kinds"]))


if __name__ == "__main__":
    main()
