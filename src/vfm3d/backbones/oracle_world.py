"""The ``oracle-world`` backbone: ground truth in the first frame's coordinates (the camera ceiling).

Where `vfm3d.backbones.oracle` describes each frame in its own camera only (so the probe must
still find the poses), ``oracle-world`` hands the probe its targets: every frame's point map in
**frame 0's camera coordinates**, scaled so that the mean distance of frame 0's valid points is 1
(`vfm3d.geometry.probe_targets`, THE normalisation of the probe's targets).

``needs_geometry = True``: ``prepare`` needs ``aux`` with ``depth`` / ``valid`` ``[B,T,H,W]``,
``intrinsics`` ``[B,T,3,3]`` and ``cam_to_world`` ``[B,T,4,4]`` (OpenCV). Frame 0 of the input is
the reference, as frame 0 of every probe sample is (the probe's sampling starts at frame 0).

Layers (one module each, so hooks and early exit work as for any model):

- layer 0: each ``patch x patch`` token pooled into ``sub x sub`` cells, per cell the valid-masked
  mean of the frame-0 point ``(x, y, z)`` and the valid fraction: ``C = 4 * sub**2`` channels,
  cell-major (cells row-major, then the 4 values). A probe reads the point map directly and the
  camera from the point map's layout (a pose is the rigid map from pixels' rays to these points).
- layer 1: layer 0 plus the frame's pose, ``absT_quaR_FoV`` of its world_to_cam relative to
  frame 0 (normalised translation, quaternion XYZW, ``fov_h, fov_w`` at the input size),
  broadcast to every token: ``C = 4 * sub**2 + 9``. This proves the camera chain (head,
  encoding, loss, decoding, metrics): a probe that cannot copy a pose it is given is broken.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from vfm3d.backbones.base import Backbone, Prepared
from vfm3d.backbones.baselines import PatchBaseline
from vfm3d.backbones.oracle import _GeometryPooling

NEEDS_WEIGHTS = False
DEFAULT_PATCH = 8
_VALUES_PER_CELL = 4
POSE_DIM = 9


class _AppendPose(nn.Module):
    """``(tokens [N, T, h, w, C], pose [N, T, 9])`` -> ``[N, T, h, w, C + 9]``."""

    def forward(self, tokens: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
        n, t, h, w, _ = tokens.shape
        expanded = pose[:, :, None, None, :].to(tokens.dtype).expand(n, t, h, w, POSE_DIM)
        return torch.cat([tokens, expanded], dim=-1)


class OracleWorldBackbone(PatchBaseline):
    """Ground-truth point maps (and poses) in frame 0's camera coordinates (module docstring)."""

    is_diffusion = False
    needs_geometry = True

    def __init__(
        self, name: str = "oracle-world", patch: int = DEFAULT_PATCH, sub: int = 2
    ) -> None:
        if patch < 1 or sub < 1 or patch % sub:
            raise ValueError(f"patch must be a positive multiple of sub, got {patch}, {sub}")
        super().__init__(name, patch)
        self.sub = sub
        self.blocks = nn.ModuleList([_GeometryPooling(patch, sub), _AppendPose()])

    def layer_width(self, layer: int) -> int:
        cells = _VALUES_PER_CELL * self.sub * self.sub
        return cells if layer == 0 else cells + POSE_DIM

    def prepare(
        self,
        frames: torch.Tensor,
        timesteps: Sequence[int] | None,
        generator: torch.Generator,
        aux: dict[str, torch.Tensor] | None = None,
    ) -> Prepared:
        from vfm3d.geometry import encode_pose, probe_targets

        if aux is None or "cam_to_world" not in aux:
            raise ValueError(
                "aux: oracle-world needs ground truth (depth, valid, intrinsics, cam_to_world)"
            )
        n, t, _, h, w = frames.shape
        depth = aux["depth"].to(device=self.device, dtype=torch.float64)
        valid = aux["valid"].to(device=self.device).bool() & torch.isfinite(depth) & (depth > 0)
        depth = torch.where(valid, depth, torch.ones_like(depth))
        intrinsics = aux["intrinsics"].to(device=self.device, dtype=torch.float64)
        cam_to_world = aux["cam_to_world"].to(device=self.device, dtype=torch.float64)
        targets = probe_targets(depth, valid, intrinsics, cam_to_world)
        points = torch.where(valid[..., None], targets.points, torch.zeros_like(targets.points))
        geometry = torch.cat([points, valid[..., None].double()], dim=-1)  # [N, T, H, W, 4]
        pose = encode_pose(targets.world_to_cam, intrinsics, (h, w))  # [N, T, 9]
        return Prepared(
            batch={
                "input": geometry.permute(0, 1, 4, 2, 3).to(self.dtype),
                "pose": pose.to(self.dtype),
            },
            num_clips=n,
            timesteps=None,
            feature_shape=(t, *self.grid.spatial_shape(h, w)),
        )

    def run(self, prepared: Prepared) -> torch.Tensor:
        tokens = self.blocks[0](prepared.batch["input"])
        return self.blocks[1](tokens, prepared.batch["pose"])


def build(
    name: str = "oracle-world",
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
    **config: Any,
) -> Backbone:
    """Build the oracle-world backbone (``seed`` is unused: nothing is random)."""
    return OracleWorldBackbone(name=name, **config).to(device=device, dtype=dtype).eval()


#: Already small: ``tiny`` is ``build``.
tiny = build
