"""`vfm3d reconstruct INPUT... --out DIR`: depth, cameras and point clouds of every frame.

Examples::

    vfm3d reconstruct my.mp4 --out recon/                       # zoo/vggt-mini, all frames
    vfm3d reconstruct frames/ --fps 10 --max-frames 90 --out recon/
    vfm3d reconstruct my.mp4 --model /models/VGGT-1B --device cuda --window 48 --out recon/
    vfm3d reconstruct data/world --out recon/                    # clips with ground truth: scored

Writes ``OUT/<clip id>/``: ``points.ply``, ``scene.glb``, ``colmap/``, ``trajectory_tum.txt``,
``depth/`` + ``depth.safetensors``, ``cameras.json``, ``reconstruction.json``, ``report.html``
and, when the input has ground truth, ``metrics.json`` (ATE/RPE, depth AbsRel; see
docs/io.md and docs/recon4d.md).
"""

from __future__ import annotations

import argparse
import json
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from vfm3d.data.inputs import add_input_arguments

    parser.add_argument(
        "inputs", nargs="+", help="video files, image folders, clip folders or clip files"
    )
    parser.add_argument("--out", required=True, help="output folder (one sub-folder per clip)")
    parser.add_argument(
        "--model",
        default="zoo/vggt-mini",
        help="3D expert: zoo/vggt-mini (default) or a local VGGT folder (model.safetensors)",
    )
    parser.add_argument(
        "--model-size",
        type=_hw,
        default=None,
        help="model input HxW (multiples of the patch size; default: width = the model's "
        "img_size, height by aspect ratio)",
    )
    parser.add_argument("--window", type=int, default=32, help="frames per forward (default 32)")
    parser.add_argument(
        "--overlap", type=int, default=4, help="frames shared by consecutive windows (default 4)"
    )
    parser.add_argument(
        "--max-points", type=int, default=200_000, help="points kept in PLY/GLB (default 200k)"
    )
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    add_input_arguments(parser)


def _hw(text: str) -> tuple[int, int]:
    from vfm3d.data.transforms import parse_hw

    try:
        return parse_hw(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def main(args: argparse.Namespace) -> int:
    import torch

    from vfm3d.data.inputs import input_options, open_clips
    from vfm3d.recon4d.expert import ExpertReconstructor, load_expert
    from vfm3d.recon4d.report import write_reconstruction_report

    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_expert(args.model, device=args.device)
    runner = ExpertReconstructor(
        model, window=args.window, overlap=args.overlap, device=args.device, progress=not args.quiet
    )
    options = input_options(args)
    sources = [open_clips(path, **options) for path in args.inputs]  # fail early on bad input
    from pathlib import Path

    out_root = Path(args.out)
    for source in sources:
        for clip_id in source.ids:
            if hasattr(source, "iter_windows"):  # videos, image folders: decoded window by window
                clip = None
                windows = source.iter_windows(args.window, args.overlap, clip_id=clip_id)
                recon = runner.reconstruct_windows(windows, args.model_size, clip_id=clip_id)
            else:
                clip = runner.prepare(source.load(clip_id), args.model_size)
                recon = runner.reconstruct(clip)
            out = out_root / _safe(clip_id)
            files = recon.save(out, max_points=args.max_points)
            metrics = None
            if clip is not None and clip.has_ground_truth:
                from vfm3d.recon4d.evaluate import score
                from vfm3d.utils.atomic import atomic_write_json

                metrics = score(recon, clip)
                atomic_write_json(out / "metrics.json", metrics)
            report = write_reconstruction_report(out / "report.html", recon, clip, metrics)
            per_frame = recon.meta["seconds_per_frame"]
            h, w = recon.frames.shape[1:3]
            print(
                f"{clip_id}: {recon.num_frames} frames at {h}x{w}, "
                f"{per_frame:.3f} s/frame -> {out} ({len(files) + 1} files, report {report.name})"
            )
            if metrics is not None:
                print(json.dumps(metrics), file=sys.stdout)
    return 0


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text) or "clip"
