"""``vfm3d recon4d eval --model M --data DIR [--protocol monst3r] --out DIR``: 4D reconstruction
scored per sequence and on average (MonST3R's video protocol).

Examples::

    vfm3d world --kind dynamic --clips 24 --frames 9 --height 32 --width 32 --seed 7000000 --out heldout/
    vfm3d recon4d eval --model zoo/sora3r-mini --data heldout/ --out eval/sora3r
    vfm3d recon4d eval --model gt --data heldout/ --out eval/gt          # the recovery's ceiling
    vfm3d recon4d eval --model floor --data heldout/ --out eval/floor    # static camera, flat depth
    vfm3d recon4d eval --model zoo/vggt-mini --data /data/sintel --kind sintel --out eval/vggt
    vfm3d extract --data heldout/ --backbone zoo/wan-mini --layers 2 --timesteps 749 --out feats/
    vfm3d recon4d eval --model probe:runs/probe --features feats/ --data heldout/ --out eval/probe

Models (``--model``):

- ``zoo/sora3r-mini`` or a Sora3R folder: `vfm3d.recon4d.sora3r.Sora3RReconstructor`
  (``--steps``, ``--samples``, ``--seed``);
- ``zoo/vggt-mini`` or a VGGT folder: the 3D expert's chained point maps through the same
  recovery as Sora3R (`vfm3d.recon4d.sora3r.recover_cameras`: Weiszfeld focal, PnP-RANSAC, depth
  by re-projection), so the comparison is of point maps; ``--expert-heads`` scores its own camera
  and depth heads instead;
- ``probe:RUN_DIR`` with ``--features CACHE``: a trained vfm3d probe (a ``vfm3d probe train`` run
  folder; the ``probe:`` prefix is required, a bare run folder is an error saying so) on the
  clips' cached features (``vfm3d extract`` of ``--data`` with the probe's backbone, layer and
  timestep, all frames): its point maps and confidence of every frame of the clip at once (frame
  0 the reference; every frame must have features, else an error naming the clip and frames),
  through the same recovery as the VGGT row (`vfm3d.recon4d.probe_runner`);
- ``gt``: the clip's true point maps (`vfm3d.geometry.probe_targets`) through that recovery: the
  ceiling of the recovery (near-zero error);
- ``floor``: a static camera (identity poses) and a flat depth (1 everywhere).

Every prediction is scored at the clip's own resolution (model outputs resized back, intrinsics
adjusted). Per sequence (`evaluate_clip`): ATE, RPE-trans, RPE-rot in degrees (Sim(3) alignment
of camera centres, delta 1 frame, evo's definitions through `vfm3d.recon4d.evaluate.score`; when
the predicted centres are degenerate, e.g. the floor's single point, the limit of that alignment
is used instead: translation and a least-squares scale without rotation, after re-basing both
trajectories on their first camera, flagged ``align = "degenerate"``), video depth AbsRel and
delta<1.25 after one median scale per sequence (``*_median``) and after a least-squares scale and
shift (``*_scale_shift``), and, where the clip has a ``dynamic`` mask with dynamic pixels, the
same on the dynamic pixels (``dynamic_*``: the sequence's alignment, evaluated there).

``--data``: a clip folder (``vfm3d world`` output, converted datasets) or a clip file; with
``--kind tum|bonn|sintel|scannet`` a dataset root read by `vfm3d.data.read` under ``--protocol``
(``monst3r`` default: TUM-dynamics / ScanNet 90 frames at stride 3, Bonn frames 30-139, Sintel's
14 sequences; depth clipped at 70 on Sintel and Bonn; ``none``: all frames, no clipping).

Writes into ``--out``: ``metrics.json`` (settings, the probe's run / features / backbone / layer /
timestep under ``probe``, every sequence, the means with bootstrap 95% intervals over
sequences), ``per_sequence.csv`` and ``summary.md``; prints the summary table.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vfm3d.clip import Clip
from vfm3d.recon4d.result import Reconstruction

BUILTIN_MODELS = ("gt", "floor")
DATASET_KINDS = ("tum", "bonn", "sintel", "scannet")
PROTOCOLS = ("monst3r", "none")
#: Depth clipping of the MonST3R protocol where its protocol file does not state it (DESIGN S2).
MONST3R_MAX_DEPTH = {"sintel": 70.0, "bonn": 70.0}
#: Columns of the summary table, in order.
SUMMARY_KEYS = (
    "ate",
    "rpe_trans",
    "rpe_rot_deg",
    "abs_rel_median",
    "delta1_median",
    "abs_rel_scale_shift",
    "delta1_scale_shift",
    "dynamic_abs_rel_median",
    "dynamic_delta1_median",
    "dynamic_abs_rel_scale_shift",
    "dynamic_delta1_scale_shift",
)
BOOTSTRAP_SAMPLES = 2000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    ev = sub.add_parser("eval", help="score a 4D reconstructor on clips with ground truth")
    ev.add_argument(
        "--model",
        required=True,
        help="zoo/sora3r-mini or a Sora3R folder, zoo/vggt-mini or a VGGT folder, "
        "probe:RUN_DIR (a `vfm3d probe train` run; with --features), gt, floor",
    )
    ev.add_argument(
        "--data", required=True, help="clip folder / clip file, or a dataset root with --kind"
    )
    ev.add_argument("--kind", choices=DATASET_KINDS, default=None, help="dataset reader of --data")
    ev.add_argument("--protocol", choices=PROTOCOLS, default="monst3r")
    ev.add_argument("--out", required=True, help="output folder")
    ev.add_argument("--max-clips", type=int, default=None, help="score the first N sequences")
    ev.add_argument("--max-depth", type=float, default=None, help="depth clipping (override)")
    ev.add_argument("--steps", type=int, default=None, help="Sora3R: Euler steps")
    ev.add_argument("--samples", type=int, default=1, help="Sora3R: point-map samples K")
    ev.add_argument("--seed", type=int, default=0, help="Sora3R: sampling seed")
    ev.add_argument(
        "--expert-heads",
        action="store_true",
        help="3D expert: score its camera / depth heads instead of its point maps' recovery",
    )
    ev.add_argument(
        "--features",
        default=None,
        help="probe: feature cache of --data's clips (vfm3d extract: the probe's backbone, "
        "layer and timestep, all frames)",
    )
    ev.add_argument("--device", default="cpu", help="torch device (default cpu)")
    ev.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    ev.add_argument("--quiet", action="store_true", help="no progress bar")
    from vfm3d.recon4d.compare import DEFAULT_METRICS
    from vfm3d.report.comparison import add_compare_arguments

    add_compare_arguments(
        sub.add_parser(
            "compare", help="one table of several eval outputs (seeds, bootstrap, differences)"
        ),
        "recon4d eval",
        DEFAULT_METRICS,
    )


# --------------------------------------------------------------------------- the models
def gt_reconstruction(clip: Clip) -> Reconstruction:
    """The clip's true point maps (frame 0's camera, normalised) through `recover_cameras`."""
    from vfm3d.geometry import probe_targets

    _require_ground_truth(clip)
    assert clip.depth is not None and clip.valid is not None
    targets = probe_targets(
        torch.from_numpy(clip.depth).double(),
        torch.from_numpy(clip.valid),
        torch.from_numpy(clip.intrinsics).double(),
        torch.from_numpy(clip.cam_to_world),
    )
    meta = {"model": "gt", "method": "true point maps -> cameras_from_pointmaps"}
    return pointmap_reconstruction(clip, targets.points, targets.valid, None, meta)


def floor_reconstruction(clip: Clip) -> Reconstruction:
    """A static camera (identity ``cam_to_world``) and a flat depth of 1 (K: 60 degrees)."""
    from vfm3d.recon4d.sora3r import default_intrinsics, to_input_resolution

    t, h, w = clip.num_frames, clip.height, clip.width
    result = {
        "valid": np.ones((t, h, w), dtype=bool),
        "depth": np.ones((t, h, w), dtype=np.float32),
        "intrinsics": np.repeat(default_intrinsics(h, w, 60.0)[None], t, 0),
        "cam_to_world": np.repeat(np.eye(4)[None], t, 0),
    }
    meta = {"model": "floor", "method": "identity cameras, depth 1"}
    return to_input_resolution(clip.frames, result, _timestamps(clip), meta)


def _timestamps(clip: Clip) -> np.ndarray:
    stamps = clip.meta.get("timestamps")
    if isinstance(stamps, list) and len(stamps) == clip.num_frames:
        return np.asarray(stamps, dtype=np.float64)
    return np.arange(clip.num_frames, dtype=np.float64)


def _recovery_meta(result: dict[str, Any]) -> dict[str, Any]:
    return {
        "focal_fallback": bool(result["focal_fallback"]),
        "pose_fallback_frames": [int(i) for i in np.flatnonzero(result["fallback"])],
    }


def pointmap_reconstruction(
    clip: Clip,
    points: torch.Tensor,
    valid: torch.Tensor | None,
    conf: torch.Tensor | None,
    meta: dict[str, Any],
) -> Reconstruction:
    """Point maps ``[T, h, w, 3]`` (frame 0's camera; ``valid`` / ``conf`` ``[T, h, w]``, None:
    all valid / unweighted) -> cameras and depth by `recover_cameras`, at the clip's resolution
    (`to_input_resolution`): the recovery shared by the gt, VGGT and probe rows."""
    from vfm3d.recon4d.sora3r import recover_cameras, to_input_resolution

    if valid is None:
        valid = torch.ones(points.shape[:-1], dtype=torch.bool)
    result = recover_cameras(points.double(), valid, None if conf is None else conf.double())
    meta = {**meta, **_recovery_meta(result)}
    return to_input_resolution(clip.frames, result, _timestamps(clip), meta)


def expert_runner(
    model: str, heads: bool, device: str, progress: bool
) -> Callable[[Clip], Reconstruction]:
    """A VGGT-architecture expert as a clip -> reconstruction function (module docstring)."""
    from vfm3d.recon4d.expert import ExpertReconstructor, load_expert
    from vfm3d.recon4d.sora3r import to_input_resolution

    runner = ExpertReconstructor(load_expert(model, device=device), device=device, progress=False)

    def run(clip: Clip) -> Reconstruction:
        small = runner.reconstruct(runner.prepare(clip))
        if heads:
            result = {
                "valid": small.depth > 0,
                "depth": small.depth,
                "intrinsics": small.intrinsics,
                "cam_to_world": small.cam_to_world,
            }
            meta = {**small.meta, "model": model, "method": "VGGT camera and depth heads"}
            return to_input_resolution(clip.frames, result, _timestamps(clip), meta)
        points = torch.from_numpy(small.points)
        conf = torch.from_numpy(small.points_conf)
        meta = {**small.meta, "model": model, "method": "VGGT point maps -> cameras_from_pointmaps"}
        return pointmap_reconstruction(clip, points, None, conf, meta)

    return run


class ProbeReconstructor:
    """A trained probe on cached features (`vfm3d.recon4d.probe_runner.ProbePointMaps`) as a
    clip -> reconstruction function: its point maps of every frame through
    `pointmap_reconstruction`; ``settings`` is what the record keeps of the probe."""

    def __init__(self, run_dir: str, features: str | None, data: str, device: str) -> None:
        from vfm3d.recon4d.probe_runner import PROBE_PREFIX, ProbePointMaps

        self.maps = ProbePointMaps(run_dir, features, data=data, device=device)
        self.name = f"{PROBE_PREFIX}{run_dir}"

    @property
    def settings(self) -> dict[str, Any]:
        return self.maps.settings

    def __call__(self, clip: Clip) -> Reconstruction:
        points, conf, meta = self.maps(clip)
        meta = {**meta, "model": self.name, "method": "probe point maps -> cameras_from_pointmaps"}
        return pointmap_reconstruction(clip, points, None, conf, meta)


def make_model(args: argparse.Namespace) -> Callable[[Clip], Reconstruction]:
    """``--model`` as a clip -> `Reconstruction` function at the clip's resolution."""
    from vfm3d.recon4d.probe_runner import PROBE_PREFIX, is_probe_model, is_probe_run
    from vfm3d.recon4d.sora3r import Sora3RReconstructor, is_sora3r_model, load_sora3r

    name = str(args.model)
    if getattr(args, "features", None) is not None and not is_probe_model(name):
        raise ValueError(f"--features is for --model {PROBE_PREFIX}RUN_DIR, not --model {name}")
    if name == "gt":
        return gt_reconstruction
    if name == "floor":
        return floor_reconstruction
    if is_probe_model(name):
        run_dir = name.removeprefix(PROBE_PREFIX)
        return ProbeReconstructor(run_dir, args.features, str(args.data), args.device)
    if is_probe_run(name):
        raise ValueError(
            f"--model {name} is a probe run folder: pass it as --model {PROBE_PREFIX}{name} "
            "--features CACHE"
        )
    if is_sora3r_model(name):
        runner = Sora3RReconstructor(
            load_sora3r(name, device=args.device),
            steps=args.steps,
            samples=args.samples,
            seed=args.seed,
            device=args.device,
            progress=False,
        )
        return runner.reconstruct
    if name.startswith("zoo/") or Path(name).exists():
        return expert_runner(name, args.expert_heads, args.device, not args.quiet)
    raise FileNotFoundError(
        f"--model {name}: neither {', '.join(BUILTIN_MODELS)}, a zoo model (zoo/sora3r-mini, "
        "zoo/vggt-mini), probe:RUN_DIR nor an existing model folder"
    )


# --------------------------------------------------------------------------- scoring
def _require_ground_truth(clip: Clip) -> None:
    if not clip.has_ground_truth:
        raise ValueError(
            f"clip {clip.id!r} has no ground truth (depth and true cameras): eval needs clips "
            "with both (vfm3d world, or --kind tum|bonn|sintel|scannet)"
        )


def _depth_metrics(
    pred: torch.Tensor,
    gt: torch.Tensor,
    valid: torch.Tensor,
    align: str,
    max_depth: float | None,
) -> Any:
    """`vfm3d.metrics.depth_metrics`; a prediction constant on the scored pixels (the floor)
    under ``scale_shift`` has no unique fit: every least-squares solution predicts the mean
    true depth there, which is what is scored (with ``scale = 0``, ``shift = mean``)."""
    from dataclasses import replace

    from vfm3d.metrics import depth_metrics

    mask = valid & (gt > 0)
    if max_depth is not None:
        mask = mask & (gt < max_depth)
    p = pred[mask]
    if (
        align == "scale_shift"
        and p.numel()
        and float(p.max() - p.min()) <= 1e-12 * max(1.0, float(p.abs().max()))
    ):
        mean = float(gt[mask].mean())
        m = depth_metrics(torch.full_like(pred, mean), gt, valid, "none", max_depth)
        return replace(m, scale=0.0, shift=mean)
    return depth_metrics(pred, gt, valid, align=align, max_depth=max_depth)


def evaluate_clip(
    recon: Reconstruction, clip: Clip, max_depth: float | None = None
) -> dict[str, Any]:
    """The module docstring's per-sequence metrics of ``recon`` against ``clip`` (same frames
    and resolution)."""
    from vfm3d.metrics import depth_metrics
    from vfm3d.recon4d.evaluate import score

    _require_ground_truth(clip)
    assert clip.depth is not None and clip.valid is not None
    row: dict[str, Any] = {"id": clip.id, "frames": clip.num_frames}
    if clip.num_frames >= 3:
        base = score(recon, clip, max_depth=max_depth)  # the degenerate limit where needed
        row.update({k: base[k] for k in ("ate", "rpe_trans", "rpe_rot_deg")})
        row["align"] = base.get("align", "sim3")
    pred = torch.from_numpy(recon.depth).double()
    gt = torch.from_numpy(clip.depth).double()
    valid = torch.from_numpy(clip.valid)
    dynamic = None if clip.dynamic is None else torch.from_numpy(clip.dynamic) & valid & (gt > 0)
    if dynamic is not None and max_depth is not None:
        dynamic &= gt < max_depth
    has_dynamic = dynamic is not None and bool(dynamic.any())
    for align in ("median", "scale_shift"):
        m = _depth_metrics(pred, gt, valid, align, max_depth)
        row[f"abs_rel_{align}"] = m.abs_rel
        row[f"delta1_{align}"] = m.delta1
        if has_dynamic:
            assert dynamic is not None
            aligned = m.scale * pred + m.shift
            d = depth_metrics(aligned, gt, dynamic, align="none", max_depth=max_depth)
            row[f"dynamic_abs_rel_{align}"] = d.abs_rel
            row[f"dynamic_delta1_{align}"] = d.delta1
    if has_dynamic:
        assert dynamic is not None
        row["dynamic_fraction"] = float(dynamic.sum()) / max(1, int((valid & (gt > 0)).sum()))
    return row


def summarise(rows: Sequence[dict[str, Any]], seed: int = 0) -> dict[str, Any]:
    """Mean of every numeric metric over the sequences that have it, its count and a bootstrap
    95% interval over sequences (percentile, `BOOTSTRAP_SAMPLES` resamples, seeded)."""
    rng = np.random.default_rng(seed)
    keys = [k for k in rows[0] if k not in ("id", "frames", "align")] if rows else []
    for row in rows[1:]:
        keys += [k for k in row if k not in keys and k not in ("id", "frames", "align")]
    mean, count, ci95 = {}, {}, {}
    for key in keys:
        values = np.array(
            [float(r[key]) for r in rows if isinstance(r.get(key), (int, float))], np.float64
        )
        values = values[np.isfinite(values)]
        if values.size == 0:
            continue
        mean[key] = float(values.mean())
        count[key] = int(values.size)
        if values.size >= 2:
            draws = rng.integers(0, values.size, (BOOTSTRAP_SAMPLES, values.size))
            boot = values[draws].mean(1)
            ci95[key] = [float(np.quantile(boot, 0.025)), float(np.quantile(boot, 0.975))]
    return {"mean": mean, "count": count, "ci95": ci95}


def _markdown(model: str, summary: dict[str, Any], sequences: int) -> str:
    keys = [k for k in SUMMARY_KEYS if k in summary["mean"]]
    head = "| model | sequences | " + " | ".join(keys) + " |"
    rule = "|---|---|" + "---|" * len(keys)

    def cell(key: str) -> str:
        value = summary["mean"][key]
        ci = summary["ci95"].get(key)
        text = f"{value:.4f}"
        return text + (f" [{ci[0]:.4f}, {ci[1]:.4f}]" if ci else "")

    row = f"| {model} | {sequences} | " + " | ".join(cell(k) for k in keys) + " |"
    return "\n".join([head, rule, row]) + "\n"


def _csv(rows: Sequence[dict[str, Any]]) -> str:
    import csv
    import io

    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=keys, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: row.get(k, "") for k in keys})
    return buffer.getvalue()


def open_data(data: str, kind: str | None, protocol: str) -> tuple[Any, float | None]:
    """(clip source, max depth of the protocol) of ``--data`` / ``--kind`` / ``--protocol``."""
    if kind is None:
        from vfm3d.data.inputs import open_clips

        source = open_clips(data)
        if hasattr(source, "iter_windows"):
            raise ValueError(
                f"{data}: a video or image folder has no ground truth; eval needs a clip folder "
                "(vfm3d world) or a dataset root with --kind"
            )
        return source, None
    from vfm3d.data import read

    if protocol == "none":
        return read(kind, data), None
    reader = read(kind, data, protocol=protocol)
    max_depth = reader.protocol.get("max_depth", MONST3R_MAX_DEPTH.get(kind))
    return reader, None if max_depth is None else float(max_depth)


def main(args: argparse.Namespace) -> int:
    if args.action == "compare":
        from vfm3d.recon4d.compare import compare_main

        return compare_main(args)
    from tqdm import tqdm

    from vfm3d.utils.atomic import atomic_write_json, atomic_write_text

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.max_clips is not None and args.max_clips < 1:
        raise ValueError(f"--max-clips must be >= 1, got {args.max_clips}")
    source, protocol_depth = open_data(args.data, args.kind, args.protocol)
    max_depth = args.max_depth if args.max_depth is not None else protocol_depth
    ids = list(source.ids)[: args.max_clips]
    if not ids:
        raise ValueError(f"{args.data}: no sequences to evaluate")
    model = make_model(args)
    rows = []
    for clip_id in tqdm(ids, desc=f"eval {args.model}", unit="seq", disable=args.quiet):
        clip = source.load(clip_id)
        _require_ground_truth(clip)
        recon = model(clip)
        rows.append(evaluate_clip(recon, clip, max_depth=max_depth))
    summary = summarise(rows)
    record = {
        "model": str(args.model),
        "data": str(args.data),
        "kind": args.kind or "clips",
        "protocol": args.protocol,
        "max_depth": max_depth,
        "sora3r": {"steps": args.steps, "samples": args.samples, "seed": args.seed},
        "expert_heads": bool(args.expert_heads),
        "probe": getattr(model, "settings", None),
        "sequences": rows,
        **summary,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table = _markdown(str(args.model), summary, len(rows))
    atomic_write_json(out / "metrics.json", _finite(record))
    atomic_write_text(out / "per_sequence.csv", _csv(rows))
    atomic_write_text(out / "summary.md", table)
    print(table, end="")
    return 0


def _finite(value: Any) -> Any:
    """NaN / inf -> None, recursively (strict JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
