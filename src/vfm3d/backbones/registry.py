"""Registry of backbone adapters: ``available()`` lists names, ``load(name, ...)`` builds one.

Each adapter module exposes ``from_pretrained(path, device, dtype) -> Backbone`` (a local
directory in the model's own published layout; never a hub id) and
``tiny(device, dtype, seed) -> Backbone`` (a small random-initialised config of the same class).
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from vfm3d.backbones.base import Backbone

# Nothing is ever fetched from a hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


@dataclass(frozen=True)
class AdapterSpec:
    name: str
    module: str
    family: str
    description: str


ADAPTERS: dict[str, AdapterSpec] = {
    spec.name: spec
    for spec in [
        AdapterSpec("wan2.1", "vfm3d.backbones.wan", "diffusion", "Wan2.1 T2V (VAE + DiT)"),
        AdapterSpec("cogvideox", "vfm3d.backbones.cogvideox", "diffusion", "CogVideoX (VAE + DiT)"),
        AdapterSpec(
            "hunyuanvideo", "vfm3d.backbones.hunyuanvideo", "diffusion", "HunyuanVideo (VAE + DiT)"
        ),
        AdapterSpec(
            "opensora2",
            "vfm3d.backbones.opensora2",
            "diffusion",
            "Open-Sora 2.0 (HunyuanVideo VAE + MMDiT)",
        ),
        AdapterSpec("vjepa2", "vfm3d.backbones.vjepa2", "encoder", "V-JEPA 2 video encoder"),
        AdapterSpec("videomae", "vfm3d.backbones.videomae", "encoder", "VideoMAE video encoder"),
        AdapterSpec("dinov2", "vfm3d.backbones.dinov2", "image", "DINOv2, per frame"),
        AdapterSpec("vggt", "vfm3d.backbones.vggt", "3d-expert", "VGGT aggregator (3D expert)"),
        AdapterSpec(
            "fast3r", "vfm3d.backbones.fast3r", "3d-expert", "Fast3R fusion decoder (3D expert)"
        ),
        AdapterSpec(
            "random", "vfm3d.backbones.baselines", "baseline", "fixed random patch projection"
        ),
        AdapterSpec("pixels", "vfm3d.backbones.baselines", "baseline", "patchified RGB"),
        AdapterSpec(
            "constant", "vfm3d.backbones.baselines", "baseline", "constant features (floor)"
        ),
        AdapterSpec(
            "oracle", "vfm3d.backbones.oracle", "baseline", "ground-truth geometry (ceiling)"
        ),
        AdapterSpec(
            "oracle-world",
            "vfm3d.backbones.oracle_world",
            "baseline",
            "ground truth in frame 0's coordinates (camera ceiling)",
        ),
    ]
}


def zoo_root() -> Path:
    """Folder holding the shipped miniature zoo weights (``zoo/<name>``)."""
    return Path(__file__).resolve().parent.parent / "zoo" / "weights"


# zoo name -> (adapter, sub-folder of zoo_root())
ZOO: dict[str, tuple[str, str]] = {
    "zoo/wan-mini": ("wan2.1", "wan-mini"),
    "zoo/dinov2-mini": ("dinov2", "dinov2-mini"),
    "zoo/videomae-mini": ("videomae", "videomae-mini"),
    "zoo/vggt-mini": ("vggt", "vggt-mini"),
}


def available() -> list[str]:
    """Names accepted by `load`: adapters, then shipped zoo models that are present."""
    names = list(ADAPTERS)
    names += [z for z, (_, sub) in ZOO.items() if (zoo_root() / sub).is_dir()]
    return names


def load(
    name: str,
    weights: str | os.PathLike[str] | None = None,
    tiny: bool = False,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    seed: int = 0,
) -> Backbone:
    """Build backbone ``name`` from local ``weights`` (a directory), or a tiny random config.

    Raises ``ValueError`` for an unknown name or a conflicting request and
    ``FileNotFoundError`` for a missing weights directory.
    """
    if name in ZOO:
        adapter_name, sub = ZOO[name]
        if weights is not None or tiny:
            raise ValueError(f"{name} is a shipped zoo model: do not pass weights or tiny")
        weights = zoo_root() / sub
        if not Path(weights).is_dir():
            raise FileNotFoundError(
                f"zoo weights for {name} not found at {weights}; train them with `vfm3d zoo train`"
            )
        name = adapter_name
    if name not in ADAPTERS:
        raise ValueError(f"unknown backbone {name!r}; available: {', '.join(available())}")
    spec = ADAPTERS[name]
    module = importlib.import_module(spec.module)
    if tiny and weights is not None:
        raise ValueError("pass either weights (a local directory) or tiny=True, not both")
    dtype = dtype or torch.float32
    if tiny:
        backbone = module.tiny(name=name, device=device, dtype=dtype, seed=seed)
    elif weights is None:
        if getattr(module, "NEEDS_WEIGHTS", True):
            raise ValueError(
                f"backbone {name!r} needs weights=<local directory> (or tiny=True for a test config)"
            )
        backbone = module.build(name=name, device=device, dtype=dtype, seed=seed)
    else:
        path = Path(weights)
        if not path.is_dir():
            raise FileNotFoundError(f"weights directory not found: {path}")
        backbone = module.from_pretrained(path, name=name, device=device, dtype=dtype)
    return backbone.eval().requires_grad_(False)
