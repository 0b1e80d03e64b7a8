"""Probe training step, measured whole, side by side with VidFM3D's probe (the paper's code).

Two configurations, each in fp32 and under CPU bf16 autocast (the paper trains bf16-mixed):

- ``vidfm3d-small``: C=384, D=256, 8 heads, 8x8 grid, DPT 64 features, stages
  (64, 128, 256, 256), camera trunk 4, output 112 x 112 (24.07 M parameters);
- ``paper``: C=1536, D=1024, 16 heads, 30x52 grid, 294 x 518 output (383.86 M parameters).

A step is batch 1, 4 frames: ``zero_grad`` (first, so the last step's gradients are freed
before the forward, as in the reference harness), forward, loss, backward and ``AdamW.step``,
median of ``--iters`` after warm-up, each configuration and precision in its own process (so
the process's peak RSS is its own). vfm3d's side is this file's ``--worker`` mode; VidFM3D's side
(``--reference SRC``, an exported VidFM3D tree) runs through ``../shared/tools/
time_vidfm3d_probe.py`` (the reference's own code and loss, its activation checkpointing on),
with ``PYTHONPATH`` holding its pure-Python dependencies (``--reference-deps``). The FLOPs of a
step come from ``torch.utils.flop_counter`` (forward + backward, vfm3d's side; torch 2.13 has no
formula for the CPU flash-attention kernels, so `count_cpu_attention` registers them, and the
attention share is reported as ``attention_gflop``); achieved GFLOP/s
is set against the machine's matmul roofline measured in the same run (2048^3 fp32 and bf16
``mm``), so a number taken under load can be read against the load.

Each pair runs under the ``--settings`` of `SETTINGS`: ``shipped`` (each side out of the box:
vfm3d's ProbeModel tunes glibc's allocator, its trainer's AdamW is fused), ``yardstick`` (as the
shared ``probe_side_by_side.py``: torch's default AdamW on vfm3d's side too), and two equalised
ones, ``default`` and ``tuned`` (the same allocator and the same AdamW on both sides), so the
part of a ratio that comes from the allocator and the optimizer can be read off.
``--checkpoint-trunk default|on|off`` sets vfm3d's trunk checkpointing (default: ProbeConfig's,
on, as the reference's; the shared yardstick runs vfm3d with it off).

    python benchmarks/bench_probe.py [--configs vidfm3d-small paper] [--precisions fp32 bf16]
        [--settings shipped yardstick default tuned]
        [--reference /tmp/vidfm3d_src --reference-deps /tmp/vidfm3d_deps] [--threads 2]
        [--repeats 3] [--checkpoint-trunk default|on|off]

Writes ``benchmarks/results/probe.json`` (or ``--out``); ``ratio`` = reference_s / vfm3d_s.
torch.compile is not used: on these 2 cores compiling the probe's training step took ~9 minutes
and the compiled step was slower (measured 2026-12-01).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

CONFIGS: dict[str, dict[str, Any]] = {
    "vidfm3d-small": {
        "probe": dict(
            embed_dim=256,
            num_heads=8,
            depth=4,
            camera_trunk_depth=4,
            camera_iters=4,
            dpt_features=64,
            dpt_out_channels=(64, 128, 256, 256),
            output_size=(112, 112),
        ),
        "channels": 384,
        "grid": (8, 8),
        "out": (112, 112),
        "reference_config": "small",
        "warmup": 2,
    },
    "paper": {
        "probe": {},
        "channels": 1536,
        "grid": (30, 52),
        "out": (294, 518),
        "reference_config": "paper",
        "warmup": 1,
    },
}
TOOLS = Path(__file__).resolve().parents[2] / "shared" / "tools"


def fake_batch(grid: tuple[int, int], channels: int, out: tuple[int, int]) -> dict:
    """The yardstick's batch: 1 sample, 4 frames, random features and targets."""
    import torch

    gen = torch.Generator().manual_seed(0)
    h, w = out
    points = torch.randn(1, 4, h, w, 3, generator=gen) + torch.tensor([0.0, 0.0, 3.0])
    return {
        "features": torch.randn(1, 4, *grid, channels, generator=gen),
        "points": points,
        "depth": points[..., 2].clamp_min(0.1),
        "valid": torch.ones(1, 4, h, w, dtype=torch.bool),
        "conf": torch.ones(1, 4, h, w),
        "pose_enc": torch.randn(1, 4, 9, generator=gen),
    }


def count_cpu_attention() -> None:
    """Teach ``FlopCounterMode`` torch's CPU flash-attention kernels (forward and backward).

    torch's flop counter knows the CUDA SDPA kernels only; on CPU
    ``scaled_dot_product_attention`` dispatches to ``_scaled_dot_product_flash_attention_for_cpu``
    and its backward, whose FLOPs were silently left out (at the paper's size ~3.2 of ~15.9
    TFLOP per step). The counts are torch's own SDPA formulas (``sdpa_flop_count``: two
    ``[L, E] x [E, S]``-sized products forward; ``sdpa_backward_flop_count``: five backward,
    the score matrix recomputed). Idempotent.
    """
    import torch
    from torch.utils import flop_counter as fc

    aten = torch.ops.aten
    forward = aten._scaled_dot_product_flash_attention_for_cpu
    backward = aten._scaled_dot_product_flash_attention_for_cpu_backward
    if forward not in fc.flop_registry:

        @fc.register_flop_formula(forward)
        def _forward(q_shape, k_shape, v_shape, *args, out_shape=None, **kwargs) -> int:
            return fc.sdpa_flop_count(q_shape, k_shape, v_shape)

    if backward not in fc.flop_registry:

        @fc.register_flop_formula(backward)
        def _backward(grad_shape, q_shape, k_shape, v_shape, *args, out_shape=None, **kwargs):
            return fc.sdpa_backward_flop_count(grad_shape, q_shape, k_shape, v_shape)


def worker(
    name: str,
    precision: str,
    iters: int,
    threads: int,
    flops: bool,
    checkpoint: bool | None = None,
    optimizer: str = "reference",
) -> dict[str, Any]:
    """One process: vfm3d's step at configuration ``name`` in ``precision`` (``checkpoint``:
    activation checkpointing of the trunk, None = `ProbeConfig`'s default, which is on, as the
    reference runs; ``optimizer``: "reference" =
    torch's default AdamW as the reference harness builds it, "trainer" = vfm3d's trainer's,
    `vfm3d.utils.optim.adamw`, fused)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from vfm3d.probe import ProbeConfig, ProbeModel
    from vfm3d.probe.losses import probe_loss

    torch.set_num_threads(threads)
    spec = CONFIGS[name]
    extra = {} if checkpoint is None else {"checkpoint_trunk": checkpoint}
    cfg = ProbeConfig(**spec["probe"], **extra)
    torch.manual_seed(0)
    model = ProbeModel(cfg, spec["channels"])
    if optimizer == "trainer":
        from vfm3d.utils.optim import adamw

        opt = adamw(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.05)
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.05)
    batch = fake_batch(spec["grid"], spec["channels"], spec["out"])
    bf16 = precision == "bf16"

    def loss_of() -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            pred = model(batch["features"], spec["out"])
            return probe_loss(pred, batch, model.config)["loss"]

    def step() -> None:
        opt.zero_grad(set_to_none=True)  # first, as the reference harness and vfm3d's trainer do
        loss = loss_of()
        loss.backward()
        opt.step()

    for _ in range(spec["warmup"] if iters else 0):  # iters 0: count FLOPs only
        step()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    result: dict[str, Any] = {
        "step_s": statistics.median(times) if times else None,
        "step_s_all": [round(t, 4) for t in times],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3,
        "params_M": sum(p.numel() for p in model.parameters()) / 1e6,
        "checkpoint_trunk": cfg.checkpoint_trunk,
        "optimizer": optimizer,
        "adamw_fused": bool(opt.param_groups[0].get("fused")),
        "allocator_tuned_by_vfm3d": os.environ.get("VFM3D_TUNE_MALLOC", "1") != "0",
        "heads_layout": "channels_last"
        if model._heads_layout is torch.channels_last
        else "contiguous",
    }
    if flops:
        count_cpu_attention()
        counter = FlopCounterMode(display=False)
        with counter:
            loss_of().backward()
        result["step_gflop"] = counter.get_total_flops() / 1e9
        by_op = counter.get_flop_counts()["Global"]
        result["attention_gflop"] = (
            sum(v for op, v in by_op.items() if "attention" in str(op)) / 1e9
        )
    return result


def matmul_gflop_per_s(dtype_name: str, threads: int, n: int = 2048, repeats: int = 3) -> float:
    """The machine's matmul rate now (2 n^3 FLOPs per ``mm``), in ``dtype_name``."""
    import torch

    torch.set_num_threads(threads)
    dtype = torch.bfloat16 if dtype_name == "bf16" else torch.float32
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * n**3 / min(times) / 1e9


def run_json(cmd: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``cmd``; parse the last JSON object it prints."""
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode:
        raise RuntimeError(f"{' '.join(cmd[:3])} failed: {done.stderr[-1200:]}")
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    return json.loads(lines[-1])


def reference_step(
    src: str,
    deps: str | None,
    name: str,
    precision: str,
    iters: int,
    threads: int,
    extra_env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """VidFM3D's own training step through the shared yardstick harness."""
    harness = TOOLS / "time_vidfm3d_probe.py"
    if not harness.is_file():
        raise FileNotFoundError(f"reference harness not found: {harness}")
    spec = CONFIGS[name]
    env = dict(os.environ)
    if deps:
        env["PYTHONPATH"] = deps + (os.pathsep + env["PYTHONPATH"] if "PYTHONPATH" in env else "")
    env["PROBE_BF16"] = "1" if precision == "bf16" else "0"
    env.update(extra_env or {})
    cmd = [sys.executable, str(harness), src, "--config", spec["reference_config"]]
    cmd += ["--threads", str(threads), "--warmup", str(spec["warmup"]), "--iters", str(iters)]
    cmd += ["--eval-iters", "1", "--eval-warmup", "0"]  # the harness needs one eval forward
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode:
        raise RuntimeError(f"reference failed: {done.stderr[-1200:]}")
    full = json.loads(done.stdout[done.stdout.index("{") :])
    return {
        "step_s": full["train_step_seconds"],
        "step_s_all": full.get("train_step_seconds_all"),
        "peak_rss_mb": full["peak_rss_mb"],
        "params": full.get("params"),
        "constructor": full.get("constructor"),
        "loss": full.get("loss"),
    }


#: What each side runs with. ``env``: the environment of both sides' processes (glibc reads
#: ``MALLOC_*`` at start-up); ``optimizer``: vfm3d's side's AdamW (the reference always builds
#: torch's default one).
SETTINGS: dict[str, dict[str, Any]] = {
    "shipped": {
        "env": {},
        "optimizer": "trainer",
        "what": "each side as it runs out of the box: vfm3d tunes glibc's allocator when a "
        "ProbeModel is built (vfm3d.utils.allocator) and its trainer uses fused AdamW; the "
        "reference runs glibc's defaults and torch's default AdamW",
    },
    "yardstick": {
        "env": {},
        "optimizer": "reference",
        "what": "as ../shared/tools/probe_side_by_side.py: vfm3d's side builds torch's default "
        "AdamW itself (the allocator is still tuned by building the ProbeModel)",
    },
    "default": {
        "env": {"VFM3D_TUNE_MALLOC": "0"},
        "optimizer": "reference",
        "what": "equalised: glibc's defaults and torch's default AdamW on both sides",
    },
    "tuned": {
        "env": {
            "VFM3D_TUNE_MALLOC": "0",
            "MALLOC_MMAP_THRESHOLD_": str(32 << 20),
            "MALLOC_TRIM_THRESHOLD_": str(1 << 30),
        },
        "optimizer": "reference",
        "what": "equalised: both sides' mmap / trim thresholds at 32 MiB / 1 GiB (what vfm3d "
        "applies to itself) and torch's default AdamW",
    },
}


def _side_by_side(
    args: argparse.Namespace,
    name: str,
    precision: str,
    setting: str,
    iters: int,
    reference_first: bool = False,
) -> dict[str, Any]:
    """One configuration and precision: vfm3d's step, then the reference's (or the other way
    round), same environment."""
    extra = SETTINGS[setting]["env"]
    env = {**os.environ, **extra}
    cmd = [sys.executable, __file__, "--worker", name, precision, "--flops"]
    cmd += ["--optimizer", SETTINGS[setting]["optimizer"]]
    cmd += ["--checkpoint-trunk", args.checkpoint_trunk]
    ref = None
    if args.reference and reference_first:
        ref = reference_step(
            args.reference, args.reference_deps, name, precision, iters, args.threads, extra
        )
    ours = run_json([*cmd, "--threads", str(args.threads), "--iters", str(iters)], env=env)
    entry: dict[str, Any] = {"vfm3d": ours, "order": "reference first" if ref else "vfm3d first"}
    ours["gflop_per_s"] = ours["step_gflop"] / ours["step_s"]
    ours["fraction_of_matmul_roofline"] = ours["gflop_per_s"] / args.roofline[precision]
    if args.reference:
        if ref is None:
            ref = reference_step(
                args.reference, args.reference_deps, name, precision, iters, args.threads, extra
            )
        entry["reference"] = ref
        entry["ratio"] = ref["step_s"] / ours["step_s"]
        entry["memory_ratio"] = ours["peak_rss_mb"] / ref["peak_rss_mb"]
    return entry


def _repeated(
    args: argparse.Namespace, name: str, precision: str, setting: str, iters: int
) -> dict[str, Any]:
    """``args.repeats`` side-by-side pairs, alternating which side runs first (so a drift of the
    machine's speed during the run favours neither). The entry is the pair with the median
    ratio; ``repeats`` lists every pair's times and ratios, ``ratio_min`` / ``ratio_max`` their
    range (one pair: no range)."""
    pairs = [
        _side_by_side(args, name, precision, setting, iters, reference_first=bool(i % 2))
        for i in range(args.repeats)
    ]
    if "ratio" not in pairs[0]:
        return pairs[0]
    pairs.sort(key=lambda e: e["ratio"])
    entry = dict(pairs[(len(pairs) - 1) // 2])
    if len(pairs) > 1:
        entry["repeats"] = [
            {
                "order": e["order"],
                "vfm3d_s": e["vfm3d"]["step_s"],
                "reference_s": e["reference"]["step_s"],
                "ratio": e["ratio"],
                "memory_ratio": e["memory_ratio"],
            }
            for e in pairs
        ]
        entry["ratio_min"], entry["ratio_max"] = pairs[0]["ratio"], pairs[-1]["ratio"]
        entry["memory_ratio_max"] = max(e["memory_ratio"] for e in pairs)
    return entry


def recount(path: Path, threads: int) -> None:
    """Recount the FLOPs of every configuration in the results file ``path`` and rewrite the
    fields derived from them in place (step times and memory are kept as measured); for files
    written before `count_cpu_attention` existed, whose counts left attention out."""
    from vfm3d.utils.atomic import atomic_write_json

    result = json.loads(path.read_text())
    checkpoint = result.get("vfm3d_checkpoint_trunk", "default")
    if isinstance(checkpoint, bool):  # files written when the flag was a switch
        checkpoint = "on" if checkpoint else "off"
    counted: dict[str, dict[str, Any]] = {}
    for key, entry in result["runs"].items():
        name, precision = key.split("/")[:2]
        if name not in counted:
            cmd = [sys.executable, __file__, "--worker", name, "fp32", "--flops", "--iters", "0"]
            cmd += ["--threads", str(threads), "--checkpoint-trunk", checkpoint]
            counted[name] = run_json(cmd)
        ours = entry["vfm3d"]
        ours["step_gflop"] = counted[name]["step_gflop"]
        ours["attention_gflop"] = counted[name]["attention_gflop"]
        ours["gflop_per_s"] = ours["step_gflop"] / ours["step_s"]
        roofline = result["matmul_gflop_per_s_before"][precision]
        ours["fraction_of_matmul_roofline"] = ours["gflop_per_s"] / roofline
    result["flops_recounted"] = (
        "FLOPs recounted with the CPU attention kernels (count_cpu_attention)"
    )
    atomic_write_json(path, result)
    print(json.dumps({k: v["vfm3d"]["step_gflop"] for k, v in result["runs"].items()}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iters", type=int, default=None, help="timed steps (small 5, paper 2)")
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="side-by-side pairs per entry, alternating which side runs first; the entry is the "
        "pair with the median ratio, with the range over all pairs",
    )
    parser.add_argument("--reference", default=os.environ.get("VIDFM3D_SRC"))
    parser.add_argument("--reference-deps", default=os.environ.get("VIDFM3D_DEPS"))
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "probe.json"))
    parser.add_argument(
        "--worker", nargs=2, metavar=("CONFIG", "PRECISION"), help=argparse.SUPPRESS
    )
    parser.add_argument("--flops", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--checkpoint-trunk",
        choices=["default", "on", "off"],
        default="default",
        help="vfm3d's trunk under activation checkpointing: default = ProbeConfig's (on, as the "
        "reference always checkpoints)",
    )
    parser.add_argument(
        "--settings",
        nargs="+",
        default=list(SETTINGS),
        choices=list(SETTINGS),
        help="what each side runs with: shipped (each out of the box), yardstick (as the shared "
        "probe_side_by_side.py), default / tuned (allocator and optimizer equalised)",
    )
    parser.add_argument(
        "--optimizer", default="reference", choices=["reference", "trainer"], help=argparse.SUPPRESS
    )
    parser.add_argument(
        "--recount",
        metavar="FILE",
        help="recount the FLOPs of the configurations in an earlier results FILE (no timing) "
        "and rewrite its step_gflop / attention_gflop / gflop_per_s / fraction_of_matmul_roofline",
    )
    args = parser.parse_args()
    if args.recount:
        recount(Path(args.recount), args.threads)
        return
    if args.worker:
        name, precision = args.worker
        iters = 5 if args.iters is None else args.iters
        result = worker(
            name,
            precision,
            iters,
            args.threads,
            args.flops,
            {"default": None, "on": True, "off": False}[args.checkpoint_trunk],
            args.optimizer,
        )
        print(json.dumps(result))
        return

    from vfm3d.utils.atomic import atomic_write_json

    roofline = {p: matmul_gflop_per_s(p, args.threads) for p in ("fp32", "bf16")}
    args.roofline = roofline
    result: dict[str, Any] = {
        "what": "whole training steps (forward, loss, backward, AdamW), batch 1, 4 frames",
        "machine": platform.processor() or platform.machine(),
        "threads": args.threads,
        "load_average_before": list(os.getloadavg()),
        "matmul_gflop_per_s_before": roofline,
        "torch_compile": False,
        "vfm3d_checkpoint_trunk": args.checkpoint_trunk,
        "runs": {},
    }
    result["settings"] = {k: SETTINGS[k] for k in args.settings}
    for name in args.configs:
        iters = args.iters or (5 if name == "vidfm3d-small" else 2)
        for precision in args.precisions:
            for setting in args.settings:
                key = f"{name}/{precision}/{setting}"
                result["runs"][key] = _repeated(args, name, precision, setting, iters)
                result["runs"][key]["setting"] = setting
                print(f"[bench_probe] {key}: {json.dumps(result['runs'][key])[:400]}", flush=True)
    result["load_average_after"] = list(os.getloadavg())
    result["matmul_gflop_per_s_after"] = {
        p: matmul_gflop_per_s(p, args.threads) for p in ("fp32", "bf16")
    }
    atomic_write_json(args.out, result)
    print(json.dumps(result, indent=1, default=str))


if __name__ == "__main__":
    main()
