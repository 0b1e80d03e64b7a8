"""``jog3r-mini``: JOG3R (wan-mini + a reconstruction head, ``L = L_gen + lambda L_rec``) trained
from the shipped ``zoo/wan-mini`` on captioned static world clips.

Data: the run's `DataSpec` as given (kind ``mixed``: object orbits and scene walks alternating,
static, with depth and cameras); ``vfm3d zoo train`` defaults (`DATA_DEFAULTS`): 1024 training
clips (4 shards, seeds as every zoo run) and 16 held-out clips, 9 frames of 32x32 (wan-mini's
size: 3 latent frames of 8x8). Each clip's caption comes from its meta
(`vfm3d.jointgen.captions.clip_caption`, "a red sofa and a lamp in a room, the camera walks
left"; `vfm3d.jointgen.train.load_captioned_clips`).

Training (`vfm3d.jointgen.train.train_jog3r`, `CONFIG` = `JointTrainConfig`'s defaults): 6000
steps of batch 8, AdamW lr 5e-4 (100 warm-up steps, cosine), lambda 1 (``--lambda-rec X``; 0 is
the generation-only twin: the head is not run and stays at its initialisation), caption dropout
0.1, mirrored flips; `JointGenerator.from_wan` of ``--init`` (default ``zoo/wan-mini``; a local
Wan2.1 diffusers folder goes through the same code) with a miniature text encoder trained here
on the captions and the probe's ``cpu_small`` heads on the DiT's middle and last blocks.
Held-out numbers before and after (``heldout_metrics.json``: fixed-noise ``gen`` / ``rec``, V2C
camera RRA/RTA/AUC@30) on the 16 held-out clips.

Cost (measured single-threaded on the development CPU, shared with another training job): a
step of batch 8 takes 0.51 s; rendering 0.03 s a clip, encoding the latents (plain and flipped)
~0.03 s a clip. Defaults: data ~30 s (``--workers`` renders shards in parallel), latents ~30 s,
6000 steps ~51 min, evaluations and saving < 1 min: **about 53 minutes on 1 thread**, less on 2
(not measured: the machine was shared). The twin costs the same minus the head (less).
Under ``torchrun`` it trains with DDP (`train_jog3r`), unchanged.

Output ``OUT/model/``: the `vfm3d.jointgen.model.JointGenerator` folder (``jog3r.json`` with
lambda and the init, ``transformer/``, ``vae/``, ``scheduler/``, ``text_encoder/``,
``tokenizer/``, ``head/``, the empty-prompt embedding; float32, about 11 MB) and a copy of
``provenance.json``; the run folder also holds ``train_joint.jsonl``, ``training_curve.png``,
``heldout_metrics.json`` and the checkpoint. ``--install`` puts it in ``zoo/jog3r-mini`` (a run
with another lambda in ``zoo/jog3r-mini-lambda<X>``, e.g. ``jog3r-mini-lambda0``); then
``vfm3d generate --model zoo/jog3r-mini`` and ``vfm3d cameras --model zoo/jog3r-mini`` use it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from vfm3d.jointgen.model import DEFAULT_INIT
from vfm3d.jointgen.train import (
    STAGES,
    JointTrainConfig,
    load_captioned_clips,
    train_jog3r,
)
from vfm3d.utils.distributed import init_distributed
from vfm3d.zoo.common import ClipTensors

NAME = "jog3r-mini"
DEFAULT_STEPS = {STAGES[0]: 6000}
#: `train_jog3r` settings (``batch`` and ``lambda_rec`` come from the run when given).
CONFIG = JointTrainConfig()
#: `JointGenerator.from_wan` keyword arguments (``head_config``, ``head_blocks``, ...; tests).
MODEL_KWARGS: dict[str, Any] = {}
#: ``vfm3d zoo train jog3r-mini`` data defaults (where the flags are not given).
DATA_DEFAULTS = {"train_clips": 1024}
#: `vfm3d.zoo.train_model` passes the held-out clips to `train`.
HELDOUT = True
#: Trains under ``torchrun`` (`vfm3d.zoo.train_model` joins the process group first).
DISTRIBUTED = True
#: Options of ``vfm3d zoo train`` that only this model takes.
OPTIONS = ("init", "lambda_rec")
#: `vfm3d.zoo.train_model` copies ``provenance.json`` into ``model/``.
PROVENANCE_IN_MODEL = True

__all__ = [
    "CONFIG",
    "DATA_DEFAULTS",
    "DEFAULT_STEPS",
    "NAME",
    "STAGES",
    "init_distributed",
    "install_name",
    "load_data",
    "train",
]


def load_data(folders: Sequence[Path]) -> tuple[ClipTensors, list[str]]:
    """The clips of ``folders`` in memory and their captions (`load_captioned_clips`)."""
    return load_captioned_clips(list(folders))


def install_name(options: Mapping[str, Any]) -> str:
    """The zoo folder a run installs into: ``jog3r-mini`` (lambda 1), else
    ``jog3r-mini-lambda<X>``."""
    value = options.get("lambda_rec")
    if value is None or float(value) == CONFIG.lambda_rec:
        return NAME
    return f"{NAME}-lambda{float(value):g}"


def train(
    out: Path,
    data: tuple[ClipTensors, list[str]],
    steps: dict[str, int],
    seed: int,
    device: torch.device,
    progress: bool = True,
    batch: int | None = None,
    deadline: float | None = None,
    heldout: tuple[ClipTensors, list[str]] | None = None,
    init: str | None = None,
    lambda_rec: float | None = None,
) -> dict[str, Any]:
    """Train into ``out`` (resumable); the model goes to ``out/model``. ``batch`` overrides
    `CONFIG`'s, ``lambda_rec`` its lambda, ``init`` the Wan model (default ``zoo/wan-mini``)."""
    clips, captions = data
    changes: dict[str, Any] = {}
    if batch:
        changes["batch"] = int(batch)
    if lambda_rec is not None:
        changes["lambda_rec"] = float(lambda_rec)
    config = dataclasses.replace(CONFIG, **changes)
    held, held_captions = heldout if heldout is not None else (None, None)
    return train_jog3r(
        out,
        clips,
        captions,
        int(steps[STAGES[0]]),
        seed=seed,
        device=device,
        init=init or DEFAULT_INIT,
        config=config,
        heldout=held,
        heldout_captions=held_captions,
        progress=progress,
        deadline=deadline,
        model_kwargs=MODEL_KWARGS,
    )
