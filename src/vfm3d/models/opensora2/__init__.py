"""The Open-Sora 2.0 MMDiT (11B video diffusion transformer) whose state dict matches the release.

Public API:

- `OpenSora2`, `OpenSora2Config`: the model (``forward(img, img_ids, txt, txt_ids, timesteps,
  y_vec, cond) -> [B, L, 64]``), ``OpenSora2.from_pretrained(dir)`` / ``save_pretrained(dir)``,
  ``OpenSora2Config.tiny()`` for tests. ``OpenSora2Config()`` is the released 11B preset.
- Building blocks: `DoubleStreamBlock`, `SingleStreamBlock`, `RotaryEmbedding3D`, `LastLayer`,
  `MLPEmbedder`, `timestep_embedding`, and the latent `pack` / `unpack` / `position_ids`.
"""

from vfm3d.models.opensora2.config import OpenSora2Config
from vfm3d.models.opensora2.layers import (
    DoubleStreamBlock,
    LastLayer,
    MLPEmbedder,
    RotaryEmbedding3D,
    SingleStreamBlock,
    apply_rope,
    pack,
    position_ids,
    timestep_embedding,
    unpack,
)
from vfm3d.models.opensora2.model import OpenSora2

__all__ = [
    "DoubleStreamBlock",
    "LastLayer",
    "MLPEmbedder",
    "OpenSora2",
    "OpenSora2Config",
    "RotaryEmbedding3D",
    "SingleStreamBlock",
    "apply_rope",
    "pack",
    "position_ids",
    "timestep_embedding",
    "unpack",
]
