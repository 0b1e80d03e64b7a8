"""ATE + RPE on a long trajectory: vfm3d vs evo in one process (speed ratio and agreement).

Measures, on a random 10,000-pose trajectory pair (cam_to_world, float64) with Sim(3)
alignment (the MonST3R protocol):
- evo: copy the estimate, `PosePath3D.align(correct_scale=True)`, APE (translation part), RPE
  translation and RPE rotation angle (degrees), delta 1 frame; RMSE of each;
- vfm3d: `vfm3d.metrics.trajectory_metrics(pred, gt, align="sim3", delta=1)` (same three numbers).
Times are medians over `--repeats` runs after one warm-up, one torch thread, CPU.
Targets: vfm3d at least 10x faster than evo; max absolute difference of results below 1e-9.

    python benchmarks/bench_metrics.py [--poses 10000] [--repeats 5] [--seed 0]

Writes `benchmarks/results/metrics.json` (or `--out`). evo is a test/benchmark-only
dependency (GPLv3); it is imported here, never by `src/`.
"""

from __future__ import annotations

import argparse
import copy
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from vfm3d.geometry import axis_angle_to_rotation, make_rigid, random_rotation
from vfm3d.metrics import trajectory_metrics
from vfm3d.utils.atomic import atomic_write_json


def make_trajectories(num_poses: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A random-walk GT and a noisy, scaled prediction, both `[N, 4, 4]` cam_to_world float64."""
    generator = torch.Generator().manual_seed(seed)
    rotation = random_rotation((num_poses,), generator)
    centres = torch.cumsum(
        0.1 * torch.randn(num_poses, 3, generator=generator, dtype=torch.float64), 0
    )
    gt = make_rigid(rotation, centres)
    noise = axis_angle_to_rotation(
        0.02 * torch.randn(num_poses, 3, generator=generator, dtype=torch.float64)
    )
    noisy = 0.7 * centres + 0.05 * torch.randn(
        num_poses, 3, generator=generator, dtype=torch.float64
    )
    return make_rigid(noise @ rotation, noisy), gt


def run_evo(est_poses: list[np.ndarray], ref_poses: list[np.ndarray]) -> list[float]:
    """evo's APE + RPE (trans, rot deg) after Sim(3) alignment -> RMSEs."""
    from evo.core import metrics, trajectory

    ref = trajectory.PosePath3D(poses_se3=ref_poses)
    est = trajectory.PosePath3D(poses_se3=copy.deepcopy(est_poses))
    est.align(ref, correct_scale=True)
    rmse = metrics.StatisticsType.rmse
    ape = metrics.APE(metrics.PoseRelation.translation_part)
    ape.process_data((ref, est))
    rpe_t = metrics.RPE(metrics.PoseRelation.translation_part, 1, metrics.Unit.frames)
    rpe_t.process_data((ref, est))
    rpe_r = metrics.RPE(metrics.PoseRelation.rotation_angle_deg, 1, metrics.Unit.frames)
    rpe_r.process_data((ref, est))
    return [ape.get_statistic(rmse), rpe_t.get_statistic(rmse), rpe_r.get_statistic(rmse)]


def run_vfm3d(pred: torch.Tensor, gt: torch.Tensor) -> list[float]:
    """vfm3d's ATE + RPE after Sim(3) alignment -> RMSEs."""
    result = trajectory_metrics(pred, gt, align="sim3", delta=1)
    return [result.ate, result.rpe_trans, result.rpe_rot_deg]


def median_time(fn: Callable[[], list[float]], repeats: int) -> tuple[float, list[float]]:
    """Median wall time of `fn` over `repeats` runs after one warm-up, and its last result."""
    result = fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--poses", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parent / "results" / "metrics.json"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    import evo

    pred, gt = make_trajectories(args.poses, args.seed)
    est_poses = list(pred.numpy())
    ref_poses = list(gt.numpy())
    evo_time, evo_result = median_time(lambda: run_evo(est_poses, ref_poses), args.repeats)
    ours_time, ours_result = median_time(lambda: run_vfm3d(pred, gt), args.repeats)
    max_diff = max(abs(a - b) for a, b in zip(evo_result, ours_result, strict=True))
    report = {
        "benchmark": "ATE + RPE (trans, rot) with Sim(3) alignment, delta 1 frame",
        "poses": args.poses,
        "repeats": args.repeats,
        "seed": args.seed,
        "evo_version": evo.__version__,
        "torch_version": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "threads": torch.get_num_threads(),
        "evo_seconds": evo_time,
        "vfm3d_seconds": ours_time,
        "speedup": evo_time / ours_time,
        "target_speedup": 10.0,
        "evo": dict(zip(("ate", "rpe_trans", "rpe_rot_deg"), evo_result, strict=True)),
        "vfm3d": dict(zip(("ate", "rpe_trans", "rpe_rot_deg"), ours_result, strict=True)),
        "max_abs_difference": max_diff,
        "target_max_abs_difference": 1e-9,
        "passed": bool(evo_time / ours_time >= 10.0 and max_diff < 1e-9),
    }
    atomic_write_json(args.out, report)
    print(
        f"evo {evo_time * 1e3:.1f} ms, vfm3d {ours_time * 1e3:.1f} ms, "
        f"speedup {evo_time / ours_time:.1f}x, max |diff| {max_diff:.2e} -> {args.out}"
    )
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
