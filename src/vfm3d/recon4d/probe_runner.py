"""The probe row of `vfm3d recon4d eval`: a trained vfm3d probe's point maps of whole clips.

``--model probe:RUN_DIR --features CACHE``: the probe of a ``vfm3d probe train`` run folder reads
each clip's cached features (``vfm3d extract`` of the evaluated clips; the run's backbone, layer
and timestep) and predicts on **every** frame of the clip at once
(`vfm3d.probe.infer.WholeClipProbe`: frame 0 is the reference frame, each frame gets its
temporally matching feature frame). Rule: every frame of the clip needs features; a clip with
frames the backbone was not fed is an error naming the clip and the frames. `ProbePointMaps`
returns the point maps and their confidence; `vfm3d.recon4d.eval_cli` sends them through the
same camera recovery as the VGGT row.

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
    evaluated clips; ``data`` only names the clips in error messages. ``probe``: the
    `vfm3d.probe.infer.WholeClipProbe` that predicts.
    """

    def __init__(
        self,
        run_dir: str | os.PathLike[str],
        features: str | os.PathLike[str] | None,
        data: str | os.PathLike[str] = "CLIPS",
        device: str = "cpu",
    ) -> None:
        from vfm3d.probe.infer import WholeClipProbe

        self.probe = WholeClipProbe(run_dir, features, device=device, data=data)

    @property
    def settings(self) -> dict[str, Any]:
        """What the evaluation record keeps of the probe."""
        return self.probe.settings

    def __call__(self, clip: Clip) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
        """``(points [T, H, W, 3] float64 in frame 0's camera, confidence [T, H, W] float64,
        meta)`` at the probe's output size (the clip's own when ``output_size`` is None)."""
        pred = self.probe(clip)
        meta = {"probe": self.settings, "frames": clip.num_frames}
        return pred["points"].double(), pred["points_conf"].double(), meta
