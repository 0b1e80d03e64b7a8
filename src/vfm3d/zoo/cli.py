"""``vfm3d zoo train NAME --out DIR`` and ``vfm3d zoo experiment --out DIR [--quick]``."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

MODEL_NAMES = (
    "wan-mini",
    "dinov2-mini",
    "videomae-mini",
    "vggt-mini",
    "sora3r-mini",
    "vgllm-mini",
    "jog3r-mini",
)
#: Zoo models that are not backbones (a reconstructor, a multimodal LM, a joint generator).
NOT_BACKBONES = ("sora3r-mini", "vgllm-mini", "jog3r-mini")
#: Zoo models the experiment probes (the backbones).
EXPERIMENT_NAMES = tuple(n for n in MODEL_NAMES if n not in NOT_BACKBONES)
#: World data of a run where neither the flag nor the model (its ``DATA_DEFAULTS``) says.
DATA_DEFAULTS = {
    "train_clips": 256,
    "heldout_clips": 16,
    "frames": 9,
    "height": 32,
    "width": 32,
    "shards": 4,
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    train = sub.add_parser("train", help="train one zoo model on generated world clips")
    train.add_argument("name", choices=MODEL_NAMES)
    train.add_argument("--out", required=True, help="run folder (resumed if it exists)")
    train.add_argument("--steps", type=int, default=None, help="steps per stage (default: full)")
    train.add_argument("--seed", type=int, default=0, help="seed of data and initialisation")
    train.add_argument("--data", default=None, help="world data folder (default OUT/data)")
    train.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    train.add_argument(
        "--train-clips", type=int, default=None, help="training clips (default 256; per model)"
    )
    train.add_argument(
        "--heldout-clips", type=int, default=None, help="held-out clips (default 16; per model)"
    )
    train.add_argument(
        "--frames", type=int, default=None, help="frames per clip (4k+1; default 9; per model)"
    )
    train.add_argument(
        "--size",
        type=_size,
        default=None,
        metavar="S|HxW",
        help="frame size in pixels: S (square) or HxW (default 32; per model)",
    )
    train.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    train.add_argument("--batch", type=int, default=None, help="batch size (default: per model)")
    train.add_argument(
        "--shards", type=int, default=None, help="training-data shards (default 4; per model)"
    )
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
        help="sora3r-mini and jog3r-mini only: the video model to start from (zoo/wan-mini, "
        "default, or a local Wan2.1 diffusers folder)",
    )
    train.add_argument(
        "--random-init",
        action="store_true",
        help="sora3r-mini only: the joint DiT from random weights (the twin without the video prior)",
    )
    train.add_argument(
        "--pointmap-vae",
        default=None,
        metavar="RUN",
        help="sora3r-mini only: reuse the stage-1 point-map VAE of a finished run (the twin and "
        "another DiT seed share one VAE)",
    )
    train.add_argument(
        "--no-geometry",
        action="store_true",
        help="vgllm-mini only: the twin without the geometry encoder and merger",
    )
    train.add_argument(
        "--blind",
        action="store_true",
        help="vgllm-mini only: the text-only twin (trained on the questions without frames)",
    )
    train.add_argument(
        "--lambda-rec",
        type=float,
        default=None,
        help="jog3r-mini only: weight of the reconstruction loss (default 1; 0 = the "
        "generation-only twin)",
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
    fnd = sub.add_parser(
        "findings",
        help="table + the paper's findings with bootstrap intervals over finished experiments",
    )
    fnd.add_argument("experiments", nargs="+", help="experiment folders (one per seed)")
    fnd.add_argument("--out", required=True, help="writes OUT.md and OUT.json")


def _size(text: str) -> tuple[int, int]:
    """``"32"`` -> (32, 32); ``"64x96"`` -> (64, 96)."""
    from vfm3d.data.transforms import parse_hw

    try:
        if "x" not in text.lower():
            side = int(text)
            if side < 1:
                raise ValueError(f"size must be positive, got {text!r}")
            return side, side
        return parse_hw(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def resolve_data_flags(args: argparse.Namespace) -> None:
    """Fill the data flags left unset from the model's ``DATA_DEFAULTS``, then the zoo's."""
    from vfm3d.zoo import model_module

    own = getattr(model_module(args.name), "DATA_DEFAULTS", {})
    merged = {**DATA_DEFAULTS, **own}
    for key in ("train_clips", "heldout_clips", "frames", "shards"):
        if getattr(args, key, None) is None:
            setattr(args, key, int(merged[key]))
    if args.size is None:
        args.size = (int(merged["height"]), int(merged["width"]))


def train_command(args: argparse.Namespace) -> str:
    """The full ``vfm3d zoo train`` command line equivalent to ``args`` (every option spelled)."""
    import shlex

    parts = ["vfm3d", "zoo", "train", args.name, "--out", str(args.out)]
    for option in ("steps", "seed", "data", "device", "train_clips", "heldout_clips", "frames"):
        value = getattr(args, option)
        if value is not None:
            parts += ["--" + option.replace("_", "-"), str(value)]
    for option in (
        "size", "shards", "batch", "time_limit", "threads", "init", "lambda_rec", "pointmap_vae",
    ):  # fmt: skip
        value = getattr(args, option, None)
        if option == "size" and isinstance(value, tuple):
            value = str(value[0]) if value[0] == value[1] else f"{value[0]}x{value[1]}"
        if value is not None:
            parts += ["--" + option.replace("_", "-"), str(value)]
    for flag in ("random_init", "no_geometry", "blind"):
        if getattr(args, flag, False):
            parts.append("--" + flag.replace("_", "-"))
    return shlex.join(parts)


def _model_options(args: argparse.Namespace) -> dict[str, object]:
    """The options only some zoo models take (``--init``, ``--random-init``, ``--no-geometry``,
    ``--blind``, ``--lambda-rec``), when given."""
    options: dict[str, object] = {}
    if args.init is not None:
        options["init"] = args.init
    if args.random_init:
        options["random_init"] = True
    if getattr(args, "pointmap_vae", None) is not None:
        options["pointmap_vae"] = str(args.pointmap_vae)
    if getattr(args, "no_geometry", False):
        options["no_geometry"] = True
    if getattr(args, "blind", False):
        options["blind"] = True
    if getattr(args, "lambda_rec", None) is not None:
        options["lambda_rec"] = float(args.lambda_rec)
    return options


def install_target(name: str, options: dict[str, object]) -> str:
    """The zoo folder name a run of ``name`` installs into (a twin's differs: the model's
    ``install_name(options)``, e.g. ``vgllm-mini-no-geometry``)."""
    from vfm3d.zoo import model_module

    module = model_module(name)
    return module.install_name(options) if hasattr(module, "install_name") else name


def main(args: argparse.Namespace) -> int:
    import torch

    torch.set_num_threads(max(1, int(getattr(args, "threads", 1))))
    if args.action == "train":
        from vfm3d.zoo import install, train_model, weights_dir
        from vfm3d.zoo.common import DataSpec

        resolve_data_flags(args)
        spec = DataSpec(
            seed=args.seed,
            train_clips=args.train_clips,
            heldout_clips=args.heldout_clips,
            frames=args.frames,
            height=args.size[0],
            width=args.size[1],
            shards=args.shards,
        )
        options = _model_options(args)
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
            options=options,
        )
        if int(os.environ.get("RANK", "0")):  # torchrun: rank 0 reports and installs
            return 0
        keys = ("name", "steps", "steps_done", "wall_time_s", "device")
        print(json.dumps({k: record[k] for k in keys}))
        if args.install:
            target = weights_dir(args.name).parent / install_target(args.name, options)
            print(f"installed into {install(args.out, args.name, target)}")
        return 0
    if args.action == "findings":
        from vfm3d.zoo.findings import write_findings

        write_findings(args.experiments, args.out)
        print(Path(args.out).with_suffix(".md").read_text())
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
