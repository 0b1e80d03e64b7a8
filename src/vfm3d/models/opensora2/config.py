"""`OpenSora2Config`: every size of the Open-Sora 2.0 MMDiT as one typed, JSON-serialisable record.

The defaults are the released 11B model (``hpcai-tech/Open-Sora-v2``, ``Open_Sora_v2.safetensors``;
the ``model = dict(type="flux", ...)`` block of hpcaitech/Open-Sora
``configs/diffusion/inference/256px.py``): width 3072, 24 heads, 19 double-stream + 38
single-stream blocks, MLP ratio 4, qkv bias, RoPE axes (16, 56, 56) with theta 10000, 2x2 packed
16-channel latents (``in_channels`` 64), T5-XXL context (4096), CLIP-L pooled vector (768),
image-to-video ``cond_in``, unfused q/k/v, no guidance embedding. A model built from them has
exactly the state-dict names and shapes of the release (1082 tensors, 11,891,390,528 parameters).
`OpenSora2Config.tiny` is a seconds-on-CPU configuration of the same architecture for tests.

Field names follow Open-Sora's ``MMDiTConfig``; ``rope_pairing`` replaces its ``use_liger_rope``
flag (the release sets it, see `vfm3d.models.opensora2.layers.rope_tables`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vfm3d.models._config import JsonConfig

ROPE_PAIRINGS = ("half", "interleaved")


@dataclass
class OpenSora2Config(JsonConfig):
    """Sizes of an Open-Sora 2.0 MMDiT. Defaults = the released 11B model.

    - ``in_channels``: width of a packed latent token = latent channels x ``patch_size``^2 (64).
    - ``vec_in_dim``: pooled text vector (CLIP-L, 768); ``context_in_dim``: text tokens (T5, 4096).
    - ``hidden_size``, ``num_heads``, ``mlp_ratio``: block width, heads, MLP expansion.
    - ``depth`` / ``depth_single_blocks``: number of double- / single-stream blocks.
    - ``axes_dim``: RoPE dims of the (t, h, w) axes, summing to the head dim; ``theta`` its base.
    - ``qkv_bias``: bias on the double blocks' q/k/v projections.
    - ``cond_embed``: ``cond_in`` (image-to-video: 1 mask + latent channels, packed) is present.
    - ``patch_size``: the 2x2 spatial packing of the latents.
    - ``rope_pairing``: ``"half"`` rotates (x[i], x[i + D/2]) (the Liger kernel the release was
      trained and sampled with, ``use_liger_rope=True``); ``"interleaved"`` rotates
      (x[2i], x[2i+1]) (Flux's ``EmbedND``).
    """

    in_channels: int = 64
    vec_in_dim: int = 768
    context_in_dim: int = 4096
    hidden_size: int = 3072
    mlp_ratio: float = 4.0
    num_heads: int = 24
    depth: int = 19
    depth_single_blocks: int = 38
    axes_dim: tuple[int, ...] = (16, 56, 56)
    theta: float = 10_000.0
    qkv_bias: bool = True
    cond_embed: bool = True
    patch_size: int = 2
    rope_pairing: str = "half"
    extra: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.axes_dim = tuple(int(d) for d in self.axes_dim)
        self.validate()

    # ------------------------------------------------------------------ derived
    @property
    def head_dim(self) -> int:
        """Width of one attention head (``hidden_size / num_heads``; 128 in the release)."""
        return self.hidden_size // self.num_heads

    @property
    def mlp_hidden_dim(self) -> int:
        """Hidden width of the MLPs (``int(hidden_size * mlp_ratio)``; 12288 in the release)."""
        return int(self.hidden_size * self.mlp_ratio)

    @property
    def latent_channels(self) -> int:
        """Channels of the unpacked VAE latent (``in_channels / patch_size^2``; 16)."""
        return self.in_channels // (self.patch_size**2)

    @property
    def cond_channels(self) -> int:
        """Width of a packed ``cond`` token: ``in_channels + patch_size^2`` (mask + latent; 68)."""
        return self.in_channels + self.patch_size**2

    @property
    def num_layers(self) -> int:
        """Double-stream plus single-stream blocks (19 + 38 = 57)."""
        return self.depth + self.depth_single_blocks

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Raise ``ValueError`` naming the first inconsistent field."""

        def need(ok: bool, message: str) -> None:
            if not ok:
                raise ValueError(f"OpenSora2Config: {message}")

        for name in ("in_channels", "vec_in_dim", "context_in_dim", "hidden_size", "num_heads"):
            need(int(getattr(self, name)) >= 1, f"{name} must be >= 1, got {getattr(self, name)}")
        need(self.depth >= 0 and self.depth_single_blocks >= 0, "depths must be >= 0")
        need(self.depth + self.depth_single_blocks >= 1, "depth + depth_single_blocks must be >= 1")
        need(self.patch_size >= 1, f"patch_size must be >= 1, got {self.patch_size}")
        need(
            self.in_channels % (self.patch_size**2) == 0,
            f"in_channels ({self.in_channels}) must be a multiple of patch_size^2 "
            f"({self.patch_size**2})",
        )
        need(
            self.hidden_size % self.num_heads == 0,
            f"hidden_size ({self.hidden_size}) must be divisible by num_heads ({self.num_heads})",
        )
        need(
            len(self.axes_dim) == 3, f"axes_dim must have 3 entries (t, h, w), got {self.axes_dim}"
        )
        need(
            all(d > 0 and d % 2 == 0 for d in self.axes_dim),
            f"axes_dim entries must be positive and even, got {self.axes_dim}",
        )
        need(
            sum(self.axes_dim) == self.head_dim,
            f"axes_dim {self.axes_dim} must sum to the head dim hidden_size / num_heads = "
            f"{self.head_dim}",
        )
        need(self.mlp_hidden_dim >= 1, f"mlp_ratio ({self.mlp_ratio}) gives an empty MLP")
        need(self.theta > 0, f"theta must be > 0, got {self.theta}")
        need(
            self.rope_pairing in ROPE_PAIRINGS,
            f"rope_pairing must be one of {ROPE_PAIRINGS}, got {self.rope_pairing!r}",
        )

    # ------------------------------------------------------------------ (de)serialisation
    @classmethod
    def tiny(cls, **changes: Any) -> OpenSora2Config:
        """A tiny config of the same architecture: width 32, 2 heads (head dim 16, RoPE axes
        (4, 6, 6)), 2 double + 2 single blocks, 16 latent channels (``in_channels`` 64), text
        width 16, pooled width 8."""
        base: dict[str, Any] = dict(
            in_channels=64,
            vec_in_dim=8,
            context_in_dim=16,
            hidden_size=32,
            mlp_ratio=2.0,
            num_heads=2,
            depth=2,
            depth_single_blocks=2,
            axes_dim=(4, 6, 6),
        )
        base.update(changes)
        return cls(**base)
