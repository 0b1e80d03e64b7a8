"""`Fast3RConfig`: every size of the Fast3R architecture as one typed, JSON-serialisable record.

The defaults are the public release ``jedyang97/Fast3R_ViT_Large_512``: a CroCo ViT-L/16
encoder (1024 wide, 24 blocks, 16 heads, 2D RoPE base 100) trained at long side 512, an
all-views fusion decoder (1024 wide, 24 blocks, 16 heads) with a 1000-entry image-index
embedding, and two DPT heads (global and local point maps with confidence). A model built from
them has exactly the state-dict names and shapes of the release (``reference/
fast3r-vitl-512-state-dict.tsv``). `Fast3RConfig.tiny` is a seconds-on-CPU configuration of the
same architecture for tests.

`Fast3RConfig.from_dict` also reads the release's own ``config.json`` layout (the
``encoder_args`` / ``decoder_args`` / ``head_args`` keyword arguments of the public
``fast3r.models.fast3r.Fast3R`` class) and maps it onto these fields.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

from vfm3d.models._config import JsonConfig

DEPTH_MODES = ("linear", "square", "exp")
CONF_MODES = ("exp", "sigmoid")


@dataclass
class Fast3RConfig(JsonConfig):
    """Sizes of a Fast3R model. Defaults = the public ViT-L/16 512 release.

    Encoder: ``img_size`` (the trained long side; informational: the encoder has no absolute
    position embedding, any multiple of ``patch_size`` runs), ``patch_size``,
    ``enc_embed_dim`` / ``enc_depth`` / ``enc_num_heads``, ``rope_freq`` (2D RoPE base).
    Decoder: ``dec_embed_dim`` / ``dec_depth`` / ``dec_num_heads``, ``mlp_ratio`` (both stacks),
    ``num_image_ids`` (rows of the sin-cos image-index table), ``random_image_idx_embedding``
    (view 0 gets index 0, the others random distinct indices in ``1..num_image_ids-1``, as the
    release does; False = indices ``0..T-1``), ``image_index_seed`` (the seed of the fixed draw
    used in eval mode), ``attn_bias_for_inference`` (the reference's
    ``attn_bias_for_inference_enabled``: a larger decoder attention scale in eval mode).
    Heads: ``enable_head`` (``downstream_head``, points in view 0's frame),
    ``enable_local_head`` (``downstream_head_local``, points in each view's own frame),
    ``dpt_hooks`` (decoder outputs read; default ``(0, d/2, 3d/4, d)``), ``dpt_layer_dims``,
    ``dpt_feature_dim``, ``dpt_last_dim``, ``depth_mode``, ``conf_mode`` / ``conf_vmin`` /
    ``conf_vmax`` (``None`` = no upper bound).
    """

    img_size: int = 512
    patch_size: int = 16
    enc_embed_dim: int = 1024
    enc_depth: int = 24
    enc_num_heads: int = 16
    rope_freq: float = 100.0
    dec_embed_dim: int = 1024
    dec_depth: int = 24
    dec_num_heads: int = 16
    mlp_ratio: float = 4.0
    num_image_ids: int = 1000
    random_image_idx_embedding: bool = True
    image_index_seed: int = 0
    attn_bias_for_inference: bool = False
    enable_head: bool = True
    enable_local_head: bool = True
    dpt_hooks: tuple[int, ...] | None = None
    dpt_layer_dims: tuple[int, ...] = (96, 192, 384, 768)
    dpt_feature_dim: int = 256
    dpt_last_dim: int = 128
    depth_mode: str = "exp"
    conf_mode: str = "exp"
    conf_vmin: float = 1.0
    conf_vmax: float | None = None
    extra: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.dpt_hooks is not None:
            self.dpt_hooks = tuple(int(i) for i in self.dpt_hooks)
        self.dpt_layer_dims = tuple(int(c) for c in self.dpt_layer_dims)
        if self.conf_vmax is not None and math.isinf(self.conf_vmax):
            self.conf_vmax = None
        self.validate()

    # ------------------------------------------------------------------ derived
    @property
    def hooks(self) -> tuple[int, ...]:
        """The 4 decoder outputs the DPT heads read (release: ``(0, 12, 18, 24)``)."""
        if self.dpt_hooks is not None:
            return self.dpt_hooks
        d = self.dec_depth
        return (0, d * 2 // 4, d * 3 // 4, d)

    @property
    def num_layers(self) -> int:
        """Length of the decoder's output list: ``dec_depth + 1`` (0 = encoder output)."""
        return self.dec_depth + 1

    def layer_width(self, layer: int) -> int:
        """Width of decoder output ``layer``: ``enc_embed_dim`` for 0, else ``dec_embed_dim``."""
        return self.enc_embed_dim if layer == 0 else self.dec_embed_dim

    @property
    def any_head(self) -> bool:
        return self.enable_head or self.enable_local_head

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Raise ``ValueError`` naming the first inconsistent field."""

        def need(ok: bool, message: str) -> None:
            if not ok:
                raise ValueError(f"Fast3RConfig: {message}")

        for name in (
            "patch_size",
            "enc_embed_dim",
            "enc_depth",
            "enc_num_heads",
            "dec_embed_dim",
            "dec_depth",
            "dec_num_heads",
            "dpt_feature_dim",
            "dpt_last_dim",
        ):
            need(int(getattr(self, name)) >= 1, f"{name} must be >= 1, got {getattr(self, name)}")
        need(self.num_image_ids >= 1, f"num_image_ids must be >= 1, got {self.num_image_ids}")
        need(
            self.enc_embed_dim % self.enc_num_heads == 0,
            f"enc_embed_dim ({self.enc_embed_dim}) must be divisible by enc_num_heads "
            f"({self.enc_num_heads})",
        )
        need(
            (self.enc_embed_dim // self.enc_num_heads) % 4 == 0,
            "2D RoPE needs the encoder head width enc_embed_dim / enc_num_heads to be a "
            "multiple of 4",
        )
        need(self.rope_freq > 0, f"rope_freq must be > 0, got {self.rope_freq}")
        need(
            self.dec_embed_dim % self.dec_num_heads == 0,
            f"dec_embed_dim ({self.dec_embed_dim}) must be divisible by dec_num_heads "
            f"({self.dec_num_heads})",
        )
        need(self.dec_embed_dim % 2 == 0, "dec_embed_dim must be even (sin-cos image index)")
        need(self.mlp_ratio > 0, f"mlp_ratio must be > 0, got {self.mlp_ratio}")
        need(self.img_size % self.patch_size == 0, "img_size must be a multiple of patch_size")
        need(
            self.patch_size % 8 == 0,
            f"patch_size ({self.patch_size}) must be a multiple of 8 (the DPT head upsamples "
            "tokens 8x before its last resize by patch_size / 8)",
        )
        if self.any_head:
            hooks = self.hooks
            need(len(hooks) == 4, f"dpt_hooks must have 4 entries, got {hooks}")
            need(
                all(0 <= i <= self.dec_depth for i in hooks),
                f"dpt_hooks {hooks} must lie in [0, dec_depth = {self.dec_depth}]",
            )
            need(
                len(self.dpt_layer_dims) == 4,
                f"dpt_layer_dims must have 4 entries, got {self.dpt_layer_dims}",
            )
            need(self.dpt_feature_dim % 2 == 0, "dpt_feature_dim must be even")
        need(
            self.depth_mode in DEPTH_MODES,
            f"depth_mode must be one of {DEPTH_MODES}, got {self.depth_mode!r}",
        )
        need(
            self.conf_mode in CONF_MODES,
            f"conf_mode must be one of {CONF_MODES}, got {self.conf_mode!r}",
        )
        if self.conf_mode == "sigmoid":
            need(self.conf_vmax is not None, "conf_mode 'sigmoid' needs a finite conf_vmax")

    # ------------------------------------------------------------------ (de)serialisation
    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Fast3RConfig:
        """Build from a dict: vfm3d's flat layout, or the release's ``encoder_args`` /
        ``decoder_args`` / ``head_args`` layout (see `from_reference_args`). Unknown keys are
        kept in ``extra`` with a warning (not silently)."""
        if not isinstance(data, dict):
            raise ValueError(f"Fast3RConfig: expected a JSON object, got {type(data).__name__}")
        if "encoder_args" in data or "decoder_args" in data:
            return cls.from_reference_args(data)
        return super().from_dict(data)

    @classmethod
    def from_reference_args(cls, data: dict[str, Any]) -> Fast3RConfig:
        """Map the public class's keyword arguments (its hub ``config.json``) onto the fields.

        Only the architecture the release uses is accepted: ``encoder_type`` ``croco`` (patch
        embedding ``PatchEmbedDust3R`` or ``ManyAR_PatchEmbed``: the same computation on a
        frame given in its true orientation), ``pos_embed`` ``RoPE<freq>``, ``decoder_type``
        ``fast3r``, ``head_type`` ``dpt`` with ``output_mode`` ``pts3d``. Implementation
        switches (``attn_implementation``, ``landscape_only``, ``freeze``, dropout 0) are ignored.
        Defaults of absent keys are the public class's (e.g. ``attn_bias_for_inference_enabled``
        True, ``with_local_head`` False).
        """
        enc = dict(data.get("encoder_args") or {})
        dec = dict(data.get("decoder_args") or {})
        head = dict(data.get("head_args") or {})

        def refuse(message: str) -> None:
            raise ValueError(f"Fast3RConfig (reference config.json): {message}")

        if enc.get("encoder_type", "croco") != "croco":
            refuse(f"encoder_type {enc.get('encoder_type')!r} is not supported (only 'croco')")
        if enc.get("patch_embed_cls", "PatchEmbedDust3R") not in (
            "PatchEmbedDust3R",
            "ManyAR_PatchEmbed",
        ):
            refuse(f"patch_embed_cls {enc.get('patch_embed_cls')!r} is not supported")
        pos_embed = str(enc.get("pos_embed", "RoPE100"))
        if not pos_embed.startswith("RoPE"):
            refuse(f"pos_embed {pos_embed!r} is not supported (only 'RoPE<freq>')")
        if dec.get("decoder_type", "fast3r") != "fast3r":
            refuse(f"decoder_type {dec.get('decoder_type')!r} is not supported (only 'fast3r')")
        if head and (head.get("head_type", "dpt"), head.get("output_mode", "pts3d")) != (
            "dpt",
            "pts3d",
        ):
            refuse("only head_type 'dpt' with output_mode 'pts3d' is supported")
        if not bool(dec.get("qkv_bias", True)):
            refuse("qkv_bias False is not supported")
        for key in ("drop", "attn_drop"):
            if float(dec.get(key, 0.0)) != 0.0:
                warnings.warn(f"Fast3RConfig: ignoring decoder {key}={dec[key]}", stacklevel=2)
        enc_dim = int(enc.get("embed_dim", 768))
        if int(dec.get("enc_embed_dim", enc_dim)) != enc_dim:
            refuse("decoder_args.enc_embed_dim must equal encoder_args.embed_dim")
        enc_mlp = float(enc.get("mlp_ratio", 4.0))
        dec_mlp = float(dec.get("mlp_ratio", 4.0))
        if enc_mlp != dec_mlp:
            refuse(f"encoder mlp_ratio {enc_mlp} != decoder mlp_ratio {dec_mlp}")
        patch = int(enc.get("patch_size", 16))
        if head and int(head.get("patch_size", patch)) != patch:
            refuse("head_args.patch_size must equal encoder_args.patch_size")

        def mode(value: Any, default: tuple[str, float, float]) -> tuple[str, float, float]:
            if value is None:
                return default
            name, vmin, vmax = value
            return str(name), float(vmin), float(vmax)

        inf = float("inf")
        depth_mode = mode(head.get("depth_mode"), ("exp", -inf, inf))
        if depth_mode[1:] != (-inf, inf):
            refuse(f"depth_mode bounds must be (-inf, inf), got {depth_mode[1:]}")
        conf_mode = mode(head.get("conf_mode"), ("exp", 1.0, inf))
        return cls(
            img_size=int(enc.get("img_size", 224)),
            patch_size=patch,
            enc_embed_dim=enc_dim,
            enc_depth=int(enc.get("depth", 12)),
            enc_num_heads=int(enc.get("num_heads", 12)),
            rope_freq=float(pos_embed[len("RoPE") :] or 100.0),
            dec_embed_dim=int(dec.get("embed_dim", 768)),
            dec_depth=int(dec.get("depth", 12)),
            dec_num_heads=int(dec.get("num_heads", 12)),
            mlp_ratio=enc_mlp,
            random_image_idx_embedding=bool(dec.get("random_image_idx_embedding", False)),
            attn_bias_for_inference=bool(dec.get("attn_bias_for_inference_enabled", True)),
            enable_head=bool(head),
            enable_local_head=bool(head.get("with_local_head", False)),
            depth_mode=depth_mode[0],
            conf_mode=conf_mode[0],
            conf_vmin=conf_mode[1],
            conf_vmax=None if math.isinf(conf_mode[2]) else conf_mode[2],
        )

    @classmethod
    def tiny(cls, **changes: Any) -> Fast3RConfig:
        """A tiny config of the same architecture (encoder 32 wide x 2 blocks, decoder 48 wide x
        4 blocks, patch 16, DPT widths 8..32)."""
        base: dict[str, Any] = dict(
            img_size=64,
            patch_size=16,
            enc_embed_dim=32,
            enc_depth=2,
            enc_num_heads=2,
            dec_embed_dim=48,
            dec_depth=4,
            dec_num_heads=2,
            mlp_ratio=2.0,
            dpt_layer_dims=(8, 16, 24, 32),
            dpt_feature_dim=16,
            dpt_last_dim=8,
        )
        base.update(changes)
        return cls(**base)
