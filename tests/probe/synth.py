"""A tiny analytic world for probe tests: a camera moving inside a box room with exact depth.

(Stand-in until `vfm3d.world.render_clip` is used; depth is exact z-depth, OpenCV cameras.)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from vfm3d.clip import Clip, ClipFolder, write_clip_folder


def _look_rotation(yaw: float, pitch: float) -> np.ndarray:
    cy, sy, cp, sp = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch)
    r_yaw = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    r_pitch = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    return r_yaw @ r_pitch


def room_clip(clip_id: str, seed: int, frames: int = 24, size: tuple[int, int] = (32, 48)) -> Clip:
    """A clip of ``frames`` frames (H, W = ``size``) inside a random box room."""
    rng = np.random.default_rng(seed)
    h, w = size
    half = rng.uniform([2.0, 1.0, 2.0], [4.0, 2.0, 5.0])  # room half-extents (x, y, z)
    focal = rng.uniform(0.8, 1.2) * w
    k = np.array([[focal, 0, (w - 1) / 2], [0, focal, (h - 1) / 2], [0, 0, 1]], dtype=np.float32)
    start = rng.uniform(-0.4, 0.4, size=3) * half
    velocity = rng.uniform(-0.01, 0.01, size=3) * half
    yaw0, dyaw = rng.uniform(-np.pi, np.pi), rng.uniform(-0.015, 0.015)
    pitch = rng.uniform(-0.15, 0.15)
    us, vs = np.meshgrid(np.arange(w), np.arange(h))
    rays_cam = np.stack(
        [(us - k[0, 2]) / focal, (vs - k[1, 2]) / focal, np.ones_like(us, float)], -1
    )
    cam_to_world = np.zeros((frames, 4, 4))
    depth = np.zeros((frames, h, w), np.float32)
    images = np.zeros((frames, h, w, 3), np.uint8)
    colours = rng.uniform(40, 220, size=(6 + 3, 3))
    forward = _look_rotation(yaw0, pitch)[:, 2]
    centres = start + forward * rng.uniform(0.8, 2.0, size=(3, 1)) + rng.normal(0, 0.4, (3, 3))
    radii = rng.uniform(0.2, 0.6, size=3)
    for t in range(frames):
        rot = _look_rotation(yaw0 + dyaw * t, pitch)
        centre = start + velocity * t
        cam_to_world[t, :3, :3] = rot
        cam_to_world[t, :3, 3] = centre
        cam_to_world[t, 3, 3] = 1
        dirs = rays_cam @ rot.T  # world direction per unit z-depth
        with np.errstate(divide="ignore", invalid="ignore"):
            t_pos = (half - centre) / dirs
            t_neg = (-half - centre) / dirs
        cand = np.where(
            np.concatenate([t_pos, t_neg], -1) > 0, np.concatenate([t_pos, t_neg], -1), np.inf
        )
        for n in range(3):  # spheres: |c + z d - p|^2 = r^2, smallest positive root
            oc = centre - centres[n]
            a = (dirs * dirs).sum(-1)
            b = 2 * (dirs * oc).sum(-1)
            disc = b * b - 4 * a * ((oc * oc).sum() - radii[n] ** 2)
            root = (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a)
            cand = np.concatenate(
                [cand, np.where((disc > 0) & (root > 0), root, np.inf)[..., None]], -1
            )
        face = cand.argmin(-1)
        z = cand.min(-1)
        depth[t] = z.astype(np.float32)
        hit = centre + dirs * z[..., None]
        checker = (np.floor(hit * 2).sum(-1) % 2)[..., None]
        images[t] = np.clip(colours[face] * (0.6 + 0.4 * checker), 0, 255).astype(np.uint8)
    valid = np.isfinite(depth) & (depth > 0)
    return Clip(
        frames=images,
        intrinsics=np.repeat(k[None], frames, 0),
        cam_to_world=cam_to_world,
        depth=depth,
        valid=valid,
        meta={"id": clip_id, "source": "probe-test-room", "fps": 10},
    ).validate()


def write_rooms(
    root: Path,
    count: int,
    frames: int = 24,
    size: tuple[int, int] = (32, 48),
    prefix: str = "room",
    seed: int = 100,
) -> ClipFolder:
    clips = [room_clip(f"{prefix}{i:02d}", seed + i, frames, size) for i in range(count)]
    return write_clip_folder(root, clips)


def features_for(
    clips: ClipFolder, backbone_name: str, **kwargs
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """In-memory features of every clip from the ``oracle`` or ``constant`` backbone (layer 0)."""
    from vfm3d.features import extract

    if backbone_name == "oracle":
        from vfm3d.backbones.oracle import build
    else:
        from vfm3d.backbones.baselines import build
    backbone = build(backbone_name, **kwargs)
    items = {}
    for clip in clips:
        frames = torch.from_numpy(clip.frames).permute(0, 3, 1, 2)[None].float() / 255
        aux = {
            "depth": torch.from_numpy(clip.depth)[None],
            "valid": torch.from_numpy(clip.valid)[None],
            "intrinsics": torch.from_numpy(clip.intrinsics)[None],
            "cam_to_world": torch.from_numpy(clip.cam_to_world)[None],
        }
        feats = extract(backbone, frames, [0], aux=aux if backbone_name == "oracle" else None)
        f = feats[(0, None)]
        items[clip.id] = (f.tokens[0], f.frame_index)
    return items
