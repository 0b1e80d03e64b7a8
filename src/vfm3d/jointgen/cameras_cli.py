"""`vfm3d cameras INPUT...`: cameras and point maps of a video from a joint generator (V2C).

Examples::

    vfm3d cameras my.mp4 --model zoo/jog3r-mini --out cams/
    vfm3d cameras frames/ --fps 10 --model runs/jog3r/model --out cams/
    vfm3d cameras data/world --model zoo/jog3r-mini --out cams/      # clips with GT: scored
    vfm3d cameras g/sample_000.mp4 --frames 9 --timestep 100 --out cams/

Per clip (anything `vfm3d.data.inputs.open_clips` opens: video, image folder, clip folder, clip
file): the first ``--frames`` frames (default: the model's training length; fewer when the clip
is shorter: the largest ``4k + 1``) are centre-cropped to the model's aspect and resized to its
size (``--model-size``, default: as trained; intrinsics follow), encoded, noised to
``--timestep`` (default 100, sigma 0.1, noise from ``--seed``) and run once through the DiT up to
the deepest head block; the head gives per-frame point maps, depth and cameras (smoothed in
time unless ``--no-smooth``, `vfm3d.jointgen.modes.smooth_trajectory`).

Writes ``OUT/<clip id>/`` as `vfm3d reconstruct` does (`vfm3d.recon4d.result.Reconstruction`):
``points.ply``, ``scene.glb``, ``colmap/``, ``trajectory_tum.txt``, ``depth/`` +
``depth.safetensors``, ``cameras.json``, ``reconstruction.json``, ``report.html`` and, for clips
with ground truth, ``metrics.json`` (ATE / RPE and depth AbsRel as `vfm3d reconstruct`, plus
RRA/RTA@15/30 and AUC@30 of the relative poses). World frame: the first frame's camera, the
head's normalised scale. Every file is written atomically.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from vfm3d.data.transforms import hw_argument


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from vfm3d.data.inputs import add_input_arguments

    parser.add_argument(
        "inputs", nargs="+", help="video files, image folders, clip folders or clip files"
    )
    parser.add_argument(
        "--model", default="zoo/jog3r-mini", help="zoo/jog3r-mini (default) or a model folder"
    )
    parser.add_argument("--out", required=True, help="output folder (one sub-folder per clip)")
    parser.add_argument(
        "--frames", type=int, default=None, help="frames per clip, 4k+1 (default: as trained)"
    )
    parser.add_argument(
        "--model-size", type=hw_argument, default=None, metavar="HxW", help="model input size"
    )
    parser.add_argument(
        "--timestep", type=float, default=None, help="model timestep of the noise (default 100)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the noise (default 0)")
    parser.add_argument("--prompt", default=None, help="condition the DiT on a caption")
    parser.add_argument("--no-smooth", action="store_true", help="raw (unsmoothed) cameras")
    parser.add_argument(
        "--smooth-weight", type=float, default=None, help="trajectory smoothing weight (default 1)"
    )
    parser.add_argument(
        "--max-points", type=int, default=200_000, help="points kept in PLY/GLB (default 200k)"
    )
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    add_input_arguments(parser)


def prepare_clip(clip: Any, frames: int, size: tuple[int, int], frame_step: int) -> Any:
    """The first ``4k + 1 <= frames`` frames of ``clip`` at ``size`` (centre crop to its aspect,
    then resize; intrinsics follow). Raises ValueError for an empty clip."""
    from vfm3d.data.transforms import apply_to_clip, crop_to_aspect, resize

    count = min(int(frames), clip.num_frames)
    count -= (count - 1) % frame_step
    if count < 1:
        raise ValueError(f"clip {clip.id!r} has no frames")
    clip = clip.subset(range(count))
    if (clip.height, clip.width) != tuple(size):
        crop = crop_to_aspect((clip.height, clip.width), size[1], size[0])
        clip = apply_to_clip(clip, crop.then(resize(crop.out_hw, tuple(size))))
    return clip


def _timestamps(clip: Any, frames: np.ndarray) -> np.ndarray:
    stamps = clip.meta.get("timestamps")
    if isinstance(stamps, list) and len(stamps) == clip.num_frames:
        return np.asarray([float(stamps[i]) for i in frames], dtype=np.float64)
    fps = clip.meta.get("fps")
    return frames.astype(np.float64) / float(fps) if fps else frames.astype(np.float64)


def _open(open_clips: Any, path: str, options: dict[str, Any], frames: int) -> Any:
    """`open_clips`; a video or image folder decodes at most ``frames`` frames unless
    ``--max-frames`` says otherwise (clip folders and files take no options)."""
    from vfm3d.clip import INDEX_NAME

    source = Path(path)
    stored = source.suffix.lower() == ".safetensors" or (source / INDEX_NAME).is_file()
    if not stored and "max_frames" not in options:
        options = {**options, "max_frames": frames}
    return open_clips(path, **options)


def camera_scores(pred_cam_to_world: Any, gt_cam_to_world: Any) -> dict[str, float]:
    """RRA/RTA@15/30 and AUC@30 (VGGT mode) of ``[S, 4, 4]`` poses against the truth."""
    import torch

    from vfm3d.metrics import camera_auc, relative_pose_errors, rra_rta

    pred = torch.as_tensor(pred_cam_to_world, dtype=torch.float64)
    gt = torch.as_tensor(gt_cam_to_world, dtype=torch.float64)
    if pred.shape[0] < 2:
        return {}
    rot, trans = relative_pose_errors(pred, gt)
    return {**rra_rta(rot, trans, (15, 30)), **camera_auc(pred, gt, thresholds=(30,))}


def main(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from vfm3d.data.inputs import input_options, open_clips
    from vfm3d.jointgen.generate_cli import quiet_libraries, training_size
    from vfm3d.jointgen.model import JointGenerator
    from vfm3d.jointgen.modes import SMOOTH_WEIGHT, V2C_TIMESTEP, video_to_cameras
    from vfm3d.recon4d.report import write_reconstruction_report
    from vfm3d.recon4d.result import Reconstruction
    from vfm3d.utils.atomic import atomic_write_json

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quiet:
        quiet_libraries()
    generator = JointGenerator.from_pretrained(args.model, device=args.device)
    if generator.head is None:
        raise ValueError(f"{args.model} has no reconstruction head: it cannot estimate cameras")
    trained_frames, trained_hw = training_size(getattr(generator, "meta", {}))
    frames = args.frames or trained_frames
    size = args.model_size or trained_hw
    generator.check_size(frames, *size)
    timestep = V2C_TIMESTEP if args.timestep is None else float(args.timestep)
    weight = SMOOTH_WEIGHT if args.smooth_weight is None else float(args.smooth_weight)
    options = input_options(args)
    sources = [_open(open_clips, path, options, frames) for path in args.inputs]  # fail early
    out_root = Path(args.out)
    jobs = [(source, clip_id) for source in sources for clip_id in source.ids]
    for source, clip_id in tqdm(jobs, desc="cameras", unit="clip", disable=args.quiet):
        t0 = time.perf_counter()
        clip = prepare_clip(source.load(clip_id), frames, size, generator.vae_factors[0])
        video = torch.from_numpy(clip.frames).permute(0, 3, 1, 2).float()[None] / 255.0
        pred = video_to_cameras(
            generator,
            video,
            timestep=timestep,
            seed=args.seed,
            prompts=[args.prompt] if args.prompt else None,
            smooth=not args.no_smooth,
            smooth_weight=weight,
        )
        seconds = time.perf_counter() - t0
        index = pred.frames.numpy()
        recon = Reconstruction(
            frames=clip.frames[index],
            depth=pred.depth[0].numpy(),
            depth_conf=pred.depth_conf[0].numpy(),
            points=pred.points[0].numpy(),
            points_conf=pred.points_conf[0].numpy(),
            intrinsics=pred.intrinsics[0].numpy(),
            cam_to_world=pred.cam_to_world[0].numpy(),
            timestamps=_timestamps(clip, index),
            meta={
                "clip_id": clip_id,
                "model": str(args.model),
                "mode": "V2C",
                "timestep": timestep,
                "seed": args.seed,
                "prompt": args.prompt,
                "frames": index.tolist(),
                "size": list(size),
                "smooth_weight": 0.0 if args.no_smooth else weight,
                "seconds": round(seconds, 4),
                "seconds_per_frame": seconds / max(1, len(index)),
                "world_frame": "first frame's OpenCV camera, the head's normalised scale",
            },
        )
        out = out_root / _safe(clip_id)
        files = recon.save(out, max_points=args.max_points)
        metrics = None
        if clip.has_ground_truth:
            from vfm3d.recon4d.evaluate import score

            truth = clip.subset(index.tolist())
            metrics = {
                **score(recon, truth),
                **camera_scores(recon.cam_to_world, truth.cam_to_world),
            }
            atomic_write_json(out / "metrics.json", metrics)
        write_reconstruction_report(
            out / "report.html", recon, clip.subset(index.tolist()), metrics
        )
        h, w = recon.frames.shape[1:3]
        print(f"{clip_id}: {recon.num_frames} frames at {h}x{w} -> {out} ({len(files) + 1} files)")
        if metrics is not None:
            print(json.dumps(metrics), file=sys.stdout)
    return 0


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text) or "clip"
