"""`ProbeConfig`: every size and hyper-parameter of the probe, its data sampling and training.

Defaults are the paper's (VidFM3D ``configs/model/probe.yaml`` + VGGT's aggregator/heads):
D=1024, 16 heads, 4 (frame, global) block pairs, MLP ratio 4, LayerScale 0.01, qk-norm, RoPE base
100, camera head with a 4-block trunk and 4 refinement iterations, DPT heads with 256 features
and stage channels (256, 512, 1024, 1024) fed by the 4 intermediate outputs, output 294 x 518.
`ProbeConfig.cpu_small()` is a tiny preset for CPU tests and the demo.

A config file is TOML or JSON holding these field names, either at top level or under a
``[probe]`` table; unknown keys are an error (naming the key).
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class ProbeConfig:
    """Probe model, data sampling, loss and optimiser settings (see module docstring)."""

    # ---- model
    embed_dim: int = 1024
    num_heads: int = 16
    depth: int = 4
    mlp_ratio: float = 4.0
    num_register_tokens: int = 4
    init_values: float = 0.01
    qk_norm: bool = True
    rope_base: float = 100.0
    camera_trunk_depth: int = 4
    camera_iters: int = 4
    dpt_features: int = 256
    dpt_out_channels: tuple[int, int, int, int] = (256, 512, 1024, 1024)
    dpt_layers: tuple[int, int, int, int] = (0, 1, 2, 3)
    # (H, W) of the predicted maps; None = the clips' own resolution.
    output_size: tuple[int, int] | None = (294, 518)
    # Activation checkpointing (recompute in backward; saves memory, costs time). The trunk is
    # checkpointed by default, as VidFM3D's probe is (``gradient_checkpointing: true``): at its
    # size they are what separates ~11 GB from ~18 GB per step (fp32). At the "small" benchmark
    # size the recompute costs 10-20% of the step for ~20 MB (docs/probe.md "Trunk
    # checkpointing"); ``cpu_small`` turns it off.
    # On a small CPU box the DPT heads are the other memory hogs (``checkpoint_heads``).
    checkpoint_trunk: bool = True
    checkpoint_heads: bool = False
    # Heads in fp32 on every device. False = VidFM3D's behaviour: the heads leave CUDA autocast
    # only, so on CPU they run under the caller's autocast (bf16 when training in bf16).
    heads_fp32: bool = False
    # DPT heads' memory layout: "auto" = channels-last (NHWC) under CPU bf16 autocast when
    # dpt_features >= 128 (oneDNN's bf16 convolutions ~3x faster there), else the default
    # layout; "on" / "off" force it. Same function either way (`ProbeModel._place_heads`).
    channels_last_heads: str = "auto"
    # ---- data
    num_frames: int = 4
    first_n: int = 76
    min_gap: int = 5
    # ---- loss
    point_weight: float = 1.0
    depth_weight: float = 1.0
    camera_weight: float = 1.0
    weight_trans: float = 1.0
    weight_rot: float = 1.0
    weight_fov: float = 0.5
    camera_gamma: float = 0.6
    # "vggt": conf_pred * err - conf_alpha * log(conf_pred) (trains the confidence outputs);
    # "gt": VidFM3D's loss, err weighted by the ground-truth confidence only (1 when absent);
    # "detached": VidFM3D's loss for the maps + the confidence trained on the detached error.
    conf_mode: str = "vggt"
    conf_alpha: float = 0.2
    normalize_points: bool = True
    # ---- optimiser / schedule
    lr: float = 1e-4
    min_lr: float = 1e-6
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.05
    warmup_steps: int = 100
    grad_clip: float = 1.0
    batch_size: int = 4
    # ---- bookkeeping
    checkpoint_every: int = 100
    log_every: int = 1
    eval_samples_per_clip: int = 1

    def __post_init__(self) -> None:
        for name in ("dpt_out_channels", "dpt_layers", "betas"):
            setattr(self, name, tuple(getattr(self, name)))
        if self.output_size is not None:
            self.output_size = (int(self.output_size[0]), int(self.output_size[1]))
        self.validate()

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Raise `ValueError` naming the first field that breaks a rule."""
        if self.embed_dim % self.num_heads:
            raise ValueError(
                f"embed_dim ({self.embed_dim}) must be divisible by num_heads ({self.num_heads})"
            )
        if (self.embed_dim // self.num_heads) % 4:
            raise ValueError("embed_dim / num_heads must be a multiple of 4 (2D RoPE)")
        if len(self.dpt_out_channels) != 4 or len(self.dpt_layers) != 4:
            raise ValueError("dpt_out_channels and dpt_layers must each have 4 entries")
        if any(not 0 <= i < self.depth for i in self.dpt_layers):
            raise ValueError(f"dpt_layers {self.dpt_layers} must lie in [0, depth={self.depth})")
        if self.num_frames < 1:
            raise ValueError("num_frames must be >= 1")
        if (self.num_frames - 1) * self.min_gap + 1 > self.first_n:
            raise ValueError(
                f"num_frames={self.num_frames} with min_gap={self.min_gap} needs "
                f"first_n >= {(self.num_frames - 1) * self.min_gap + 1}, got {self.first_n}"
            )
        if self.conf_mode not in ("vggt", "gt", "detached"):
            raise ValueError(
                f"conf_mode must be 'vggt', 'gt' or 'detached', got {self.conf_mode!r}"
            )
        if self.channels_last_heads not in ("auto", "on", "off"):
            raise ValueError(
                f"channels_last_heads must be 'auto', 'on' or 'off', got {self.channels_last_heads!r}"
            )
        if self.camera_iters < 1 or self.camera_trunk_depth < 1:
            raise ValueError("camera_iters and camera_trunk_depth must be >= 1")
        if self.batch_size < 1 or self.checkpoint_every < 1:
            raise ValueError("batch_size and checkpoint_every must be >= 1")

    # ------------------------------------------------------------------ presets
    @classmethod
    def paper(cls) -> ProbeConfig:
        """The paper's probe (the defaults)."""
        return cls()

    @classmethod
    def cpu_small(cls, **overrides: Any) -> ProbeConfig:
        """A tiny probe of the same architecture for CPU tests and the demo.

        Calibrated on held-out world clips (docs/probe.md "Calibration"): width 64 with 4 heads
        (at 32 / 2 heads the camera token cannot pick patches by position well enough), camera
        loss weight 10 (the Huber camera term is ~50x smaller than the map terms, so at a few
        hundred steps the shared trunk otherwise serves the maps only), and the maps' loss as
        VidFM3D's with the confidence trained on the detached error (``conf_mode="detached"``).
        """
        small: dict[str, Any] = dict(
            embed_dim=64,
            num_heads=4,
            depth=4,
            camera_trunk_depth=1,
            camera_iters=4,
            dpt_features=16,
            dpt_out_channels=(8, 16, 32, 32),
            output_size=None,
            first_n=76,
            lr=1e-3,
            min_lr=1e-5,
            warmup_steps=10,
            batch_size=2,
            checkpoint_every=50,
            camera_weight=10.0,
            conf_mode="detached",
            checkpoint_trunk=False,  # tiny activations: recomputing them only costs time
        )
        small.update(overrides)
        return cls(**small)

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        out = dataclasses.asdict(self)
        for key, value in out.items():
            if isinstance(value, tuple):
                out[key] = list(value)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], base: ProbeConfig | None = None) -> ProbeConfig:
        """Build from ``data`` (unknown keys raise), starting from ``base`` (default: paper)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown probe config key(s) {unknown}; known: {sorted(names)}")
        start = dataclasses.asdict(base if base is not None else cls())
        start.update(data)
        return cls(**start)

    @classmethod
    def load(cls, path: str | os.PathLike[str], base: ProbeConfig | None = None) -> ProbeConfig:
        """Read a TOML (``.toml``) or JSON file; values may sit under a ``probe`` table."""
        source = Path(path)
        if not source.is_file():
            raise FileNotFoundError(f"probe config not found: {source}")
        text = source.read_text()
        if source.suffix.lower() == ".toml":
            try:
                import tomllib
            except ModuleNotFoundError:  # Python 3.10
                import tomli as tomllib

            data = tomllib.loads(text)
        else:
            data = json.loads(text)
        if isinstance(data.get("probe"), dict):
            data = data["probe"]
        try:
            return cls.from_dict(data, base=base)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{source}: {error}") from error
