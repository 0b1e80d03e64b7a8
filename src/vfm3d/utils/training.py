"""Generic training machinery shared by the systems and the zoo (no zoo specifics).

Training loop (`Trainer`): AdamW (fused where possible, `vfm3d.utils.optim`), linear warm-up then cosine decay, gradient clipping, a tqdm bar,
one JSONL line of losses every ``log_every`` steps, and a resumable checkpoint (model and optimiser
state in one safetensors file, written atomically) every ``checkpoint_every`` steps. Batches are
drawn with a generator seeded by ``(seed, step)``, so a resumed run draws the same batches as an
uninterrupted one. Also: clip folders held in memory (`ClipTensors`, `load_clips`), JSONL reading,
seeded initialisation, parameter counts, random token masks.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vfm3d.utils.atomic import atomic_path, atomic_write_json, atomic_write_text
from vfm3d.utils.optim import adamw, load_optimizer_state


@dataclass
class ClipTensors:
    """A clip folder held in memory (N clips of T frames).

    ``frames`` uint8 ``[N, T, H, W, 3]``; ``depth`` float32 ``[N, T, H, W]``; ``valid`` bool
    ``[N, T, H, W]``; ``intrinsics`` float32 ``[N, T, 3, 3]``; ``cam_to_world`` float64
    ``[N, T, 4, 4]``; ``kinds`` the ``meta["kind"]`` of each clip.
    """

    frames: torch.Tensor
    depth: torch.Tensor
    valid: torch.Tensor
    intrinsics: torch.Tensor
    cam_to_world: torch.Tensor
    kinds: list[str]

    def __len__(self) -> int:
        return int(self.frames.shape[0])

    def video(self, index: torch.Tensor, device: torch.device | str) -> torch.Tensor:
        """Clips ``index`` as float ``[B, T, 3, H, W]`` in [0, 1] on ``device``."""
        x = self.frames[index].to(device)
        return x.permute(0, 1, 4, 2, 3).float() / 255.0


def load_clips(folders: str | os.PathLike[str] | list[Path]) -> ClipTensors:
    """Read every clip of one or several clip folders into memory (all must share T, H, W)."""
    from vfm3d.clip import ClipFolder

    paths = folders if isinstance(folders, list) else [Path(folders)]
    clips = [clip for folder in paths for clip in ClipFolder(folder)]
    if not clips:
        raise ValueError(f"clip folders {[str(p) for p in paths]} are empty")
    shapes = {c.frames.shape for c in clips}
    if len(shapes) != 1:
        raise ValueError(f"clip folders {paths}: clips differ in shape {sorted(shapes)}")

    def stack(name: str) -> torch.Tensor:
        return torch.from_numpy(np.stack([np.asarray(getattr(c, name)) for c in clips]))

    return ClipTensors(
        frames=stack("frames"),
        depth=stack("depth").float(),
        valid=stack("valid").bool(),
        intrinsics=stack("intrinsics").float(),
        cam_to_world=stack("cam_to_world").double(),
        kinds=[str(c.meta.get("kind", "?")) for c in clips],
    )


def batch_generator(seed: int, step: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator seeded by ``(seed, step)``: step ``k`` draws the same batch on every run."""
    gen = torch.Generator(device="cpu")
    gen.manual_seed(int(np.random.SeedSequence([int(seed), int(step)]).generate_state(1)[0]))
    return gen


# --------------------------------------------------------------------------- checkpoints
def _flatten_optimizer(state: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], str]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, entry in state["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim/{idx}/{key}"] = value.detach().to("cpu").contiguous()
            else:
                scalars.setdefault(str(idx), {})[key] = value
    meta = json.dumps({"param_groups": state["param_groups"], "scalars": scalars})
    return tensors, meta


def _unflatten_optimizer(tensors: Mapping[str, torch.Tensor], meta: str) -> dict[str, Any]:
    info = json.loads(meta)
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if not name.startswith("optim/"):
            continue
        _, idx, key = name.split("/", 2)
        state.setdefault(int(idx), {})[key] = value
    for idx, entry in info["scalars"].items():
        state.setdefault(int(idx), {}).update(entry)
    return {"state": state, "param_groups": info["param_groups"]}


def save_checkpoint(
    path: Path, modules: Mapping[str, nn.Module], optimizer: torch.optim.Optimizer, step: int
) -> None:
    """Write ``modules``' weights and the optimiser state at ``step`` to ``path`` (atomically)."""
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}
    for prefix, module in modules.items():
        for key, value in module.state_dict().items():
            tensors[f"model/{prefix}/{key}"] = value.detach().to("cpu").contiguous()
    opt_tensors, opt_meta = _flatten_optimizer(optimizer.state_dict())
    tensors.update(opt_tensors)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"step": str(step), "optimizer": opt_meta})


def load_checkpoint(
    path: Path, modules: Mapping[str, nn.Module], optimizer: torch.optim.Optimizer
) -> int:
    """Restore ``modules`` and ``optimizer`` from `save_checkpoint`'s file; returns the step."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as handle:
        meta = handle.metadata() or {}
    if "step" not in meta or "optimizer" not in meta:
        raise ValueError(f"{path}: not a zoo training checkpoint (metadata lacks step/optimizer)")
    tensors = load_file(str(path))
    for prefix, module in modules.items():
        head = f"model/{prefix}/"
        state = {k[len(head) :]: v for k, v in tensors.items() if k.startswith(head)}
        module.load_state_dict(state, strict=True)
    load_optimizer_state(optimizer, _unflatten_optimizer(tensors, meta["optimizer"]))
    return int(meta["step"])


# --------------------------------------------------------------------------- training loop
def lr_at(step: int, steps: int, lr: float, warmup: int, min_lr_ratio: float = 0.05) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to ``lr * min_lr_ratio``."""
    if step < warmup:
        return lr * (step + 1) / max(1, warmup)
    progress = (step - warmup) / max(1, steps - warmup)
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return lr * (min_lr_ratio + (1.0 - min_lr_ratio) * cosine)


StepFn = Callable[[int], dict[str, torch.Tensor]]


@dataclass
class Trainer:
    """One training stage: ``step_fn(step)`` returns losses (``"loss"`` is optimised).

    Writes ``<out>/train_<stage>.jsonl`` and checkpoints ``<out>/checkpoint_<stage>.safetensors``.
    """

    out: Path
    stage: str
    modules: Mapping[str, nn.Module]
    steps: int
    lr: float = 1e-3
    warmup: int = 100
    weight_decay: float = 0.05
    grad_clip: float = 1.0
    checkpoint_every: int = 200
    log_every: int = 10
    progress: bool = True
    #: ``time.time()`` after which the stage stops early (checkpointed and recorded); None = never.
    deadline: float | None = None

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        params = [p for m in self.modules.values() for p in m.parameters() if p.requires_grad]
        self.optimizer = adamw(
            params, lr=self.lr, betas=(0.9, 0.95), weight_decay=self.weight_decay
        )
        self.params = params

    @property
    def checkpoint_path(self) -> Path:
        return self.out / f"checkpoint_{self.stage}.safetensors"

    @property
    def log_path(self) -> Path:
        return self.out / f"train_{self.stage}.jsonl"

    def fit(self, step_fn: StepFn) -> list[dict[str, float]]:
        """Run (or resume) the stage; returns the logged records of the whole stage."""
        from tqdm import tqdm

        start = 0
        if self.checkpoint_path.is_file():
            start = load_checkpoint(self.checkpoint_path, self.modules, self.optimizer)
        records = [r for r in read_jsonl(self.log_path) if r["step"] < start]
        atomic_write_text(self.log_path, "".join(json.dumps(r) + "\n" for r in records))
        for module in self.modules.values():
            module.train()
        bar = tqdm(
            range(start, self.steps),
            desc=self.stage,
            initial=start,
            total=self.steps,
            disable=not self.progress,
        )
        t0 = time.perf_counter()
        done = start
        with open(self.log_path, "a") as log:
            for step in bar:
                lr = lr_at(step, self.steps, self.lr, self.warmup)
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
                losses = step_fn(step)
                loss = losses["loss"]
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"{self.stage}: non-finite loss at step {step}")
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip)
                self.optimizer.step()
                if step % self.log_every == 0 or step == self.steps - 1:
                    record = {"step": step, "lr": lr, "time_s": time.perf_counter() - t0}
                    record.update({k: float(v.detach()) for k, v in losses.items()})
                    records.append(record)
                    log.write(json.dumps(record) + "\n")
                    log.flush()
                    bar.set_postfix(loss=f"{record['loss']:.4f}")
                done = step + 1
                late = self.deadline is not None and time.time() > self.deadline
                if done % self.checkpoint_every == 0 or done == self.steps or late:
                    save_checkpoint(self.checkpoint_path, self.modules, self.optimizer, done)
                if late:
                    break
        status = {"stage": self.stage, "steps": self.steps, "steps_done": done}
        status["stopped_early"] = done < self.steps
        atomic_write_json(self.out / f"stage_{self.stage}.json", status)
        for module in self.modules.values():
            module.eval()
        return records


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Records of a JSONL file ([] when absent; a torn last line is dropped)."""
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return out


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def seeded_init(seed: int, factory: Callable[[], Any]) -> Any:
    """``factory()`` with torch's CPU RNG seeded by ``seed`` (the global RNG is left untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return factory()


def random_mask(batch: int, tokens: int, ratio: float, gen: torch.Generator) -> torch.Tensor:
    """``[batch, tokens]`` bool with exactly ``int(ratio * tokens)`` True per row, at random."""
    ranks = torch.rand(batch, tokens, generator=gen).argsort(dim=1).argsort(dim=1)
    return ranks < int(ratio * tokens)
