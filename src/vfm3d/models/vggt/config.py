"""`VGGTConfig`: every size of the VGGT architecture as one typed, JSON-serialisable record.

The defaults are VGGT-1B (``facebook/VGGT-1B``: image 518, patch 14, width 1024, 24 frame + 24
global blocks, a DINOv2-L/14-reg patch embedder, camera / depth / point / track heads); a model
built from them has exactly the state-dict names and shapes of the public checkpoint.
`VGGTConfig.tiny` is a seconds-on-CPU configuration of the same architecture for tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vfm3d.models._config import JsonConfig

#: DINOv2 patch-embedder presets: name -> (depth, num_heads). Their width is ``embed_dim``.
DINO_PRESETS: dict[str, tuple[int, int]] = {
    "dinov2_vitl14_reg": (24, 16),
    "dinov2_vitb14_reg": (12, 12),
    "dinov2_vits14_reg": (12, 6),
}
AA_KINDS = ("frame", "global")


@dataclass
class VGGTConfig(JsonConfig):
    """Sizes of a VGGT model. Defaults = VGGT-1B.

    Aggregator: ``img_size`` (pixels; sets the DINOv2 position-embedding grid, any multiple of
    ``patch_size`` runs), ``patch_size``, ``embed_dim``, ``depth`` (frame/global block pairs),
    ``num_heads``, ``mlp_ratio``, ``num_register_tokens``, ``patch_embed`` (a `DINO_PRESETS` name or
    ``"conv"``; ``patch_embed_depth`` / ``patch_embed_num_heads`` override a preset's; the DINOv2
    embedder has width ``embed_dim`` and uses ``mlp_ratio`` too),
    ``aa_order``, ``aa_block_size``, ``qk_norm``, ``rope_freq`` (<= 0 disables 2D RoPE),
    ``init_values`` (LayerScale init).
    Heads: ``intermediate_layer_idx`` (the 4 aggregator layers the DPT heads read),
    ``dpt_features`` / ``dpt_out_channels``, ``camera_*`` (trunk depth, heads, refinement
    iterations), ``track_*`` (feature width, iterations, correlation pyramid, update-former).
    """

    img_size: int = 518
    patch_size: int = 14
    embed_dim: int = 1024
    depth: int = 24
    num_heads: int = 16
    mlp_ratio: float = 4.0
    num_register_tokens: int = 4
    patch_embed: str = "dinov2_vitl14_reg"
    patch_embed_depth: int | None = None
    patch_embed_num_heads: int | None = None
    aa_order: tuple[str, ...] = ("frame", "global")
    aa_block_size: int = 1
    qk_norm: bool = True
    rope_freq: float = 100.0
    init_values: float = 0.01
    enable_camera: bool = True
    enable_depth: bool = True
    enable_point: bool = True
    enable_track: bool = True
    intermediate_layer_idx: tuple[int, ...] = (4, 11, 17, 23)
    dpt_features: int = 256
    dpt_out_channels: tuple[int, ...] = (256, 512, 1024, 1024)
    camera_trunk_depth: int = 4
    camera_num_heads: int = 16
    camera_iterations: int = 4
    track_features: int = 128
    track_iters: int = 4
    track_corr_levels: int = 7
    track_corr_radius: int = 4
    track_hidden_size: int = 384
    track_depth: int = 6
    track_num_heads: int = 8
    track_num_virtual: int = 64
    extra: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.aa_order = tuple(self.aa_order)
        self.intermediate_layer_idx = tuple(int(i) for i in self.intermediate_layer_idx)
        self.dpt_out_channels = tuple(int(c) for c in self.dpt_out_channels)
        self.validate()

    # ------------------------------------------------------------------ derived
    @property
    def dino_depth(self) -> int:
        """Number of DINOv2 blocks in the patch embedder (0 for ``"conv"``)."""
        if self.patch_embed == "conv":
            return 0
        return self.patch_embed_depth or DINO_PRESETS[self.patch_embed][0]

    @property
    def dino_num_heads(self) -> int:
        if self.patch_embed == "conv":
            return 0
        return self.patch_embed_num_heads or DINO_PRESETS[self.patch_embed][1]

    @property
    def patch_start_idx(self) -> int:
        """Index of the first patch token (after 1 camera + ``num_register_tokens`` tokens)."""
        return 1 + self.num_register_tokens

    @property
    def head_dim_in(self) -> int:
        """Width of the aggregator's layer outputs (frame ⊕ global): ``2 * embed_dim``."""
        return 2 * self.embed_dim

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Raise ``ValueError`` naming the first inconsistent field."""

        def need(ok: bool, message: str) -> None:
            if not ok:
                raise ValueError(f"VGGTConfig: {message}")

        for name in ("patch_size", "embed_dim", "depth", "num_heads", "aa_block_size"):
            need(int(getattr(self, name)) >= 1, f"{name} must be >= 1, got {getattr(self, name)}")
        need(self.num_register_tokens >= 0, "num_register_tokens must be >= 0")
        need(
            self.img_size >= self.patch_size and self.img_size % self.patch_size == 0,
            f"img_size ({self.img_size}) must be a positive multiple of patch_size "
            f"({self.patch_size})",
        )
        need(
            self.embed_dim % self.num_heads == 0,
            f"embed_dim ({self.embed_dim}) must be divisible by num_heads ({self.num_heads})",
        )
        if self.rope_freq > 0:
            need(
                (self.embed_dim // self.num_heads) % 4 == 0,
                "2D RoPE needs the head width embed_dim / num_heads to be a multiple of 4",
            )
        need(
            self.patch_embed == "conv" or self.patch_embed in DINO_PRESETS,
            f"patch_embed must be 'conv' or one of {sorted(DINO_PRESETS)}, got {self.patch_embed!r}",
        )
        if self.patch_embed != "conv":
            need(
                self.embed_dim % self.dino_num_heads == 0,
                f"embed_dim ({self.embed_dim}) must be divisible by the patch embedder's "
                f"num_heads ({self.dino_num_heads})",
            )
        need(
            len(self.aa_order) >= 1 and all(k in AA_KINDS for k in self.aa_order),
            f"aa_order must list 'frame'/'global', got {self.aa_order}",
        )
        need(
            set(self.aa_order) == set(AA_KINDS),
            f"aa_order must contain both 'frame' and 'global', got {self.aa_order}",
        )
        need(
            self.depth % self.aa_block_size == 0,
            f"depth ({self.depth}) must be divisible by aa_block_size ({self.aa_block_size})",
        )
        if self.enable_depth or self.enable_point or self.enable_track:
            need(
                len(self.intermediate_layer_idx) == 4,
                f"intermediate_layer_idx must have 4 entries, got {self.intermediate_layer_idx}",
            )
            need(
                all(0 <= i < self.depth for i in self.intermediate_layer_idx),
                f"intermediate_layer_idx {self.intermediate_layer_idx} must lie in "
                f"[0, depth - 1 = {self.depth - 1}]",
            )
            need(
                len(self.dpt_out_channels) == 4,
                f"dpt_out_channels must have 4 entries, got {self.dpt_out_channels}",
            )
        if self.enable_camera:
            need(
                self.head_dim_in % self.camera_num_heads == 0,
                f"2 * embed_dim ({self.head_dim_in}) must be divisible by camera_num_heads "
                f"({self.camera_num_heads})",
            )
        if self.enable_track:
            need(
                self.track_hidden_size % self.track_num_heads == 0,
                "track_hidden_size must be divisible by track_num_heads",
            )
            need(self.track_features % 2 == 0, "track_features must be even")
            need(
                self.track_depth >= 1 and self.track_corr_levels >= 1,
                "track_depth and track_corr_levels must be >= 1",
            )

    # ------------------------------------------------------------------ (de)serialisation
    @classmethod
    def tiny(cls, **changes: Any) -> VGGTConfig:
        """A tiny config of the same architecture (width 32, 2 block pairs, 28-pixel images)."""
        base: dict[str, Any] = dict(
            img_size=28,
            patch_size=14,
            embed_dim=32,
            depth=2,
            num_heads=2,
            mlp_ratio=2.0,
            num_register_tokens=2,
            patch_embed_depth=1,
            patch_embed_num_heads=2,
            intermediate_layer_idx=(0, 0, 1, 1),
            dpt_features=16,
            dpt_out_channels=(8, 16, 32, 32),
            camera_trunk_depth=1,
            camera_num_heads=2,
            camera_iterations=2,
            track_features=16,
            track_iters=2,
            track_corr_levels=2,
            track_corr_radius=2,
            track_hidden_size=32,
            track_depth=2,
            track_num_heads=2,
            track_num_virtual=4,
        )
        base.update(changes)
        return cls(**base)
