"""The zoo experiment: probe every shipped zoo model and its random-init twin at every layer (and
several timesteps for ``wan-mini``) on world clips no zoo model saw, object and scene kinds
reported separately, through the sweep machinery (`vfm3d.probe.sweep`).

Layout of ``OUT``::

    OUT/world/{train,eval-object,eval-scene}   probe data (seeds disjoint from the zoo's data)
    OUT/twins/<name>/                          random-init twins (same config, random weights)
    OUT/sweeps/<name>/                         one sweep per zoo model and its twin (resumable)
    OUT/sweeps/baselines/                      the constant (floor) and pixels baselines
    OUT/results.{csv,md,json}, figures/, report.html   the merged table and plots
    OUT/summary.md                             the three findings, as numbers
    OUT/findings.{md,json}                     the same with bootstrap intervals over clips
                                               (`vfm3d.zoo.findings`; several seeds: ``vfm3d zoo
                                               findings OUT0 OUT1 --out F``)

Twins are seeded with ``seed + 1`` (the zoo models were initialised from seed 0 before training).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vfm3d.utils.atomic import atomic_write_json, atomic_write_text
from vfm3d.zoo.common import EXPERIMENT_OFFSET, DataSpec, clip_seeds

#: Timestep indices (the adapter's default ``"index"`` mode: UniPC with flow shift 3) probed for
#: wan-mini: sigma ~ 0.003 (almost clean), 0.25, 0.5 (the paper's t=749), 0.9 (noisiest).
WAN_TIMESTEPS = (999, 900, 749, 250)
PAPER_TIMESTEP = 749


def experiment_settings(quick: bool) -> dict[str, Any]:
    """Data sizes, sampling, probe steps and timesteps of the default or ``quick`` experiment.

    Clips are 81 frames long and the probe samples 4 of the first 76 with gaps >= 5 (VidFM3D's
    sampling, the calibrated setting of docs/probe.md); every zoo model reads them in windows of
    the length it was trained on (`model_window`). The random-init twin of wan-mini is probed at
    the paper's timestep only (its features are noise-dominated at every timestep; this halves
    the cost).
    """
    settings = {
        "train_clips": 48,
        "eval_clips": 24,
        "eval_samples_per_clip": 2,
        "frames": 81,
        "first_n": 76,
        "min_gap": 5,
        "steps": 400,
        "timesteps": list(WAN_TIMESTEPS),
        "twin_timesteps": [PAPER_TIMESTEP],
    }
    if quick:
        settings.update(
            train_clips=8, eval_clips=3, steps=40, timesteps=[999, PAPER_TIMESTEP], frames=33,
            first_n=33,
        )  # fmt: skip
    return settings


def write_world(
    folder: Path, prefix: str, kind: str, count: int, seed: int, size: dict[str, int]
) -> Path:
    """Render ``count`` world clips with ids ``<prefix>-<kind>-<i:06d>`` (resumable).

    Clip ``i`` has seed ``vfm3d.world.clip_seed(seed, i)`` (as `generate_dataset`), but the ids
    carry the folder's ``prefix``, so that the train and evaluation folders never share an id in
    the sweep's feature cache.
    """
    from vfm3d.clip import ClipFolderWriter
    from vfm3d.world import clip_kind, clip_seed, render_clip

    writer = ClipFolderWriter(folder, info={"source": "world", "seed": seed, "kind": kind, **size})
    for i in range(count):
        k = clip_kind(kind, i)
        clip_id = f"{prefix}-{k}-{i:06d}"
        if clip_id not in writer.ids:
            writer.add(render_clip(k, clip_seed(seed, i), clip_id=clip_id, **size))
    return folder


def prepare_world(out: Path, seed: int, settings: dict[str, Any]) -> dict[str, Path]:
    """Generate the probe data (train: mixed kinds; eval: one folder per kind).

    Seeds are ``EXPERIMENT_OFFSET + seed`` (+ per-kind offsets); raises ``ValueError`` if any clip
    seed coincides with the training or held-out data of a shipped zoo model (the data specs in
    their ``provenance.json``; ``DataSpec(seed)`` when none is shipped).
    """
    zoo = DataSpec(seed=seed)
    zoo_seeds: set[int] = set()
    for spec in shipped_data_specs() or [zoo]:
        zoo_seeds |= clip_seeds(spec.heldout_seed, spec.heldout_clips)
        for k in range(spec.shards):
            zoo_seeds |= clip_seeds(spec.shard_seed(k), spec.shard_clips(k))
    size = {"frames": int(settings["frames"]), "height": zoo.height, "width": zoo.width}
    base = EXPERIMENT_OFFSET + seed
    folders = {"train": ("mixed", settings["train_clips"], base)}
    for k, kind in enumerate(("object", "scene")):
        folders[f"eval-{kind}"] = (kind, settings["eval_clips"], base + 1_000_003 * (k + 1))
    paths = {}
    for name, (kind, count, folder_seed) in folders.items():
        if clip_seeds(folder_seed, count) & zoo_seeds:
            raise ValueError(f"experiment data {name} shares clip seeds with the zoo's data")
        paths[name] = write_world(out / "world" / name, name, kind, count, folder_seed, size)
    return paths


def shipped_data_specs() -> list[DataSpec]:
    """The `DataSpec` of every shipped zoo model (from its ``provenance.json``)."""
    from vfm3d.zoo import MODELS, weights_dir

    specs = []
    for name in MODELS:
        record = weights_dir(name) / "provenance.json"
        if record.is_file():
            data = json.loads(record.read_text())["data"]
            fields = {k: v for k, v in data.items() if k in DataSpec.__dataclass_fields__}
            specs.append(DataSpec(**fields))
    return specs


def make_twins(out: Path, names: Sequence[str], seed: int) -> dict[str, Path]:
    """Save the random-init twin of each shipped zoo model into ``out/twins/<name>``."""
    from vfm3d.zoo import model_module, weights_dir

    twins = {}
    for name in names:
        folder = out / "twins" / name
        if not folder.is_dir():
            staging = folder.with_name(name + ".partial")
            model_module(name).twin(staging, seed + 1, weights_dir(name))
            staging.rename(folder)
        twins[name] = folder
    return twins


def model_window(name: str) -> int:
    """Frames per window for ``zoo/<name>``: the clip length it was trained on (its
    ``provenance.json``), rounded down to a count its frame rule accepts (videomae-mini: 8)."""
    from vfm3d.backbones import load as load_backbone
    from vfm3d.zoo import weights_dir

    record = weights_dir(name) / "provenance.json"
    frames = DataSpec().frames
    if record.is_file():
        frames = int(json.loads(record.read_text())["data"].get("frames", frames))
    window = load_backbone(f"zoo/{name}").rules.largest_valid_frames(frames)
    if not window:
        raise ValueError(f"zoo/{name}: no frame count <= {frames} fits its frame rule")
    return int(window)


def sweep_spec(
    name: str, twin: Path, world: dict[str, Path], settings: dict[str, Any], seed: int
) -> dict[str, Any]:
    """The sweep spec (dict form of the TOML) probing ``zoo/<name>`` and its twin (both read
    in windows of `model_window` frames)."""
    diffusion = name == "wan-mini"
    window = model_window(name)
    zoo_entry: dict[str, Any] = {
        "name": f"zoo/{name}",
        "layers": "all",
        "label": name,
        "window": window,
    }
    twin_entry: dict[str, Any] = {
        "name": _adapter(name),
        "weights": str(twin),
        "layers": "all",
        "label": f"{name}-random",
        "window": window,
    }
    if diffusion:
        zoo_entry["timesteps"] = settings["timesteps"]
        twin_entry["timesteps"] = settings["twin_timesteps"]
    return _spec([zoo_entry, twin_entry], world, settings, seed)


#: Reference points probed beside the zoo: the floor (constant features: the probe can only learn
#: the average geometry), patchified RGB (no learned features at all), and the ceilings: the
#: ``oracle`` (each frame's own geometry) and ``oracle-world`` (ground truth in frame 0's
#: coordinates; layer 1 adds the pose), which show what the probe reads when the 3D is there.
BASELINES: tuple[dict[str, Any], ...] = (
    {"name": "constant", "layers": [0]},
    {"name": "pixels", "layers": [0]},
    {"name": "oracle", "layers": [0]},
    {"name": "oracle-world", "layers": [0, 1]},
)


def _spec(
    backbones: list[dict[str, Any]], world: dict[str, Path], settings: dict[str, Any], seed: int
) -> dict[str, Any]:
    return {
        "seed": seed,
        "data": {
            "train": str(world["train"]),
            "eval": {"object": str(world["eval-object"]), "scene": str(world["eval-scene"])},
        },
        "probe": {
            "preset": "cpu_small",
            "steps": settings["steps"],
            "first_n": settings["first_n"],
            "min_gap": settings["min_gap"],
            "num_frames": 4,
            "eval_samples_per_clip": settings.get("eval_samples_per_clip", 1),
        },
        "backbones": backbones,
    }


def _adapter(name: str) -> str:
    from vfm3d.zoo import MODELS

    return MODELS[name][1]


def _run_one(job: tuple[str, dict[str, Any], str, int, bool]) -> list[dict[str, Any]]:
    """Worker: run one model's sweep (own process; ``threads`` torch threads)."""
    import torch

    from vfm3d.probe.sweep import parse_spec, run_sweep

    _, spec_dict, out, threads, progress = job
    torch.set_num_threads(threads)
    spec = parse_spec(spec_dict)
    return run_sweep(spec, Path(out), progress=progress, log=lambda *_: None)


def run_experiment(
    out: str | os.PathLike[str],
    quick: bool = False,
    seed: int = 0,
    workers: int = 1,
    threads: int = 1,
    progress: bool = True,
    names: Sequence[str] | None = None,
    overrides: dict[str, Any] | None = None,
) -> str:
    """Run (or resume) the experiment into ``out``; returns the findings summary (markdown).

    ``names`` restricts it to some zoo models; ``overrides`` updates `experiment_settings` (tests).
    """
    from vfm3d.backbones.registry import available
    from vfm3d.probe.sweep import write_outputs
    from vfm3d.zoo import MODELS

    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    shipped = [n for n in (names or MODELS) if f"zoo/{n}" in available()]
    if not shipped:
        raise FileNotFoundError("no zoo model is shipped: train and install one first")
    settings = {**experiment_settings(quick), **(overrides or {})}
    world = prepare_world(out_dir, seed, settings)
    twins = make_twins(out_dir, shipped, seed)
    jobs = [
        (
            name,
            sweep_spec(name, twins[name], world, settings, seed),
            str(out_dir / "sweeps" / name),
            threads,
            progress,
        )
        for name in shipped
    ]
    baselines = _spec([dict(b) for b in BASELINES], world, settings, seed)
    jobs.append(("baselines", baselines, str(out_dir / "sweeps" / "baselines"), threads, progress))
    if workers > 1:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(workers) as pool:
            results = pool.map(_run_one, jobs)
    else:
        results = [_run_one(job) for job in jobs]
    rows = []
    for (name, *_), sweep_rows in zip(jobs, results, strict=True):
        for row in sweep_rows:
            rows.append({**row, "run": str(Path("sweeps") / name / row["run"])})
    atomic_write_json(out_dir / "results.json", rows)
    atomic_write_json(
        out_dir / "spec.json",
        {"eval": {"object": str(world["eval-object"]), "scene": str(world["eval-scene"])}},
    )
    write_outputs(rows, out_dir)
    summary = summarize(rows)
    atomic_write_text(out_dir / "summary.md", summary)
    from vfm3d.zoo.findings import write_findings

    write_findings([out_dir], out_dir / "findings")
    return summary


# --------------------------------------------------------------------------- findings
def best(rows: Sequence[dict[str, Any]], backbone: str, split: str, metric: str = "point_err"):
    """The row of ``backbone`` on ``split`` with the lowest ``metric`` (None if absent)."""
    cands = [
        r
        for r in rows
        if r["backbone"] == backbone and r["split"] == split and _num(r.get(metric)) is not None
    ]
    return min(cands, key=lambda r: r[metric]) if cands else None


def _num(value: Any) -> float | None:
    if isinstance(value, (int, float)) and value == value:
        return float(value)
    return None


def summarize(rows: Sequence[dict[str, Any]]) -> str:
    """Markdown: the best layer(/timestep) of every backbone per split, and the three findings."""
    splits = sorted({r["split"] for r in rows})
    backbones = sorted({r["backbone"] for r in rows})
    lines = [
        "| backbone | split | best layer | t | point_err | depth_err | auc@30 | best depth_err "
        "(layer, t) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for b in backbones:
        for s in splits:
            r = best(rows, b, s)
            d = best(rows, b, s, "depth_err")
            if r is None or d is None:
                continue
            where = f"L{d['layer']}" + ("" if d.get("timestep") is None else f", t={d['timestep']}")
            lines.append(
                f"| {b} | {s} | {r['layer']} | {'-' if r.get('timestep') is None else r['timestep']}"
                f" | {r['point_err']:.3f} | {_fmt(r.get('depth_err'))} | {_fmt(r.get('auc@30'))}"
                f" | {d['depth_err']:.3f} ({where}) |"
            )
    lines += ["", *findings(rows, splits, "point_err"), *findings(rows, splits, "depth_err")]
    return "\n".join(lines) + "\n"


def _fmt(value: Any) -> str:
    v = _num(value)
    return "-" if v is None else f"{v:.3f}"


def findings(
    rows: Sequence[dict[str, Any]], splits: Sequence[str], metric: str = "point_err"
) -> list[str]:
    """One line per finding and split, with the numbers it rests on (``metric``, lower = better).

    1: best wan-mini vs its random twin; 2: best video model (wan-mini, videomae-mini) vs
    dinov2-mini; 3: wan-mini's mean ``metric`` per layer and per timestep index.
    """
    out: list[str] = []

    def err(backbone: str, split: str) -> float | None:
        r = best(rows, backbone, split, metric)
        return None if r is None else float(r[metric])

    for s in splits:
        wan, twin = err("wan-mini", s), err("wan-mini-random", s)
        if wan is not None and twin is not None:
            out.append(
                f"- [{s}] 1. generator encodes 3D: wan-mini best {metric} {wan:.3f} vs random "
                f"twin {twin:.3f} ({100 * (twin - wan) / twin:+.1f}% better than the twin)"
            )
        video = [v for v in (wan, err("videomae-mini", s)) if v is not None]
        image = err("dinov2-mini", s)
        if video and image is not None:
            out.append(
                f"- [{s}] 2. video vs per-frame image: best video model {min(video):.3f} vs "
                f"dinov2-mini {image:.3f} ({'holds' if min(video) < image else 'does not hold'})"
            )
        wan_rows = [
            r
            for r in rows
            if r["backbone"] == "wan-mini" and r["split"] == s and _num(r.get(metric))
        ]
        if wan_rows:
            layers = sorted({r["layer"] for r in wan_rows})
            steps = sorted({r["timestep"] for r in wan_rows})
            by_layer = ", ".join(
                f"L{v}: {_mean_by(wan_rows, 'layer', v, metric):.3f}" for v in layers
            )
            by_t = ", ".join(
                f"t={v}: {_mean_by(wan_rows, 'timestep', v, metric):.3f}" for v in steps
            )
            out.append(f"- [{s}] 3. wan-mini mean {metric} by layer: {by_layer}")
            out.append(f"- [{s}] 3. wan-mini mean {metric} by timestep index: {by_t}")
    return out


def _mean_by(rows: Sequence[dict[str, Any]], key: str, value: Any, metric: str) -> float:
    vals = [r[metric] for r in rows if r[key] == value]
    return sum(vals) / len(vals)


def load_rows(out: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The merged result rows of a finished experiment folder."""
    return json.loads((Path(out) / "results.json").read_text())
