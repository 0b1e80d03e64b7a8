"""The procedural 3D world: scenes, textures, camera paths, moving objects, a CPU renderer.

Public API:
- `render_clip(kind, seed, frames, height, width, clip_id=None) -> Clip`
- `generate_dataset(out, kind, clips, frames, height, width, seed, overwrite=False,
  progress=True) -> ClipFolder`
- `contact_sheet(clips, path, max_frames=8) -> Path`

Conventions: world z-up in metres; OpenCV cameras; depth is z-depth; sky is invalid.
"""

from vfm3d.world.camera import FOV_RANGE_DEG, intrinsics_from_fov
from vfm3d.world.generate import (
    DATASET_KINDS,
    clip_kind,
    clip_seed,
    dataset_clip_id,
    generate_dataset,
    render_clip,
)
from vfm3d.world.layouts import KINDS, World, build_world
from vfm3d.world.preview import colorize_depth, contact_sheet

__all__ = [
    "DATASET_KINDS",
    "FOV_RANGE_DEG",
    "KINDS",
    "World",
    "build_world",
    "clip_kind",
    "clip_seed",
    "colorize_depth",
    "contact_sheet",
    "dataset_clip_id",
    "generate_dataset",
    "intrinsics_from_fov",
    "render_clip",
]
