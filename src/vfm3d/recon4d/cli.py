"""`vfm3d reconstruct INPUT... --out DIR`: depth, cameras and point clouds of every frame.

Examples::

    vfm3d reconstruct my.mp4 --out recon/                       # zoo/vggt-mini, all frames
    vfm3d reconstruct frames/ --fps 10 --max-frames 90 --out recon/
    vfm3d reconstruct my.mp4 --model /models/VGGT-1B --device cuda --window 48 --out recon/
    vfm3d reconstruct data/world --out recon/                    # clips with ground truth: scored
    vfm3d reconstruct my.mp4 --model zoo/sora3r-mini --steps 5 --samples 4 --seed 0 --out r/

Writes ``OUT/<clip id>/``: ``points.ply``, ``scene.glb``, ``colmap/``, ``trajectory_tum.txt``,
``depth/`` + ``depth.safetensors``, ``cameras.json``, ``reconstruction.json``, ``report.html``
and, when the input has ground truth, ``metrics.json`` (ATE/RPE, depth AbsRel; see
docs/io.md and docs/recon4d.md). A Sora3R model (``zoo/sora3r-mini``, a folder holding
``sora3r.json`` or a zoo run folder) writes them at the input's own resolution, plus
``uncertainty.safetensors`` when ``--samples`` > 1; a 3D expert writes them at its input size.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from vfm3d.data.transforms import hw_argument


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from vfm3d.data.inputs import add_input_arguments

    parser.add_argument(
        "inputs", nargs="+", help="video files, image folders, clip folders or clip files"
    )
    parser.add_argument("--out", required=True, help="output folder (one sub-folder per clip)")
    parser.add_argument(
        "--model",
        default="zoo/vggt-mini",
        help="3D expert: zoo/vggt-mini (default) or a local VGGT folder (model.safetensors); "
        "Sora3R: zoo/sora3r-mini or a folder with sora3r.json",
    )
    parser.add_argument(
        "--model-size",
        type=hw_argument,
        default=None,
        help="model input HxW (multiples of the patch size; default: width = the model's "
        "img_size, height by aspect ratio)",
    )
    parser.add_argument(
        "--window",
        type=int,
        default=None,
        help="frames per forward (default 32; a Sora3R model's is its training frame count)",
    )
    parser.add_argument(
        "--overlap",
        type=int,
        default=None,
        help="frames shared by consecutive windows (default 4; Sora3R: half its window)",
    )
    parser.add_argument(
        "--steps", type=int, default=None, help="Sora3R: Euler steps (default: the model's, 5)"
    )
    parser.add_argument(
        "--samples",
        type=int,
        default=None,
        help="Sora3R: point-map samples K (default 1); K > 1 adds uncertainty.safetensors",
    )
    parser.add_argument("--seed", type=int, default=None, help="Sora3R: sampling seed (default 0)")
    parser.add_argument(
        "--max-points", type=int, default=200_000, help="points kept in PLY/GLB (default 200k)"
    )
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    add_input_arguments(parser)


def main(args: argparse.Namespace) -> int:
    import torch

    from vfm3d.data.inputs import input_options, open_clips
    from vfm3d.recon4d.report import write_reconstruction_report
    from vfm3d.recon4d.sora3r import Sora3RReconstructor

    if args.threads:
        torch.set_num_threads(args.threads)
    runner = _runner(args)
    sora3r = isinstance(runner, Sora3RReconstructor)
    window, overlap = runner.window, runner.overlap
    options = input_options(args)
    sources = [open_clips(path, **options) for path in args.inputs]  # fail early on bad input
    from pathlib import Path

    out_root = Path(args.out)
    for source in sources:
        for clip_id in source.ids:
            if hasattr(source, "iter_windows"):  # videos, image folders: decoded window by window
                clip = None
                windows = source.iter_windows(window, overlap, clip_id=clip_id)
                if sora3r:
                    recon = runner.reconstruct_windows(windows, clip_id=clip_id)
                else:
                    recon = runner.reconstruct_windows(windows, args.model_size, clip_id=clip_id)
            elif sora3r:  # at the input's own resolution: scored against the clip as given
                clip = source.load(clip_id)
                recon = runner.reconstruct(clip)
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


def _runner(args: argparse.Namespace) -> Any:
    """The reconstructor ``--model`` names: Sora3R (``zoo/sora3r-*``, a folder with
    ``sora3r.json``) or a VGGT-architecture 3D expert (anything else)."""
    from vfm3d.recon4d.sora3r import Sora3RReconstructor, is_sora3r_model, load_sora3r

    progress = not args.quiet
    if is_sora3r_model(args.model):
        model = load_sora3r(args.model, device=args.device)
        if args.window is not None and args.window != model.frames:
            raise ValueError(
                f"--window {args.window}: a Sora3R model runs windows of the {model.frames} "
                "frames it was trained on"
            )
        return Sora3RReconstructor(
            model,
            steps=args.steps,
            samples=1 if args.samples is None else args.samples,
            seed=0 if args.seed is None else args.seed,
            overlap=args.overlap,
            size=args.model_size,
            device=args.device,
            progress=progress,
        )
    given = [f"--{n}" for n in ("steps", "samples", "seed") if getattr(args, n) is not None]
    if given:
        raise ValueError(
            f"{', '.join(given)} only apply to Sora3R models (e.g. --model zoo/sora3r-mini), "
            f"not to {args.model}"
        )
    from vfm3d.recon4d.expert import ExpertReconstructor, load_expert

    model = load_expert(args.model, device=args.device)
    return ExpertReconstructor(
        model,
        window=32 if args.window is None else args.window,
        overlap=4 if args.overlap is None else args.overlap,
        device=args.device,
        progress=progress,
    )


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text) or "clip"
