"""Clips and dataset folders of the procedural world.

`render_clip` turns (kind, seed, frames, size) into a validated `vfm3d.clip.Clip`;
`generate_dataset` writes many into a resumable dataset folder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from vfm3d.clip import INDEX_NAME, Clip, ClipFolder, ClipFolderWriter
from vfm3d.world.camera import (
    FOV_RANGE_DEG,
    Motion,
    fov_from_intrinsics,
    intrinsics_from_fov,
)
from vfm3d.world.layouts import FPS, KINDS, build_world
from vfm3d.world.render import object_pixel_counts, render_frame

DATASET_KINDS = (*KINDS, "mixed")
GENERATOR_VERSION = 2
"""Bumped whenever the same seed would render different pixels; part of a dataset's spec.
2: camera motion as per-frame rates (`Motion`) instead of a fixed arc per clip."""


def check_size(frames: int, height: int, width: int) -> None:
    """Raise `ValueError` naming the bad argument if the clip size is nonsense."""
    if int(frames) < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    if int(height) < 8 or int(width) < 8:
        raise ValueError(f"height and width must be >= 8 pixels, got {height}x{width}")


def render_clip(
    kind: str,
    seed: int,
    frames: int,
    height: int,
    width: int,
    clip_id: str | None = None,
    motion: Motion | None = None,
) -> Clip:
    """Render one clip of the procedural world.

    Args:
        kind: ``"object"``, ``"scene"`` or ``"dynamic"``.
        seed: non-negative integer; the same arguments give byte-identical clips.
        frames, height, width: T >= 1 and H, W >= 8.
        clip_id: ``meta["id"]``; default ``"world-<kind>-<seed>"``.
        motion: per-frame camera rates (default `Motion()`: orbits 4.5 deg per frame, walks
            0.05 m per frame), independent of T.

    Returns:
        A validated `Clip`: ``frames`` uint8 ``[T, H, W, 3]``, ``depth`` float32 ``[T, H, W]``
        (z-depth in metres, 0 where invalid), ``valid`` bool (False on sky), ``dynamic`` bool
        (pixels on moving objects; all False for static kinds), ``intrinsics`` float32
        ``[T, 3, 3]``, ``cam_to_world`` float64 ``[T, 4, 4]`` (OpenCV, world z-up, metres).
        ``meta`` holds ``id``, ``source="world"``, ``kind``, ``base_kind``, ``layout``, ``fps``,
        ``frame_indices``, ``seed``, ``fov_range_deg``, per-frame ``fov_x_deg``/``fov_y_deg``,
        ``world_up``, ``ground``, ``lights``, ``ambient``, ``motion`` (the rates given,
        ``reference_frames``, the path type ``orbit``/``walk`` and the realised mean per-frame
        ``camera_step_m`` and ``view_turn_deg``) and ``objects`` (class, box
        ``center``/``size``/``yaw``, ``color``, ``dynamic``, ``parts``, ``pixels`` visible per frame,
        and ``centers``/``yaws`` per frame for movers).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    check_size(frames, height, width)
    world = build_world(kind, int(seed), int(frames), motion)
    t, h, w = int(frames), int(height), int(width)
    rgb = np.empty((t, h, w, 3), dtype=np.uint8)
    depth = np.empty((t, h, w), dtype=np.float32)
    valid = np.empty((t, h, w), dtype=bool)
    dynamic = np.empty((t, h, w), dtype=bool)
    intrinsics = np.empty((t, 3, 3), dtype=np.float32)
    fovs = []
    pixels = np.zeros((len(world.objects), t), dtype=np.int64)  # visible pixels per object
    for i in range(t):
        k = intrinsics_from_fov(float(world.fov_x_deg[i]), h, w)
        buffers = render_frame(world, i, k, world.cam_to_world[i], h, w)
        pixels[:, i] = object_pixel_counts(world, buffers.ids)
        rgb[i], depth[i], valid[i], dynamic[i] = (
            buffers.rgb,
            buffers.depth,
            buffers.valid,
            buffers.dynamic,
        )
        intrinsics[i] = k.astype(np.float32)
        fovs.append(fov_from_intrinsics(k, h, w))
    meta: dict[str, Any] = {
        "id": clip_id if clip_id is not None else f"world-{kind}-{int(seed)}",
        "source": "world",
        "kind": kind,
        "base_kind": world.base_kind,
        "layout": world.layout,
        "fps": FPS,
        "frame_indices": list(range(t)),
        "seed": int(seed),
        "generator_version": GENERATOR_VERSION,
        "fov_range_deg": list(FOV_RANGE_DEG),
        "fov_x_deg": [round(f[0], 6) for f in fovs],
        "fov_y_deg": [round(f[1], 6) for f in fovs],
        "world_up": [0.0, 0.0, 1.0],
        "ground": {
            "extent": [round(float(v), 6) for v in world.ground.extent],
            "color": [round(float(c), 4) for c in world.ground.texture.mean_color],
        },
        "lights": [
            {"direction": [round(v, 6) for v in d], "intensity": round(i, 6)}
            for d, i in world.lights
        ],
        "ambient": round(world.ambient, 6),
        "motion": _motion_meta(world.motion, world.base_kind, world.cam_to_world),
        "objects": [
            {**obj.meta(), "pixels": [int(n) for n in pixels[j]]}
            for j, obj in enumerate(world.objects)
        ],
    }
    clip = Clip(
        frames=rgb,
        intrinsics=intrinsics,
        cam_to_world=world.cam_to_world.astype(np.float64),
        depth=depth,
        valid=valid,
        dynamic=dynamic,
        meta=meta,
    )
    return clip.validate()


def _motion_meta(motion: Motion, base_kind: str, cam_to_world: np.ndarray) -> dict[str, Any]:
    """The rates of ``motion`` and the realised mean per-frame camera step and view turn."""
    eyes = cam_to_world[:, :3, 3]
    forward = cam_to_world[:, :3, 2]
    if len(eyes) > 1:
        step = float(np.linalg.norm(np.diff(eyes, axis=0), axis=1).mean())
        cos = np.clip(np.sum(forward[1:] * forward[:-1], axis=1), -1.0, 1.0)
        turn = float(np.degrees(np.arccos(cos)).mean())
    else:
        step = turn = 0.0
    return {
        **motion.to_dict(),
        "path": "orbit" if base_kind == "object" else "walk",
        "camera_step_m": round(step, 6),
        "view_turn_deg": round(turn, 6),
    }


def clip_seed(seed: int, index: int) -> int:
    """The seed of clip ``index`` in a dataset generated with ``seed`` (deterministic)."""
    return int(
        np.random.SeedSequence([int(seed), int(index)]).generate_state(1, dtype=np.uint32)[0]
    )


def clip_kind(kind: str, index: int) -> str:
    """The kind of clip ``index``: ``kind`` itself, or object/scene alternating for ``mixed``."""
    if kind == "mixed":
        return ("object", "scene")[index % 2]
    return kind


def dataset_clip_id(kind: str, seed: int, index: int) -> str:
    """Id of clip ``index`` of a dataset: ``<kind>-s<seed>-<index:06d>``.

    The dataset seed is part of the id so that folders generated with different seeds (e.g. train
    and held-out sets) never share clip ids, which key cached features.
    """
    return f"{clip_kind(kind, index)}-s{int(seed)}-{int(index):06d}"


def generate_dataset(
    out: str | os.PathLike[str],
    kind: str,
    clips: int,
    frames: int,
    height: int,
    width: int,
    seed: int,
    overwrite: bool = False,
    progress: bool = True,
    motion: Motion | None = None,
) -> ClipFolder:
    """Write ``clips`` world clips into the dataset folder ``out`` and return its reader.

    ``motion``: per-frame camera rates of every clip (default `Motion()`), part of the spec.

    Clip ``i`` has id `dataset_clip_id` (``<kind>-s<seed>-<i:06d>``, its own kind for
    ``mixed``) and seed ``clip_seed(seed, i)``. Resumable: if ``out`` holds an index written with the same
    specification, clips already present are kept and only the missing ones are rendered.
    A non-empty ``out`` with anything else raises `FileExistsError` unless ``overwrite``, which
    first deletes the clips listed in its index (other files are left alone).
    """
    if kind not in DATASET_KINDS:
        raise ValueError(f"kind must be one of {DATASET_KINDS}, got {kind!r}")
    if int(clips) < 1:
        raise ValueError(f"clips must be >= 1, got {clips}")
    check_size(frames, height, width)
    if int(seed) < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    root = Path(out)
    if root.exists() and not root.is_dir():
        raise FileExistsError(f"--out exists and is not a directory: {root}")
    spec = {
        "kind": kind,
        "clips": int(clips),
        "frames": int(frames),
        "height": int(height),
        "width": int(width),
        "seed": int(seed),
        "generator_version": GENERATOR_VERSION,
        "motion": (Motion() if motion is None else motion).to_dict(),
    }
    if root.is_dir() and any(root.iterdir()):
        same_spec = _existing_spec(root) == spec
        if overwrite:
            _remove_listed(root)
        elif not same_spec:
            raise FileExistsError(
                f"output folder {root} is not empty and was not written with the same settings; "
                "choose another folder or pass --overwrite"
            )
    writer = ClipFolderWriter(root, info={"source": "world", "world_spec": spec})
    done = {i for i in writer.ids if (root / f"{i}.safetensors").is_file()}
    todo = [i for i in range(int(clips)) if dataset_clip_id(kind, seed, i) not in done]
    bar = _progress(len(todo), enabled=progress, initial=int(clips) - len(todo), total=int(clips))
    for i in todo:
        k = clip_kind(kind, i)
        clip_id = dataset_clip_id(kind, seed, i)
        writer.add(render_clip(k, clip_seed(seed, i), frames, height, width, clip_id, motion))
        bar.update(1)
    bar.close()
    if not writer.ids:  # pragma: no cover - clips >= 1 always writes
        raise RuntimeError("no clips written")
    return ClipFolder(root)


def _existing_spec(root: Path) -> dict[str, Any] | None:
    if not (root / INDEX_NAME).is_file():
        return None
    try:
        return ClipFolder(root).info.get("world_spec")
    except (ValueError, OSError):
        return None


def _remove_listed(root: Path) -> None:
    """Delete ``index.json`` and the clip files it lists (nothing else)."""
    if not (root / INDEX_NAME).is_file():
        return
    try:
        folder = ClipFolder(root)
        paths = [folder.path_of(i) for i in folder.ids]
    except (ValueError, OSError):
        paths = []
    for path in paths:
        if path.resolve().parent == root.resolve() and path.is_file():
            path.unlink()
    (root / INDEX_NAME).unlink()


class _NoBar:
    def update(self, n: int) -> None:
        del n

    def close(self) -> None:
        pass


def _progress(todo: int, enabled: bool, initial: int, total: int) -> Any:
    del todo
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc="world clips", unit="clip")
