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
        """``camera_tokens [B, S, dim]`` -> list of ``iters`` encodings ``[B, S, 9]`` (last = best).

        With gradients on, the iterations run as one batch (`_batched`): the same function and
        gradients as the sequential loop, with one weight-gradient product per trunk weight
        instead of ``iters`` (the trunk sees only ``B*S`` tokens, so its backward is bound by
        writing weight-sized gradients, not by FLOPs).
        """
        tokens = self.token_norm(camera_tokens)
        if torch.is_grad_enabled() and self.iters > 1:
            return self._batched(tokens)
        return [_activate(p) for p in self._sequential(tokens, self.iters)]

    def _delta(self, tokens: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        """One iteration's update: ``tokens [N, S, dim]``, ``previous [N, S, 9]`` (detached
        raw estimate, or ``empty_pose`` for the first) -> delta ``[N, S, 9]``."""
        shift, scale, gate = self.modulation(self.embed_pose(previous)).chunk(3, dim=-1)
        x = gate * (self.adaln_norm(tokens) * (1 + scale) + shift) + tokens
        for block in self.trunk:
            x = block(x)
        return self.pose_branch(self.trunk_norm(x))

    def _sequential(self, tokens: torch.Tensor, iters: int) -> list[torch.Tensor]:
        """VGGT's loop: raw (not yet activated) estimates of the first ``iters`` iterations."""
        b, s, _ = tokens.shape
        pred: torch.Tensor | None = None
        raw: list[torch.Tensor] = []
        for _ in range(iters):
            if pred is None:
                # (detached without grad: a no-grad view of a parameter would still claim
                # requires_grad, which trips autograd hooks such as FlopCounterMode's)
                empty = self.empty_pose if torch.is_grad_enabled() else self.empty_pose.detach()
                pred = self._delta(tokens, empty.expand(b, s, 9))
            else:
                # VGGT / VidFM3D: the previous estimate is detached (no backprop through time).
                pred = pred.detach() + self._delta(tokens, pred.detach())
            raw.append(pred)
        return raw

    def _batched(self, tokens: torch.Tensor) -> list[torch.Tensor]:
        """All iterations in one batch. Iteration i depends on iteration i-1 only through its
        detached value, so those values are computed first without a graph (the sequential
        loop, ``iters - 1`` iterations), then every iteration's delta is recomputed with the
        graph in one ``[iters*B, S]`` pass; outputs equal the sequential loop's up to rounding."""
        b, s, _ = tokens.shape
        with torch.no_grad():
            previous = self._sequential(tokens.detach(), self.iters - 1)
        repeated = tokens.unsqueeze(0).expand(self.iters, b, s, tokens.shape[-1])
        # iteration 0 conditions on the learnt empty pose (its gradient flows), the others on
        # the detached estimates
        start = self.empty_pose.expand(b, s, 9)
        conds = torch.cat([start, *[p.to(start.dtype) for p in previous]], dim=0)
        deltas = self._delta(repeated.reshape(-1, s, tokens.shape[-1]), conds)
        deltas = deltas.view(self.iters, b, s, 9)
        outputs = [_activate(deltas[0])]
        for i, prev in enumerate(previous, start=1):
            outputs.append(_activate(prev + deltas[i]))
        return outputs


def _activate(pred: torch.Tensor) -> torch.Tensor:
    """Raw ``[..., 9]`` estimate -> encoding: translation and quaternion linear, FoV ReLU."""
    return torch.cat([pred[..., :7], F.relu(pred[..., 7:])], dim=-1)


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
