"""`vfm3d world`: generate a procedural 3D world dataset folder (clips with exact depth)."""

from __future__ import annotations

import argparse

from vfm3d.world.camera import DEFAULT_DEG_PER_FRAME, DEFAULT_M_PER_FRAME
from vfm3d.world.generate import DATASET_KINDS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output dataset folder")
    parser.add_argument(
        "--kind",
        default="object",
        choices=list(DATASET_KINDS),
        help="object (CO3D-like orbit), scene (rooms/streets walk), dynamic (moving objects), "
        "room (furnished room panned for spatial questions), mixed (object/scene alternating)",
    )
    parser.add_argument("--clips", type=int, default=8, help="number of clips N (>= 1)")
    parser.add_argument("--frames", type=int, default=16, help="frames per clip T (>= 1)")
    parser.add_argument("--height", type=int, default=128, help="frame height H (>= 8)")
    parser.add_argument("--width", type=int, default=128, help="frame width W (>= 8)")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed S (>= 0)")
    parser.add_argument(
        "--deg-per-frame",
        type=float,
        default=DEFAULT_DEG_PER_FRAME,
        help=f"object orbits: degrees of azimuth per frame (default {DEFAULT_DEG_PER_FRAME}: "
        "CO3D's ~360 deg in 81 frames), whatever --frames",
    )
    parser.add_argument(
        "--m-per-frame",
        type=float,
        default=DEFAULT_M_PER_FRAME,
        help=f"scene walks: metres per frame (default {DEFAULT_M_PER_FRAME}), whatever --frames",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing dataset in --out"
    )
    parser.add_argument(
        "--preview", action="store_true", help="also write preview.png (RGB + depth contact sheet)"
    )


def main(args: argparse.Namespace) -> int:
    from vfm3d.world.camera import Motion
    from vfm3d.world.generate import generate_dataset
    from vfm3d.world.preview import contact_sheet

    if args.clips < 1:
        raise ValueError(f"--clips must be >= 1, got {args.clips}")
    if args.frames < 1:
        raise ValueError(f"--frames must be >= 1, got {args.frames}")
    if args.height < 8 or args.width < 8:
        raise ValueError(f"--height and --width must be >= 8, got {args.height}x{args.width}")
    if args.seed < 0:
        raise ValueError(f"--seed must be >= 0, got {args.seed}")
    if not args.deg_per_frame >= 0 or not args.m_per_frame >= 0:
        raise ValueError(
            f"--deg-per-frame and --m-per-frame must be >= 0, got {args.deg_per_frame}, "
            f"{args.m_per_frame}"
        )
    motion = Motion(deg_per_frame=args.deg_per_frame, m_per_frame=args.m_per_frame)
    folder = generate_dataset(
        args.out,
        args.kind,
        args.clips,
        args.frames,
        args.height,
        args.width,
        args.seed,
        overwrite=args.overwrite,
        progress=True,
        motion=motion,
    )
    print(f"wrote {len(folder)} clips to {folder.root}")
    if args.preview:
        clips = [folder[i] for i in range(min(len(folder), 6))]
        path = contact_sheet(clips, folder.root / "preview.png")
        print(f"preview: {path}")
    return 0
