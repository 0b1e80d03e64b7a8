"""Checkpoints as safetensors: model + optimiser state flattened into tensors, JSON metadata.

Tensor names: ``model/<param name>``, ``optim/<param index>/<state key>`` (AdamW ``step``,
``exp_avg``, ``exp_avg_sq``), ``rng/torch`` (and ``rng/cuda/<i>``). Metadata key ``meta`` holds
JSON: ``step``, optimiser ``param_groups`` (hyper-parameters), and anything the caller adds.
Files are written atomically (`vfm3d.utils.atomic`). No pickle anywhere.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from vfm3d.utils.atomic import atomic_path
from vfm3d.utils.optim import load_optimizer_state


def _read(source: Path, what: str) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """``(meta, tensors)`` of a safetensors file written here."""
    from safetensors import safe_open

    if not source.is_file():
        raise FileNotFoundError(f"{what} not found: {source}")
    with safe_open(str(source), framework="pt") as handle:
        meta = json.loads((handle.metadata() or {}).get("meta", "{}"))
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}
    return meta, tensors


def save_checkpoint(
    path: str | os.PathLike[str],
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None,
    meta: dict[str, Any],
) -> Path:
    """Write ``model`` (+ ``optimizer`` + RNG states) and ``meta`` to ``path`` atomically."""
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {
        f"model/{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()
    }
    full_meta = dict(meta)
    if optimizer is not None:
        state = optimizer.state_dict()
        for index, pstate in state["state"].items():
            for key, value in pstate.items():
                if not torch.is_tensor(value):
                    value = torch.tensor(value)
                tensors[f"optim/{index}/{key}"] = value.detach().cpu().contiguous()
        full_meta["param_groups"] = state["param_groups"]
    tensors["rng/torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng/cuda/{i}"] = s
    target = Path(path)
    with atomic_path(target) as tmp:
        save_file(tensors, str(tmp), metadata={"meta": json.dumps(full_meta)})
    return target


def load_checkpoint(
    path: str | os.PathLike[str],
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    restore_rng: bool = True,
) -> dict[str, Any]:
    """Load what `save_checkpoint` wrote into ``model`` (and ``optimizer``); return ``meta``."""
    source = Path(path)
    meta, tensors = _read(source, "checkpoint")
    model_state = {k[len("model/") :]: v for k, v in tensors.items() if k.startswith("model/")}
    missing, unexpected = model.load_state_dict(model_state, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"{source}: checkpoint does not match the model (missing {missing[:5]}, "
            f"unexpected {unexpected[:5]})"
        )
    if optimizer is not None:
        if "param_groups" not in meta:
            raise ValueError(f"{source}: no optimiser state in this checkpoint")
        state: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in tensors.items():
            if key.startswith("optim/"):
                _, index, name = key.split("/", 2)
                state.setdefault(int(index), {})[name] = value
        load_optimizer_state(optimizer, {"state": state, "param_groups": meta["param_groups"]})
    if restore_rng:
        if "rng/torch" in tensors:
            torch.set_rng_state(tensors["rng/torch"])
        cuda_states = [tensors[k] for k in sorted(tensors) if k.startswith("rng/cuda/")]
        if cuda_states and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(cuda_states)
    return meta


def save_weights(
    path: str | os.PathLike[str], model: torch.nn.Module, meta: dict[str, Any]
) -> Path:
    """Model weights only (names as in ``state_dict``), metadata ``meta`` JSON; atomic."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    target = Path(path)
    with atomic_path(target) as tmp:
        save_file(tensors, str(tmp), metadata={"meta": json.dumps(meta)})
    return target


def load_weights(path: str | os.PathLike[str], model: torch.nn.Module) -> dict[str, Any]:
    """Load `save_weights` output into ``model`` (strict); return its ``meta``."""
    meta, state = _read(Path(path), "weights")
    model.load_state_dict(state, strict=True)
    return meta
