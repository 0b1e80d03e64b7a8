"""`vfm3d traj-eval`: ATE and RPE between two TUM trajectories (evo-equal, MonST3R protocol)."""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `vfm3d traj-eval`."""
    parser.add_argument(
        "--gt", required=True, help="ground-truth TUM file (timestamp tx ty tz qx qy qz qw)"
    )
    parser.add_argument("--pred", required=True, help="predicted TUM file (same format)")
    parser.add_argument(
        "--align",
        choices=("sim3", "se3", "none"),
        default="sim3",
        help="Umeyama alignment of the predicted camera centres (default: sim3)",
    )
    parser.add_argument(
        "--delta", type=int, default=1, help="RPE pair distance in frames (default 1)"
    )
    parser.add_argument(
        "--max-diff",
        type=float,
        default=0.01,
        help="max timestamp difference for association, seconds (default 0.01, as evo)",
    )
    parser.add_argument(
        "--offset", type=float, default=0.0, help="time offset added to the prediction's stamps"
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def main(args: argparse.Namespace) -> int:
    """Read, associate, align, score, print."""
    import torch

    from vfm3d.geometry.trajectory import associate, read_tum
    from vfm3d.metrics.trajectory import trajectory_metrics

    torch.set_num_threads(1)
    gt = read_tum(args.gt)
    pred = read_tum(args.pred)
    gt, pred = associate(gt, pred, max_diff=args.max_diff, offset=args.offset)
    result = trajectory_metrics(
        pred.cam_to_world, gt.cam_to_world, align=args.align, delta=args.delta
    )
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        print(f"poses {result.num_poses} (matched)  align {result.align}  scale {result.scale:.6g}")
        print(f"ATE (RMSE)       {result.ate:.6f}")
        print(
            f"RPE trans (RMSE) {result.rpe_trans:.6f}   delta {result.delta} frame(s), {result.num_pairs} pairs"
        )
        print(f"RPE rot (RMSE)   {result.rpe_rot_deg:.6f} deg")
    return 0
