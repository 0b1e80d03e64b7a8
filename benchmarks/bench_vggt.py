"""VGGT architecture: VGGT-1B structure check and CPU timings of a small config.

Measures (one torch thread on CPU unless ``--device``):

(a) building VGGT-1B on the meta device (no memory) and its parameter count;
(b) a small VGGT (width 128, 4 block pairs, DINOv2 embedder of 2 blocks) on ``--frames`` frames
    of ``--size`` pixels: the full model (camera + depth + point heads), the aggregator alone
    (what the ``vggt`` backbone runs) and one layer extracted with early exit;
(c) pseudo ground truth of one clip of that size (`predict_pseudo_gt`, all frames at once).

Times are medians over ``--repeats`` runs after one warm-up.

    python benchmarks/bench_vggt.py [--frames 4] [--size 112] [--repeats 3]

Writes ``benchmarks/results/vggt.json`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vfm3d.backbones.vggt import VGGTBackbone
from vfm3d.clip import Clip
from vfm3d.data.pseudo_gt import predict_pseudo_gt
from vfm3d.features.extract import extract
from vfm3d.models.vggt import VGGT, VGGTConfig
from vfm3d.utils.atomic import atomic_write_json

SMALL = dict(
    img_size=112,
    embed_dim=128,
    depth=4,
    num_heads=4,
    num_register_tokens=4,
    patch_embed_depth=2,
    patch_embed_num_heads=4,
    intermediate_layer_idx=(0, 1, 2, 3),
    dpt_features=64,
    dpt_out_channels=(32, 64, 128, 128),
    camera_trunk_depth=2,
    camera_num_heads=4,
    enable_track=False,
)


def median_seconds(fn: Callable[[], Any], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--size", type=int, default=112, help="square frame size (multiple of 14)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "vggt.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    device = torch.device(args.device)

    start = time.perf_counter()
    with torch.device("meta"):
        big = VGGT()
    meta_build_s = time.perf_counter() - start
    params_1b = sum(p.numel() for p in big.parameters())
    tensors_1b = len(big.state_dict())
    del big

    model = VGGT.random(VGGTConfig(**SMALL), seed=0).to(device).eval()
    backbone = VGGTBackbone(model.aggregator).eval()
    images = torch.rand((1, args.frames, 3, args.size, args.size), device=device)
    with torch.no_grad():
        full_s = median_seconds(lambda: model(images), args.repeats)
        aggregator_s = median_seconds(
            lambda: model.aggregator(images, keep_layers=()), args.repeats
        )
    first_layer_s = median_seconds(lambda: extract(backbone, images, [0]), args.repeats)
    rng = np.random.default_rng(0)
    clip = Clip(
        frames=rng.integers(0, 256, (args.frames, args.size, args.size, 3), dtype=np.uint8),
        intrinsics=np.repeat(np.eye(3, dtype=np.float32)[None], args.frames, 0),
        cam_to_world=np.repeat(np.eye(4)[None], args.frames, 0),
        meta={"id": "bench"},
    )
    pseudo_s = median_seconds(lambda: predict_pseudo_gt(model, clip), args.repeats)

    result = {
        "benchmark": "vggt",
        "device": str(device),
        "torch": torch.__version__,
        "machine": platform.machine(),
        "threads": torch.get_num_threads(),
        "vggt_1b": {
            "meta_build_s": round(meta_build_s, 3),
            "parameters": params_1b,
            "state_dict_tensors": tensors_1b,
        },
        "small_config": SMALL | {"params": sum(p.numel() for p in model.parameters())},
        "input": {"frames": args.frames, "size": args.size},
        "seconds": {
            "full_model_forward": round(full_s, 4),
            "aggregator_forward": round(aggregator_s, 4),
            "extract_layer0_early_exit": round(first_layer_s, 4),
            "pseudo_gt_one_clip": round(pseudo_s, 4),
        },
        "ratios": {
            "aggregator_over_full": round(aggregator_s / full_s, 3),
            "layer0_early_exit_over_aggregator": round(first_layer_s / aggregator_s, 3),
        },
    }
    atomic_write_json(args.out, result)
    print(result)


if __name__ == "__main__":
    main()
