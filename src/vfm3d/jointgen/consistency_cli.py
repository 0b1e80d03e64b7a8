"""`vfm3d consistency INPUT...`: the MEt3R-style 3D-consistency score of videos.

Examples::

    vfm3d consistency generated/*.mp4                      # zoo/vggt-mini + zoo/dinov2-mini
    vfm3d consistency data/world --geometry gt --json      # clips with depth and cameras
    vfm3d consistency my.mp4 --geometry /models/VGGT-1B --features /models/dinov2-large \\
        --size 294x518 --device cuda

Per consecutive frame pair: geometry from a 3D expert (or ``gt``), dense features, both frames'
feature clouds rendered into the first camera with a soft z-buffered splat, score = mean
``1 - cosine`` over pixels both renders cover; a video's score = mean over its pairs (lower is
more consistent). See `vfm3d.jointgen.consistency` and docs/jointgen.md.

``--json`` prints ``{"videos": [{"path", "id", "score", "pairs": [{"frames", "score",
"overlap", "coverage_1", "coverage_2", "flag"}, ...], ...}], "settings": {...}}``; otherwise a
table. Pairs sharing less than ``--min-overlap`` of the image are flagged (score null) and left
out of the mean; a video with no scored pair has score null and the command exits with 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from vfm3d.data.transforms import hw_argument


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from vfm3d.data.inputs import add_input_arguments
    from vfm3d.jointgen.consistency import DEFAULT_FEATURES, DEFAULT_GEOMETRY, DEFAULT_SHIFTS

    parser.add_argument(
        "inputs", nargs="+", help="video files, image folders, clip folders or clip files"
    )
    parser.add_argument(
        "--geometry",
        default=DEFAULT_GEOMETRY,
        help=f"3D expert: {DEFAULT_GEOMETRY} (default) or a local VGGT folder; or 'gt' for the "
        "clips' own depth and cameras",
    )
    parser.add_argument(
        "--features",
        default=DEFAULT_FEATURES,
        help=f"image backbone for dense features: {DEFAULT_FEATURES} (default) or a local "
        "DINOv2 folder",
    )
    parser.add_argument(
        "--feature-layer", type=int, default=None, help="backbone block (default: the last)"
    )
    parser.add_argument(
        "--feature-shifts",
        type=int,
        default=DEFAULT_SHIFTS,
        help=f"sub-patch shifts per axis averaged into the features (default {DEFAULT_SHIFTS}; "
        "1 = plain bilinear upsampling)",
    )
    parser.add_argument(
        "--render-size",
        type=hw_argument,
        default=None,
        metavar="HxW",
        help="working size of geometry, features and renders (default: the 3D expert's input "
        "size; with --geometry gt the clip's size)",
    )
    parser.add_argument(
        "--radius", type=float, default=None, help="splat radius in pixels (default: MEt3R's)"
    )
    parser.add_argument(
        "--points-per-pixel", type=int, default=10, help="points blended per pixel (default 10)"
    )
    parser.add_argument(
        "--min-overlap",
        type=float,
        default=None,
        help="flag pairs whose renders share less than this fraction of the image (default 0.01)",
    )
    parser.add_argument(
        "--expert-window",
        type=int,
        default=None,
        help="frames per 3D-expert forward (default 9; 2 = each pair alone, as MEt3R)",
    )
    parser.add_argument(
        "--batch", type=int, default=16, help="pairs per forward with --expert-window 2"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    add_input_arguments(parser)


def main(args: argparse.Namespace) -> int:
    import torch

    from vfm3d.data.inputs import input_options, open_clips
    from vfm3d.jointgen.consistency import ConsistencyScorer, load_features, load_geometry
    from vfm3d.metrics.consistency import MIN_OVERLAP

    if args.threads:
        torch.set_num_threads(args.threads)
    options = input_options(args)
    sources = [(path, open_clips(path, **options)) for path in args.inputs]  # fail early
    geometry = load_geometry(
        args.geometry, device=args.device, batch=args.batch, window=args.expert_window
    )
    with _quiet_loading(args.quiet):
        features = load_features(
            args.features, device=args.device, layer=args.feature_layer, shifts=args.feature_shifts
        )
    min_overlap = MIN_OVERLAP if args.min_overlap is None else args.min_overlap
    scorer = ConsistencyScorer(
        geometry,
        features,
        size=args.render_size,
        radius=args.radius,
        points_per_pixel=args.points_per_pixel,
        min_overlap=min_overlap,
        progress=not args.quiet,
    )
    if args.geometry == "gt":
        for path, source in sources:
            if hasattr(source, "iter_windows"):  # a video or an image folder
                raise ValueError(
                    f"{path}: --geometry gt needs clips with depth and true cameras (a vfm3d "
                    "clip folder or .safetensors clip); a video or image folder has none: use a "
                    "3D expert (the default --geometry zoo/vggt-mini)"
                )
    results, labels = [], []
    for path, source in sources:
        for clip_id in source.ids:
            results.append(scorer.score_clip(source.load(clip_id), path=path))
            labels.append(str(path) if len(source) == 1 else f"{path}:{clip_id}")
    settings: dict[str, Any] = {
        "geometry": geometry.name,
        "expert_window": getattr(geometry, "window", None),
        "features": features.name,
        "feature_layer": features.layer,
        "feature_shifts": features.shifts,
        "radius_px": args.radius,
        "points_per_pixel": args.points_per_pixel,
        "min_overlap": min_overlap,
    }
    if args.json:
        print(json.dumps({"videos": [r.to_dict() for r in results], "settings": settings}))
    else:
        print(_table(results, labels))
    empty = [r for r in results if r.score is None]
    for r in empty:
        print(
            f"vfm3d consistency: {r.path} ({r.clip_id}): no frame pair shares a view "
            f"(all {len(r.pairs)} flagged); no score",
            file=sys.stderr,
        )
    return 1 if empty else 0


def _quiet_loading(quiet: bool) -> Any:
    """A context in which transformers shows no weight-loading bar (when ``quiet``)."""
    import contextlib

    if not quiet:
        return contextlib.nullcontext()

    @contextlib.contextmanager
    def silenced() -> Any:
        from transformers.utils import logging

        was_enabled = logging.is_progress_bar_enabled()
        logging.disable_progress_bar()
        try:
            yield
        finally:
            if was_enabled:
                logging.enable_progress_bar()

    return silenced()


def _table(results: list[Any], labels: list[str]) -> str:
    """One row per video: score, pairs scored / flagged, worst pair, size, time per pair."""
    header = ["video", "score", "pairs", "flagged", "worst pair", "size", "s/pair"]
    rows = []
    for r, name in zip(results, labels, strict=True):
        scored = [(p.score, k) for k, p in enumerate(r.pairs) if p.score is not None]
        worst = max(scored) if scored else None
        rows.append(
            [
                name,
                "-" if r.score is None else f"{r.score:.4f}",
                str(len(r.pairs)),
                str(r.flagged),
                "-" if worst is None else f"{worst[1]}-{worst[1] + 1} ({worst[0]:.4f})",
                f"{r.size[0]}x{r.size[1]}",
                f"{r.seconds / max(1, len(r.pairs)):.3f}",
            ]
        )
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    lines.append(
        "score: mean(1 - cosine) of rendered features over shared pixels; lower is more "
        "3D-consistent"
    )
    return "\n".join(lines)
