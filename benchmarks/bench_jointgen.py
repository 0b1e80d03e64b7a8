"""Benchmark of the joint generator (`vfm3d generate`, `vfm3d cameras`) at the mini size: seconds
per generated video (T2V, T2V+C) vs batch size and frame count, and seconds per V2C clip.

``zoo/jog3r-mini`` (or ``--model DIR``), 30 Euler steps (the `vfm3d generate` default), 32x32,
one torch thread, best of ``--repeats`` after a warm-up, each setting in this process (the model
loaded once). T2V cost grows linearly with the frame count (latent frames (T - 1) / 4 + 1) and
the steps; T2V+C adds one head pass at the last step. Writes ``benchmarks/results/jointgen.json``.
The 3D-consistency score's speed is in ``bench_consistency.py``.

    python benchmarks/bench_jointgen.py [--model zoo/jog3r-mini] [--frames 9,17,33] [--batch 1,8]
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path
from typing import Any

from timing import best_of


def main() -> None:
    import torch

    from vfm3d.jointgen.model import JointGenerator
    from vfm3d.jointgen.modes import text_to_video, video_to_cameras
    from vfm3d.utils.atomic import atomic_write_json
    from vfm3d.world import render_clip

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="zoo/jog3r-mini")
    parser.add_argument("--frames", default="9,17,33")
    parser.add_argument("--batch", default="1,8")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "jointgen.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = JointGenerator.from_pretrained(args.model)
    prompt = "a red sofa and a lamp in a room, the camera walks left"
    rows: list[dict[str, Any]] = []
    for frames in (int(v) for v in args.frames.split(",")):
        for batch in (int(v) for v in args.batch.split(",")):
            for cameras in (False, True):

                def run(frames=frames, batch=batch, cameras=cameras) -> None:
                    with torch.no_grad():
                        text_to_video(
                            model, prompt, seeds=list(range(batch)), frames=frames,
                            steps=args.steps, cameras=cameras,
                        )  # fmt: skip

                seconds = best_of(args.repeats, run)
                row = {
                    "mode": "T2V+C" if cameras else "T2V",
                    "frames": frames,
                    "batch": batch,
                    "steps": args.steps,
                    "seconds": seconds,
                    "seconds_per_video": seconds / batch,
                }
                rows.append(row)
                print(
                    f"{row['mode']:5s} T={frames:2d} batch={batch}: "
                    f"{row['seconds_per_video']:.3f} s/video"
                )
    v2c = []
    for frames in (int(v) for v in args.frames.split(",")):
        clip = render_clip("scene", 0, frames, 32, 32)
        video = torch.from_numpy(clip.frames).permute(0, 3, 1, 2)[None].float() / 255.0

        def cams(video=video) -> None:
            with torch.no_grad():
                video_to_cameras(model, video, seed=0)

        seconds = best_of(args.repeats, cams)
        v2c.append({"frames": frames, "seconds": seconds, "seconds_per_frame": seconds / frames})
        print(f"V2C   T={frames:2d}: {seconds:.3f} s/clip")
    atomic_write_json(
        args.out,
        {
            "benchmark": "jointgen",
            "model": args.model,
            "size": [32, 32],
            "threads": 1,
            "machine": platform.processor() or platform.machine(),
            "generate": rows,
            "v2c": v2c,
        },
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
