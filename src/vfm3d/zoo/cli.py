"""``vfm3d zoo train NAME --out DIR`` and ``vfm3d zoo experiment --out DIR [--quick]``."""

from __future__ import annotations

import argparse
import json
import os

MODEL_NAMES = ("wan-mini", "dinov2-mini", "videomae-mini", "vggt-mini", "sora3r-mini")
#: Zoo models the experiment probes (backbones; sora3r-mini is a reconstructor).
EXPERIMENT_NAMES = tuple(n for n in MODEL_NAMES if n != "sora3r-mini")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    train = sub.add_parser("train", help="train one zoo model on generated world clips")
    train.add_argument("name", choices=MODEL_NAMES)
    train.add_argument("--out", required=True, help="run folder (resumed if it exists)")
    train.add_argument("--steps", type=int, default=None, help="steps per stage (default: full)")
    train.add_argument("--seed", type=int, default=0, help="seed of data and initialisation")
    train.add_argument("--data", default=None, help="world data folder (default OUT/data)")
    train.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    train.add_argument("--train-clips", type=int, default=256)
    train.add_argument("--heldout-clips", type=int, default=16)
    train.add_argument("--frames", type=int, default=9, help="frames per clip (4k+1)")
    train.add_argument("--size", type=int, default=32, help="frame height = width in pixels")
    train.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    train.add_argument("--batch", type=int, default=None, help="batch size (default: per model)")
    train.add_argument("--shards", type=int, default=4, help="training-data shards")
    train.add_argument("--workers", type=int, default=1, help="processes rendering world data")
    train.add_argument(
        "--time-limit", type=float, default=None, help="stop training after this many seconds"
    )
    train.add_argument(
        "--install", action="store_true", help="copy the trained model into the package's zoo"
    )
    train.add_argument(
        "--init",
        default=None,
        help="sora3r-mini only: the video model to start from (zoo/wan-mini, default, or a "
        "local Wan2.1 diffusers folder)",
    )
    train.add_argument(
        "--random-init",
        action="store_true",
        help="sora3r-mini only: the joint DiT from random weights (the twin without the video prior)",
    )
    train.add_argument("--no-progress", action="store_true")
    exp = sub.add_parser("experiment", help="probe every zoo model and its random-init twin")
    exp.add_argument("--out", required=True, help="output folder (resumable)")
    exp.add_argument("--quick", action="store_true", help="a small CPU-sized version")
    exp.add_argument("--seed", type=int, default=0)
    exp.add_argument("--workers", type=int, default=1, help="backbones probed in parallel")
    exp.add_argument("--threads", type=int, default=1, help="torch CPU threads per worker")
    exp.add_argument(
        "--models", nargs="+", choices=EXPERIMENT_NAMES, default=None, help="subset of zoo models"
    )
    exp.add_argument("--no-progress", action="store_true")


def train_command(args: argparse.Namespace) -> str:
    """The full ``vfm3d zoo train`` command line equivalent to ``args`` (every option spelled)."""
    import shlex

    parts = ["vfm3d", "zoo", "train", args.name, "--out", str(args.out)]
    for option in ("steps", "seed", "data", "device", "train_clips", "heldout_clips", "frames"):
        value = getattr(args, option)
        if value is not None:
            parts += ["--" + option.replace("_", "-"), str(value)]
    for option in ("size", "shards", "batch", "time_limit", "threads", "init"):
        value = getattr(args, option, None)
        if value is not None:
            parts += ["--" + option.replace("_", "-"), str(value)]
    if getattr(args, "random_init", False):
        parts.append("--random-init")
    return shlex.join(parts)


def _model_options(args: argparse.Namespace) -> dict[str, object]:
    """The options only some zoo models take (``--init``, ``--random-init``), when given."""
    options: dict[str, object] = {}
    if args.init is not None:
        options["init"] = args.init
    if args.random_init:
        options["random_init"] = True
    return options


def main(args: argparse.Namespace) -> int:
    import torch

    torch.set_num_threads(max(1, int(args.threads)))
    if args.action == "train":
        from vfm3d.zoo import install, train_model
        from vfm3d.zoo.common import DataSpec

        spec = DataSpec(
            seed=args.seed,
            train_clips=args.train_clips,
            heldout_clips=args.heldout_clips,
            frames=args.frames,
            height=args.size,
            width=args.size,
            shards=args.shards,
        )
        record = train_model(
            args.name,
            args.out,
            steps=args.steps,
            seed=args.seed,
            data_dir=args.data,
            device=args.device,
            data=spec,
            progress=not args.no_progress,
            batch=args.batch,
            time_limit_s=args.time_limit,
            workers=args.workers,
            command=train_command(args),
            options=_model_options(args),
        )
        if int(os.environ.get("RANK", "0")):  # torchrun: rank 0 reports and installs
            return 0
        keys = ("name", "steps", "steps_done", "wall_time_s", "device")
        print(json.dumps({k: record[k] for k in keys}))
        if args.install:
            print(f"installed into {install(args.out, args.name)}")
        return 0
    from vfm3d.zoo.experiment import run_experiment

    table = run_experiment(
        args.out,
        quick=args.quick,
        seed=args.seed,
        workers=args.workers,
        threads=args.threads,
        progress=not args.no_progress,
        names=args.models,
    )
    print(table)
    return 0
