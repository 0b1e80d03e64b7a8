"""The probe row of `vfm3d recon4d eval`: a trained vfm3d probe's point maps of whole clips.

``--model probe:RUN_DIR --features CACHE``: the probe of a ``vfm3d probe train`` run folder
(`vfm3d.probe.evaluate.load_probe`) reads each clip's cached features (``vfm3d extract`` of the
evaluated clips; the run's backbone, layer and timestep, `vfm3d.probe.data.StoreFeatureSource`)
and predicts on **every** frame of the clip at once (the probe's trunk is frame-count agnostic;
frame 0 is the reference frame, each frame gets its temporally matching feature frame). Rule:
every frame of the clip needs features; a clip with frames the backbone was not fed is an error
naming the clip and the frames. `ProbePointMaps` returns the point maps and their confidence;
`vfm3d.recon4d.eval_cli` sends them through the same camera recovery as the VGGT row.

Coordinates: frame 0's OpenCV camera, scale-normalised as the probe's targets (mean distance of
frame 0's points = 1).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from vfm3d.clip import Clip

#: ``--model`` prefix of a probe run folder.
PROBE_PREFIX = "probe:"


def is_probe_model(model: str) -> bool:
    """Whether ``--model`` names a probe (``probe:RUN_DIR``)."""
    return str(model).startswith(PROBE_PREFIX)


def is_probe_run(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a ``vfm3d probe train`` run folder (its ``run.json`` names a layer
    and the probe's input channels)."""
    import json

    from vfm3d.probe.train import RUN_INFO

    info = Path(path) / RUN_INFO
    if not info.is_file():
        return False
    try:
        data = json.loads(info.read_text())
    except ValueError:
        return False
    return isinstance(data, dict) and {"layer", "in_channels", "config"} <= set(data)


class ProbePointMaps:
    """Clip -> the probe's point maps of all its frames (module docstring).

    ``run_dir``: a ``vfm3d probe train`` run folder; ``features``: the feature cache of the
    evaluated clips; ``data`` only names the clips in error messages.
    """

    def __init__(
        self,
        run_dir: str | os.PathLike[str],
        features: str | os.PathLike[str] | None,
        data: str | os.PathLike[str] = "CLIPS",
        device: str = "cpu",
    ) -> None:
        from vfm3d.probe.evaluate import load_probe

        self.run = Path(run_dir)
        if not self.run.is_dir():
            raise FileNotFoundError(f"probe run folder not found: {self.run}")
        self.model, self.info = load_probe(self.run, device)
        self.device = device
        self.data = str(data)
        self.frame_counts: dict[str, int] = {}
        self.features = None if features is None else Path(features)
        if self.features is None:
            raise ValueError(
                f"--model {PROBE_PREFIX}{self.run} needs --features CACHE, the feature cache of "
                f"the evaluated clips: {self.extract_hint()}"
            )
        if not (self.features / "manifest.json").is_file():
            raise FileNotFoundError(
                f"--features {self.features}: not a feature cache (no manifest.json); "
                f"{self.extract_hint()}"
            )
        from vfm3d.probe.data import ProbeDataError, StoreFeatureSource

        try:
            self.source = StoreFeatureSource(
                self.features,
                str(self.info["backbone"]),
                int(self.info["layer"]),
                self.info.get("timestep"),
                num_frames=self.frame_counts.__getitem__,
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
        """What the evaluation record keeps of the probe."""
        assert self.features is not None
        return {
            "run": str(self.run.resolve()),
            "features": str(self.features.resolve()),
            "backbone": self.info["backbone"],
            "layer": int(self.info["layer"]),
            "timestep": self.info.get("timestep"),
            "evaluated_step": int(self.info["evaluated_step"]),
        }

    def tokens(self, clip: Clip) -> torch.Tensor:
        """``[T, h, w, C]`` float32: the feature frame of every frame of ``clip``."""
        from vfm3d.probe.data import ProbeDataError, read_frames

        self.frame_counts[clip.id] = clip.num_frames
        try:
            frame_index = read_frames(self.source, clip.id, [0])[1].long()
        except KeyError as error:
            raise ProbeDataError(
                f"clip {clip.id!r}: no features in {self.features} for "
                f"{self.describe_features()} (the evaluated clips need their own features): "
                f"{self.extract_hint()}"
            ) from error
        missing = [int(t) for t in (frame_index < 0).nonzero().flatten()]
        if missing:
            raise ProbeDataError(
                f"clip {clip.id!r}: frames {missing} of its {clip.num_frames} have no features "
                f"in {self.features}; the probe row reconstructs every frame of a clip, so every "
                "frame needs features (extract all frames: no --num-frames, and clips whose "
                "frame count the backbone's rule accepts, e.g. Wan's 4k+1)"
            )
        tokens = read_frames(self.source, clip.id, frame_index.tolist())[0].float()
        channels = int(self.info["in_channels"])
        if tokens.shape[-1] != channels:
            raise ProbeDataError(
                f"clip {clip.id!r}: features of {tokens.shape[-1]} channels in {self.features}, "
                f"the probe {self.run} takes {channels}"
            )
        return tokens

    @torch.no_grad()
    def __call__(self, clip: Clip) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
        """``(points [T, H, W, 3] float64 in frame 0's camera, confidence [T, H, W] float64,
        meta)`` at the probe's output size (the clip's own when ``output_size`` is None)."""
        tokens = self.tokens(clip)
        size = self.model.config.output_size
        out_hw = (int(size[0]), int(size[1])) if size else (clip.height, clip.width)
        pred = self.model(tokens[None].to(self.device), out_hw)
        points = pred["points"][0].detach().cpu().double()
        conf = pred["points_conf"][0].detach().cpu().double()
        return points, conf, {"probe": self.settings, "frames": clip.num_frames}
