"""Validation and speed of the 3D-consistency score (`vfm3d consistency`, docs/jointgen.md).

On static world clips (``object`` and ``scene`` kinds, 9 frames at 64x64, seeds 0..N-1) it
measures, with the command's defaults (features ``zoo/dinov2-mini``, 2 sub-patch shifts, the
soft splat at MEt3R's radius floored at 1 px, 10 points per pixel):

1. clean clips: ``--geometry gt`` (at 64x64) and the default 3D expert ``zoo/vggt-mini`` (at
   its 32x32 input size) on windows of 9 frames and on pairs alone (``--expert-window 2``,
   MEt3R's protocol); ``dynamic`` clips with ``gt`` (moving objects are inconsistent by
   design); and features of another clip (the "unrelated" level);
2. the three injected inconsistencies of `vfm3d.jointgen.consistency.corrupt` (a changing
   region, per-frame non-rigid warps, frames of another clip spliced in) at strengths
   0, 0.25, 0.5, 0.75, 1 with both geometries: mean and spread over clips, whether the mean
   rises monotonically, and the share of clips whose own curve does;
3. speed: frame pairs per second on 64x64 video (features + geometry + rendering, models
   loaded, best of 3), one and two torch threads.

    python benchmarks/bench_consistency.py [--clips 8] [--out benchmarks/results/consistency.json]
        [--plot docs/img/jointgen_consistency_curves.png]
        [--maps docs/img/jointgen_consistency_maps.png]

About two minutes on one CPU thread at the defaults.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vfm3d.jointgen.consistency import (
    CORRUPTIONS,
    ConsistencyScorer,
    corrupt,
    load_features,
    load_geometry,
)
from vfm3d.world import render_clip

STRENGTHS = (0.0, 0.25, 0.5, 0.75, 1.0)
SIZE = 64
FRAMES = 9


def world_clips(count: int, kinds: tuple[str, ...] = ("object", "scene")) -> list[Any]:
    """``count`` clips alternating over ``kinds``, seeds 0.."""
    return [
        render_clip(kinds[i % len(kinds)], seed=i, frames=FRAMES, height=SIZE, width=SIZE)
        for i in range(count)
    ]


def others_for(clips: list[Any]) -> list[Any]:
    """For clip i, an unrelated clip of the other kind (seed 1000 + i) to splice in."""
    kinds = {"object": "scene", "scene": "object"}
    return [
        render_clip(
            kinds.get(c.meta["kind"], "scene"),
            seed=1000 + i,
            frames=FRAMES,
            height=SIZE,
            width=SIZE,
        )
        for i, c in enumerate(clips)
    ]


def summary(values: list[float | None]) -> dict[str, Any]:
    got = [v for v in values if v is not None]
    return {
        "mean": statistics.fmean(got) if got else None,
        "std": statistics.pstdev(got) if len(got) > 1 else 0.0,
        "min": min(got) if got else None,
        "max": max(got) if got else None,
        "unscored": len(values) - len(got),
        "per_clip": values,
    }


def scores(scorer: ConsistencyScorer, clips: list[Any]) -> list[float | None]:
    return [scorer.score_clip(c).score for c in clips]


def curves(scorer: ConsistencyScorer, clips: list[Any], others: list[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind in CORRUPTIONS:
        rows = []
        for strength in STRENGTHS:
            corrupted = [
                corrupt(c, kind, strength, seed=i, other=o)
                for i, (c, o) in enumerate(zip(clips, others, strict=True))
            ]
            rows.append(summary(scores(scorer, corrupted)))
        means = [r["mean"] for r in rows]
        per_clip = np.array([[np.nan if v is None else v for v in r["per_clip"]] for r in rows])
        out[kind] = {
            "strengths": list(STRENGTHS),
            "rows": rows,
            "mean_monotonic": bool(all(b > a for a, b in itertools.pairwise(means))),
            "clips_monotonic": float(np.mean(np.all(np.diff(per_clip, axis=0) > 0, axis=0))),
        }
    return out


def speed(features: Any, threads: int, pairs: int = 32) -> dict[str, float]:
    """Pairs per second on a 33-frame 64x64 clip (models loaded, one warm-up, best of 3): gt
    geometry at 64x64, the default expert at its 32x32 input and at 64x64."""
    torch.set_num_threads(threads)
    clip = render_clip("scene", seed=7, frames=pairs + 1, height=SIZE, width=SIZE)
    out = {}
    for name, spec in (("gt", "gt"), ("vggt_mini", "zoo/vggt-mini")):
        scorer = ConsistencyScorer(load_geometry(spec), features, progress=False)
        scorer.score_clip(clip)
        times = []
        for _ in range(3):
            start = time.perf_counter()
            scorer.score_clip(clip)
            times.append(time.perf_counter() - start)
        out[f"{name}_pairs_per_s"] = pairs / min(times)
    # the expert at 64x64 input too (off its 32x32 training size; the speed target)
    scorer = ConsistencyScorer(
        load_geometry("zoo/vggt-mini"), features, size=(SIZE, SIZE), progress=False
    )
    scorer.score_clip(clip)
    times = []
    for _ in range(3):
        start = time.perf_counter()
        scorer.score_clip(clip)
        times.append(time.perf_counter() - start)
    out["vggt_mini_at_64_pairs_per_s"] = pairs / min(times)
    return out


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    titles = {
        "region": "(a) region changing between frames",
        "warp": "(b) per-frame non-rigid warps",
        "splice": "(c) frames of another clip spliced in",
    }
    for ax, kind in zip(axes, CORRUPTIONS, strict=True):
        for geometry, style in (("gt", "o-"), ("vggt_mini", "s--")):
            data = result["curves"][geometry][kind]
            means = np.array([r["mean"] for r in data["rows"]], dtype=float)
            stds = np.array([r["std"] for r in data["rows"]], dtype=float)
            ax.errorbar(data["strengths"], means, yerr=stds, fmt=style, capsize=3, label=geometry)
        ax.set_title(titles[kind], fontsize=10)
        ax.set_xlabel("strength")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("score: mean(1 - cos)  (lower = more consistent)")
    axes[0].legend(title="geometry")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def maps(features: Any, clip: Any, other: Any, path: Path, pair: int = 3) -> None:
    """Frames ``pair``, ``pair + 1`` and the per-pixel ``1 - cos`` of the two renders in camera
    ``pair`` (gt geometry) for the clean clip and each corruption at strength 1."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from vfm3d.geometry.splat import soft_splat
    from vfm3d.jointgen.consistency import GroundTruthGeometry

    rows = [("clean", clip)] + [
        (kind, corrupt(clip, kind, 1.0, seed=0, other=other)) for kind in CORRUPTIONS
    ]
    fig, axes = plt.subplots(len(rows), 3, figsize=(6.6, 2.2 * len(rows)))
    for (name, video), ax in zip(rows, axes, strict=True):
        feats = features(video.frames[pair : pair + 2]).double()
        geo = GroundTruthGeometry().pairs(video, [pair])[0]
        hw = (video.height, video.width)
        renders = [
            soft_splat(p, f, v, geo.world_to_cam_1, geo.intrinsics_1, hw)
            for p, f, v in (
                (geo.points_world_1, feats[0], geo.valid_1),
                (geo.points_world_2, feats[1], geo.valid_2),
            )
        ]
        both = renders[0].covered & renders[1].covered
        a, b = (r.features / r.alpha.clamp_min(1e-300)[..., None] for r in renders)
        cos = torch.nn.functional.cosine_similarity(a, b, dim=-1)
        dissim = torch.where(both, 1 - cos, torch.full_like(cos, float("nan")))
        ax[0].imshow(video.frames[pair])
        ax[1].imshow(video.frames[pair + 1])
        shown = ax[2].imshow(dissim.numpy(), cmap="magma", vmin=0, vmax=1.5)
        ax[0].set_ylabel(name)
        ax[2].set_title(f"mean {float(dissim[both].mean()):.3f}", fontsize=9)
        for a_ in ax:
            a_.set_xticks([])
            a_.set_yticks([])
    axes[0][0].set_title(f"frame {pair}", fontsize=9)
    axes[0][1].set_title(f"frame {pair + 1}", fontsize=9)
    fig.colorbar(shown, ax=axes[:, 2], shrink=0.6, label="1 - cos in camera of frame i")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--out", default="benchmarks/results/consistency.json")
    parser.add_argument("--plot", default="docs/img/jointgen_consistency_curves.png")
    parser.add_argument("--maps", default="docs/img/jointgen_consistency_maps.png")
    parser.add_argument("--no-speed", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    start = time.perf_counter()
    clips = world_clips(args.clips)
    others = others_for(clips)
    features = load_features()
    gt = ConsistencyScorer(load_geometry("gt"), features, progress=False)
    expert = ConsistencyScorer(load_geometry("zoo/vggt-mini"), features, progress=False)
    pairs_alone = ConsistencyScorer(
        load_geometry("zoo/vggt-mini", window=2), features, progress=False
    )
    plain = ConsistencyScorer(load_geometry("gt"), load_features(shifts=1), progress=False)
    dynamic = world_clips(args.clips, kinds=("dynamic",))
    splice_all = [
        corrupt(c, "splice", 1.0, seed=i, other=o)
        for i, (c, o) in enumerate(zip(clips, others, strict=True))
    ]
    clean = {
        "gt": summary(scores(gt, clips)),
        "gt_plain_features": summary(scores(plain, clips)),
        "vggt_mini_window9": summary(scores(expert, clips)),
        "vggt_mini_pairs_alone": summary(scores(pairs_alone, clips)),
        "gt_dynamic_clips": summary(scores(gt, dynamic)),
        "gt_every_other_frame_foreign": summary(scores(gt, splice_all)),
    }
    result: dict[str, Any] = {
        "benchmark": "consistency",
        "clips": {
            "count": args.clips,
            "kinds": ["object", "scene"],
            "frames": FRAMES,
            "size": [SIZE, SIZE],
            "seeds": list(range(args.clips)),
        },
        "settings": {
            "features": "zoo/dinov2-mini, last block + final LayerNorm, 2 sub-patch shifts",
            "gt_size": [SIZE, SIZE],
            "expert": "zoo/vggt-mini, windows of 9 frames, input 32x32",
            "radius_px": "max(1, 0.005 min(H, W)) = 1",
            "points_per_pixel": 10,
            "min_overlap": 0.01,
        },
        "clean": clean,
        "curves": {"gt": curves(gt, clips, others), "vggt_mini": curves(expert, clips, others)},
    }
    result["validation_seconds"] = time.perf_counter() - start
    if not args.no_speed:
        result["speed_64x64"] = {f"threads_{n}": speed(features, n) for n in (1, 2)}
    result["machine"] = {
        "load_average_1_5_15_min": list(os.getloadavg()),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    if args.plot:
        plot(result, Path(args.plot))
    if args.maps:
        maps(features, clips[1], others[1], Path(args.maps))
    for name, row in clean.items():
        print(f"{name:32s} {row['mean']:.4f} +- {row['std']:.4f}")
    for geometry, by_kind in result["curves"].items():
        for kind, data in by_kind.items():
            means = " ".join(f"{r['mean']:.4f}" for r in data["rows"])
            print(
                f"{geometry:10s} {kind:7s} {means}  monotonic={data['mean_monotonic']} "
                f"clips={data['clips_monotonic']:.2f}"
            )
    print(json.dumps(result.get("speed_64x64", {})))
    print(f"-> {out} ({result['validation_seconds']:.0f} s validation)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
