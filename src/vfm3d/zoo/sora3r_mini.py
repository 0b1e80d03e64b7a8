"""``sora3r-mini``: Sora3R (point-map VAE + joint DiT) trained from ``wan-mini`` on world clips.

Data (`datasets`): the run's `DataSpec` (kind ``mixed``: object and scene clips, static) plus
the same spec of kind ``dynamic`` (moving objects, a ``dynamic`` mask) with seed ``seed +
DYNAMIC_SEED_OFFSET``, each with its own held-out folder; training reads both (``--train-clips``
clips of each kind), the held-out metrics both. Clips: 9 frames at 32x32 (wan-mini's), so the
video VAE gives 3 x 8 x 8 latents and the DiT 3 x 4 x 4 tokens.

Training (`vfm3d.recon4d.train_sora3r`): stage ``pointmap_vae`` (1000 steps, batch 8 whole
clips, lr 1e-4, from wan-mini's VAE) then stage ``dit`` (12000 steps, batch 16, lr 3e-4, from
wan-mini's DiT with the point-map half of the patch embedding zero; ``--random-init``: the same
architecture from random weights, the twin). ``--init PATH`` starts from another Wan diffusers
folder (a local Wan2.1) through the same code.

Cost (step times measured on the development CPU at wan-mini sizes): VAE step 0.94 s at 2
threads (1.23 s at 1; batch 8, 9 frames), DiT step 0.14 s (0.19 s; batch 16), rendering 0.04 s
per clip, encoding ~0.02 s per clip and VAE. For the default ``--train-clips 512`` (1024 clips): data ~45 s,
stage 1 ~940 s, statistics and encoding ~90 s, stage 2 ~1680 s, evaluations ~20 s: about 46
minutes on 2 threads, about an hour on 1.

Output ``OUT/model/``: the `vfm3d.recon4d.sora3r.Sora3RModel` folder (``sora3r.json``,
``video_vae/``, ``pointmap_vae/``, ``joint_dit/``) and a copy of ``provenance.json``; the run
folder also holds ``train_pointmap_vae.jsonl``, ``train_dit.jsonl``, ``training_curve.png``,
``heldout_metrics.json`` and the checkpoints.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from vfm3d.recon4d.train_sora3r import (
    DEFAULT_INIT,
    STAGES,
    TrainConfig,
    train_sora3r,
)
from vfm3d.utils.distributed import init_distributed
from vfm3d.zoo.common import ClipTensors, DataSpec

NAME = "sora3r-mini"
DEFAULT_STEPS = {"pointmap_vae": 1000, "dit": 12000}
#: Seed offset of the dynamic dataset (clear of the held-out and experiment offsets).
DYNAMIC_SEED_OFFSET = 5_000_000
#: Data flags of ``vfm3d zoo train sora3r-mini`` (512 clips of each kind).
DATA_DEFAULTS = {"train_clips": 512}
#: `vfm3d.zoo.train_model` passes the held-out clips to `train`.
HELDOUT = True
#: Trains under ``torchrun`` (`vfm3d.zoo.train_model` joins the process group first).
DISTRIBUTED = True
#: Options of ``vfm3d zoo train`` that only this model takes.
OPTIONS = ("init", "random_init", "pointmap_vae")
#: `vfm3d.zoo.train_model` copies ``provenance.json`` into ``model/``.
PROVENANCE_IN_MODEL = True

__all__ = [
    "DATA_DEFAULTS",
    "DEFAULT_STEPS",
    "NAME",
    "STAGES",
    "datasets",
    "init_distributed",
    "train",
]


def datasets(spec: DataSpec) -> dict[str, DataSpec]:
    """The world datasets of a run: ``{"static": spec, "dynamic": spec of kind dynamic}``
    (only ``{"dynamic": spec}`` when ``spec`` already is dynamic)."""
    if spec.kind == "dynamic":
        return {"dynamic": spec}
    dynamic = dataclasses.replace(spec, kind="dynamic", seed=spec.seed + DYNAMIC_SEED_OFFSET)
    return {"static": spec, "dynamic": dynamic}


def train(
    out: Path,
    data: ClipTensors,
    steps: dict[str, int],
    seed: int,
    device: torch.device,
    progress: bool = True,
    batch: int | None = None,
    deadline: float | None = None,
    heldout: ClipTensors | None = None,
    init: str | None = None,
    random_init: bool = False,
    pointmap_vae: str | None = None,
) -> dict[str, Any]:
    """Train both stages into ``out`` (resumable); the model goes to ``out/model``.

    ``batch`` sets the VAE batch (the DiT's is twice it, as wan-mini); ``init`` the video model
    (default ``zoo/wan-mini``); ``random_init`` trains the DiT from random weights;
    ``pointmap_vae`` reuses another run's stage-1 VAE (`copy_pointmap_vae_stage`).
    """
    config = TrainConfig(random_init=bool(random_init))
    if batch:
        config = dataclasses.replace(config, vae_batch=int(batch), dit_batch=2 * int(batch))
    return train_sora3r(
        out,
        data,
        heldout,
        steps,
        seed=seed,
        device=device,
        init=init or DEFAULT_INIT,
        config=config,
        progress=progress,
        deadline=deadline,
        pointmap_vae_from=pointmap_vae,
    )
