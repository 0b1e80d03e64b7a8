"""`ProbeModel`: the VGGT-like probe on frozen video features (VidFM3D's architecture)."""

from __future__ import annotations

import contextlib

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from vfm3d.models.vggt.aggregator import first_and_rest
from vfm3d.probe.config import ProbeConfig
from vfm3d.probe.heads import CameraHead, DPTHead
from vfm3d.probe.layers import Block, RoPE2D
from vfm3d.utils.allocator import tune_allocator


class ProbeModel(nn.Module):
    """The probe: input projection, alternating frame/global attention, camera + DPT heads.

    - Input: ``LayerNorm(C) -> Linear(C -> D)`` per feature-grid cell.
    - Tokens per frame: 1 camera + ``num_register_tokens`` registers (frame 0 has its own pair of
      learnt tokens) then the ``h*w`` patch tokens; 2D RoPE on patch tokens only.
    - Trunk: ``depth`` x (frame block over each frame's tokens, global block over all frames);
      each pair's outputs concatenated (frame ⊕ global, ``2D``) feed the heads.
    """

    def __init__(self, config: ProbeConfig, in_channels: int):
        super().__init__()
        # keep large buffers in the heap for reuse (see vfm3d.utils.allocator; this process only,
        # off with VFM3D_TUNE_MALLOC=0): page faults were about half of a small probe's step
        tune_allocator()
        if in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {in_channels}")
        self.config = config
        self.in_channels = in_channels
        d = config.embed_dim
        self.input_proj = nn.Sequential(nn.LayerNorm(in_channels), nn.Linear(in_channels, d))
        self.camera_token = nn.Parameter(torch.randn(1, 2, 1, d) * 1e-6)
        self.register_token = nn.Parameter(torch.randn(1, 2, config.num_register_tokens, d) * 1e-6)
        self.patch_start = 1 + config.num_register_tokens
        self.rope = RoPE2D(d // config.num_heads, base=config.rope_base)

        def block() -> Block:
            return Block(d, config.num_heads, config.mlp_ratio, config.init_values, config.qk_norm)

        self.frame_blocks = nn.ModuleList([block() for _ in range(config.depth)])
        self.global_blocks = nn.ModuleList([block() for _ in range(config.depth)])
        self.camera_head = CameraHead(
            2 * d,
            trunk_depth=config.camera_trunk_depth,
            num_heads=config.num_heads,
            mlp_ratio=config.mlp_ratio,
            init_values=config.init_values,
            iters=config.camera_iters,
        )
        dpt = dict(
            features=config.dpt_features,
            out_channels=config.dpt_out_channels,
            layers=config.dpt_layers,
        )
        self.point_head = DPTHead(2 * d, 4, "inv_log", **dpt)
        self.depth_head = DPTHead(2 * d, 2, "exp", **dpt)
        self._heads_layout = torch.contiguous_format

    def aggregate(self, features: torch.Tensor) -> list[torch.Tensor | None]:
        """Trunk only. ``features [B, S, h, w, C]`` -> per pair ``[B, S, P, 2D]``.

        ``P = patch_start + h*w``. Entries that no head reads are ``None`` (not kept in memory).
        """
        if features.ndim != 5:
            raise ValueError(f"features must be [B, S, h, w, C], got shape {tuple(features.shape)}")
        b, s, h, w, c = features.shape
        if c != self.in_channels:
            raise ValueError(f"features have C={c} channels, the probe expects {self.in_channels}")
        d = self.config.embed_dim
        patches = self.input_proj(features.reshape(b * s, h * w, c))
        special = torch.cat(
            [
                first_and_rest(self.camera_token, b, s),
                first_and_rest(self.register_token, b, s),
            ],
            dim=1,
        ).to(patches.dtype)
        tokens = torch.cat([special, patches], dim=1)  # [B*S, P, D]
        p = tokens.shape[1]
        rope = self.rope.tables(h, w, self.patch_start, tokens.device, tokens.dtype)
        needed = set(self.config.dpt_layers) | {self.config.depth - 1}
        outputs: list[torch.Tensor | None] = []
        ckpt = self.config.checkpoint_trunk and torch.is_grad_enabled()
        for i in range(self.config.depth):
            frame_block, global_block = self.frame_blocks[i], self.global_blocks[i]
            if ckpt:
                tokens = checkpoint(frame_block, tokens, rope, use_reentrant=False)
            else:
                tokens = frame_block(tokens, rope=rope)
            frame_out = tokens.view(b, s, p, d)
            tokens = tokens.view(b, s * p, d)
            if ckpt:
                tokens = checkpoint(global_block, tokens, rope, s, use_reentrant=False)
            else:
                tokens = global_block(tokens, rope=rope, frames=s)
            global_out = tokens.view(b, s, p, d)
            outputs.append(torch.cat([frame_out, global_out], dim=-1) if i in needed else None)
            tokens = tokens.view(b * s, p, d)
        return outputs

    def _place_heads(self, cpu_bf16: bool) -> None:
        """Put the DPT heads' weights in the memory layout that suits this forward.

        ``channels_last_heads``: "auto" = channels-last (NHWC) while the heads run under CPU
        bf16 autocast at ``dpt_features >= 128``, where oneDNN's bf16 convolutions are ~3x
        faster on it; the default layout otherwise (fp32 and small heads are not faster on
        NHWC). "on"/"off" force it. The function is the same either way; state dicts are saved
        contiguous. Switching re-lays the existing parameters (the optimizer keeps them).
        """
        mode = self.config.channels_last_heads
        wanted = mode == "on" or (mode == "auto" and cpu_bf16 and self.config.dpt_features >= 128)
        layout = torch.channels_last if wanted else torch.contiguous_format
        if layout is not self._heads_layout:
            self.point_head.to(memory_format=layout)
            self.depth_head.to(memory_format=layout)
            self._heads_layout = layout

    def _head(
        self,
        head: DPTHead,
        inter: list[torch.Tensor | None],
        grid: tuple[int, int],
        out_size: tuple[int, int],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run a DPT head, one frame at a time under activation checkpointing if configured."""
        if not (self.config.checkpoint_heads and torch.is_grad_enabled()):
            return head(inter, grid, self.patch_start, out_size)
        values, confs = [], []
        for f in range(inter[-1].shape[1]):  # type: ignore[union-attr]
            frame = [x[:, f : f + 1] if x is not None else None for x in inter]
            v, c = checkpoint(head, frame, grid, self.patch_start, out_size, use_reentrant=False)
            values.append(v)
            confs.append(c)
        return torch.cat(values, dim=1), torch.cat(confs, dim=1)

    def forward(
        self, features: torch.Tensor, out_size: tuple[int, int]
    ) -> dict[str, torch.Tensor | list[torch.Tensor]]:
        """Predict geometry for S frames from their features.

        Args:
            features: ``[B, S, h, w, C]`` float, one feature frame per sampled frame (frame 0 is
                the reference). Non-square grids are fine.
            out_size: ``(H, W)`` of the predicted maps.

        Returns a dict:
            - ``pose_enc`` ``[B, S, 9]``: last iteration's ``absT_quaR_FoV`` (world_to_cam of each
              frame in frame 0's camera coordinates, quaternion XYZW, fov_h, fov_w).
            - ``pose_enc_list``: list of ``camera_iters`` tensors ``[B, S, 9]``, one per iteration.
            - ``points`` ``[B, S, H, W, 3]``: point map in frame 0's camera coordinates.
            - ``points_conf`` ``[B, S, H, W]``: confidence (> 1).
            - ``depth`` ``[B, S, H, W]``: z-depth (> 0).
            - ``depth_conf`` ``[B, S, H, W]``: confidence (> 1).
        """
        height, width = int(out_size[0]), int(out_size[1])
        grid = (features.shape[2], features.shape[3])
        inter = self.aggregate(features)
        # VidFM3D runs its heads under ``torch.amp.autocast("cuda", enabled=False)``: full
        # precision on CUDA, while on CPU they stay under the caller's autocast (bf16 there).
        # ``heads_fp32`` forces full precision on every device.
        device_type = features.device.type
        leave_autocast = device_type == "cuda" or (self.config.heads_fp32 and device_type == "cpu")
        no_autocast = (
            torch.autocast(device_type, enabled=False)
            if leave_autocast
            else contextlib.nullcontext()
        )
        with no_autocast:
            self._place_heads(
                device_type == "cpu"
                and torch.is_autocast_enabled("cpu")
                and torch.get_autocast_dtype("cpu") == torch.bfloat16
            )
            inter = [x.float() if x is not None else None for x in inter]
            pose_list = self.camera_head(inter[-1][:, :, 0])  # camera token
            points, points_conf = self._head(self.point_head, inter, grid, (height, width))
            depth, depth_conf = self._head(self.depth_head, inter, grid, (height, width))
        return {
            "pose_enc": pose_list[-1],
            "pose_enc_list": pose_list,
            "points": points,
            "points_conf": points_conf,
            "depth": depth[..., 0],
            "depth_conf": depth_conf,
        }
