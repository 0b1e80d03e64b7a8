"""Feed-forward 4D reconstruction with a VGGT-architecture 3D expert, in windows.

`ExpertReconstructor.reconstruct(clip)` runs the model's camera, depth and point heads over
windows of ``window`` frames that overlap by ``overlap`` frames. Each window's world frame is its
own first camera; window k > 0 is chained onto the frames already reconstructed by a Sim(3)
(Umeyama with scale) that maps its point maps of the overlapping frames onto theirs (confident
pixels only), so the result lives in frame 0's camera, at frame 0's window's scale. Memory grows
with ``window`` (global attention is quadratic in frames x tokens), not with the video's length.

Conventions: cameras OpenCV; the model's pose encoding is VGGT's ``absT_quaR_FoV`` of
world_to_cam (decoded by `vfm3d.geometry.decode_pose`, principal point at the image centre
``(W/2, H/2)`` as VGGT puts it); depth is z-depth.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vfm3d.clip import Clip
from vfm3d.geometry import decode_pose, invert_rigid, umeyama
from vfm3d.models.vggt import VGGT
from vfm3d.recon4d.result import Reconstruction

#: pixels per overlapping frame used to fit the Sim(3) between windows
_CHAIN_SAMPLES = 4096


def load_expert(
    model: str | os.PathLike[str], device: str = "cpu", dtype: torch.dtype = torch.float32
) -> VGGT:
    """A VGGT-architecture model with its camera, depth and point heads: ``zoo/vggt-mini`` (the
    shipped miniature) or a local folder (``model.safetensors`` + ``config.json``, e.g. VGGT-1B)."""
    text = str(model)
    if text.startswith("zoo/"):
        from vfm3d.backbones.registry import zoo_root

        path = zoo_root() / text.removeprefix("zoo/")
        if not path.is_dir():
            raise FileNotFoundError(f"{text}: not shipped (looked in {path})")
    else:
        path = Path(text)
        if not path.exists():
            raise FileNotFoundError(f"model folder not found: {path}")
    net = VGGT.from_pretrained(path, device=device, dtype=dtype)
    missing = [
        name
        for name, head in (("camera", net.camera_head), ("depth", net.depth_head))
        if head is None
    ]
    if missing or net.point_head is None:
        raise ValueError(
            f"{path}: reconstruction needs the camera, depth and point heads; "
            f"this model lacks {missing + ([] if net.point_head is not None else ['point'])}"
        )
    net.name_or_path = text
    return net.eval().requires_grad_(False)


def default_size(model: VGGT, in_hw: tuple[int, int]) -> tuple[int, int]:
    """The model's input size for an ``in_hw`` video: width = the model's ``img_size``, height
    keeping the aspect ratio, both rounded to the patch size (VGGT's own "crop" preprocessing
    keeps width 518 and rounds the height to 14)."""
    patch, width = int(model.config.patch_size), int(model.config.img_size)
    height = max(patch, round(in_hw[0] * width / in_hw[1] / patch) * patch)
    return height, width


class ExpertReconstructor:
    """Reconstruct clips with a VGGT-architecture model (see the module docstring).

    ``window`` frames per forward (default 32), ``overlap`` shared frames between consecutive
    windows (>= 1 when there is more than one window; default 4).
    """

    def __init__(
        self,
        model: VGGT,
        window: int = 32,
        overlap: int = 4,
        device: str = "cpu",
        progress: bool = True,
    ) -> None:
        if window < 2:
            raise ValueError(f"window must be >= 2 frames, got {window}")
        if not 1 <= overlap < window:
            raise ValueError(
                f"overlap must satisfy 1 <= overlap < window ({window}), got {overlap}"
            )
        self.model = model
        self.window = int(window)
        self.overlap = int(overlap)
        self.device = device
        self.progress = progress

    def windows(self, num_frames: int) -> list[tuple[int, int]]:
        """``[start, stop)`` frame ranges covering ``num_frames`` with the configured overlap."""
        if num_frames <= self.window:
            return [(0, num_frames)]
        step = self.window - self.overlap
        spans = []
        start = 0
        while True:
            stop = min(start + self.window, num_frames)
            spans.append((start, stop))
            if stop == num_frames:
                return spans
            start += step

    @torch.no_grad()
    def _run_window(self, frames: np.ndarray) -> dict[str, np.ndarray]:
        """One forward over ``frames`` uint8 ``[S, H, W, 3]`` -> numpy arrays in its own frame."""
        images = torch.from_numpy(np.ascontiguousarray(frames)).to(self.device)
        images = images.permute(0, 3, 1, 2).float().div(255.0)[None]
        hw = (int(frames.shape[1]), int(frames.shape[2]))
        out = self.model(images)
        enc = out["pose_enc"][0].double().cpu().clone()
        enc[..., 7:9] = enc[..., 7:9].clamp_min(1e-3)  # FoV 0 would be an infinite focal
        world_to_cam, intrinsics = decode_pose(enc, hw)
        return {
            "depth": out["depth"][0, ..., 0].float().cpu().numpy(),
            "depth_conf": out["depth_conf"][0].float().cpu().numpy(),
            "points": out["world_points"][0].float().cpu().numpy(),
            "points_conf": out["world_points_conf"][0].float().cpu().numpy(),
            "cam_to_world": invert_rigid(world_to_cam).numpy(),
            "intrinsics": intrinsics.numpy(),
        }

    def prepare(self, clip: Clip, size: tuple[int, int] | None = None) -> Clip:
        """``clip`` resized to ``size`` (H, W; default `default_size`) with its intrinsics and
        any ground truth following (`vfm3d.data.transforms`). H, W must be multiples of the
        model's patch size."""
        from vfm3d.data.transforms import apply_to_clip, resize

        patch = int(self.model.config.patch_size)
        size = tuple(size or default_size(self.model, (clip.height, clip.width)))  # type: ignore[assignment]
        if size[0] % patch or size[1] % patch:
            raise ValueError(
                f"size {size[0]}x{size[1]} not supported: H and W must be multiples of the "
                f"model's patch size {patch}"
            )
        if (clip.height, clip.width) != size:
            clip = apply_to_clip(clip, resize((clip.height, clip.width), size))
        return clip

    def reconstruct(self, clip: Clip, size: tuple[int, int] | None = None) -> Reconstruction:
        """Reconstruct every frame of ``clip`` (first resized by `prepare`), window by window."""
        spans = self.windows(clip.num_frames)
        parts = (clip.subset(range(start, stop)) for start, stop in spans)
        return self.reconstruct_windows(parts, size, clip_id=clip.id, total=len(spans))

    def reconstruct_windows(
        self,
        windows: Iterable[Clip],
        size: tuple[int, int] | None = None,
        clip_id: str | None = None,
        total: int | None = None,
    ) -> Reconstruction:
        """Reconstruct a video given as consecutive windows that overlap by ``self.overlap``
        frames (e.g. ``VideoReader.iter_windows(window, overlap)``: decoded lazily, so only one
        window of the original frames is in memory). Each window is resized by `prepare`, run,
        and chained onto the frames before it (see the module docstring)."""
        from tqdm import tqdm

        keys = ("depth", "depth_conf", "points", "points_conf", "cam_to_world", "intrinsics")
        done: dict[str, list[np.ndarray]] = {k: [] for k in (*keys, "frames")}
        times: list[float] = []
        chained: list[dict[str, Any]] = []
        start_time = time.perf_counter()
        first_id, hw, count = None, None, 0
        iterator = tqdm(
            windows, desc="reconstruct", unit="window", total=total, disable=not self.progress
        )
        for window in iterator:
            window = self.prepare(window, size)
            first_id = first_id or window.meta.get("parent_id", window.id)
            if hw is not None and (window.height, window.width) != hw:
                raise ValueError(
                    f"window {window.id!r} is {window.height}x{window.width}, not {hw}"
                )
            hw = (window.height, window.width)
            start = count - min(self.overlap, count) if count else 0
            shared = count - start
            if count and window.num_frames <= shared:
                continue  # nothing new in this window
            part = self._run_window(window.frames)
            scale, rot, trans = 1.0, np.eye(3), np.zeros(3)
            if shared:
                scale, rot, trans = _fit_overlap(part, done, shared)
            _apply_similarity(part, scale, rot, trans)
            for name in keys:
                done[name].extend(part[name][shared:])
            done["frames"].extend(window.frames[shared:])
            stamps = window.meta.get("timestamps")
            new = range(shared, window.num_frames)
            times.extend(float(stamps[i]) if stamps else float(count + i - shared) for i in new)
            count += window.num_frames - shared
            chained.append(
                {
                    "frames": [start, count],
                    "scale": scale,
                    "rotation": rot.tolist(),
                    "translation": trans.tolist(),
                }
            )
        if not count:
            raise ValueError("reconstruct: the input has no frames")
        seconds = time.perf_counter() - start_time
        meta = {
            "model": str(getattr(self.model, "name_or_path", "vggt")),
            "clip_id": clip_id or first_id,
            "input_hw": list(hw or ()),
            "window": self.window,
            "overlap": self.overlap,
            "windows": chained,
            "seconds": seconds,
            "seconds_per_frame": seconds / count,
            "world_frame": "frame 0's OpenCV camera; scale of the model (up to similarity)",
        }
        stacked = {name: np.stack(values) for name, values in done.items()}
        return Reconstruction(timestamps=np.asarray(times, dtype=np.float64), meta=meta, **stacked)


def _fit_overlap(
    part: dict[str, np.ndarray], done: dict[str, list[np.ndarray]], shared: int
) -> tuple[float, np.ndarray, np.ndarray]:
    """Sim(3) mapping this window's first ``shared`` frames' points onto the same frames as
    already chained (the last ``shared`` frames done), on pixels confident in both."""
    local = part["points"][:shared].reshape(-1, 3)
    target = np.stack(done["points"][-shared:]).reshape(-1, 3)
    conf = np.minimum(
        part["points_conf"][:shared].reshape(-1),
        np.stack(done["points_conf"][-shared:]).reshape(-1),
    )
    keep = np.flatnonzero(conf >= np.quantile(conf, 0.5))
    if keep.size > _CHAIN_SAMPLES:
        keep = np.random.default_rng(0).choice(keep, _CHAIN_SAMPLES, replace=False)
    s, r, t = umeyama(
        torch.from_numpy(local[keep]).double(),
        torch.from_numpy(target[keep]).double(),
        with_scale=True,
    )
    return float(s), r.numpy(), t.numpy()


def _apply_similarity(
    part: dict[str, np.ndarray], scale: float, rot: np.ndarray, trans: np.ndarray
) -> None:
    """``x -> s R x + t`` on points and camera centres (rotations ``R @``), depth ``* s``."""
    if scale == 1.0 and np.array_equal(rot, np.eye(3)) and not trans.any():
        return
    part["points"] = (scale * part["points"] @ rot.T + trans).astype(np.float32)
    part["depth"] = (scale * part["depth"]).astype(np.float32)
    c2w = part["cam_to_world"].copy()
    c2w[:, :3, :3] = rot @ part["cam_to_world"][:, :3, :3]
    c2w[:, :3, 3] = scale * part["cam_to_world"][:, :3, 3] @ rot.T + trans
    part["cam_to_world"] = c2w
