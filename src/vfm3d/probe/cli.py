"""`vfm3d probe train|eval`: train the probe on cached features, score it (metrics.json)."""

from __future__ import annotations

import argparse
import json

EVAL_HELP = "evaluate a trained probe; writes metrics.json in the run"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    tr = sub.add_parser("train", help="train a probe on one backbone/layer/timestep of a cache")
    tr.add_argument("--data", required=True, help="clip folder (index.json + clips)")
    tr.add_argument("--features", required=True, help="feature cache folder (vfm3d extract)")
    tr.add_argument("--backbone", required=True, help="backbone name or fingerprint")
    tr.add_argument("--layer", required=True, type=int, help="block index")
    tr.add_argument("--timestep", type=int, default=None, help="diffusion timestep (0..1000)")
    tr.add_argument("--out", required=True, help="run folder (resumed if it holds a checkpoint)")
    tr.add_argument(
        "--preset",
        choices=("paper", "cpu-small"),
        default="paper",
        help="base configuration (default: the paper's probe)",
    )
    tr.add_argument("--config", default=None, help="TOML/JSON overrides of the preset")
    tr.add_argument("--steps", type=int, default=1000, help="optimiser steps (default 1000)")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--batch-size", type=int, default=None, help="global batch size")
    tr.add_argument(
        "--no-resume", action="store_true", help="start over even if a checkpoint exists"
    )
    tr.add_argument("--device", default=None, help="cpu / cuda (default: cuda if available)")
    tr.add_argument("--quiet", action="store_true", help="no progress bar")
    tr.add_argument(
        "--quick-check",
        action="store_true",
        help="check one feature frame per clip before training (huge caches) instead of all",
    )
    ev = sub.add_parser("eval", help=EVAL_HELP)
    ev.add_argument("--run", required=True, help="run folder written by `vfm3d probe train`")
    ev.add_argument(
        "--data",
        default=None,
        help="clips to evaluate on (default: the run's): a clip folder; or a video file / image "
        "folder / clip without ground truth, which gets predictions instead of metrics",
    )
    ev.add_argument(
        "--out", default=None, help="where predictions go (default RUN/predictions/<clip id>)"
    )
    ev.add_argument("--split", default=None, help="label; writes metrics_<split>.json")
    ev.add_argument("--samples", default=None, help="evaluation sample file (JSON)")
    ev.add_argument("--features", default=None, help="feature cache (default: the run's)")
    ev.add_argument("--device", default="cpu")
    from vfm3d.data.inputs import add_input_arguments

    add_input_arguments(ev)
    for action in (tr, ev):
        action.add_argument(
            "--threads",
            type=int,
            default=None,
            help="CPU threads for torch (default: torch's; 1 is often fastest on a busy machine)",
        )


def main(args: argparse.Namespace) -> int:
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.action == "train":
        from vfm3d.probe.config import ProbeConfig
        from vfm3d.probe.train import train

        base = ProbeConfig.paper() if args.preset == "paper" else ProbeConfig.cpu_small()
        config = ProbeConfig.load(args.config, base=base) if args.config else base
        if args.batch_size is not None:
            config = ProbeConfig.from_dict({"batch_size": args.batch_size}, base=config)
        summary = train(
            config,
            args.data,
            args.features,
            args.out,
            steps=args.steps,
            backbone=args.backbone,
            layer=args.layer,
            timestep=args.timestep,
            seed=args.seed,
            resume=not args.no_resume,
            device=args.device,
            progress=not args.quiet,
            full_scan=not args.quick_check,
        )
        print(f"trained {summary['step']} steps, final loss {summary['final_loss']}: {args.out}")
        return 0
    if args.data is not None and not _is_clip_folder(args.data):
        return _predict(args)
    from vfm3d.probe.evaluate import evaluate

    result = evaluate(
        args.run,
        features=args.features,
        data_dir=args.data,
        samples=args.samples,
        split=args.split,
        device=args.device,
        progress=True,
    )
    print(json.dumps(result["metrics"], indent=2))
    return 0


def _is_clip_folder(path: str) -> bool:
    from pathlib import Path

    from vfm3d.clip import INDEX_NAME

    return (Path(path) / INDEX_NAME).is_file()


def _predict(args: argparse.Namespace) -> int:
    """``--data`` is a video, an image folder or a clip file: score it if it has ground truth
    (a clip file), else write the probe's predictions with the standard exports."""
    from vfm3d.data.inputs import ClipFile, input_options, open_clips
    from vfm3d.probe.infer import predict_clips

    clips = open_clips(args.data, **input_options(args))
    with_truth = []
    if isinstance(clips, ClipFile):  # videos and image folders never carry ground truth
        with_truth = [cid for cid in clips.ids if clips.load(cid).has_ground_truth]
    if with_truth:
        raise ValueError(
            f"{args.data}: clips with ground truth ({with_truth[0]}) are evaluated from a clip "
            "folder (index.json); put them in one with `vfm3d data convert` or ClipFolderWriter"
        )
    print(f"{args.data}: no ground truth; writing the probe's predictions (no metrics)")
    for folder in predict_clips(args.run, clips, args.features, args.out, device=args.device):
        print(f"predictions: {folder}")
    return 0
