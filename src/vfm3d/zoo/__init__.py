"""The miniature VidFM zoo: small models of the real architecture families trained on the world.

- ``wan-mini``: ``AutoencoderKLWan`` + ``WanTransformer3DModel`` (flow matching, unconditional);
- ``dinov2-mini``: ``Dinov2Model`` per frame, masked image modelling;
- ``videomae-mini``: ``VideoMAEForPreTraining``, masked video modelling (encoder shipped);
- ``vggt-mini``: `vfm3d.models.vggt.VGGT` with 3D supervision (points, depth, cameras);
- ``sora3r-mini``: Sora3R (point-map VAE + joint DiT, `vfm3d.recon4d`) from wan-mini, on static
  and dynamic clips; not a backbone (adapter None): `vfm3d.recon4d.sora3r.Sora3RModel` loads it.
- ``vgllm-mini``: VG-LLM (`vfm3d.spatial`: Qwen2.5-VL architecture + frozen vggt-mini geometry
  tokens) on world rooms and their VSI-Bench questions (``--no-geometry``: its twin); not a
  backbone: `vfm3d.spatial.model.load_vgllm` loads it.
- ``jog3r-mini``: JOG3R (`vfm3d.jointgen`: wan-mini + a reconstruction head, L_gen + lambda
  L_rec) on captioned static clips; not a backbone: `vfm3d.jointgen.model.JointGenerator` loads it.

Public API: `train_model` (one run: data, training, weights, curves, provenance), `install`
(copy a run's model into the package's ``zoo/weights/<name>``), `MODELS`, and
`vfm3d.zoo.experiment.run_experiment`. Shipped models load with
``vfm3d.backbones.load("zoo/<name>")``.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from vfm3d.zoo.common import (
    DataSpec,
    data_folders,
    load_clips,
    plot_curves,
    prepare_data,
    write_provenance,
)

#: zoo name -> (module, adapter name in `vfm3d.backbones`; None: not a backbone)
MODELS: dict[str, tuple[str, str | None]] = {
    "wan-mini": ("vfm3d.zoo.wan_mini", "wan2.1"),
    "dinov2-mini": ("vfm3d.zoo.dinov2_mini", "dinov2"),
    "videomae-mini": ("vfm3d.zoo.videomae_mini", "videomae"),
    "vggt-mini": ("vfm3d.zoo.vggt_mini", "vggt"),
    "sora3r-mini": ("vfm3d.zoo.sora3r_mini", None),
    "vgllm-mini": ("vfm3d.zoo.vgllm_mini", None),
    "jog3r-mini": ("vfm3d.zoo.jog3r_mini", None),
}
#: Files of a run folder shipped beside the model (documentation of how it was made).
SHIPPED_RUN_FILES = ("provenance.json", "training_curve.png", "samples.png")

__all__ = ["MODELS", "DataSpec", "install", "model_module", "train_model", "weights_dir"]


def model_module(name: str) -> ModuleType:
    """The trainer module of zoo model ``name`` (ValueError naming the choices otherwise)."""
    if name not in MODELS:
        raise ValueError(f"unknown zoo model {name!r}; choose one of {', '.join(MODELS)}")
    return importlib.import_module(MODELS[name][0])


def weights_dir(name: str) -> Path:
    """Where the shipped weights of ``name`` live (``src/vfm3d/zoo/weights/<name>``)."""
    model_module(name)
    return Path(__file__).resolve().parent / "weights" / name


def train_model(
    name: str,
    out: str | os.PathLike[str],
    steps: int | None = None,
    seed: int = 0,
    data_dir: str | os.PathLike[str] | None = None,
    device: str = "cpu",
    data: DataSpec | None = None,
    progress: bool = True,
    batch: int | None = None,
    time_limit_s: float | None = None,
    workers: int = 1,
    command: str | None = None,
    options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Train zoo model ``name`` into ``out`` (resumable) and return the provenance record.

    ``steps`` applies to every stage (default: the module's ``DEFAULT_STEPS``). World data is
    generated into ``data_dir`` (default ``out/data``) from ``data`` (default ``DataSpec(seed)``).
    Writes ``out/model/`` (the ``from_pretrained`` folder), ``out/train_<stage>.jsonl``,
    ``out/training_curve.png``, checkpoints and ``out/provenance.json``. ``batch`` overrides the
    module's batch size; ``time_limit_s`` stops training early (recorded in the provenance as
    ``steps_done`` < ``steps``); ``workers`` processes render the world data. ``command`` is recorded in the provenance
    (default: this process's command line). ``options``: keyword arguments of the module's
    ``train`` that only it takes (its ``OPTIONS``, e.g. sora3r-mini's ``init``, ``random_init``).

    Optional module hooks: ``datasets(spec) -> {name: DataSpec}`` (several world datasets, each
    in ``data_dir/<name>``; default the one ``spec``), ``HELDOUT`` (``train`` receives the
    held-out clips as ``heldout``), ``DISTRIBUTED`` with ``init_distributed(device)`` (under
    ``torchrun`` the process group is joined here; rank 0 alone renders the data and writes the
    curves and provenance), ``PROVENANCE_IN_MODEL`` (``provenance.json`` copied into ``model/``),
    ``load_data(folders) -> data`` (what ``train`` receives for a list of clip folders, the
    training shards or the held-out folder; default `load_clips`).
    """
    from vfm3d.zoo.common import resolve_device

    module = model_module(name)
    torch_device = resolve_device(device)
    spec = data or DataSpec(seed=seed)
    if steps is not None and int(steps) < 1:
        raise ValueError(f"--steps must be >= 1, got {steps}")
    options = dict(options or {})
    unknown = sorted(set(options) - set(getattr(module, "OPTIONS", ())))
    if unknown:
        flags = ", ".join("--" + k.replace("_", "-") for k in unknown)
        raise ValueError(f"{flags}: not an option of zoo model {name!r}")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not getattr(module, "DISTRIBUTED", False):
        raise ValueError(f"zoo model {name!r} does not train under torchrun (WORLD_SIZE={world})")
    stage_steps = {s: int(steps) if steps else n for s, n in module.DEFAULT_STEPS.items()}
    run = Path(out)
    run.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    deadline = None if time_limit_s is None else time.time() + float(time_limit_s)
    ctx = module.init_distributed(torch_device)[0] if world > 1 else None
    main = ctx is None or ctx.main
    try:
        specs = module.datasets(spec) if hasattr(module, "datasets") else {"": spec}
        base = Path(data_dir or run / "data")
        roots = {key: base / key if key else base for key in specs}
        if main:
            for key, sub in specs.items():
                prepare_data(roots[key], sub, workers=workers, progress=progress)
        if ctx is not None:
            ctx.barrier()
        folders = [data_folders(roots[k], s) for k, s in specs.items()]
        loader = getattr(module, "load_data", load_clips)
        clips = loader([f for train, _ in folders for f in train])
        if getattr(module, "HELDOUT", False):
            options["heldout"] = loader([heldout for _, heldout in folders])
        summary = module.train(
            run,
            clips,
            stage_steps,
            spec.seed,
            torch_device,
            progress=progress and main,
            batch=batch,
            deadline=deadline,
            **options,
        )
        path = run / "provenance.json"
        if main:
            plot_curves(run, list(module.STAGES))
            stages = {s: json.loads((run / f"stage_{s}.json").read_text()) for s in module.STAGES}
            record_extra = {
                "model": name,
                "adapter": MODELS[name][1],
                "steps_done": {s: v["steps_done"] for s, v in stages.items()},
                "batch": batch,
                "time_limit_s": time_limit_s,
                "summary": summary,
            }
            if len(specs) > 1 or "" not in specs:
                record_extra["datasets"] = {k: s.to_dict() for k, s in specs.items()}
            if world > 1:
                record_extra["world_size"] = world
            path = write_provenance(
                run,
                name,
                spec.seed,
                stage_steps,
                spec,
                torch_device,
                time.perf_counter() - t0,
                extra=record_extra,
                command=command,
            )
            if getattr(module, "PROVENANCE_IN_MODEL", False) and (run / "model").is_dir():
                shutil.copy2(path, run / "model" / "provenance.json")
        if ctx is not None:
            ctx.barrier()
        return json.loads(path.read_text())
    finally:
        if ctx is not None:
            ctx.close()


def install(run: str | os.PathLike[str], name: str, target: Path | None = None) -> Path:
    """Copy ``run/model`` and the run's provenance, curve (and samples) into ``weights_dir``.

    The previous content of the target folder is replaced.
    """
    source = Path(run) / "model"
    if not source.is_dir():
        raise FileNotFoundError(f"{source} not found: train the model first (vfm3d zoo train)")
    dest = target or weights_dir(name)
    staging = dest.with_name(dest.name + ".installing")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(source, staging)
    extras = [Path(run) / f for f in SHIPPED_RUN_FILES] + sorted(Path(run).glob("train_*.jsonl"))
    for file in extras:
        if file.is_file():
            shutil.copy2(file, staging / file.name)
    shutil.rmtree(dest, ignore_errors=True)
    staging.rename(dest)
    return dest
