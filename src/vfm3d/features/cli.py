"""`vfm3d extract`: features of clips (a clip folder, a video, an image folder) into a cache.

``--data`` is anything `vfm3d.data.inputs.open_clips` opens; ``--fps``, ``--stride``,
``--start``, ``--start-frame``, ``--max-frames``, ``--size``, ``--resize-mode`` and
``--intrinsics`` shape a video / image folder as it is read (``--resize`` still resizes right
before the model, for every kind of input).

Examples::

    vfm3d extract --data world/ --backbone random --layers 0,3 --out cache/
    vfm3d extract --data walk.mp4 --fps 10 --size 256x256 --backbone random --layers 0 --out cache/
    vfm3d extract --data long.mp4 --window 81 --backbone wan2.1 --weights W --layers 20 ...
    vfm3d extract --data world/ --backbone wan2.1 --tiny --layers 1,2 --timesteps 250,749 --out cache/
    torchrun --nproc_per_node 2 -m vfm3d.cli extract ...      # ranks split the clips
    vfm3d extract ... --shard 0/4                               # independent jobs; then --merge
"""

from __future__ import annotations

import argparse
import os
import sys

from vfm3d.data.inputs import add_input_arguments


def _int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError as error:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from error


def _layers(text: str) -> list[int] | str:
    return "all" if text.strip() == "all" else _int_list(text)


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected HxW (e.g. 480x832), got {text!r}") from error
    return h, w


def _shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected I/N (e.g. 0/4), got {text!r}") from error
    if not 0 <= i < n:
        raise argparse.ArgumentTypeError(f"shard {text}: need 0 <= I < N")
    return i, n


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        required=True,
        help="clip folder (index.json), .safetensors clip, video file, or folder of images",
    )
    parser.add_argument("--backbone", help="registered backbone name (see `vfm3d backbones`)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--weights", help="local weights directory (model's own layout)")
    source.add_argument("--tiny", action="store_true", help="tiny random-initialised config")
    parser.add_argument("--layers", type=_layers, help="comma-separated block indices, or 'all'")
    parser.add_argument("--timesteps", type=_int_list, help="diffusion timesteps, e.g. 250,749")
    parser.add_argument(
        "--num-frames", type=int, help="frames per clip (default: largest the model's rule allows)"
    )
    parser.add_argument("--out", required=True, help="feature cache folder")
    parser.add_argument("--shard", type=_shard, help="I/N: this job handles clips I, I+N, ...")
    parser.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument(
        "--dtype", default="float32", choices=["float32", "bfloat16", "float16"], help="model dtype"
    )
    parser.add_argument(
        "--store-dtype", default="float16", choices=["float16", "bfloat16", "float32"]
    )
    parser.add_argument("--resize", type=_size, help="resize frames to HxW before the model")
    parser.add_argument("--timestep-batch", type=int, help="timesteps per forward (default all)")
    parser.add_argument("--verify", action="store_true", help="check every stored shard first")
    parser.add_argument(
        "--merge", action="store_true", help="only merge manifest parts of finished jobs"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--window",
        type=int,
        default=None,
        help="split a video / image folder into clips of N frames (ids <stem>_w0000, ...), "
        "decoded one window at a time; for long videos",
    )
    parser.add_argument(
        "--window-overlap", type=int, default=0, help="frames shared by consecutive windows"
    )
    add_input_arguments(parser)


def main(args: argparse.Namespace) -> int:
    import torch

    from vfm3d.backbones import load
    from vfm3d.data.inputs import input_options, open_clips
    from vfm3d.features.runner import extract_to_store, rank_from_env
    from vfm3d.features.store import FeatureStore

    rank, world_size = rank_from_env()
    if args.merge:
        total = FeatureStore(args.out).merge()
        print(f"merged manifest: {total} entries in {args.out}")
        return 0
    if not args.backbone or args.layers is None:
        raise ValueError("--backbone and --layers are required (unless --merge)")
    if args.shard is not None:
        if world_size > 1:
            raise ValueError("--shard cannot be combined with torchrun (RANK/WORLD_SIZE set)")
        rank, world_size = args.shard
    device = args.device
    distributed = world_size > 1 and args.shard is None
    if distributed:
        import datetime

        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("gloo", timeout=datetime.timedelta(hours=12))
        if device.startswith("cuda") and ":" not in device:
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', rank))}"
            torch.cuda.set_device(device)
    folder = open_clips(args.data, **input_options(args))
    if args.window is not None:
        from vfm3d.data.inputs import WindowedClips

        if not hasattr(folder, "iter_windows"):
            raise ValueError(f"{args.data}: --window splits videos and image folders, not clips")
        folder = WindowedClips(folder, args.window, args.window_overlap)
    backbone = load(
        args.backbone,
        weights=args.weights,
        tiny=args.tiny,
        device=device,
        dtype=getattr(torch, args.dtype),
    )
    layers = list(range(backbone.num_layers)) if args.layers == "all" else args.layers
    store = FeatureStore(args.out, dtype=args.store_dtype, rank=rank)
    if args.verify:
        if rank == 0 or not distributed:  # one verifier: dropping rewrites the index files
            bad = store.verify()
            print(f"verify: {len(bad)} corrupt shards dropped" + (f": {bad}" if bad else ""))
        if distributed:
            torch.distributed.barrier()
            store.reload()
    try:
        summary = extract_to_store(
            store,
            backbone,
            folder,
            layers,
            timesteps=args.timesteps,
            num_frames=args.num_frames,
            seed=args.seed,
            rank=rank,
            world_size=world_size,
            progress=not args.no_progress,
            timestep_batch=args.timestep_batch,
            resize=args.resize,
        )
    finally:
        if distributed:
            import torch.distributed as dist

            dist.destroy_process_group()
    prefix = f"[rank {rank}/{world_size}] " if world_size > 1 else ""
    print(f"{prefix}{summary}", file=sys.stdout)
    print(f"{prefix}cache: {store.root} ({len(FeatureStore(args.out))} entries)")
    return 0
