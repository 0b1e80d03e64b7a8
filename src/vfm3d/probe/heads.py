"""Prediction heads of the probe (VGGT's designs, re-implemented): camera head and DPT head.

Both read the trunk's intermediate outputs ``[B, S, P, 2D]`` (frame ⊕ global tokens), where the
first ``patch_start`` tokens of each frame are the camera and register tokens.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vfm3d.models.vggt.heads import (
    DPTParts,
    FeatureFusionBlock,
    activate_head,
    dpt_forward,
    dpt_output_convs,
    dpt_resize_layers,
)
from vfm3d.probe.layers import Block, Mlp


# ---------------------------------------------------------------------- camera head
class CameraHead(nn.Module):
    """Iterative camera head on ``absT_quaR_FoV`` (9-d: translation, quaternion XYZW, fov_h, fov_w).

    Each iteration embeds the current (detached) encoding, modulates the camera tokens with it
    (adaLN: shift, scale, gate), runs a small trunk over the S frames and adds a predicted delta
    to the detached previous estimate (so iteration i's gradient reaches only its own delta).
    Activations: translation and quaternion linear, FoV ReLU.
    """

    def __init__(
        self,
        dim: int,
        trunk_depth: int = 4,
        num_heads: int = 16,
        mlp_ratio: float = 4.0,
        init_values: float = 0.01,
        iters: int = 4,
    ):
        super().__init__()
        self.iters = iters
        self.trunk = nn.ModuleList(
            [
                Block(dim, num_heads, mlp_ratio, init_values, qk_norm=False)
                for _ in range(trunk_depth)
            ]
        )
        self.token_norm = nn.LayerNorm(dim)
        self.trunk_norm = nn.LayerNorm(dim)
        self.empty_pose = nn.Parameter(torch.zeros(1, 1, 9))
        self.embed_pose = nn.Linear(9, dim)
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 3 * dim))
        self.adaln_norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.pose_branch = Mlp(dim, dim // 2, 9)

    def forward(self, camera_tokens: torch.Tensor) -> list[torch.Tensor]:
        """``camera_tokens [B, S, dim]`` -> list of ``iters`` encodings ``[B, S, 9]`` (last = best)."""
        b, s, _ = camera_tokens.shape
        tokens = self.token_norm(camera_tokens)
        pred: torch.Tensor | None = None
        outputs: list[torch.Tensor] = []
        for _ in range(self.iters):
            if pred is None:
                cond = self.embed_pose(self.empty_pose.expand(b, s, 9))
            else:
                cond = self.embed_pose(pred.detach())
            shift, scale, gate = self.modulation(cond).chunk(3, dim=-1)
            x = gate * (self.adaln_norm(tokens) * (1 + scale) + shift) + tokens
            for block in self.trunk:
                x = block(x)
            delta = self.pose_branch(self.trunk_norm(x))
            # VGGT / VidFM3D: the previous estimate is detached (no backprop through time).
            pred = delta if pred is None else pred.detach() + delta
            fov = F.relu(pred[..., 7:])
            outputs.append(torch.cat([pred[..., :7], fov], dim=-1))
        return outputs


# ---------------------------------------------------------------------- DPT head
class _FusionBlock(FeatureFusionBlock):
    """VGGT's fusion block (`FeatureFusionBlock`) with the probe's unit names ``rcu1``/``rcu2``."""

    unit_names = ("rcu1", "rcu2")


class DPTHead(nn.Module):
    """DPT dense head: 4 token maps -> multi-scale fusion -> ``out_dim`` channels at (H, W).

    The computation is VGGT's, shared with `vfm3d.models.vggt.heads` (`dpt_forward`): stage i
    takes intermediate ``layers[i]`` (``[B, S, P, dim]``), LayerNorm, 1x1 conv to
    ``out_channels[i]``, adds the uv position embedding, resamples by 4x, 2x, 1x, 1/2x; fusion
    goes coarse to fine (residual units adding ``relu(x)``, each step 2x), a 3x3 conv halves the
    channels, one bilinear resize reaches (H, W), the position embedding again, then 3x3 conv ->
    ReLU -> 1x1 conv. ``activation`` maps the first ``out_dim - 1`` channels (``"inv_log"`` or
    ``"exp"``); the last channel is confidence ``1 + exp``. Only the state-dict names differ from
    VGGT's (``resize``, ``layer_rn.i``, ``fusion.i.rcu1/rcu2``, ``output_conv1/2``).
    """

    def __init__(
        self,
        dim: int,
        out_dim: int,
        activation: str,
        features: int = 256,
        out_channels: tuple[int, int, int, int] = (256, 512, 1024, 1024),
        layers: tuple[int, int, int, int] = (0, 1, 2, 3),
    ):
        super().__init__()
        if activation not in ("inv_log", "exp"):
            raise ValueError(f"DPTHead: activation must be 'inv_log' or 'exp', got {activation!r}")
        self.activation = activation
        self.layers = tuple(layers)
        self.norm = nn.LayerNorm(dim)
        self.projects = nn.ModuleList([nn.Conv2d(dim, oc, 1) for oc in out_channels])
        self.resize = dpt_resize_layers(out_channels)
        self.layer_rn = nn.ModuleList(
            [nn.Conv2d(oc, features, 3, padding=1, bias=False) for oc in out_channels]
        )
        self.fusion = nn.ModuleList(
            [_FusionBlock(features) for _ in range(3)]
            + [_FusionBlock(features, has_residual=False)]
        )
        self.output_conv1, self.output_conv2 = dpt_output_convs(features, out_dim)

    def parts(self) -> DPTParts:
        """This head's modules for `dpt_forward`."""
        return DPTParts(
            norm=self.norm,
            projects=self.projects,
            resize=self.resize,
            layer_rn=self.layer_rn,
            fusion=self.fusion,  # type: ignore[arg-type]
            output_conv1=self.output_conv1,
            output_conv2=self.output_conv2,
        )

    def forward(
        self,
        intermediates: list[torch.Tensor],
        grid: tuple[int, int],
        patch_start: int,
        out_size: tuple[int, int],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(values [B, S, H, W, out_dim - 1], conf [B, S, H, W])``.

        ``intermediates[i]``: ``[B, S, P, dim]``; ``grid = (h, w)`` of the patch tokens.
        """
        b, s = intermediates[self.layers[0]].shape[:2]
        tokens = [
            intermediates[layer][:, :, patch_start:].reshape(b * s, grid[0] * grid[1], -1)
            for layer in self.layers
        ]
        raw = dpt_forward(self.parts(), tokens, grid, out_size)
        values, conf = activate_head(raw, self.activation, "expp1")
        return values.view(b, s, *values.shape[1:]), conf.view(b, s, *conf.shape[1:])
