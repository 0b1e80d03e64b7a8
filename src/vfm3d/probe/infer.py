"""Probe predictions on clips without ground truth (a user's video or image folder).

`predict_clips` runs a trained probe on cached features of each clip (``vfm3d extract`` on the
same input first) and writes the field's files per clip with `vfm3d.report.export`: the probe's
point map, depth and cameras for ``config.num_frames`` frames spread evenly over the frames that
have features (within the first ``config.first_n``, as the probe samples in training).
Coordinates: the first sampled frame's OpenCV camera, scale-normalised as the probe's targets
(mean distance of frame 0's points = 1); intrinsics decoded from the predicted field of view.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vfm3d.geometry import decode_pose, invert_rigid

#: smallest field of view decoded (radians): an untrained head can output FoV 0 (its ReLU),
#: which would be an infinite focal length
MIN_FOV = 1e-3


def _finite_fov(pose_enc: torch.Tensor) -> torch.Tensor:
    """``[S, 9]`` absT_quaR_FoV (float64, CPU) with both FoVs clamped to ``>= MIN_FOV``."""
    enc = pose_enc.detach().cpu().double().clone()
    enc[..., 7:9] = enc[..., 7:9].clamp_min(MIN_FOV)
    return enc


def spread_frames(available: int, count: int, first_n: int | None = None) -> list[int]:
    """``count`` frame indices spread evenly over ``[0, min(available, first_n))``."""
    span = min(available, first_n) if first_n else available
    if span < count:
        raise ValueError(
            f"the probe needs {count} frames with features, the clip has {span} "
            "(extract more frames, or lower the stride)"
        )
    return [int(v) for v in np.rint(np.linspace(0, span - 1, count))]


@torch.no_grad()
def predict_clips(
    run_dir: str | os.PathLike[str],
    clips: Any,
    features: str | os.PathLike[str] | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    device: str = "cpu",
    progress: bool = True,
) -> list[Path]:
    """Predict with the probe of ``run_dir`` on every clip of ``clips`` (an object with ``ids``
    and ``load``, e.g. `vfm3d.data.inputs.open_clips`); write ``OUT/<clip id>/`` (default
    ``RUN/predictions``). Returns the folders written."""
    from tqdm import tqdm

    from vfm3d.probe.data import StoreFeatureSource, _resize_images, leading_frames, read_frames
    from vfm3d.probe.evaluate import load_probe
    from vfm3d.report.export import export_reconstruction
    from vfm3d.utils.atomic import atomic_write_json

    run = Path(run_dir)
    model, info = load_probe(run, device)
    config = model.config
    features = features if features is not None else info.get("features")
    if features is None:
        raise ValueError(f"{run}: trained on in-memory features; pass --features")
    out_root = Path(out_dir) if out_dir is not None else run / "predictions"
    written = []
    for clip_id in tqdm(list(clips.ids), desc="probe predict", unit="clip", disable=not progress):
        clip = clips.load(clip_id)
        source = StoreFeatureSource(
            features,
            info["backbone"],
            int(info["layer"]),
            info.get("timestep"),
            num_frames=lambda _cid, n=clip.num_frames: n,
        )
        try:
            frame_index = read_frames(source, clip_id, [0])[1].long()
        except KeyError as error:
            raise ValueError(
                f"no features of clip {clip_id!r} for {info['backbone']} layer {info['layer']} "
                f"in {features}: run `vfm3d extract` on the same input first"
            ) from error
        frames = spread_frames(leading_frames(frame_index), config.num_frames, config.first_n)
        tokens = read_frames(source, clip_id, frame_index[frames].tolist())[0].float()
        out_hw = tuple(config.output_size) if config.output_size else (clip.height, clip.width)
        pred = model(tokens[None].to(device), out_hw)
        world_to_cam, intrinsics = decode_pose(_finite_fov(pred["pose_enc"][0]), out_hw)
        images = _resize_images(clip.frames[frames], out_hw).numpy()
        out = out_root / "".join(c if c.isalnum() or c in "-_." else "_" for c in clip_id)
        export_reconstruction(
            out,
            frames=images,
            depth=pred["depth"][0].cpu().numpy(),
            intrinsics=intrinsics.numpy(),
            cam_to_world=invert_rigid(world_to_cam).numpy(),
            points=pred["points"][0].cpu().numpy(),
            conf=pred["points_conf"][0].cpu().numpy(),
        )
        atomic_write_json(
            out / "prediction.json",
            {
                "run": str(run.resolve()),
                "clip_id": clip_id,
                "frames": frames,
                "backbone": info["backbone"],
                "layer": info["layer"],
                "timestep": info.get("timestep"),
                "world_frame": "first sampled frame's OpenCV camera, probe-normalised scale",
            },
        )
        written.append(out)
    return written
