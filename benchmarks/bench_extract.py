"""Extraction overhead: hooks, multi-layer capture and early exit vs a bare forward.

Measures, on one clip (default: 17 frames at 128x128) and a tiny-but-not-trivial backbone
(default: Wan2.1 architecture, 8 blocks of width 256, random init):

(a) one (last) layer extracted vs a bare forward           target <= 1.05x
(b) all layers in one pass vs one (last) layer              target <= 1.10x
(c) early exit at a quarter of the depth vs the full forward target <= 0.35x

Each ratio is given for the block stack alone (``run`` on a prepared input, which is what hooks
and early exit change; the targets apply to it) and end to end (``prepare`` = VAE encode + noise
included, which early exit cannot shorten). Variants alternate within each repeat; ratios are
medians of per-repeat ratios, times medians, after one warm-up; one torch thread on CPU.

    python benchmarks/bench_extract.py [--backbone wan2.1|random|NAME] [--device cuda --dtype bfloat16]

Writes ``benchmarks/results/extract.json`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from vfm3d.backbones.base import Backbone
from vfm3d.features.extract import (
    _make_generator,
    bare_forward,
    capture_layers,
    extract,
    quarter_layer,
)
from vfm3d.utils.atomic import atomic_write_json

TARGETS = {"a_one_layer_vs_bare": 1.05, "b_all_layers_vs_one": 1.10, "c_quarter_vs_full": 0.35}


def build_backbone(name: str, device: str, dtype: torch.dtype, size: str) -> Backbone:
    """The benchmark model: Wan 8 x 256 ('small') or the real 1.3B config ('1.3b'); else tiny."""
    if name == "wan2.1":
        from vfm3d.backbones import wan

        if size == "1.3b":
            return wan.build_random(wan.wan21_1_3b_config(), device=device, dtype=dtype)
        transformer, vae = wan.tiny_configs()
        transformer.update(
            num_attention_heads=4,
            attention_head_dim=64,
            in_channels=16,
            out_channels=16,
            text_dim=256,
            freq_dim=256,
            ffn_dim=1024,
            num_layers=8,
            rope_max_seq_len=1024,
        )
        vae.update(z_dim=16, latents_mean=[0.0] * 16, latents_std=[1.0] * 16)
        return wan.build_random(transformer, vae, device=device, dtype=dtype, prompt_tokens=32)
    if name == "random":
        from vfm3d.backbones.baselines import build

        return build("random", device=device, dtype=dtype, patch=16, width=256, num_layers=8)
    from vfm3d.backbones import load

    return load(name, tiny=True, device=device, dtype=dtype)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved_times(
    variants: dict[str, Callable[[], Any]], repeats: int, device: torch.device
) -> dict[str, list[float]]:
    """Seconds per run of each variant; the variants alternate (rotated order) within each
    repeat so that load from other processes hits them alike. One warm-up each."""
    names = list(variants)
    for name in names:
        variants[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            _sync(device)
            start = time.perf_counter()
            variants[name]()
            _sync(device)
            times[name].append(time.perf_counter() - start)
    return times


def summarise(times: dict[str, list[float]], bare: str) -> tuple[dict, dict]:
    """Median seconds per variant and median over repeats of the per-repeat ratios."""
    medians = {k: statistics.median(v) for k, v in times.items()}
    pairs = {
        "a_one_layer_vs_bare": ("one_layer_last", bare),
        "b_all_layers_vs_one": ("all_layers", "one_layer_last"),
        "c_quarter_vs_full": ("quarter_layer", bare),
    }
    ratios = {
        name: statistics.median(x / y for x, y in zip(times[num], times[den]))
        for name, (num, den) in pairs.items()
    }
    return medians, ratios


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="wan2.1")
    parser.add_argument("--size", default="small", choices=["small", "1.3b"])
    parser.add_argument("--frames", type=int, default=17)
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--timestep", type=int, default=749)
    parser.add_argument("--repeats", type=int, default=7, help="repeats of the block-stack timings")
    parser.add_argument("--repeats-end-to-end", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "extract.json"))
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    backbone = build_backbone(args.backbone, args.device, getattr(torch, args.dtype), args.size)
    backbone = backbone.eval().requires_grad_(False)
    frames = torch.rand(
        (1, args.frames, 3, args.height, args.width), generator=torch.Generator().manual_seed(0)
    ).to(device)
    t, h, w = backbone.rules.largest_valid_frames(args.frames), args.height, args.width
    frames = frames[:, :t]
    backbone.rules.check(t, h, w)
    ts = [args.timestep] if backbone.is_diffusion else None
    n = backbone.num_layers
    last, quarter = n - 1, quarter_layer(backbone)
    with torch.no_grad():
        prepared = backbone.prepare(frames, ts, _make_generator(0, device))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def run_bare() -> Any:
        with torch.no_grad():
            return backbone.run(prepared)

    blocks = interleaved_times(
        {
            "bare_run": run_bare,
            "one_layer_last": lambda: capture_layers(backbone, prepared, [last]),
            "all_layers": lambda: capture_layers(backbone, prepared, list(range(n))),
            "quarter_layer": lambda: capture_layers(backbone, prepared, [quarter]),
        },
        args.repeats,
        device,
    )
    end_to_end = interleaved_times(
        {
            "bare_forward": lambda: bare_forward(backbone, frames, ts),
            "one_layer_last": lambda: extract(backbone, frames, [last], ts),
            "all_layers": lambda: extract(backbone, frames, list(range(n)), ts),
            "quarter_layer": lambda: extract(backbone, frames, [quarter], ts),
        },
        args.repeats_end_to_end,
        device,
    )
    block_seconds, block_ratios = summarise(blocks, "bare_run")
    e2e_seconds, e2e_ratios = summarise(end_to_end, "bare_forward")
    result = {
        "benchmark": "extract",
        "backbone": backbone.name,
        "size": args.size if args.backbone == "wan2.1" else "tiny",
        "describe": backbone.describe(),
        "parameters": sum(p.numel() for p in backbone.parameters()),
        "input": {"frames": t, "height": h, "width": w, "timesteps": ts},
        "feature_shape": list(prepared.feature_shape),
        "quarter_layer": quarter,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or platform.machine(),
        "dtype": args.dtype,
        "threads": args.threads,
        "repeats": args.repeats,
        "torch": torch.__version__,
        "seconds_blocks_only": block_seconds,
        "seconds_end_to_end": e2e_seconds,
        "ratios_blocks_only": block_ratios,
        "ratios_end_to_end": e2e_ratios,
        "targets": TARGETS,
        "meets_targets_blocks_only": {k: (v <= TARGETS[k]) for k, v in block_ratios.items()},
    }
    if device.type == "cuda":
        result["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    out = Path(args.out)
    atomic_write_json(out, result)
    print(
        json.dumps(
            {
                k: result[k]
                for k in ("seconds_blocks_only", "ratios_blocks_only", "ratios_end_to_end")
            },
            indent=2,
        )
    )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
