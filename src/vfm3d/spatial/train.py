"""Training VG-LLM (`vfm3d.spatial.model`) on world rooms and their VSI-Bench questions.

`train_vgllm(data, out, ...)`:

- **data**: a world folder of room clips (``vfm3d.world.generate_dataset(..., "room", ...)``);
  questions are generated from it (`vfm3d.spatial.generate_questions`, the ``train`` part of the
  split by scene) or read from a ``questions`` JSONL file (records with ``split`` keep
  ``train`` ones). Each scene gives ``frames`` frames sampled uniformly (as at evaluation),
  resized to ``size``; every question about the scene sees those frames.
- **tokenizer**: byte-level BPE trained on the training questions' prompts and answers
  (`train_tokenizer`, ``vocab_size``), saved to ``OUT/tokenizer`` before training (a resumed run
  reads it back, so ids never change).
- **model**: `VGLLMConfig.build` sizes (``model_sizes``), initialised from ``seed``; the
  geometry encoder is a VGGT weights folder (default ``zoo/vggt-mini``; a `VGGTConfig` gives a
  random one, for tests), frozen; ``use_geometry=False`` trains the twin (same sizes, same
  initialisation of every shared weight, same batches).
- **trained**: the LM, ``lm_head``, the merger **and the vision tower** (no pretrained Qwen ViT
  exists at this size, so it learns from scratch here; VG-LLM froze Qwen's pretrained ViT and
  trained only the LM and the merger). One AdamW learning rate for all (VG-LLM: 5e-6 LM, 1e-5
  merger, fine-tuning pretrained parts; these are trained from scratch).
- **loss**: cross-entropy on the answer tokens and their closing ``<|im_end|>`` only (prompt,
  system and image tokens are -100).
- **geometry cache** (``cache_geometry``, default on): the encoder is frozen and each scene's
  frames are fixed, so its tokens are computed once per scene (`VGLLMModel.encode_geometry`)
  and fed as ``geometry_patch_tokens``: the same numbers as re-encoding every step.
- **loop**: `vfm3d.utils.training.Trainer` (warm-up + cosine, clipping, JSONL log
  ``OUT/train_vgllm.jsonl``, resumable ``OUT/checkpoint_vgllm.safetensors`` of the trained
  modules and the optimiser; the frozen encoder is not in it). Batches come from
  ``(seed, step)``, so a resumed run draws what an uninterrupted one would.
- **distributed** (``torchrun``): gloo on CPU / NCCL on CUDA (``cuda:LOCAL_RANK``), the model in
  ``DistributedDataParallel``, each rank takes its contiguous share of the global batch
  (``batch`` divisible by the world size); rank 0 alone trains the tokenizer and writes logs,
  checkpoints and the model (other ranks read its tokenizer and checkpoint).
- **result**: the model folder is ``OUT`` itself (`save_vgllm`: config.json, model.safetensors,
  tokenizer, preprocessor_config.json with ``size_hw`` and ``num_frames``), loadable by
  `load_vgllm(OUT)` and ``vfm3d ask ... --model OUT``; ``OUT/train_summary.json``.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vfm3d.models.vggt import VGGTConfig
from vfm3d.spatial.model import (
    VGLLMConfig,
    VGLLMForConditionalGeneration,
    VGLLMProcessor,
    record_prompt,
    resolve_zoo,
    save_vgllm,
    tokenizer_corpus,
    train_tokenizer,
)
from vfm3d.utils.distributed import RankTrainer, init_distributed
from vfm3d.utils.training import Trainer, batch_generator, read_jsonl

STAGE = "vgllm"
DEFAULT_GEOMETRY = "zoo/vggt-mini"
TOKENIZER_DIR = "tokenizer"
SUMMARY_FILE = "train_summary.json"


@dataclass(frozen=True)
class VGLLMTrainConfig:
    """Settings of a `train_vgllm` run."""

    steps: int = 2000
    batch: int = 8
    lr: float = 3e-4
    warmup: int = 100
    weight_decay: float = 0.05
    grad_clip: float = 1.0
    frames: int = 8
    size: tuple[int, int] = (64, 96)
    vocab_size: int = 1024
    per_scene: int = 8
    test_fraction: float = 0.2
    seed: int = 0
    checkpoint_every: int = 200
    log_every: int = 10
    model_sizes: dict[str, Any] = field(default_factory=dict)
    #: encode each scene's fixed frames with the frozen encoder once (exact: no augmentation)
    cache_geometry: bool = True


# --------------------------------------------------------------------------- data
def training_records(
    data: str | os.PathLike[str],
    questions: str | os.PathLike[str] | None,
    cfg: VGLLMTrainConfig,
) -> list[dict[str, Any]]:
    """The training questions: ``questions`` (its ``train`` records when they carry a split) or
    generated from ``data`` (the ``train`` scenes of the split by scene)."""
    if questions is not None:
        records = read_jsonl(Path(questions))
        if not records:
            raise ValueError(f"{questions}: no question records")
        if any("split" in r for r in records):
            records = [r for r in records if r.get("split", "train") == "train"]
        return records
    from vfm3d.spatial.questions import QuestionConfig, generate_questions

    records, _ = generate_questions(
        data,
        seed=cfg.seed,
        config=QuestionConfig(per_scene=cfg.per_scene),
        split="train",
        test_fraction=cfg.test_fraction,
    )
    if not records:
        raise ValueError(f"{data}: no training questions (room clips needed)")
    return records


def scene_frames(
    data: str | os.PathLike[str],
    scenes: list[str],
    processor: VGLLMProcessor,
    num_frames: int,
) -> dict[str, torch.Tensor]:
    """uint8 ``[S, 3, H, W]`` frames of each scene (uniformly sampled, resized)."""
    from vfm3d.clip import ClipFolder

    folder = ClipFolder(data)
    missing = sorted(set(scenes) - set(folder.ids))
    if missing:
        raise ValueError(f"{data}: questions name scenes it lacks: {missing[:3]}")
    out = {}
    for name in scenes:
        frames, _ = processor.sample(folder.load(name).frames, num_frames)
        out[name] = (frames * 255.0).round().to(torch.uint8)
    return out


# --------------------------------------------------------------------------- model
def geometry_source(geometry: str | os.PathLike[str] | VGGTConfig) -> tuple[VGGTConfig, Any]:
    """(config, weights folder or None) of the geometry encoder."""
    if isinstance(geometry, VGGTConfig):
        return geometry, None
    folder = resolve_zoo(geometry)
    config_file = folder / "config.json"
    return (VGGTConfig.from_json(config_file) if config_file.is_file() else VGGTConfig()), folder


def build_model(
    tokenizer: Any,
    geometry: VGGTConfig,
    use_geometry: bool,
    sizes: Mapping[str, Any],
    seed: int,
) -> VGLLMForConditionalGeneration:
    """A freshly initialised model from ``seed``. The twin (``use_geometry=False``) starts from
    the very weights of the model with geometry (same seed) minus its ``vggt`` and ``merger``."""
    sizes = dict(sizes)
    sizes.setdefault("patch_size", geometry.patch_size)
    config = VGLLMConfig.build(tokenizer, geometry, **sizes)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = VGLLMForConditionalGeneration(config)
    if use_geometry:
        return model
    twin = VGLLMForConditionalGeneration(VGLLMConfig.build(tokenizer, None, **sizes))
    state = model.state_dict()
    twin.load_state_dict({k: state[k] for k in twin.state_dict()}, strict=True)
    return twin


def trained_modules(
    model: VGLLMForConditionalGeneration, blind: bool = False
) -> dict[str, nn.Module]:
    """What training updates: vision tower (not when ``blind``: no frames reach it), LM,
    ``lm_head`` and (with geometry) the merger."""
    modules: dict[str, nn.Module] = {
        "language_model": model.model.language_model,
        "lm_head": model.lm_head,
    }
    if not blind:
        modules["visual"] = model.model.visual
    if model.merger is not None:
        modules["merger"] = model.merger
    return modules


class _Objective(nn.Module):
    """The model's loss as one module call (what DDP synchronises)."""

    def __init__(self, model: VGLLMForConditionalGeneration) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        return self.model(**batch).loss


def _to(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {
        k: v.to(device) if isinstance(v, torch.Tensor) else [t.to(device) for t in v]
        for k, v in batch.items()
    }


# --------------------------------------------------------------------------- entry
def train_vgllm(
    data: str | os.PathLike[str],
    out: str | os.PathLike[str],
    config: VGLLMTrainConfig | None = None,
    geometry: str | os.PathLike[str] | VGGTConfig = DEFAULT_GEOMETRY,
    use_geometry: bool = True,
    questions: str | os.PathLike[str] | None = None,
    device: str | torch.device = "cpu",
    progress: bool = True,
    time_limit: float | None = None,
    blind: bool = False,
) -> dict[str, Any]:
    """Train VG-LLM (or with ``use_geometry=False`` its twin, with ``blind=True`` the text-only
    twin: the same questions and batches with no frames, its processor marked ``text_only``)
    on the room clips of ``data``; the model folder is ``out``. Resumes from ``out``'s
    checkpoint. Returns the summary (also ``out/train_summary.json``). See the module
    docstring."""
    cfg = config or VGLLMTrainConfig()
    if blind and use_geometry:
        raise ValueError("blind training has no frames: pass use_geometry=False with blind=True")
    target = Path(out)
    target.mkdir(parents=True, exist_ok=True)
    ranks, dev = init_distributed(torch.device(device))
    try:
        if ranks.world > 1 and time_limit is not None:
            raise ValueError("time_limit under torchrun could stop ranks at different steps")
        ranks.share(cfg.batch)
        started = time.time()
        records = training_records(data, questions, cfg)
        scenes = sorted({str(r["scene_name"]) for r in records})

        from transformers import PreTrainedTokenizerFast

        tok_dir = target / TOKENIZER_DIR
        if ranks.main and not (tok_dir / "tokenizer.json").is_file():
            train_tokenizer(tokenizer_corpus(records), cfg.vocab_size).save_pretrained(str(tok_dir))
        ranks.barrier()
        tokenizer = PreTrainedTokenizerFast.from_pretrained(str(tok_dir))

        geo_config, geo_folder = geometry_source(geometry)
        model = build_model(tokenizer, geo_config, use_geometry, cfg.model_sizes, cfg.seed)
        if use_geometry and geo_folder is not None:
            model.load_geometry_encoder(geo_folder)
        model.to(dev)
        processor = VGLLMProcessor.for_model(tokenizer, model.config, tuple(cfg.size))
        processor.extra["num_frames"] = int(cfg.frames)
        if blind:
            processor.extra["text_only"] = True
            model.model.visual.requires_grad_(False)
            empty = torch.zeros((0, 3, 1, 1), dtype=torch.uint8)
            frames = {name: empty for name in scenes}
        else:
            frames = scene_frames(data, scenes, processor, cfg.frames)
        prompts = [record_prompt(r) for r in records]
        answers = [str(r["ground_truth"]) for r in records]
        videos = [frames[str(r["scene_name"])] for r in records]
        cached: dict[str, torch.Tensor] = {}
        if use_geometry and cfg.cache_geometry:
            for name, clip in frames.items():
                cached[name] = model.model.encode_geometry(clip.to(dev).float() / 255.0)
        geometry_of = [cached.get(str(r["scene_name"])) for r in records]

        objective: nn.Module = _Objective(model)
        if ranks.active:
            from torch.nn.parallel import DistributedDataParallel

            ids = [dev.index] if dev.type == "cuda" else None
            objective = DistributedDataParallel(objective, device_ids=ids)

        modules = trained_modules(model, blind)
        warmup = max(1, min(cfg.warmup, cfg.steps // 5))
        common: dict[str, Any] = dict(
            steps=cfg.steps,
            lr=cfg.lr,
            warmup=warmup,
            weight_decay=cfg.weight_decay,
            grad_clip=cfg.grad_clip,
            log_every=cfg.log_every,
        )
        deadline = None if time_limit is None else started + float(time_limit)
        trainer: Trainer
        if ranks.main:
            trainer = Trainer(
                target,
                STAGE,
                modules,
                checkpoint_every=cfg.checkpoint_every,
                progress=progress,
                deadline=deadline,
                **common,
            )
        else:
            scratch = target / ".ranks" / f"rank{ranks.rank}"
            scratch.mkdir(parents=True, exist_ok=True)
            trainer = RankTrainer(
                scratch,
                STAGE,
                modules,
                checkpoint_every=cfg.steps + 1,
                progress=False,
                shared_checkpoint=target / f"checkpoint_{STAGE}.safetensors",
                **common,
            )
        local = ranks.share(cfg.batch)

        def step_fn(step: int) -> dict[str, torch.Tensor]:
            gen = batch_generator(cfg.seed, step)
            pick = torch.randint(len(records), (cfg.batch,), generator=gen).tolist()[local]
            batch = processor(
                [videos[i].float() / 255.0 for i in pick],
                [prompts[i] for i in pick],
                [answers[i] for i in pick],
            )
            if cached:
                batch.pop("geometry_pixel_values")
                batch["geometry_patch_tokens"] = [geometry_of[i] for i in pick]
            return {"loss": objective(_to(batch, dev))}

        log = trainer.fit(step_fn)
        model.eval()
        summary: dict[str, Any] = {}
        if ranks.main:
            save_vgllm(model, processor, target)
            losses = [r["loss"] for r in log]
            summary = {
                "model": "vgllm-blind"
                if blind
                else ("vgllm" if use_geometry else "vgllm-no-geometry"),
                "use_geometry": bool(use_geometry),
                "blind": bool(blind),
                "geometry_encoder": str(geo_folder) if geo_folder else "random (VGGTConfig)",
                "trained": sorted(modules),
                "frozen": ["vggt"] if use_geometry else [],
                "parameters": {
                    name: int(sum(p.numel() for p in m.parameters()))
                    for name, m in {
                        **modules,
                        **({"vggt": model.vggt} if model.vggt else {}),
                    }.items()
                },
                "records": len(records),
                "scenes": len(scenes),
                "per_type": dict(sorted(Counter(r["question_type"] for r in records).items())),
                "vocab_size": len(tokenizer),
                "steps": cfg.steps,
                "steps_done": int(log[-1]["step"]) + 1 if log else 0,
                "loss_first": losses[0] if losses else None,
                "loss_last": losses[-1] if losses else None,
                "world_size": ranks.world,
                "device": str(dev),
                "seconds": time.time() - started,
                "config": {**asdict(cfg), "size": list(cfg.size)},
                "data": str(data),
                "questions": None if questions is None else str(questions),
            }
            (target / SUMMARY_FILE).write_text(json.dumps(summary, indent=2, default=str) + "\n")
        ranks.barrier()
        return summary
    finally:
        ranks.close()
