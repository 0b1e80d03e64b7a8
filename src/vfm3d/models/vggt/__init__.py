"""A VGGT-architecture 3D expert whose state dict matches the public VGGT-1B checkpoint.

Public API:

- `VGGT`, `VGGTConfig`: the model (``forward(images [B, S, 3, H, W]) -> dict``),
  ``VGGT.from_pretrained(dir)`` / ``save_pretrained(dir)``, ``VGGTConfig.tiny()`` for tests.
- Reusable building blocks: `Block` (pre-norm transformer block with qk-norm, LayerScale and
  2D RoPE), `Attention`, `RotaryPositionEmbedding2D`, `DinoVisionTransformer`, `Aggregator`,
  `DPTHead`, `CameraHead`, `TrackHead`.
"""

from vfm3d.models.vggt.aggregator import Aggregator
from vfm3d.models.vggt.config import VGGTConfig
from vfm3d.models.vggt.heads import CameraHead, DPTHead, activate_head, activate_pose
from vfm3d.models.vggt.layers import (
    Attention,
    Block,
    DinoVisionTransformer,
    LayerScale,
    Mlp,
    PatchEmbed,
    RotaryPositionEmbedding2D,
    grid_positions,
)
from vfm3d.models.vggt.model import (
    VGGT,
    check_state_dict,
    find_weights,
    read_shapes,
    read_state_dict,
)
from vfm3d.models.vggt.track import TrackHead

__all__ = [
    "VGGT",
    "Aggregator",
    "Attention",
    "Block",
    "CameraHead",
    "DPTHead",
    "DinoVisionTransformer",
    "LayerScale",
    "Mlp",
    "PatchEmbed",
    "RotaryPositionEmbedding2D",
    "TrackHead",
    "VGGTConfig",
    "activate_head",
    "activate_pose",
    "check_state_dict",
    "find_weights",
    "grid_positions",
    "read_shapes",
    "read_state_dict",
]
