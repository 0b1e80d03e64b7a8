"""``vfm3d data ...``: inspect and convert real datasets.

Subcommands register themselves with `subcommand`; adding one is one decorated function::

    @subcommand("pseudo-gt", "store 3D-expert depth beside clips",
                arguments=lambda p: p.add_argument("--weights", required=True))
    def pseudo_gt(args: argparse.Namespace) -> int: ...

``dataset=True`` (the default) adds the shared ``KIND ROOT`` positionals and reader options.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Runner = Callable[[argparse.Namespace], int]


@dataclass
class _Subcommand:
    run: Runner
    help: str
    arguments: Callable[[argparse.ArgumentParser], Any] | None
    dataset: bool


SUBCOMMANDS: dict[str, _Subcommand] = {}


def subcommand(
    name: str,
    help: str,
    arguments: Callable[[argparse.ArgumentParser], Any] | None = None,
    dataset: bool = True,
) -> Callable[[Runner], Runner]:
    """Register ``fn(args) -> int`` as ``vfm3d data <name>``."""

    def register(fn: Runner) -> Runner:
        SUBCOMMANDS[name] = _Subcommand(fn, help, arguments, dataset)
        return fn

    return register


def _option_value(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--option must look like key=value, got {text!r}")
    key, raw = text.split("=", 1)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.strip().replace("-", "_"), value


def add_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    """``KIND ROOT`` and the options every reader accepts."""
    from vfm3d.data import KINDS

    parser.add_argument("kind", choices=sorted(KINDS), help="dataset layout")
    parser.add_argument("root", help="dataset root folder (published layout; see docs/datasets.md)")
    parser.add_argument("--protocol", choices=["monst3r", "vidfm3d"], help="evaluation protocol")
    parser.add_argument("--sequences", help="comma-separated sequence ids (default: all)")
    parser.add_argument("--max-frames", type=int, help="keep at most N frames per clip")
    parser.add_argument("--stride", type=int, default=1, help="take every N-th frame (no protocol)")
    parser.add_argument("--seed", type=int, default=0, help="seed for random frame windows")
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        type=_option_value,
        metavar="KEY=VALUE",
        help="reader-specific option, e.g. association_max_diff=0.01, pass_name=clean, "
        "image_folder=images_4 (JSON values allowed)",
    )


def open_reader(args: argparse.Namespace) -> Any:
    """The reader described by the shared dataset arguments."""
    from vfm3d.data import read

    options: dict[str, Any] = dict(args.option)
    if args.protocol:
        options["protocol"] = args.protocol
    if args.sequences:
        options["sequences"] = [s.strip() for s in args.sequences.split(",") if s.strip()]
    if args.max_frames is not None:
        options["max_frames"] = args.max_frames
    if args.stride != 1:
        options["stride"] = args.stride
    if args.seed:
        options["seed"] = args.seed
    return read(args.kind, args.root, **options)


# ---------------------------------------------------------------------- info
def _info_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--limit", type=int, default=20, help="describe at most N sequences")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


@subcommand("info", "list sequences, frames, resolution and ground truth", _info_arguments)
def info(args: argparse.Namespace) -> int:
    from vfm3d.data import SequenceRejected

    reader = open_reader(args)
    ids = reader.ids
    rows, rejected = [], []
    for clip_id in ids[: max(args.limit, 0)]:
        try:
            rows.append(reader.describe(clip_id))
        except SequenceRejected as error:
            rejected.append(str(error))
    summary = {
        "kind": args.kind,
        "root": str(args.root),
        "protocol": args.protocol,
        "sequences": len(ids),
        "missing_protocol_sequences": reader.missing_sequences,
        "described": rows,
        "rejected_by_protocol": rejected,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(
        f"{args.kind} at {args.root}: {len(ids)} sequences"
        + (f" (protocol {args.protocol})" if args.protocol else "")
    )
    if rows:
        width = max(len(r["id"]) for r in rows)
        print(
            f"  {'id'.ljust(width)}  frames(sel/total)  HxW        depth  poses  intrinsics  dynamic"
        )
        for r in rows:
            frames = f"{r['frames_selected']}/{r['frames_total']}"
            size = f"{r['resolution_hw'][0]}x{r['resolution_hw'][1]}"
            print(
                f"  {r['id'].ljust(width)}  {frames.ljust(17)}  {size.ljust(9)}  "
                f"{'yes' if r['depth'] else 'no':5}  {'yes' if r['poses'] else 'no':5}  "
                f"{'yes' if r['intrinsics'] else 'no':10}  {'yes' if r.get('dynamic') else 'no'}"
            )
    for line in rejected:
        print(f"  {line}")
    if reader.missing_sequences:
        print(f"  protocol sequences not found under ROOT: {', '.join(reader.missing_sequences)}")
    if len(ids) > len(rows):
        print(f"  ... and {len(ids) - len(rows)} more (use --limit)")
    return 0


# ---------------------------------------------------------------------- convert
def _convert_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output clip folder (index.json + clips)")
    parser.add_argument("--resize", help="resize every clip to HxW (intrinsics follow)")
    parser.add_argument(
        "--skip-errors",
        action="store_true",
        help="skip sequences with malformed files (listed at the end) instead of stopping",
    )


@subcommand("convert", "write vfm3d clip folders (resumable)", _convert_arguments)
def convert(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from vfm3d.clip import ClipFolderWriter
    from vfm3d.data import DatasetFormatError, SequenceRejected
    from vfm3d.data.transforms import apply_to_clip, parse_hw, resize

    target = parse_hw(args.resize) if args.resize else None
    reader = open_reader(args)
    writer = ClipFolderWriter(
        args.out,
        info={"source": args.kind, "protocol": args.protocol, "resize": args.resize},
    )
    done = set(writer.ids)
    todo = [i for i in reader.ids if i not in done]
    rejected: list[str] = []
    failed: list[str] = []
    for clip_id in tqdm(todo, desc=f"convert {args.kind}", unit="clip"):
        try:
            clip = reader.load(clip_id)
        except SequenceRejected as error:
            rejected.append(f"{clip_id}: {error}")
            continue
        except DatasetFormatError as error:
            if not args.skip_errors:
                raise
            failed.append(f"{clip_id}: {error}")
            continue
        if target is not None and (clip.height, clip.width) != target:
            clip = apply_to_clip(clip, resize((clip.height, clip.width), target))
        writer.add(clip)
    print(
        f"wrote {len(todo) - len(rejected) - len(failed)} clips to {args.out} "
        f"({len(done)} already there, {len(rejected)} rejected by the protocol, "
        f"{len(failed)} failed)"
    )
    for line in rejected + failed:
        print(f"  skipped {line}")
    return 0


# ---------------------------------------------------------------------- pseudo-gt
def _pseudo_gt_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", help="a vfm3d clip folder (e.g. the output of `data convert`)")
    parser.add_argument(
        "--weights", required=True, help="local VGGT directory (model.safetensors [+ config.json])"
    )
    parser.add_argument(
        "--batch-frames", type=int, help="frames per forward (chunks share frame 0)"
    )
    parser.add_argument("--long-side", type=int, help="resize input so its longer side is this")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    parser.add_argument("--overwrite", action="store_true", help="redo clips already done")


@subcommand(
    "pseudo-gt",
    "store VGGT depth / points / cameras / confidence beside each clip (resumable)",
    _pseudo_gt_arguments,
    dataset=False,
)
def pseudo_gt(args: argparse.Namespace) -> int:
    import torch

    from vfm3d.data.pseudo_gt import write_pseudo_gt
    from vfm3d.models.vggt import VGGT

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = VGGT.from_pretrained(args.weights, device=device)
    result = write_pseudo_gt(
        args.folder,
        model,
        batch_frames=args.batch_frames,
        long_side=args.long_side,
        overwrite=args.overwrite,
        amp_dtype=torch.bfloat16 if device.startswith("cuda") else None,
    )
    print(
        f"pseudo ground truth: {len(result['written'])} clips written, "
        f"{len(result['skipped'])} already done, in {args.folder}"
    )
    return 0


# ---------------------------------------------------------------------- dispatcher
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Called by the `vfm3d` dispatcher."""
    sub = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)
    for name, spec in SUBCOMMANDS.items():
        child = sub.add_parser(name, help=spec.help, description=spec.help)
        if spec.dataset:
            add_dataset_arguments(child)
        if spec.arguments is not None:
            spec.arguments(child)
        child.set_defaults(_data_run=spec.run)


def main(args: argparse.Namespace) -> int:
    return int(args._data_run(args) or 0)
