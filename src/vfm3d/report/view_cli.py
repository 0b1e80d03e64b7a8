"""`vfm3d view PATH`: show a run folder, a clip file or a PLY in a local viser server."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from vfm3d.report.view import VIEW_POINT_CAP

    parser.add_argument(
        "path",
        help="run folder (example_pred.ply / points.ply + cameras.json), clip .safetensors, "
        ".ply or cameras.json",
    )
    parser.add_argument("--port", type=int, default=8080, help="port on 127.0.0.1 (default 8080)")
    parser.add_argument(
        "--max-points",
        type=int,
        default=VIEW_POINT_CAP,
        help=f"at most this many points per cloud (default {VIEW_POINT_CAP})",
    )
    parser.add_argument(
        "--no-block",
        action="store_true",
        help="start the server and return (for tests; the server is left in args.server)",
    )


def main(args: argparse.Namespace) -> int:
    from vfm3d.report.view import view

    if args.max_points <= 0:
        raise ValueError(f"--max-points must be positive, got {args.max_points}")
    args.server = view(
        args.path, port=args.port, max_points=args.max_points, block=not args.no_block
    )
    return 0
