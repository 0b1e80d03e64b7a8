"""Small hand-built clips for feature-cache tests (random frames, planar depth, valid poses)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vfm3d.clip import Clip, ClipFolder, write_clip_folder


def make_clip(
    clip_id: str, frames: int = 5, height: int = 16, width: int = 16, seed: int = 0
) -> Clip:
    """A valid clip: random RGB, depth 2..3 m with 5% invalid pixels, camera moving along x."""
    rng = np.random.default_rng(seed)
    k = np.array([[width, 0, (width - 1) / 2], [0, width, (height - 1) / 2], [0, 0, 1]], np.float32)
    cam_to_world = np.tile(np.eye(4), (frames, 1, 1))
    cam_to_world[:, 0, 3] = 0.1 * np.arange(frames)
    return Clip(
        frames=rng.integers(0, 256, (frames, height, width, 3), dtype=np.uint8),
        intrinsics=np.tile(k, (frames, 1, 1)),
        cam_to_world=cam_to_world,
        depth=(2.0 + rng.random((frames, height, width))).astype(np.float32),
        valid=rng.random((frames, height, width)) > 0.05,
        meta={"id": clip_id, "source": "test"},
    ).validate()


def make_folder(root: Path, num_clips: int = 3, **kwargs: int) -> ClipFolder:
    """Write ``num_clips`` clips ``c0, c1, ...`` into ``root``."""
    clips = [make_clip(f"c{i}", seed=i, **kwargs) for i in range(num_clips)]
    return write_clip_folder(root, clips)
