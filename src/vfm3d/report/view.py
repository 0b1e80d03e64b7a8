"""`vfm3d view PATH`: a run folder, a clip file or a PLY in a local viser server (127.0.0.1).

What PATH can be:

- a run folder: a sweep / demo output (``example_pred.ply``, ``example_gt.ply``) or a folder of
  exports (``points.ply`` + ``cameras.json``); other ``*.ply`` files are shown when none of
  those names is present, and ``cameras.json`` adds camera frusta;
- a clip file (``.safetensors`` in the vfm3d `Clip` format): depth back-projected with the
  intrinsics and ``cam_to_world`` (valid pixels only), one frustum per frame with its image;
- a ``.ply`` file (as written by `vfm3d.report.pointcloud.write_ply`);
- a ``cameras.json`` file alone.

Conventions (DESIGN.md): OpenCV cameras (x right, y down, z forward), ``K`` in pixels,
``cam_to_world``; viser's frusta use the same camera convention, and the scene's up direction
is set to -y so that the OpenCV world (y down) stands upright.
"""

from __future__ import annotations

import math
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vfm3d.report.viewer import scene_extent, subsample_indices

VIEW_POINT_CAP = 200_000
"""Default maximum number of points per cloud sent to the viser client."""
_CLOUD_FILES = (
    ("predicted", "example_pred.ply"),
    ("true", "example_gt.ply"),
    ("points", "points.ply"),
)


@dataclass
class ViewCamera:
    """One camera: ``intrinsics`` ``[3, 3]`` (pixels), ``cam_to_world`` ``[4, 4]``, image size,
    optional ``image`` uint8 ``[H, W, 3]`` shown on the frustum."""

    name: str
    intrinsics: np.ndarray
    cam_to_world: np.ndarray
    width: int
    height: int
    image: np.ndarray | None = None
    color: tuple[int, int, int] = (31, 143, 255)


@dataclass
class ViewScene:
    """What `serve` shows: named clouds (``points`` ``[N, 3]`` float32, ``colors`` ``[N, 3]``
    uint8, already subsampled) and cameras."""

    source: str
    clouds: list[tuple[str, np.ndarray, np.ndarray]] = field(default_factory=list)
    cameras: list[ViewCamera] = field(default_factory=list)

    def size(self) -> float:
        """Scene size (2-98 % box diagonal of all points; of the camera centres without points)."""
        if self.clouds:
            return scene_extent(np.concatenate([c[1] for c in self.clouds]))[1]
        if self.cameras:
            centres = np.stack([c.cam_to_world[:3, 3] for c in self.cameras])
            return max(scene_extent(centres)[1], 1.0) if len(centres) > 1 else 1.0
        return 1.0


# ----------------------------------------------------------------------------- loading
def _cap(points: np.ndarray, colors: np.ndarray, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """Finite rows of ``points`` ``[N, 3]`` / ``colors`` ``[N, 3]``, at most ``max_points``."""
    pts = np.asarray(points, dtype=np.float32).reshape(-1, 3)
    cols = np.asarray(colors, dtype=np.uint8).reshape(-1, 3)
    keep = np.flatnonzero(np.all(np.isfinite(pts), axis=1))
    keep = keep[subsample_indices(keep.size, max_points)]
    return pts[keep], cols[keep]


def read_cameras(path: str | os.PathLike[str]) -> list[ViewCamera]:
    """Cameras of a ``cameras.json`` written by `vfm3d.report.export.write_cameras_json`."""
    from vfm3d.report.export.cameras import read_cameras_json

    cams = read_cameras_json(path)
    return [
        ViewCamera(f"camera_{number:03d}", k, c2w, int(width), int(height))
        for number, (k, c2w, width, height) in enumerate(
            zip(cams.intrinsics, cams.cam_to_world, cams.widths, cams.heights)
        )
    ]


def _load_folder(folder: Path, max_points: int) -> ViewScene:
    from vfm3d.report.pointcloud import read_ply

    scene = ViewScene(source=str(folder))
    named = [(name, folder / file) for name, file in _CLOUD_FILES if (folder / file).is_file()]
    if not named:
        named = [(p.stem, p) for p in sorted(folder.glob("*.ply"))]
    for name, file in named:
        scene.clouds.append((name, *_cap(*read_ply(file), max_points)))
    if (folder / "cameras.json").is_file():
        scene.cameras = read_cameras(folder / "cameras.json")
    if not scene.clouds and not scene.cameras:
        raise FileNotFoundError(f"{folder}: no *.ply and no cameras.json to show")
    return scene


def load_clip_scene(path: str | os.PathLike[str], max_points: int = VIEW_POINT_CAP) -> ViewScene:
    """A clip file: depth back-projected to world points (valid pixels), one camera per frame."""
    import torch

    from vfm3d.clip import Clip
    from vfm3d.geometry import depth_to_world_points

    clip = Clip.load(path)
    scene = ViewScene(source=str(path))
    if clip.depth is not None:
        world = depth_to_world_points(
            torch.from_numpy(np.asarray(clip.depth, dtype=np.float64)),
            torch.from_numpy(np.asarray(clip.intrinsics, dtype=np.float64)),
            torch.from_numpy(np.asarray(clip.cam_to_world, dtype=np.float64)),
        ).numpy()  # [T, H, W, 3]
        valid = np.ones(clip.depth.shape, bool) if clip.valid is None else clip.valid.astype(bool)
        valid &= np.isfinite(clip.depth)
        scene.clouds.append(("clip", *_cap(world[valid], clip.frames[valid], max_points)))
    step = max(1, math.ceil(max(clip.height, clip.width) / 160))
    for t in range(clip.num_frames):
        scene.cameras.append(
            ViewCamera(
                f"frame_{t:03d}",
                np.asarray(clip.intrinsics[t], dtype=np.float64),
                np.asarray(clip.cam_to_world[t], dtype=np.float64),
                clip.width,
                clip.height,
                image=np.ascontiguousarray(clip.frames[t, ::step, ::step]),
            )
        )
    return scene


def load_scene(path: str | os.PathLike[str], max_points: int = VIEW_POINT_CAP) -> ViewScene:
    """Load PATH (run folder, clip ``.safetensors``, ``.ply`` or ``cameras.json``) for viewing."""
    from vfm3d.report.pointcloud import read_ply

    target = Path(path)
    if target.is_dir():
        return _load_folder(target, max_points)
    if not target.is_file():
        raise FileNotFoundError(f"{target}: no such file or folder")
    suffix = target.suffix.lower()
    if suffix == ".safetensors":
        return load_clip_scene(target, max_points)
    if suffix == ".ply":
        return ViewScene(str(target), clouds=[(target.stem, *_cap(*read_ply(target), max_points))])
    if suffix == ".json":
        return ViewScene(str(target), cameras=read_cameras(target))
    raise ValueError(f"{target}: expected a folder, a .safetensors clip, a .ply or cameras.json")


# ----------------------------------------------------------------------------- serving
def _wxyz(rotation: np.ndarray) -> np.ndarray:
    """Rotation matrix ``[3, 3]`` -> unit quaternion ``(w, x, y, z)`` (viser's order)."""
    import viser.transforms as tf

    return np.asarray(tf.SO3.from_matrix(np.asarray(rotation, dtype=np.float64)).wxyz)


def serve(
    scene: ViewScene, port: int = 8080, block: bool = True, point_size: float | None = None
) -> Any:
    """Show ``scene`` in a viser server bound to 127.0.0.1:``port``; print the URL.

    With ``block`` serve until Ctrl-C, then stop; otherwise return the running
    ``viser.ViserServer`` (the caller stops it with ``server.stop()``).
    """
    import viser

    server = viser.ViserServer(host="127.0.0.1", port=port, verbose=False)
    size = scene.size()
    server.scene.set_up_direction("-y")
    for name, points, colors in scene.clouds:
        server.scene.add_point_cloud(
            f"/clouds/{name}",
            points=points,
            colors=colors,
            point_size=point_size if point_size is not None else 0.004 * size,
            precision="float32",
        )
    frustum_scale = 0.06 * size
    for cam in scene.cameras:
        fy = float(cam.intrinsics[1, 1])
        server.scene.add_camera_frustum(
            f"/cameras/{cam.name}",
            fov=2.0 * math.atan((cam.height / 2.0) / fy),
            aspect=cam.width / cam.height,
            scale=frustum_scale,
            thickness=0.05 * frustum_scale,
            color=cam.color,
            image=cam.image,
            wxyz=_wxyz(cam.cam_to_world[:3, :3]),
            position=np.asarray(cam.cam_to_world[:3, 3], dtype=np.float64),
        )
    url = f"http://127.0.0.1:{server.get_port()}"
    counts = ", ".join(f"{n}: {len(p):,} points" for n, p, _ in scene.clouds) or "no points"
    print(f"vfm3d view: {scene.source} ({counts}; {len(scene.cameras)} cameras) at {url}")
    if not block:
        return server
    print("Press Ctrl-C to stop.")
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop cleanly on SIGTERM too
    try:
        while True:
            time.sleep(1.0)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return server


def view(
    path: str | os.PathLike[str],
    port: int = 8080,
    max_points: int = VIEW_POINT_CAP,
    block: bool = True,
) -> Any:
    """Load PATH and serve it (see `load_scene` and `serve`)."""
    return serve(load_scene(path, max_points), port=port, block=block)
