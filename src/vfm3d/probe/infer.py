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


class WholeClipProbe:
    """A trained probe on **every** frame of a clip at once, from cached features.

    ``run_dir``: a ``vfm3d probe train`` run folder; ``features``: the feature cache of the
    clips (``vfm3d extract`` of them with the run's backbone, layer and timestep); ``data`` only
    names the clips in the ``vfm3d extract`` command that error messages suggest. Frame ``t``
    reads its temporally matching feature frame (the probe's trunk takes any frame count; frame
    0 is the reference frame). Every frame needs features: a clip with frames the backbone was
    not fed is a `ProbeDataError` (a ValueError) naming the clip and the frames; so are a clip
    without features and features of another channel count. No ``features`` is a ValueError, a
    folder that is not a feature cache a FileNotFoundError. Coordinates: frame 0's OpenCV
    camera, scale-normalised as the probe's targets.
    """

    def __init__(
        self,
        run_dir: str | os.PathLike[str],
        features: str | os.PathLike[str] | None,
        device: str = "cpu",
        data: str | os.PathLike[str] = "CLIPS",
    ) -> None:
        from vfm3d.probe.data import ProbeDataError, StoreFeatureSource
        from vfm3d.probe.evaluate import load_probe

        self.run = Path(run_dir)
        if not self.run.is_dir():
            raise FileNotFoundError(f"probe run folder not found: {self.run}")
        self.model, self.info = load_probe(self.run, device)
        self.device = device
        self.data = str(data)
        self.features = None if features is None else Path(features)
        if self.features is None:
            raise ValueError(
                f"--model probe:{self.run} needs --features CACHE, the feature cache of the "
                f"evaluated clips: {self.extract_hint()}"
            )
        if not (self.features / "manifest.json").is_file():
            raise FileNotFoundError(
                f"--features {self.features}: not a feature cache (no manifest.json); "
                f"{self.extract_hint()}"
            )
        self._frames: dict[str, int] = {}
        try:
            self.source = StoreFeatureSource(
                self.features,
                str(self.info["backbone"]),
                int(self.info["layer"]),
                self.info.get("timestep"),
                num_frames=self._frames.__getitem__,
            )
        except ProbeDataError as error:
            raise ProbeDataError(
                f"{error}; the probe {self.run} reads {self.describe_features()}: "
                f"{self.extract_hint()}"
            ) from error

    def describe_features(self) -> str:
        """``backbone B, layer L[, timestep t]`` of the features this probe reads."""
        timestep = self.info.get("timestep")
        at = "" if timestep is None else f", timestep {timestep}"
        return f"backbone {self.info['backbone']}, layer {self.info['layer']}{at}"

    def extract_hint(self) -> str:
        """``run `vfm3d extract ...``` naming the features this probe reads."""
        timestep = self.info.get("timestep")
        line = f"vfm3d extract --data {self.data} --backbone BACKBONE --layers {self.info['layer']}"
        if timestep is not None:
            line += f" --timesteps {timestep}"
        line += f" --out {self.features or 'CACHE'}"
        return (
            f"run `{line}` first (BACKBONE: the model the probe was trained on, fingerprint "
            f"{self.info['backbone']}; e.g. zoo/wan-mini for wan2.1-...)"
        )

    @property
    def settings(self) -> dict[str, Any]:
        """What an evaluation record keeps of the probe: run, features, backbone, layer,
        timestep, the evaluated step."""
        assert self.features is not None
        return {
            "run": str(self.run.resolve()),
            "features": str(self.features.resolve()),
            "backbone": self.info["backbone"],
            "layer": int(self.info["layer"]),
            "timestep": self.info.get("timestep"),
            "evaluated_step": int(self.info["evaluated_step"]),
        }

    def tokens(self, clip_id: str, num_frames: int) -> torch.Tensor:
        """``[T, h, w, C]`` float32: the feature frame of each of the clip's ``num_frames``."""
        from vfm3d.probe.data import ProbeDataError, read_frames

        self._frames[clip_id] = int(num_frames)
        try:
            frame_index = read_frames(self.source, clip_id, [0])[1].long()
        except KeyError as error:
            raise ProbeDataError(
                f"clip {clip_id!r}: no features in {self.features} for "
                f"{self.describe_features()} (the evaluated clips need their own features): "
                f"{self.extract_hint()}"
            ) from error
        missing = [int(t) for t in (frame_index < 0).nonzero().flatten()]
        if missing:
            raise ProbeDataError(
                f"clip {clip_id!r}: frames {missing} of its {num_frames} have no features "
                f"in {self.features}; the probe row reconstructs every frame of a clip, so every "
                "frame needs features (extract all frames: no --num-frames, and clips whose "
                "frame count the backbone's rule accepts, e.g. Wan's 4k+1)"
            )
        tokens = read_frames(self.source, clip_id, frame_index.tolist())[0].float()
        channels = int(self.info["in_channels"])
        if tokens.shape[-1] != channels:
            raise ProbeDataError(
                f"clip {clip_id!r}: features of {tokens.shape[-1]} channels in {self.features}, "
                f"the probe {self.run} takes {channels}"
            )
        return tokens

    @torch.no_grad()
    def __call__(self, clip: Any, count: int | None = None) -> dict[str, torch.Tensor]:
        """Predict on the first ``count`` frames (default all ``T``) of ``clip`` (whose cached
        features cover all its frames) -> ``pose_enc [T, 9]``, ``cam_to_world`` and
        ``world_to_cam [T, 4, 4]`` float64, ``intrinsics [T, 3, 3]`` float64 (pixels of the
        output size: the probe's ``output_size``, else the clip's), ``points [T, H, W, 3]``,
        ``points_conf``, ``depth`` ``[T, H, W]`` (on the CPU)."""
        tokens = self.tokens(clip.id, clip.num_frames)[: count or clip.num_frames]
        size = self.model.config.output_size
        out_hw = (int(size[0]), int(size[1])) if size else (clip.height, clip.width)
        pred = self.model(tokens[None].to(self.device), out_hw)
        world_to_cam, intrinsics = decode_pose(_finite_fov(pred["pose_enc"][0]), out_hw)
        return {
            "pose_enc": pred["pose_enc"][0].detach().cpu(),
            "world_to_cam": world_to_cam,
            "cam_to_world": invert_rigid(world_to_cam),
            "intrinsics": intrinsics,
            "points": pred["points"][0].detach().cpu(),
            "points_conf": pred["points_conf"][0].detach().cpu(),
            "depth": pred["depth"][0].detach().cpu(),
        }
