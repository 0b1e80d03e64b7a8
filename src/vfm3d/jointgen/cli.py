"""``vfm3d jointgen eval | compare``: issue 14's comparison of joint generators, one row a command.

Examples (the held-out clips of a zoo run; two seeds of each trained model)::

    vfm3d jointgen eval --model zoo/jog3r-mini --data runs/jog3r/data/heldout --seed 0 --out e/jog3r-s0
    vfm3d jointgen eval --model zoo/jog3r-mini-lambda0 --data HELDOUT --seed 0 --out e/twin-s0
    vfm3d jointgen eval --model zoo/wan-mini --data HELDOUT --out e/wan       # T2V only, no V2C
    vfm3d jointgen eval --model gt --data HELDOUT --out e/gt                  # real clips' score
    vfm3d jointgen eval --model zoo/vggt-mini --data HELDOUT --out e/vggt     # V2C only
    vfm3d extract --data HELDOUT --backbone zoo/wan-mini --layers 2 --timesteps 749 --out feats/
    vfm3d jointgen eval --model probe:runs/probe --features feats/ --data HELDOUT --out e/probe
    vfm3d jointgen compare --out e/table --reference twin \\
        --row jog3r=e/jog3r-s0,e/jog3r-s1 --row twin=e/twin-s0,e/twin-s1 --row wan-mini=e/wan \\
        --row gt=e/gt --row vggt-mini=e/vggt --row probe=e/probe

``eval`` writes ``OUT/metrics.json`` (per-item rows, the Frechet distance, timings, settings),
``OUT/features.safetensors`` and ``OUT/videos/`` (`vfm3d.jointgen.evaluate`); ``compare`` writes
``OUT/comparison.json`` and ``OUT/comparison.md`` and prints the markdown. docs/jointgen.md,
"Evaluation", describes every metric.
"""

from __future__ import annotations

import argparse
import json

from vfm3d.data.transforms import hw_argument


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    ev = sub.add_parser("eval", help="score one row (a model, gt, zoo/vggt-mini or a probe)")
    ev.add_argument(
        "--model",
        required=True,
        help="a JointGenerator folder, zoo/jog3r-mini, zoo/wan-mini (or a Wan folder), gt, "
        "zoo/vggt-mini, vggt:PATH or probe:RUN",
    )
    ev.add_argument("--data", required=True, help="held-out clip folder (depth and cameras)")
    ev.add_argument("--out", required=True, help="output folder")
    ev.add_argument("--prompts", type=int, default=None, help="first N clips (default all)")
    ev.add_argument("--seed", type=int, default=0, help="noise seed of the run (default 0)")
    ev.add_argument(
        "--features", default=None, help="feature cache of the clips (probe:RUN rows only)"
    )
    ev.add_argument(
        "--real", default=None, help="real clips for the Frechet distance (default --data)"
    )
    ev.add_argument("--frames", type=int, default=None, help="frames per video / clip")
    ev.add_argument(
        "--size", type=hw_argument, default=None, metavar="HxW", help="generated video size"
    )
    ev.add_argument("--steps", type=int, default=30, help="Euler sampling steps (default 30)")
    ev.add_argument("--guidance", type=float, default=1.0, help="classifier-free guidance")
    ev.add_argument("--batch", type=int, default=8, help="videos per sampling batch")
    ev.add_argument(
        "--geometry", default="zoo/vggt-mini", help="3D expert of the consistency score"
    )
    ev.add_argument(
        "--consistency-features",
        default="zoo/dinov2-mini",
        help="image backbone of the consistency score",
    )
    ev.add_argument(
        "--frechet-backbone",
        default="zoo/videomae-mini",
        help="video encoder of the Frechet distance (default zoo/videomae-mini)",
    )
    ev.add_argument("--no-smooth", action="store_true", help="raw V2C cameras (jointgen rows)")
    ev.add_argument("--no-videos", action="store_true", help="do not write OUT/videos/*.mp4")
    ev.add_argument("--device", default="cpu", help="torch device (default cpu)")
    ev.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    ev.add_argument("--quiet", action="store_true", help="no progress bars")

    from vfm3d.jointgen.evaluate import DEFAULT_METRICS
    from vfm3d.report.comparison import add_compare_arguments

    cmp = sub.add_parser("compare", help="one table of several eval folders")
    add_compare_arguments(cmp, "jointgen eval", DEFAULT_METRICS)


def main(args: argparse.Namespace) -> int:
    if args.action == "compare":
        return _compare(args)
    import torch

    from vfm3d.jointgen.evaluate import EvalConfig, evaluate_model

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quiet:
        from vfm3d.jointgen.generate_cli import quiet_libraries

        quiet_libraries()
    config = EvalConfig(
        prompts=args.prompts,
        seed=args.seed,
        frames=args.frames,
        size=args.size,
        steps=args.steps,
        guidance=args.guidance,
        batch=args.batch,
        smooth=not args.no_smooth,
        write_videos=not args.no_videos,
        progress=not args.quiet,
    )
    record = evaluate_model(
        args.model,
        args.data,
        args.out,
        config,
        geometry=args.geometry,
        features=args.consistency_features,
        frechet_backbone=args.frechet_backbone,
        real=args.real,
        probe_features=args.features,
        device=args.device,
    )
    print(json.dumps({"model": record["model"], "kind": record["kind"], **record["summary"]}))
    for what, why in record["skipped"].items():
        print(f"{what}: not scored ({why})")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from vfm3d.jointgen.evaluate import compare
    from vfm3d.report.comparison import parse_row, write_table

    rows = [parse_row(text) for text in args.row]
    metrics = [m for m in str(args.metrics).split(",") if m]
    table = compare(rows, metrics, args.reference, samples=args.samples)
    print(write_table(args.out, table), end="")
    return 0
