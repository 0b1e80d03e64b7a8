"""``vgllm-mini``: VG-LLM (Qwen2.5-VL architecture + frozen ``zoo/vggt-mini`` geometry tokens)
trained on world rooms and their VSI-Bench questions; ``--no-geometry`` trains its twin.

Data (`datasets`): the run's `DataSpec` turned into rooms (kind ``room``, one training shard:
`vfm3d.spatial.train.train_vgllm` reads one clip folder), in ``DATA/rooms/train/shard0`` and
``DATA/rooms/heldout`` (seed ``seed + 1000000``: scenes never seen in training, the evaluation
set). ``vfm3d zoo train`` defaults (`DATA_DEFAULTS`): 200 training rooms, 40 held-out rooms, 81
frames of 64x96 (the room kind pans 9 degrees a frame: two full turns). Questions: every training
room's (`vfm3d.spatial.generate_questions`, at most 8 of each type per scene, seed = the run's;
no test split inside the training folder: ``test_fraction`` 0), about 40 per room.

Training (`vfm3d.spatial.train.train_vgllm`, `CONFIG`): 3000 steps of batch 8 questions, AdamW lr
3e-4 (100 warm-up steps, cosine), 8 frames per question sampled uniformly and resized to 64x96
(8 x 12 patches of 8 px, 24 merged visual tokens a frame), byte-level BPE of 1024 tokens trained
on the training questions; model `VGLLMConfig.build`'s defaults (LM width 128, 4 layers, 4 heads,
2 KV heads; vision tower width 128, 4 blocks; merger hidden 512); geometry encoder
``zoo/vggt-mini`` (its layer -2, frozen, tokens cached per scene). Trained: LM, ``lm_head``,
vision tower (no pretrained one exists at this size) and merger. ``--no-geometry``: the twin,
the same sizes, initial weights, questions and batches without the geometry branch;
``--blind``: the text-only twin (the same questions and batches, no frames at all: what the
question text alone allows after training; ``zoo/vgllm-mini-blind``, not shipped). Parameters:
vision 1.04 M, LM 0.88 M, lm_head 0.09 M, merger 0.59 M, vggt 1.62 M (frozen).

Cost (measured single-threaded on the development CPU, shared with another training job): a
step of batch 8 takes 1.15 s; rendering a room of 81 frames at 64x96 0.23 s. Defaults: data ~1
min, questions, tokenizer and the geometry cache ~1 min, 3000 steps ~58 min: **about an hour on
1 thread**, less on 2 (not measured: the machine was shared); the twin slightly less. Under
``torchrun`` it trains with DDP (`train_vgllm`), unchanged.

Output ``OUT/model/``: the `vfm3d.spatial.model.save_vgllm` folder in float16 (config.json,
model.safetensors, tokenizer, preprocessor_config.json with the frame size and count; loaded as
float32 by `load_vgllm`, ``vfm3d ask --model``, ``vfm3d spatial eval --model``) and a copy of
``provenance.json``. The run folder also holds `train_vgllm`'s own files (its float32 model
folder, ``tokenizer/``, ``train_vgllm.jsonl``, ``train_summary.json``, the checkpoint) and
``training_curve.png``. ``--install`` puts it in ``zoo/vgllm-mini`` (the twin in
``zoo/vgllm-mini-no-geometry``).

Evaluation (not part of training; docs/spatial.md "Evaluation")::

    vfm3d spatial eval --model OUT/model --data OUT/data/rooms/heldout --split all \\
        --train-data OUT/data/rooms/train/shard0 --out eval/vgllm-mini
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from vfm3d.models.vggt import VGGTConfig
from vfm3d.spatial.train import STAGE, VGLLMTrainConfig, train_vgllm
from vfm3d.utils.distributed import init_distributed
from vfm3d.zoo.common import DataSpec

NAME = "vgllm-mini"
TWIN_NAME = "vgllm-mini-no-geometry"
BLIND_NAME = "vgllm-mini-blind"
STAGES = (STAGE,)
DEFAULT_STEPS = {STAGE: 3000}
#: `train_vgllm` settings (``steps``, ``seed`` and ``batch`` come from the run; tests shrink it).
CONFIG = VGLLMTrainConfig(
    steps=3000,
    batch=8,
    lr=3e-4,
    warmup=100,
    frames=8,
    size=(64, 96),
    vocab_size=1024,
    per_scene=8,
    test_fraction=0.0,
)
#: The frozen geometry encoder (a VGGT folder, or a `VGGTConfig` for a random one).
GEOMETRY: str | VGGTConfig = "zoo/vggt-mini"
#: ``vfm3d zoo train vgllm-mini`` data defaults (where the flags are not given).
DATA_DEFAULTS = {
    "train_clips": 200,
    "heldout_clips": 40,
    "frames": 81,
    "height": 64,
    "width": 96,
    "shards": 1,
}
#: Options of ``vfm3d zoo train`` that only this model takes.
OPTIONS = ("no_geometry", "blind")
#: Trains under ``torchrun`` (`vfm3d.zoo.train_model` joins the process group first).
DISTRIBUTED = True
#: `vfm3d.zoo.train_model` copies ``provenance.json`` into ``model/``.
PROVENANCE_IN_MODEL = True

__all__ = [
    "CONFIG",
    "DATA_DEFAULTS",
    "DEFAULT_STEPS",
    "NAME",
    "STAGES",
    "datasets",
    "init_distributed",
    "install_name",
    "load_data",
    "train",
]


def datasets(spec: DataSpec) -> dict[str, DataSpec]:
    """``{"rooms": spec}`` as rooms in one training shard (the other fields as given)."""
    return {"rooms": dataclasses.replace(spec, kind="room", shards=1)}


def load_data(folders: Sequence[Path]) -> Path:
    """The one room folder `train_vgllm` reads (clips are read by scene there, with their meta)."""
    if len(folders) != 1:
        raise ValueError(f"vgllm-mini trains on one room folder, got {len(folders)}")
    return Path(folders[0])


def install_name(options: Mapping[str, Any]) -> str:
    """The zoo folder a run installs into: ``vgllm-mini``, or a twin's."""
    if options.get("blind"):
        return BLIND_NAME
    return TWIN_NAME if options.get("no_geometry") else NAME


def train(
    out: Path,
    data: Path,
    steps: dict[str, int],
    seed: int,
    device: torch.device,
    progress: bool = True,
    batch: int | None = None,
    deadline: float | None = None,
    no_geometry: bool = False,
    blind: bool = False,
) -> dict[str, Any]:
    """Train into ``out`` (resumable) on the rooms of ``data``; the float16 model folder goes to
    ``out/model``. ``batch`` overrides `CONFIG`'s; ``no_geometry`` trains the twin, ``blind``
    the text-only twin (no frames, hence no geometry either)."""
    from vfm3d.spatial.model import load_vgllm, save_vgllm

    cfg = dataclasses.replace(
        CONFIG, steps=int(steps[STAGE]), seed=int(seed), batch=int(batch or CONFIG.batch)
    )
    time_limit = None if deadline is None else max(0.0, deadline - time.time())
    summary = train_vgllm(
        data,
        out,
        cfg,
        geometry=GEOMETRY,
        use_geometry=not (no_geometry or blind),
        blind=blind,
        device=device,
        progress=progress,
        time_limit=time_limit,
    )
    if int(os.environ.get("RANK", "0")) == 0:
        model, processor = load_vgllm(out)
        save_vgllm(model.to(torch.float16), processor, out / "model")
        summary["model_folder"] = "model/ (float16; load_vgllm reads it as float32)"
    return summary
