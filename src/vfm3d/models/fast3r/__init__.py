"""Fast3R (multi-view 3D reconstruction in one forward) whose state dict matches the public
``jedyang97/Fast3R_ViT_Large_512`` release.

Public API:

- `Fast3R`, `Fast3RConfig`: the model (``forward(images [B, T, 3, H, W]) -> dict`` of point maps
  and confidences), ``Fast3R.from_pretrained(dir)`` / ``save_pretrained(dir)``,
  ``Fast3R.decoder_layers(images, keep_layers)`` (the decoder's ``dec_depth + 1`` outputs),
  ``Fast3RConfig.tiny()`` for tests.
- Building blocks: `Fast3REncoder` (CroCo ViT with 2D RoPE), `Fast3RDecoder` (all-views fusion
  with the image-index embedding), `PixelwiseTaskWithDPT` / `DPTAdapter` (the DPT heads),
  `image_index_table`.
"""

from vfm3d.models.fast3r.config import Fast3RConfig
from vfm3d.models.fast3r.heads import DPTAdapter, PixelwiseTaskWithDPT
from vfm3d.models.fast3r.layers import (
    Fast3RAttention,
    Fast3RBlock,
    Fast3RDecoder,
    Fast3REncoder,
    image_index_table,
)
from vfm3d.models.fast3r.model import IMAGE_MEAN, IMAGE_STD, Fast3R

__all__ = [
    "IMAGE_MEAN",
    "IMAGE_STD",
    "DPTAdapter",
    "Fast3R",
    "Fast3RAttention",
    "Fast3RBlock",
    "Fast3RConfig",
    "Fast3RDecoder",
    "Fast3REncoder",
    "PixelwiseTaskWithDPT",
    "image_index_table",
]
