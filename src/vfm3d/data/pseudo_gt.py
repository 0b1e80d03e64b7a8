"""Pseudo ground truth from a VGGT-architecture 3D expert, stored beside the clips.

For datasets without dense depth (DL3DV, RealEstate10K) VidFM3D uses VGGT-1B predictions as
targets. `predict_pseudo_gt` runs a `vfm3d.models.vggt.VGGT` on one `Clip`; `write_pseudo_gt`
does it for every clip of a clip folder and writes ``<id>.pseudo_gt.safetensors`` next to each
``<id>.safetensors`` (atomically; a rerun skips clips already done with the same model).

Conventions of the result (numpy, at the clip's resolution ``H x W``):

- ``depth`` float32 ``[T, H, W]`` z-depth; ``depth_conf`` float32 ``[T, H, W]`` (>= 1, VGGT's
  ``1 + exp``; larger = more confident).
- ``points`` float32 ``[T, H, W, 3]`` from the point head, ``points_conf`` ``[T, H, W]``.
- ``cam_to_world`` float64 ``[T, 4, 4]`` and ``intrinsics`` float32 ``[T, 3, 3]`` (OpenCV, pixel
  centres at integers, principal point at the image centre) decoded from the camera head.
- The world frame is VGGT's: the camera of clip frame 0 (OpenCV axes), at VGGT's own arbitrary
  scale; it is *not* the clip's ``cam_to_world`` world.

Frames are resized so that the longer side is ``long_side`` (default: the model's ``img_size``,
518 for VGGT-1B) and both sides are multiples of the patch size, then predictions are resized
back bilinearly. With ``batch_frames`` smaller than ``T``, the clip runs in chunks that each
start with frame 0 (the anchor); every chunk is mapped into the first chunk's frame by the
anchor's pose and the median anchor-depth ratio.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from vfm3d.clip import Clip, ClipFolder
from vfm3d.data.transforms import resize
from vfm3d.geometry.camera import invert_rigid
from vfm3d.geometry.pose_encoding import decode_pose
from vfm3d.utils.atomic import atomic_path

SUFFIX = ".pseudo_gt.safetensors"
ARRAYS = ("depth", "depth_conf", "points", "points_conf", "cam_to_world", "intrinsics")
FORMAT_VERSION = 1


@dataclass
class _Chunk:
    """Predictions for some frames at model resolution (torch, float64 poses)."""

    depth: torch.Tensor  # [S, h, w]
    depth_conf: torch.Tensor  # [S, h, w]
    points: torch.Tensor  # [S, h, w, 3]
    points_conf: torch.Tensor  # [S, h, w]
    cam_to_world: torch.Tensor  # [S, 4, 4] float64
    intrinsics: torch.Tensor  # [S, 3, 3] float64, VGGT convention (principal point W/2, H/2)


def pseudo_gt_path(clip_path: str | os.PathLike[str], clip_id: str) -> Path:
    """Where the pseudo ground truth of the clip file ``clip_path`` lives."""
    return Path(clip_path).parent / f"{clip_id}{SUFFIX}"


def model_input_size(height: int, width: int, long_side: int, patch_size: int) -> tuple[int, int]:
    """``(h, w)``: the longer side scaled to ``long_side``, both rounded to patch multiples."""
    if long_side < patch_size:
        raise ValueError(f"long_side ({long_side}) must be >= the patch size ({patch_size})")
    scale = long_side / max(height, width)

    def snap(size: int) -> int:
        return max(patch_size, round(size * scale / patch_size) * patch_size)

    return snap(height), snap(width)


def _check_model(model: Any) -> None:
    for head in ("camera_head", "depth_head", "point_head"):
        if getattr(model, head, None) is None:
            raise ValueError(
                f"pseudo ground truth needs a VGGT with camera, depth and point heads; "
                f"{head} is disabled (load the full model, not aggregator_only)"
            )


@torch.no_grad()
def _run_chunk(model: Any, images: torch.Tensor, amp_dtype: torch.dtype | None = None) -> _Chunk:
    """``images`` ``[S, 3, h, w]`` in [0, 1] -> predictions of one joint forward."""
    param = next(model.parameters())
    batch = images[None].to(device=param.device, dtype=param.dtype)
    amp = (
        torch.autocast(param.device.type, dtype=amp_dtype)
        if amp_dtype is not None
        else contextlib.nullcontext()
    )
    with amp:
        out = model(batch)
    h, w = images.shape[-2:]
    world_to_cam, intrinsics = decode_pose(out["pose_enc"][0].double(), (h, w))
    return _Chunk(
        depth=out["depth"][0, ..., 0].float(),
        depth_conf=out["depth_conf"][0].float(),
        points=out["world_points"][0].float(),
        points_conf=out["world_points_conf"][0].float(),
        cam_to_world=invert_rigid(world_to_cam),
        intrinsics=intrinsics,
    )


def align_chunk(
    chunk: _Chunk, anchor_depth: torch.Tensor, anchor_cam_to_world: torch.Tensor
) -> _Chunk:
    """Map ``chunk`` (whose frame 0 is the anchor) into the reference frame of a first chunk.

    Scale ``s`` = median of ``anchor_depth / chunk.depth[0]`` over pixels with positive depth in
    both; then ``X_ref = A_ref @ inv(A_chunk) @ (s * X)`` with ``A`` the anchor's cam_to_world
    (translation scaled by ``s``). Depth scales by ``s``; confidences are kept.
    """
    d = chunk.depth[0]
    ok = (d > 0) & (anchor_depth > 0) & torch.isfinite(d) & torch.isfinite(anchor_depth)
    if not bool(ok.any()):
        raise ValueError("cannot align chunk: the anchor frame has no positive depth")
    scale = float(torch.median(anchor_depth[ok] / d[ok]))
    scaled = chunk.cam_to_world.clone()
    scaled[:, :3, 3] *= scale
    rebase = anchor_cam_to_world.double() @ invert_rigid(scaled[0])  # chunk world -> ref world
    points = chunk.points.double() * scale
    points = points @ rebase[:3, :3].T + rebase[:3, 3]
    return _Chunk(
        depth=chunk.depth * scale,
        depth_conf=chunk.depth_conf,
        points=points.float(),
        points_conf=chunk.points_conf,
        cam_to_world=rebase @ scaled,
        intrinsics=chunk.intrinsics,
    )


def predict_pseudo_gt(
    model: Any,
    clip: Clip,
    batch_frames: int | None = None,
    long_side: int | None = None,
    amp_dtype: torch.dtype | None = None,
) -> dict[str, np.ndarray]:
    """Run ``model`` (a `VGGT` with camera/depth/point heads) on ``clip``; see the module docstring.

    Args:
        model: the 3D expert (eval mode is set here; its device and dtype are used).
        clip: frames ``[T, H, W, 3]`` uint8 (any ``H, W``).
        batch_frames: frames per forward including the anchor frame 0 (``None`` = all at once);
            at least 2 when smaller than ``T``.
        long_side: model input size of the longer image side (default ``model.config.img_size``).
        amp_dtype: run the aggregator under autocast in this dtype (e.g. ``torch.bfloat16`` on a
            GPU, as VidFM3D does); the heads always run in the parameters' precision.

    Returns ``depth``, ``depth_conf``, ``points``, ``points_conf``, ``cam_to_world``,
    ``intrinsics`` as numpy arrays at the clip resolution.
    """
    _check_model(model)
    model.eval()
    config = model.config
    t, height, width = clip.num_frames, clip.height, clip.width
    if batch_frames is not None and batch_frames < t and batch_frames < 2:
        raise ValueError(
            f"batch_frames must be >= 2 (frame 0 is in every chunk), got {batch_frames}"
        )
    in_hw = model_input_size(height, width, long_side or config.img_size, config.patch_size)
    to_model = resize((height, width), in_hw)
    resized = (
        to_model.warp_image(np.asarray(clip.frames)) if in_hw != (height, width) else clip.frames
    )
    images = torch.from_numpy(np.ascontiguousarray(resized)).permute(0, 3, 1, 2).float() / 255.0
    if batch_frames is None or batch_frames >= t:
        return _to_clip_resolution(_run_chunk(model, images, amp_dtype), in_hw, (height, width))
    step = batch_frames - 1  # new frames per chunk; frame 0 rides along as the anchor
    first = _run_chunk(model, images[:batch_frames], amp_dtype)
    parts = [first]
    for start in range(batch_frames, t, step):
        index = torch.tensor([0, *range(start, min(start + step, t))])
        chunk = align_chunk(
            _run_chunk(model, images[index], amp_dtype), first.depth[0], first.cam_to_world[0]
        )
        parts.append(_Chunk(*(getattr(chunk, f.name)[1:] for f in fields(_Chunk))))
    merged = _Chunk(*(torch.cat([getattr(p, f.name) for p in parts]) for f in fields(_Chunk)))
    return _to_clip_resolution(merged, in_hw, (height, width))


def _to_clip_resolution(
    chunk: _Chunk, in_hw: tuple[int, int], out_hw: tuple[int, int]
) -> dict[str, np.ndarray]:
    def back(maps: torch.Tensor) -> torch.Tensor:  # [T, C, h, w] -> [T, C, H, W]
        if tuple(maps.shape[-2:]) == tuple(out_hw):
            return maps
        return F.interpolate(maps, size=out_hw, mode="bilinear", align_corners=False)

    # VGGT's principal point (w/2, h/2) is the image centre, (W-1)/2 in vfm3d's integer-centre
    # pixels; focal lengths scale with the resize (a zero field of view stays an infinite focal).
    k = chunk.intrinsics.clone()
    k[:, 0, 0] *= out_hw[1] / in_hw[1]
    k[:, 1, 1] *= out_hw[0] / in_hw[0]
    k[:, 0, 2] = (out_hw[1] - 1) / 2.0
    k[:, 1, 2] = (out_hw[0] - 1) / 2.0
    return {
        "depth": back(chunk.depth[:, None])[:, 0].numpy().astype(np.float32),
        "depth_conf": back(chunk.depth_conf[:, None])[:, 0].numpy().astype(np.float32),
        "points": back(chunk.points.permute(0, 3, 1, 2))
        .permute(0, 2, 3, 1)
        .numpy()
        .astype(np.float32),
        "points_conf": back(chunk.points_conf[:, None])[:, 0].numpy().astype(np.float32),
        "cam_to_world": chunk.cam_to_world.numpy().astype(np.float64),
        "intrinsics": k.numpy().astype(np.float32),
    }


# ---------------------------------------------------------------------- files
def read_pseudo_gt(path: str | os.PathLike[str]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read a ``.pseudo_gt.safetensors`` file -> ``(arrays, info)`` (``info``: how it was made)."""
    from safetensors import safe_open

    source = Path(path)
    if not source.is_file():
        raise FileNotFoundError(f"pseudo ground truth not found: {source}")
    try:
        with safe_open(str(source), framework="numpy") as handle:
            info = json.loads((handle.metadata() or {}).get("pseudo_gt", "{}"))
            arrays = {key: handle.get_tensor(key) for key in handle.keys()}
    except Exception as error:  # safetensors / json raise their own error types
        raise ValueError(f"{source}: not a readable pseudo ground-truth file ({error})") from error
    missing = [name for name in ARRAYS if name not in arrays]
    if missing:
        raise ValueError(f"{source}: missing tensors {missing}")
    return arrays, info


def _is_done(path: Path, clip: Clip, model_id: str) -> bool:
    if not path.is_file():
        return False
    try:
        arrays, info = read_pseudo_gt(path)
    except ValueError:
        return False  # unreadable (e.g. from an older crash): redo it
    return (
        info.get("model") == model_id
        and info.get("version") == FORMAT_VERSION
        and arrays["depth"].shape == (clip.num_frames, clip.height, clip.width)
    )


def write_pseudo_gt(
    folder: str | os.PathLike[str],
    model: Any,
    batch_frames: int | None = None,
    long_side: int | None = None,
    model_id: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
    amp_dtype: torch.dtype | None = None,
) -> dict[str, list[Path]]:
    """Write ``<id>.pseudo_gt.safetensors`` beside every clip of the clip folder ``folder``.

    Resumable: a clip whose file exists, is readable and was made by the same ``model_id``
    (default ``model.name_or_path``) at the clip's size is skipped unless ``overwrite``. Each file
    is written atomically; the metadata key ``pseudo_gt`` holds JSON (model, config, input size,
    batch_frames, conventions). Returns ``{"written": [...], "skipped": [...]}``.
    """
    from safetensors.numpy import save_file
    from tqdm.auto import tqdm

    _check_model(model)
    clips = ClipFolder(folder)
    model_id = model_id or str(getattr(model, "name_or_path", type(model).__name__))
    done: dict[str, list[Path]] = {"written": [], "skipped": []}
    for clip_id in tqdm(clips.ids, desc="pseudo-gt", unit="clip", disable=not progress):
        clip = clips.load(clip_id)
        target = pseudo_gt_path(clips.path_of(clip_id), clip_id)
        if not overwrite and _is_done(target, clip, model_id):
            done["skipped"].append(target)
            continue
        arrays = predict_pseudo_gt(model, clip, batch_frames, long_side, amp_dtype=amp_dtype)
        long = long_side or model.config.img_size
        info = {
            "version": FORMAT_VERSION,
            "clip_id": clip_id,
            "model": model_id,
            "model_config": model.config.to_dict(),
            "input_hw": list(
                model_input_size(clip.height, clip.width, long, model.config.patch_size)
            ),
            "batch_frames": batch_frames,
            "world": "camera of clip frame 0 (OpenCV), VGGT's arbitrary scale",
        }
        with atomic_path(target) as tmp:
            save_file(
                {k: np.ascontiguousarray(v) for k, v in arrays.items()},
                str(tmp),
                metadata={"pseudo_gt": json.dumps(info)},
            )
        done["written"].append(target)
    return done
