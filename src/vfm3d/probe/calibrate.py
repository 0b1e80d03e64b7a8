"""Calibrate the probe as an instrument: ceilings and floor on held-out world clips.

The probe is only a measurement if it can read 3D out of features that *do* contain it. This
module trains probes on the ground-truth backbones (``oracle``: each frame's own geometry;
``oracle-world``: point maps, and with layer 1 also the pose, in frame 0's coordinates) and the
``constant`` floor, on procedural world clips, and scores them on **held-out** clips of each kind
(never the training clips), with learning curves. docs/probe.md "Calibration" reports its numbers.

    python -m vfm3d.probe.calibrate --out runs/calibration [--steps 800] [--frames 81]

Data: ``train_clips`` mixed (object / scene alternating) clips of the world with dataset seed
``seed``, and ``eval_clips`` object clips (seed ``seed + 1000``) and scene clips (seed ``seed +
2000``); features are extracted in memory. Every probe uses ``ProbeConfig.cpu_small`` with the
spec's sampling (``first_n``, ``min_gap``, 4 frames) and output size, and `vfm3d.probe.train` /
`vfm3d.probe.evaluate` as any run does.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from vfm3d.clip import ClipFolder
from vfm3d.probe.config import ProbeConfig
from vfm3d.probe.data import InMemoryFeatureSource
from vfm3d.probe.evaluate import evaluate
from vfm3d.probe.train import train

KEPT_METRICS = (
    "point_err",
    "depth_err",
    "auc@5",
    "auc@30",
    "auc_vidfm3d@30",
    "rra@30",
    "rta@30",
    "abs_rel",
    "delta1",
)
DEFAULT_PROBES = (("constant", 0), ("oracle", 0), ("oracle-world", 0), ("oracle-world", 1))


@dataclass
class CalibrationSpec:
    """World, sampling and budget of a calibration run (defaults: VidFM3D's sampling)."""

    frames: int = 81
    size: int = 32
    train_clips: int = 32
    eval_clips: int = 16
    eval_samples_per_clip: int = 2
    first_n: int = 76
    min_gap: int = 5
    steps: int = 800
    eval_every: int = 200
    seed: int = 0
    probes: tuple[tuple[str, int], ...] = DEFAULT_PROBES
    overrides: dict[str, Any] = field(default_factory=dict)
    """Extra `ProbeConfig` fields on top of ``cpu_small`` (e.g. ``{"embed_dim": 32}``)."""

    def config(self) -> ProbeConfig:
        return ProbeConfig.cpu_small(
            output_size=(self.size, self.size),
            first_n=self.first_n,
            min_gap=self.min_gap,
            eval_samples_per_clip=self.eval_samples_per_clip,
            checkpoint_every=max(self.steps, 1),
            **self.overrides,
        )


def world_folders(root: Path, spec: CalibrationSpec) -> tuple[ClipFolder, dict[str, ClipFolder]]:
    """``(train folder, {"object": held-out, "scene": held-out})`` under ``root`` (resumable)."""
    from vfm3d.world import generate_dataset

    size = (spec.frames, spec.size, spec.size)
    train_dir = generate_dataset(
        root / "train", "mixed", spec.train_clips, *size, spec.seed, progress=False
    )
    held = {
        kind: generate_dataset(
            root / f"heldout_{kind}",
            kind,
            spec.eval_clips,
            *size,
            spec.seed + offset,
            progress=False,
        )
        for kind, offset in (("object", 1000), ("scene", 2000))
    }
    return train_dir, held


def world_features(
    folders: list[ClipFolder], name: str, layer: int
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """In-memory features ``clip id -> (tokens [T, h, w, C], frame_index [T])`` of one layer."""
    import vfm3d.backbones as backbones
    from vfm3d.features import extract

    backbone = backbones.load(name)
    items = {}
    for folder in folders:
        for clip in folder:
            frames = torch.from_numpy(clip.frames).permute(0, 3, 1, 2)[None].float() / 255
            aux = None
            if backbone.needs_geometry:
                aux = {
                    "depth": torch.from_numpy(clip.depth)[None],
                    "valid": torch.from_numpy(clip.valid)[None],
                    "intrinsics": torch.from_numpy(clip.intrinsics)[None],
                    "cam_to_world": torch.from_numpy(clip.cam_to_world)[None],
                }
            feats = extract(backbone, frames, [layer], aux=aux)[(layer, None)]
            items[clip.meta["id"]] = (feats.tokens[0].float(), feats.frame_index)
    return items


def calibrate_probe(
    root: Path, spec: CalibrationSpec, name: str, layer: int, progress: bool = False
) -> dict[str, Any]:
    """Train one probe with checkpoints every ``eval_every`` steps, scoring the held-out clips
    at each: ``{"label", "curve": [{"step", "seconds", "object": {...}, "scene": {...}}]}``."""
    train_dir, held = world_folders(root / "world", spec)
    source = InMemoryFeatureSource(world_features([train_dir, *held.values()], name, layer))
    config = spec.config()
    label = f"{name}-l{layer}"
    run = root / "runs" / label
    stops = [*range(spec.eval_every, spec.steps, spec.eval_every), spec.steps]
    curve, spent = [], 0.0
    for stop in stops:
        tick = time.perf_counter()
        train(config, train_dir.root, source, run, steps=spec.steps, backbone=name, layer=layer,
              seed=spec.seed, progress=False, stop_after=stop)  # fmt: skip
        spent += time.perf_counter() - tick
        row: dict[str, Any] = {"step": stop, "train_seconds": round(spent, 1)}
        for kind, folder in held.items():
            m = evaluate(run, features=source, data_dir=folder.root, split=kind, write=False)
            row[kind] = {k: round(float(m["metrics"][k]), 4) for k in KEPT_METRICS}
        curve.append(row)
        if progress:
            print(label, json.dumps(row), flush=True)
    return {"label": label, "backbone": name, "layer": layer, "curve": curve}


def calibrate(
    out: str | os.PathLike[str], spec: CalibrationSpec | None = None, progress: bool = True
) -> dict[str, Any]:
    """Run every probe of ``spec``; write ``OUT/calibration.json`` and ``OUT/curves.png``."""
    spec = spec or CalibrationSpec()
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    results = [calibrate_probe(root, spec, n, layer, progress) for n, layer in spec.probes]
    report = {"spec": asdict(spec), "config": spec.config().to_dict(), "probes": results}
    (root / "calibration.json").write_text(json.dumps(report, indent=1))
    try:
        plot_curves(results, root / "curves.png")
    except ImportError:  # matplotlib is optional (the viz extra)
        pass
    return report


def plot_curves(
    results: list[dict[str, Any]], path: str | os.PathLike[str], title: str = ""
) -> Path:
    """Learning curves (AUC@30 and Point Err per kind vs step) of calibration results."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("object", "auc@30"), ("scene", "auc@30"), ("object", "point_err"),
              ("scene", "point_err")]  # fmt: skip
    fig, axes = plt.subplots(1, 4, figsize=(11, 2.6), dpi=80)
    for result in results:
        steps = [r["step"] for r in result["curve"]]
        for ax, (kind, key) in zip(axes, panels):
            ax.plot(steps, [r[kind][key] for r in result["curve"]], marker="o", ms=3,
                    label=result["label"])  # fmt: skip
    for ax, (kind, key) in zip(axes, panels):
        ax.set_title(
            f"{kind} {'AUC@30' if key == 'auc@30' else 'Point Err'} (held out)", fontsize=9
        )
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if key == "auc@30":
            ax.set_ylim(0, 1)
    axes[-1].legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    defaults = CalibrationSpec()
    for key in ("frames", "size", "train_clips", "eval_clips", "first_n", "min_gap", "steps",
                "eval_every", "seed"):  # fmt: skip
        parser.add_argument(f"--{key.replace('_', '-')}", type=int, default=getattr(defaults, key))
    parser.add_argument(
        "--probe",
        action="append",
        default=None,
        help="NAME:LAYER (repeatable; default: constant, oracle, oracle-world 0/1)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=JSON",
        help="ProbeConfig override on top of cpu_small, e.g. embed_dim=32",
    )
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    probes = DEFAULT_PROBES
    if args.probe:
        probes = tuple((p.rsplit(":", 1)[0], int(p.rsplit(":", 1)[1])) for p in args.probe)
    overrides = {k: json.loads(v) for k, v in (s.split("=", 1) for s in args.set)}
    spec = CalibrationSpec(
        **{k: getattr(args, k) for k in ("frames", "size", "train_clips", "eval_clips",
                                          "first_n", "min_gap", "steps", "eval_every", "seed")},
        probes=probes,
        overrides=overrides,
    )  # fmt: skip
    calibrate(args.out, spec)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())


#: The issue-11 calibration targets on held-out clips: (backbone, layer, metric, rule, value);
#: ``"x_floor"`` compares with the ``constant`` probe's value on the same split.
TARGETS: tuple[tuple[str, int, str, str, float], ...] = (
    ("oracle", 0, "auc@30", ">=", 0.5),
    ("oracle", 0, "point_err", "<=x_floor", 0.5),
    ("oracle", 0, "depth_err", "<=x_floor", 0.4),
    ("oracle-world", 1, "auc@30", ">=", 0.8),
    ("constant", 0, "auc@30", "<=", 0.1),
)


def check_targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Score sweep result rows (``backbone``, ``layer``, ``split`` and metrics) against `TARGETS`.

    Returns one record per (target, split) present: ``backbone``, ``layer``, ``split``,
    ``metric``, ``rule`` (as text), ``value`` (the ratio to the floor for ``x_floor`` rules),
    ``met`` (bool).
    """

    def find(backbone: str, layer: int, split: str) -> dict[str, Any] | None:
        return next(
            (
                r
                for r in rows
                if (r["backbone"], r["layer"], r["split"]) == (backbone, layer, split)
            ),
            None,
        )

    out = []
    for split in sorted({r["split"] for r in rows}):
        floor = find("constant", 0, split)
        for backbone, layer, metric, rule, bound in TARGETS:
            row = find(backbone, layer, split)
            if row is None or row.get(metric) is None:
                continue
            value = float(row[metric])
            if rule == "<=x_floor":
                if floor is None:
                    continue
                value /= float(floor[metric])
                met, text = value <= bound, f"<= {bound}x constant"
            elif rule == ">=":
                met, text = value >= bound, f">= {bound}"
            else:
                met, text = value <= bound, f"<= {bound}"
            out.append({"backbone": backbone, "layer": layer, "split": split, "metric": metric,
                        "rule": text, "value": value, "met": bool(met)})  # fmt: skip
    return out
