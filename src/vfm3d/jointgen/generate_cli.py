"""`vfm3d generate`: videos from a caption with a joint generator (T2V; T2V+C with ``--cameras``).

Examples::

    vfm3d generate --model zoo/jog3r-mini --prompt "a red sofa in a room, the camera walks left" \\
        --num 4 --seed 0 --out gen/
    vfm3d generate --model runs/jog3r/model --prompt "a room with a sofa" --cameras --out g/
    vfm3d generate --model zoo/jog3r-mini --num 2 --out uncond/        # no prompt: unconditional

Writes into ``OUT``: ``sample_000.mp4``, ``sample_001.mp4``, ... (H.264 via PyAV, ``--fps``
frames per second, ``--frames`` frames each); sample ``i`` uses seed ``SEED + i`` (its own noise,
so a sample does not depend on ``--num``). With ``--cameras`` (T2V+C: the head read at the last,
lowest-noise sampling step) also ``sample_000_trajectory_tum.txt`` (``timestamp tx ty tz qx qy
qz qw``, cam_to_world, evo's TUM format), ``sample_000_cameras.json`` (the exporter's
``cameras.json`` layout: OpenCV ``K`` and ``cam_to_world`` per frame) and one ``cameras.json``
with every sample's cameras (``{"convention", "version", "samples": [{"name", "video",
"trajectory_tum", "seed", "frames": [...]}]}``). World frame: each sample's first camera, in
the head's normalised scale; trajectories are smoothed (`vfm3d.jointgen.modes.smooth_trajectory`)
unless ``--no-smooth``. Always ``generation.json`` (model, prompt, seeds, settings, timings).
Every file is written atomically.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vfm3d.data.transforms import hw_argument

if TYPE_CHECKING:
    from vfm3d.jointgen.modes import Generation

#: Fallback video size when the model folder does not record its training size.
DEFAULT_FRAMES, DEFAULT_HW, DEFAULT_FPS = 9, (32, 32), 10.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", default="zoo/jog3r-mini", help="zoo/jog3r-mini (default) or a model folder"
    )
    parser.add_argument(
        "--prompt", default=None, help="caption to generate from (default: unconditional)"
    )
    parser.add_argument("--num", type=int, default=1, help="videos to generate (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of sample 0 (default 0)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument(
        "--cameras", action="store_true", help="also write each video's cameras (T2V+C)"
    )
    parser.add_argument(
        "--frames", type=int, default=None, help="frames per video, 4k+1 (default: as trained)"
    )
    parser.add_argument(
        "--size",
        type=hw_argument,
        default=None,
        metavar="HxW",
        help="video size (default: as trained)",
    )
    parser.add_argument("--steps", type=int, default=30, help="Euler sampling steps (default 30)")
    parser.add_argument(
        "--guidance", type=float, default=1.0, help="classifier-free guidance (default 1: none)"
    )
    parser.add_argument("--fps", type=float, default=DEFAULT_FPS, help="frame rate of the mp4s")
    parser.add_argument("--batch", type=int, default=8, help="videos per sampling batch")
    parser.add_argument("--no-smooth", action="store_true", help="raw (unsmoothed) cameras")
    parser.add_argument(
        "--smooth-weight", type=float, default=None, help="trajectory smoothing weight (default 1)"
    )
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def write_mp4(
    path: str | Path, frames: np.ndarray, fps: float = DEFAULT_FPS, crf: int = 12
) -> Path:
    """Write ``frames`` uint8 ``[T, H, W, 3]`` (H, W even) as an H.264 mp4 (yuv420p), atomically."""
    from fractions import Fraction

    from vfm3d.data.readers.video import import_av
    from vfm3d.utils.atomic import atomic_path

    video = np.ascontiguousarray(frames)
    if video.dtype != np.uint8 or video.ndim != 4 or video.shape[-1] != 3:
        raise ValueError(f"frames must be uint8 [T, H, W, 3], got {video.dtype} {video.shape}")
    if video.shape[1] % 2 or video.shape[2] % 2:
        raise ValueError(f"H.264 needs an even frame size, got {video.shape[1]}x{video.shape[2]}")
    av = import_av()
    target = Path(path)
    with atomic_path(target) as tmp:
        with av.open(str(tmp), mode="w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
            stream.width, stream.height = int(video.shape[2]), int(video.shape[1])
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": str(int(crf))}
            for image in video:
                frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
    return target


def _to_uint8(videos: Any) -> np.ndarray:
    """``[N, T, 3, H, W]`` in [0, 1] -> uint8 ``[N, T, H, W, 3]``."""
    return (videos.clamp(0, 1) * 255).round().byte().permute(0, 1, 3, 4, 2).numpy()


def write_samples(
    out: Path, result: Generation, first: int = 0, fps: float = DEFAULT_FPS
) -> list[dict[str, Any]]:
    """Write each video of ``result`` (`vfm3d.jointgen.modes.text_to_video`) into ``out`` as
    ``sample_<first + j>.mp4`` and, when it has cameras, its ``_trajectory_tum.txt`` and
    ``_cameras.json`` (timestamps ``frame / fps``; the module docstring). Returns one entry
    per video (``name``, ``video``, ``seed``, and ``trajectory_tum``, ``cameras``, ``frames``
    with cameras), as `write_cameras_index` lists them."""
    from vfm3d.report.export import write_cameras_json, write_trajectory_tum

    videos = _to_uint8(result.videos)
    height, width = int(videos.shape[2]), int(videos.shape[3])
    cams = result.cameras
    entries: list[dict[str, Any]] = []
    for j, seed in enumerate(result.seeds):
        name = f"sample_{first + j:03d}"
        entry: dict[str, Any] = {"name": name, "video": f"{name}.mp4", "seed": seed}
        write_mp4(out / entry["video"], videos[j], fps)
        if cams is not None:
            stamps = cams.frames.numpy().astype(np.float64) / fps
            poses = cams.cam_to_world[j].numpy()
            k = cams.intrinsics[j].numpy()
            entry["trajectory_tum"] = f"{name}_trajectory_tum.txt"
            entry["cameras"] = f"{name}_cameras.json"
            write_trajectory_tum(out / entry["trajectory_tum"], poses, timestamps=stamps)
            write_cameras_json(out / entry["cameras"], k, poses, width, height, stamps)
            entry["frames"] = json.loads((out / entry["cameras"]).read_text())["frames"]
        entries.append(entry)
    return entries


def write_cameras_index(out: Path, samples: list[dict[str, Any]]) -> Path:
    """``out/cameras.json``: every sample's cameras (`write_samples` entries; module docstring)."""
    from vfm3d.report.export.cameras import CAMERAS_CONVENTION, CAMERAS_VERSION
    from vfm3d.utils.atomic import atomic_write_json

    target = out / "cameras.json"
    atomic_write_json(
        target,
        {
            "convention": CAMERAS_CONVENTION,
            "version": CAMERAS_VERSION,
            "world_frame": "each sample's first camera, the head's normalised scale",
            "samples": samples,
        },
    )
    return target


def quiet_libraries() -> None:
    """Silence the progress bars transformers and diffusers draw while loading weights."""
    import diffusers
    import transformers

    transformers.utils.logging.disable_progress_bar()
    diffusers.utils.logging.disable_progress_bar()


def training_size(meta: dict[str, Any]) -> tuple[int, tuple[int, int]]:
    """``(frames, (H, W))`` the model was trained on (``jog3r.json``), else the defaults."""
    train = meta.get("train") or {}
    frames = int(train.get("frames", DEFAULT_FRAMES))
    hw = (int(train.get("height", DEFAULT_HW[0])), int(train.get("width", DEFAULT_HW[1])))
    return frames, hw


def main(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from vfm3d.jointgen.model import JointGenerator
    from vfm3d.jointgen.modes import SMOOTH_WEIGHT, text_to_video
    from vfm3d.utils.atomic import atomic_write_json

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quiet:
        quiet_libraries()
    if args.num < 1 or args.batch < 1 or args.steps < 1:
        raise ValueError("--num, --batch and --steps must be >= 1")
    if args.fps <= 0:
        raise ValueError(f"--fps must be > 0, got {args.fps}")
    generator = JointGenerator.from_pretrained(args.model, device=args.device)
    trained_frames, trained_hw = training_size(getattr(generator, "meta", {}))
    frames = args.frames or trained_frames
    height, width = args.size or trained_hw
    generator.check_size(frames, height, width)
    if args.cameras and generator.head is None:
        raise ValueError(f"{args.model} has no reconstruction head: --cameras is not available")
    weight = SMOOTH_WEIGHT if args.smooth_weight is None else float(args.smooth_weight)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    seeds = [args.seed + i for i in range(args.num)]
    samples: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    bar = tqdm(total=args.num, desc="generate", unit="video", disable=args.quiet)
    for start in range(0, args.num, args.batch):
        chunk = seeds[start : start + args.batch]
        result = text_to_video(
            generator,
            args.prompt,
            chunk,
            frames,
            height,
            width,
            steps=args.steps,
            guidance=args.guidance,
            cameras=args.cameras,
            smooth=not args.no_smooth,
            smooth_weight=weight,
        )
        samples += write_samples(out, result, start, args.fps)
        bar.update(len(chunk))
    bar.close()
    seconds = time.perf_counter() - t0
    if args.cameras:
        write_cameras_index(out, samples)
    record = {
        "model": str(args.model),
        "prompt": args.prompt,
        "num": args.num,
        "seeds": seeds,
        "frames": frames,
        "size": [height, width],
        "fps": args.fps,
        "steps": args.steps,
        "guidance": args.guidance,
        "sampler": "Euler, flow shift 3",
        "cameras": bool(args.cameras),
        "smooth_weight": 0.0 if args.no_smooth else weight,
        "seconds": round(seconds, 3),
        "seconds_per_video": round(seconds / args.num, 4),
        "videos": [s["video"] for s in samples],
    }
    atomic_write_json(out / "generation.json", record)
    print(f"{args.num} video(s) of {frames} frames at {height}x{width} -> {out} ({seconds:.1f} s)")
    return 0
