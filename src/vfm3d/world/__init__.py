"""The procedural 3D world: scenes, textures, camera paths, moving objects, a CPU renderer.

Public API:
- `render_clip(kind, seed, frames, height, width, clip_id=None, motion=None) -> Clip`
- `generate_dataset(out, kind, clips, frames, height, width, seed, overwrite=False,
  progress=True, motion=None) -> ClipFolder`
- `Motion(deg_per_frame=4.5, m_per_frame=0.05)`: camera motion as per-frame rates
- `contact_sheet(clips, path, max_frames=8) -> Path`

Conventions: world z-up in metres; OpenCV cameras; depth is z-depth; sky is invalid; camera
motion in per-frame units, independent of the clip length.
"""

from vfm3d.world.camera import (
    DEFAULT_DEG_PER_FRAME,
    DEFAULT_M_PER_FRAME,
    FOV_RANGE_DEG,
    REFERENCE_FRAMES,
    Motion,
    intrinsics_from_fov,
)
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
    "DEFAULT_DEG_PER_FRAME",
    "DEFAULT_M_PER_FRAME",
    "FOV_RANGE_DEG",
    "KINDS",
    "REFERENCE_FRAMES",
    "Motion",
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
