"""Benchmark of video input: frames per second decoded by `VideoReader` windows at 256x256.

Writes a 256x256 mp4 (libx264, yuv420p) of ``--frames`` procedural-world frames with PyAV, then
decodes it through `VideoReader.iter_windows` with one decoder thread (RGB conversion included),
as is and with a ``--size 224x224`` centre crop, and writes ``benchmarks/results/video.json``.
Run: ``.venv/bin/python benchmarks/bench_video.py [--frames 120] [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from vfm3d.data.readers.video import VideoReader, import_av
from vfm3d.utils.atomic import atomic_write_json
from vfm3d.world import render_clip


def write_mp4(path: Path, frames: np.ndarray, fps: int = 30) -> None:
    """Encode uint8 ``[T, H, W, 3]`` with libx264 (crf 18, yuv420p)."""
    av = import_av()
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "18"}
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def bench(path: Path, repeats: int, window: int, **options: Any) -> dict[str, float]:
    """Frames/s of decoding every frame through windows (``fps`` by CPU time, ``fps_wall``)."""
    cpu, wall, frames = [], [], 0
    for _ in range(repeats):
        reader = VideoReader(path, threads=1, **options)
        start_cpu, start_wall = time.process_time(), time.perf_counter()
        frames = sum(clip.num_frames for clip in reader.iter_windows(window))
        cpu.append(time.process_time() - start_cpu)
        wall.append(time.perf_counter() - start_wall)
    total_cpu, total_wall = float(np.sum(cpu)), float(np.sum(wall))
    return {
        "frames": frames,
        "fps": frames * repeats / total_cpu,
        "fps_wall": frames * repeats / total_wall,
        "ms_per_frame": 1000.0 * total_cpu / (frames * repeats),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--window", type=int, default=16)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "video.json"))
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    av = import_av()
    clip = render_clip("dynamic", 0, args.frames, 256, 256)
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.mp4"
        write_mp4(path, clip.frames)
        size_bytes = path.stat().st_size
        bench(path, 1, args.window, max_frames=8)  # warm-up (imports, codec init)
        results["decode_256x256"] = bench(path, args.repeats, args.window)
        results["decode_crop_224x224"] = bench(
            path, args.repeats, args.window, size=(224, 224), resize_mode="crop"
        )
    for name, r in results.items():
        print(f"{name:22s} {r['fps']:8.1f} frames/s ({r['ms_per_frame']:.2f} ms/frame)")
    payload = {
        "benchmark": "VideoReader.iter_windows decode frames/s per CPU second, one decoder thread",
        "video": {
            "codec": "libx264 crf 18 yuv420p",
            "frames": args.frames,
            "height": 256,
            "width": 256,
            "bytes": size_bytes,
        },
        "window": args.window,
        "repeats": args.repeats,
        "results": {k: {m: round(v, 2) for m, v in r.items()} for k, r in results.items()},
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "load_average_1min": round(os.getloadavg()[0], 2),
            "numpy": np.__version__,
            "av": av.__version__,
        },
    }
    atomic_write_json(args.out, payload)
    print(f"wrote {args.out}")
    print(json.dumps(payload["results"]["decode_256x256"]))


if __name__ == "__main__":
    main()
