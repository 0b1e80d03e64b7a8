"""The probe sweep: backbones x layers x timesteps -> trained probes -> table, plots, report.

A sweep is described by a TOML spec (all paths relative to the spec file)::

    seed = 0

    [world]              # generate the data (or give [data] folders instead)
    kind = "mixed"       # train clips; evaluation sets are generated per kind below
    train_clips = 16
    eval_kinds = ["object", "scene"]
    eval_clips = 4       # per evaluation kind
    frames = 17
    height = 64
    width = 64

    [data]               # alternative to [world]: existing clip folders
    train = "world/train"
    eval = { object = "world/eval-object", scene = "world/eval-scene" }

    [extract]
    num_frames = 17      # optional; default: the largest count each backbone accepts
    timestep_batch = 0   # 0 = all timesteps of a clip in one batch

    [probe]
    preset = "cpu_small" # or "paper"; other keys override `ProbeConfig` fields
    steps = 150

    [[backbones]]
    name = "wan2.1"      # a registry name (see `vfm3d backbones`)
    tiny = true          # or weights = "path/to/Wan2.1-T2V-1.3B-Diffusers"
    layers = "all"       # or a list
    timesteps = [0, 250, 749]
    label = "wan2.1-tiny"
    window = 9           # optional: read clips in windows of 9 frames (the model's own length)

Running it extracts every backbone's features once per clip and timestep batch (all layers in
one pass) into ``OUT/features``, trains one probe per (backbone, layer, timestep) into
``OUT/runs/<label>/L<layer>[_t<timestep>]``, evaluates each on every evaluation split and writes
``results.csv``, ``results.md``, the plots and ``report.html``. Everything is resumable: a rerun
skips stored features, resumes unfinished probes from their checkpoints and reuses metrics.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vfm3d.utils.atomic import atomic_write_json

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclass
class BackboneEntry:
    """One backbone of a sweep."""

    name: str
    layers: list[int] | str = "all"
    timesteps: list[int] | None = None
    tiny: bool = False
    weights: str | None = None
    label: str | None = None
    resize: tuple[int, int] | None = None  # H, W fed to the model (default: the clips' size)
    num_frames: int | None = None  # frames per clip (default: [extract] num_frames / the rule's)
    dtype: str | None = None  # "float32" (default), "bfloat16", "float16"
    window: int | None = None  # read clips in windows of this many frames (`extract_windows`)

    @property
    def display(self) -> str:
        return self.label or (self.name + ("-tiny" if self.tiny else ""))


@dataclass
class SweepSpec:
    """A parsed sweep spec (see the module docstring)."""

    backbones: list[BackboneEntry]
    train: Path | None = None
    eval: dict[str, Path] = field(default_factory=dict)
    world: dict[str, Any] | None = None
    probe: dict[str, Any] = field(default_factory=dict)
    extract: dict[str, Any] = field(default_factory=dict)
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "train": None if self.train is None else str(self.train),
            "eval": {k: str(v) for k, v in self.eval.items()},
            "world": self.world,
            "probe": self.probe,
            "extract": self.extract,
            "backbones": [b.__dict__ for b in self.backbones],
        }


_TOP_KEYS = {"seed", "world", "data", "probe", "extract", "backbones"}
_BACKBONE_KEYS = {
    "name",
    "layers",
    "timesteps",
    "tiny",
    "weights",
    "label",
    "resize",
    "num_frames",
    "dtype",
    "window",
}
_DTYPES = ("float32", "bfloat16", "float16")


def parse_spec(data: dict[str, Any], base: Path | None = None) -> SweepSpec:
    """Build a `SweepSpec` from a dict (a parsed TOML file); relative paths resolve against ``base``."""
    base = base or Path.cwd()
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise ValueError(
            f"sweep spec: unknown keys {sorted(unknown)}; allowed: {sorted(_TOP_KEYS)}"
        )
    if not data.get("backbones"):
        raise ValueError("sweep spec: needs at least one [[backbones]] entry")
    if ("world" in data) == ("data" in data):
        raise ValueError("sweep spec: give exactly one of [world] (generate) or [data] (folders)")
    entries = []
    for i, raw in enumerate(data["backbones"]):
        bad = set(raw) - _BACKBONE_KEYS
        if bad:
            raise ValueError(f"sweep spec: backbones[{i}] has unknown keys {sorted(bad)}")
        if "name" not in raw:
            raise ValueError(f"sweep spec: backbones[{i}] needs a name")
        weights = raw.get("weights")
        if weights is not None:
            weights = str((base / weights).resolve())
        resize = raw.get("resize")
        if resize is not None:
            if len(resize) != 2 or not all(isinstance(v, int) and v > 0 for v in resize):
                raise ValueError(f"sweep spec: backbones[{i}].resize must be [H, W], got {resize}")
            resize = (int(resize[0]), int(resize[1]))
        if raw.get("dtype") is not None and raw["dtype"] not in _DTYPES:
            raise ValueError(f"sweep spec: backbones[{i}].dtype must be one of {_DTYPES}")
        entries.append(
            BackboneEntry(
                name=str(raw["name"]),
                layers=raw.get("layers", "all"),
                timesteps=raw.get("timesteps"),
                tiny=bool(raw.get("tiny", False)),
                weights=weights,
                label=raw.get("label"),
                resize=resize,
                num_frames=None if raw.get("num_frames") is None else int(raw["num_frames"]),
                dtype=raw.get("dtype"),
                window=_window(raw.get("window"), i),
            )
        )
    labels = [e.display for e in entries]
    if len(set(labels)) != len(labels):
        raise ValueError(f"sweep spec: backbone labels must be unique, got {labels}")
    spec = SweepSpec(
        backbones=entries,
        probe=dict(data.get("probe", {})),
        extract=dict(data.get("extract", {})),
        seed=int(data.get("seed", 0)),
    )
    if "data" in data:
        d = data["data"]
        if "train" not in d or "eval" not in d:
            raise ValueError("sweep spec: [data] needs train and eval")
        spec.train = (base / d["train"]).resolve()
        ev = d["eval"] if isinstance(d["eval"], dict) else {"all": d["eval"]}
        spec.eval = {str(k): (base / v).resolve() for k, v in ev.items()}
    else:
        spec.world = dict(data["world"])
    return spec


def _window(value: Any, index: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(
            f"sweep spec: backbones[{index}].window must be a positive int, got {value}"
        )
    return value


def load_spec(path: str | os.PathLike[str]) -> SweepSpec:
    """Read a TOML sweep spec."""
    source = Path(path)
    if not source.is_file():
        raise FileNotFoundError(f"sweep spec not found: {source}")
    try:
        data = tomllib.loads(source.read_text())
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"{source}: not valid TOML ({error})") from error
    return parse_spec(data, base=source.parent)


def _generate_world(spec: SweepSpec, out: Path, progress: bool) -> None:
    """Create the train / per-kind evaluation folders of a ``[world]`` spec (resumable)."""
    from vfm3d.world import generate_dataset

    w = dict(spec.world or {})
    size = dict(frames=int(w.get("frames", 17)), height=int(w.get("height", 64)))
    size["width"] = int(w.get("width", 64))
    seed = int(w.get("seed", spec.seed))
    train_dir = out / "world" / "train"
    generate_dataset(
        train_dir,
        kind=str(w.get("kind", "mixed")),
        clips=int(w.get("train_clips", 16)),
        seed=seed,
        progress=progress,
        **size,
    )
    spec.train = train_dir
    for k, kind in enumerate(w.get("eval_kinds", ["object", "scene"])):
        folder = out / "world" / f"eval-{kind}"
        # Disjoint seeds: evaluation clips are never seen in training.
        generate_dataset(
            folder,
            kind=str(kind),
            clips=int(w.get("eval_clips", 4)),
            seed=seed + 1_000_003 * (k + 1),
            progress=progress,
            **size,
        )
        spec.eval[str(kind)] = folder


def _probe_config(spec: SweepSpec) -> tuple[Any, int]:
    from vfm3d.probe.config import ProbeConfig

    opts = dict(spec.probe)
    steps = int(opts.pop("steps", 150))
    preset = str(opts.pop("preset", "cpu_small"))
    if preset == "cpu_small":
        config = ProbeConfig.cpu_small(**opts)
    elif preset == "paper":
        config = ProbeConfig(**opts)
    else:
        raise ValueError(f"sweep spec: probe.preset must be 'cpu_small' or 'paper', got {preset!r}")
    return config, steps


def run_dir_for(out: Path, label: str, layer: int, timestep: int | None) -> Path:
    """``OUT/runs/<label>/L<layer>[_t<timestep>]`` (label made file-system safe)."""
    safe = label.replace("/", "_")
    return out / "runs" / safe / (f"L{layer}" + ("" if timestep is None else f"_t{timestep}"))


def run_sweep(
    spec: SweepSpec, out: str | os.PathLike[str], progress: bool = True, log: Any = print
) -> list[dict[str, Any]]:
    """Run (or resume) a sweep into ``out``; returns the result rows (also written to disk)."""
    import torch

    from vfm3d.backbones import load as load_backbone
    from vfm3d.clip import ClipFolder
    from vfm3d.features import FeatureStore
    from vfm3d.features.runner import extract_to_store, windowed_fingerprint
    from vfm3d.probe.evaluate import evaluate
    from vfm3d.probe.train import train

    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    if spec.world is not None:
        _generate_world(spec, out_dir, progress)
    atomic_write_json(out_dir / "spec.json", spec.to_dict())
    assert spec.train is not None
    train_clips = ClipFolder(spec.train)
    eval_clips = {k: ClipFolder(v) for k, v in spec.eval.items()}
    config, steps = _probe_config(spec)
    store = FeatureStore(out_dir / "features")
    rows: list[dict[str, Any]] = []
    results_path = out_dir / "results.json"
    timings: dict[str, float] = {}
    for entry in spec.backbones:
        t0 = time.perf_counter()
        backbone = load_backbone(
            entry.name,
            weights=entry.weights,
            tiny=entry.tiny,
            seed=spec.seed,
            dtype=getattr(torch, entry.dtype or "float32"),
            device="cuda" if torch.cuda.is_available() else "cpu",
        )
        layers = list(range(backbone.num_layers)) if entry.layers == "all" else list(entry.layers)
        timesteps = entry.timesteps if backbone.is_diffusion else None
        if backbone.is_diffusion and not timesteps:
            raise ValueError(f"sweep spec: diffusion backbone {entry.display} needs timesteps")
        tb = int(spec.extract.get("timestep_batch", 0)) or None
        for folder in [train_clips, *eval_clips.values()]:
            summary = extract_to_store(
                store,
                backbone,
                folder,
                layers,
                timesteps,
                num_frames=entry.num_frames or spec.extract.get("num_frames"),
                seed=spec.seed,
                resize=entry.resize,
                progress=progress,
                timestep_batch=tb,
                window=entry.window,
            )
            log(f"[{entry.display}] {folder.root.name}: {summary}")
        timings[f"extract/{entry.display}"] = time.perf_counter() - t0
        fingerprint = windowed_fingerprint(backbone.fingerprint, entry.window)
        del backbone
        for t in timesteps or [None]:
            for layer in layers:
                run = run_dir_for(out_dir, entry.display, layer, t)
                t1 = time.perf_counter()
                if not _run_finished(run, config, steps):
                    train(
                        config,
                        spec.train,
                        out_dir / "features",
                        run,
                        steps=steps,
                        backbone=fingerprint,
                        layer=layer,
                        timestep=t,
                        seed=spec.seed,
                        resume=True,
                        device="cuda" if torch.cuda.is_available() else "cpu",
                        progress=progress,
                    )
                for split, folder in eval_clips.items():
                    cached = run / f"metrics_{split}.json"
                    if cached.is_file() and _metrics_current(cached, run):
                        result = json.loads(cached.read_text())
                    else:
                        result = evaluate(run, data_dir=folder.root, split=split)
                    row = {
                        "backbone": entry.display,
                        "layer": layer,
                        "timestep": t,
                        "split": split,
                        **result["metrics"],
                        "run": str(run.relative_to(out_dir)),
                    }
                    rows.append(row)
                timings[f"probe/{entry.display}/L{layer}_t{t}"] = time.perf_counter() - t1
                atomic_write_json(results_path, rows)
    atomic_write_json(out_dir / "timings.json", timings)
    write_outputs(rows, out_dir, spec)
    return rows


def _run_finished(run: Path, config: Any, steps: int) -> bool:
    """True when ``run`` holds final weights trained with this config for ``steps`` steps."""
    info_path, weights = run / "run.json", run / "model.safetensors"
    if not (info_path.is_file() and weights.is_file()):
        return False
    info = json.loads(info_path.read_text())
    return info.get("config") == config.to_dict() and int(info.get("steps", -1)) == steps


def _metrics_current(metrics_path: Path, run: Path) -> bool:
    """A cached metrics file is reused only if it is newer than the run's weights."""
    weights = run / "model.safetensors"
    return weights.is_file() and metrics_path.stat().st_mtime >= weights.stat().st_mtime


def write_outputs(
    rows: list[dict[str, Any]],
    out_dir: Path,
    spec: SweepSpec | None = None,
    extra_notes: Sequence[str] = (),
    extra_links: Sequence[tuple[str, str]] = (),
) -> Path:
    """Write the sweep's tables, plots and ``report.html`` (drawn by `vfm3d.report`); return the
    report path. The example clip shown in 3D comes from the best probe (`example_view`);
    ``extra_notes`` / ``extra_links`` go into the report as they are."""
    from vfm3d.report.sweep_report import write_sweep_report

    out = Path(out_dir)
    return write_sweep_report(rows, out, example_view(rows, out), extra_notes, extra_links)


def example_view(rows: list[dict[str, Any]], out_dir: Path) -> Any:
    """A `SceneView` of the first evaluation sample of the best probe (lowest Point Err), its
    predicted points and cameras Sim(3)-aligned to the truth (as Point Err aligns); None when no
    row was scored."""
    import numpy as np

    from vfm3d.probe.evaluate import predict
    from vfm3d.report.scene import SceneView

    scored = [r for r in rows if isinstance(r.get("point_err"), float) and "run" in r]
    if not scored:
        return None
    best = min(scored, key=lambda r: r["point_err"])
    spec = json.loads((out_dir / "spec.json").read_text())
    data_dir = spec["eval"].get(best["split"])
    pred = predict(out_dir / best["run"], index=0, data_dir=data_dir)
    valid = pred["valid"].astype(bool)
    title = f"{best['backbone']} layer {best['layer']}" + (
        "" if best.get("timestep") is None else f" t={best['timestep']}"
    )
    pts_pred = pred["pred_points"][valid].reshape(-1, 3)
    pts_gt = pred["points"][valid].reshape(-1, 3)
    scale, rot, trans = _display_alignment(pts_pred, pts_gt)
    pred_c2w = np.linalg.inv(pred["pred_world_to_cam"].astype(np.float64))
    aligned_c2w = pred_c2w.copy()
    aligned_c2w[:, :3, :3] = rot @ pred_c2w[:, :3, :3]
    aligned_c2w[:, :3, 3] = scale * pred_c2w[:, :3, 3] @ rot.T + trans
    return SceneView(
        title=f"example clip {pred['clip_id']} ({title})",
        images=pred["images"],
        intrinsics=pred["intrinsics"].astype(np.float64),
        pred_depth=pred["pred_depth"],
        gt_depth=pred["depth"],
        valid=valid,
        pred_points=scale * pts_pred @ rot.T + trans,
        gt_points=pts_gt,
        colors=pred["images"][valid].reshape(-1, 3),
        pred_cam_to_world=aligned_c2w,
        gt_cam_to_world=pred["cam_to_world"].astype(np.float64),
        aligned=True,
    )


def _display_alignment(pred: Any, gt: Any) -> tuple[float, Any, Any]:
    """Sim(3) ``(s, R [3,3], t [3])`` mapping predicted to true points (Umeyama), identity if
    fewer than 3 points."""
    import numpy as np
    import torch

    from vfm3d.geometry import umeyama

    if pred.shape[0] < 3:
        return 1.0, np.eye(3), np.zeros(3)
    src = torch.as_tensor(pred, dtype=torch.float64)
    dst = torch.as_tensor(gt, dtype=torch.float64)
    s, r, t = umeyama(src, dst, with_scale=True)
    return float(s), r.numpy(), t.numpy()
