"""`VGGT`: the full model (aggregator + camera / depth / point / track heads) and its loading.

At the default `VGGTConfig` the ``state_dict()`` names and shapes equal the public VGGT-1B
checkpoint's (``reference/vggt-1b-state-dict.tsv``: 1797 tensors), so
``VGGT.from_pretrained(dir)`` loads that checkpoint by name, strictly.

A weights folder (the layout `save_pretrained` writes and `from_pretrained` reads)::

    <dir>/config.json          # VGGTConfig.to_dict(); absent = the VGGT-1B defaults
    <dir>/model.safetensors    # or model.pt / pytorch_model.bin (read with weights_only=True)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vfm3d.models.vggt.aggregator import Aggregator
from vfm3d.models.vggt.config import VGGTConfig
from vfm3d.models.vggt.heads import CameraHead, DPTHead
from vfm3d.models.vggt.track import TrackHead
from vfm3d.utils.atomic import atomic_path, atomic_write_json

CONFIG_NAME = "config.json"
#: Weight files searched in a folder, in order.
WEIGHT_NAMES = ("model.safetensors", "model.pt", "pytorch_model.bin", "model.bin")
_HEAD_FLAGS = ("enable_camera", "enable_depth", "enable_point", "enable_track")


class VGGT(nn.Module):
    """Visual Geometry Grounded Transformer (architecture of VGGT-1B; sizes from `VGGTConfig`).

    ``forward(images, query_points=None, frames_chunk_size=8) -> dict``:

    - ``images``: ``[B, S, 3, H, W]`` (or ``[S, 3, H, W]``) RGB in [0, 1]; ``H, W`` multiples of
      ``patch_size`` (VGGT-1B was trained with width 518).
    - ``query_points``: optional ``[B, N, 2]`` (or ``[N, 2]``) ``(x, y)`` pixels in frame 0.

    Returned keys (those of enabled heads):

    - ``pose_enc`` ``[B, S, 9]``: ``absT_quaR_FoV`` of **world_to_cam** (translation, XYZW
      quaternion, ``fov_h``, ``fov_w`` in radians); the world is frame 0's camera (OpenCV);
      ``pose_enc_list``: one ``[B, S, 9]`` per refinement iteration.
    - ``depth`` ``[B, S, H, W, 1]`` z-depth, ``depth_conf`` ``[B, S, H, W]`` (>= 1).
    - ``world_points`` ``[B, S, H, W, 3]`` in the world frame, ``world_points_conf`` ``[B, S, H, W]``.
    - with ``query_points``: ``track`` ``[B, S, N, 2]`` pixels, ``vis`` and ``conf`` ``[B, S, N]``
      in [0, 1].
    """

    def __init__(self, config: VGGTConfig | None = None) -> None:
        super().__init__()
        c = config if config is not None else VGGTConfig()
        self.config = c
        self.name_or_path: str = "random-init"
        self.aggregator = Aggregator(c)
        dim = c.head_dim_in
        self.camera_head = (
            CameraHead(dim, c.camera_trunk_depth, c.camera_num_heads, c.mlp_ratio, c.init_values)
            if c.enable_camera
            else None
        )
        dpt: dict[str, Any] = dict(
            patch_size=c.patch_size,
            features=c.dpt_features,
            out_channels=c.dpt_out_channels,
            intermediate_layer_idx=c.intermediate_layer_idx,
        )
        self.point_head = (
            DPTHead(dim, output_dim=4, activation="inv_log", conf_activation="expp1", **dpt)
            if c.enable_point
            else None
        )
        self.depth_head = (
            DPTHead(dim, output_dim=2, activation="exp", conf_activation="expp1", **dpt)
            if c.enable_depth
            else None
        )
        self.track_head = (
            TrackHead(
                dim,
                patch_size=c.patch_size,
                features=c.track_features,
                iters=c.track_iters,
                corr_levels=c.track_corr_levels,
                corr_radius=c.track_corr_radius,
                hidden_size=c.track_hidden_size,
                depth=c.track_depth,
                num_heads=c.track_num_heads,
                num_virtual_tracks=c.track_num_virtual,
                intermediate_layer_idx=c.intermediate_layer_idx,
                out_channels=c.dpt_out_channels,
            )
            if c.enable_track
            else None
        )

    # ------------------------------------------------------------------ construction
    @classmethod
    def random(cls, config: VGGTConfig | None = None, seed: int = 0) -> VGGT:
        """A randomly initialised model, reproducible from ``seed`` (global RNG untouched)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = cls(config)
        model.name_or_path = f"random-init(seed={seed})"
        return model

    def needed_layers(self, with_track: bool = False) -> set[int]:
        """Aggregator layers the enabled heads read."""
        c = self.config
        layers: set[int] = set()
        if self.camera_head is not None:
            layers.add(c.depth - 1)
        if self.depth_head is not None or self.point_head is not None or with_track:
            layers.update(c.intermediate_layer_idx)
        return layers

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        images: torch.Tensor,
        query_points: torch.Tensor | None = None,
        frames_chunk_size: int | None = 8,
    ) -> dict[str, Any]:
        if images.ndim == 4:
            images = images.unsqueeze(0)
        if images.ndim != 5 or images.shape[2] != 3:
            raise ValueError(f"images must be [B, S, 3, H, W] in [0, 1], got {tuple(images.shape)}")
        if query_points is not None and query_points.ndim == 2:
            query_points = query_points.unsqueeze(0)
        with_track = self.track_head is not None and query_points is not None
        layers, start = self.aggregator(images, keep_layers=self.needed_layers(with_track))
        out: dict[str, Any] = {}
        # As in VGGT, the camera / depth / point heads run without autocast (full precision of
        # the parameters) even when the aggregator ran under autocast.
        param_dtype = self.aggregator.camera_token.dtype
        head_layers = {i: t.to(param_dtype) for i, t in layers.items()}
        with torch.autocast(device_type=images.device.type, enabled=False):
            if self.camera_head is not None:
                pose_list = self.camera_head(
                    head_layers[self.config.depth - 1],
                    num_iterations=self.config.camera_iterations,
                )
                out["pose_enc"] = pose_list[-1]
                out["pose_enc_list"] = pose_list
            if self.depth_head is not None:
                out["depth"], out["depth_conf"] = self.depth_head(
                    head_layers, images, start, frames_chunk_size
                )
            if self.point_head is not None:
                out["world_points"], out["world_points_conf"] = self.point_head(
                    head_layers, images, start, frames_chunk_size
                )
        if with_track:
            assert self.track_head is not None and query_points is not None
            tracks, vis, conf = self.track_head(layers, images, start, query_points)
            out["track"], out["vis"], out["conf"] = tracks[-1], vis, conf
        return out

    # ------------------------------------------------------------------ saving / loading
    def save_pretrained(self, directory: str | os.PathLike[str]) -> Path:
        """Write ``config.json`` and ``model.safetensors`` into ``directory`` (atomically each)."""
        from safetensors.torch import save_file

        target = Path(directory)
        target.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in self.state_dict().items()}
        with atomic_path(target / WEIGHT_NAMES[0]) as tmp:
            save_file(tensors, str(tmp), metadata={"format": "pt", "architecture": "vggt"})
        atomic_write_json(target / CONFIG_NAME, self.config.to_dict())
        return target

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike[str],
        device: str | torch.device = "cpu",
        dtype: torch.dtype | None = torch.float32,
        aggregator_only: bool = False,
        config: VGGTConfig | None = None,
    ) -> VGGT:
        """Load a weights folder (or a weights file) strictly.

        ``config`` defaults to ``<dir>/config.json`` or, absent, VGGT-1B. Every tensor of the
        file must match a parameter of that config by name and shape and vice versa; otherwise a
        ``ValueError`` lists the missing / unexpected / mis-shaped names. ``aggregator_only``
        checks the whole file but keeps only the aggregator (the heads are not built).
        """
        source = Path(path)
        weights = find_weights(source)
        if config is None:
            config_file = (source if source.is_dir() else source.parent) / CONFIG_NAME
            config = VGGTConfig.from_json(config_file) if config_file.is_file() else VGGTConfig()
        shapes = {k: torch.empty(s, device="meta") for k, s in read_shapes(weights).items()}
        with torch.device("meta"):
            reference = cls(config)
        check_state_dict(reference.state_dict(), shapes, source=str(weights))
        keep = None
        if aggregator_only:
            config = config.replace(**{flag: False for flag in _HEAD_FLAGS})
            with torch.device("meta"):
                reference = cls(config)

            def keep(name: str) -> bool:
                return name.startswith("aggregator.")

        state = read_state_dict(weights, keep=keep)
        reference.load_state_dict(state, strict=True, assign=True)
        leftover = [n for n, t in reference.state_dict().items() if t.is_meta]
        if leftover:  # pragma: no cover - guarded by check_state_dict
            raise RuntimeError(f"{weights}: tensors left uninitialised: {leftover[:5]}")
        model = reference.to(device=device, dtype=dtype) if dtype else reference.to(device=device)
        model.name_or_path = str(source)
        return model.eval()


# ---------------------------------------------------------------------- helpers
def find_weights(path: Path) -> Path:
    """The weight file of a folder (first of `WEIGHT_NAMES`), or ``path`` itself if a file."""
    if path.is_file():
        return path
    if not path.is_dir():
        raise FileNotFoundError(f"VGGT weights not found: {path}")
    for name in WEIGHT_NAMES:
        if (path / name).is_file():
            return path / name
    raise FileNotFoundError(f"{path}: no weight file (looked for {', '.join(WEIGHT_NAMES)})")


def _torch_load(file: Path) -> dict[str, torch.Tensor]:
    """``torch.load`` with ``weights_only=True`` (memory-mapped when the format allows)."""
    try:
        try:
            obj = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # legacy (non-zip) format cannot be memory-mapped
            obj = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ValueError(f"{file}: not a readable weights file ({error})") from error
    if isinstance(obj, Mapping) and "model" in obj and isinstance(obj["model"], Mapping):
        obj = obj["model"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{file}: expected a state dict of tensors")
    return dict(obj)


def read_shapes(file: Path) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes of a weights file (safetensors: without reading the data)."""
    if file.suffix != ".safetensors":
        return {k: tuple(v.shape) for k, v in _torch_load(file).items()}
    from safetensors import safe_open

    try:
        with safe_open(str(file), framework="pt") as handle:
            return {k: tuple(handle.get_slice(k).get_shape()) for k in handle.keys()}
    except Exception as error:  # safetensors raises its own error types
        raise ValueError(f"{file}: not a readable safetensors file ({error})") from error


def read_state_dict(
    file: Path, keep: Callable[[str], bool] | None = None
) -> dict[str, torch.Tensor]:
    """Read the tensors of a safetensors file, or of a torch file with ``weights_only=True``
    (never pickled code); only the names for which ``keep`` is true (default: all)."""
    if file.suffix != ".safetensors":
        state = _torch_load(file)
        return {k: v for k, v in state.items() if keep is None or keep(k)}
    from safetensors import safe_open

    try:
        with safe_open(str(file), framework="pt") as handle:
            return {k: handle.get_tensor(k) for k in handle.keys() if keep is None or keep(k)}
    except Exception as error:  # safetensors raises its own error types
        raise ValueError(f"{file}: not a readable safetensors file ({error})") from error


def check_state_dict(
    expected: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor], source: str = "weights"
) -> None:
    """Raise ``ValueError`` listing missing, unexpected and mis-shaped tensor names."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k}: expected {tuple(expected[k].shape)}, got {tuple(state[k].shape)}"
        for k in expected
        if k in state and tuple(expected[k].shape) != tuple(state[k].shape)
    ]
    if not (missing or unexpected or shapes):
        return

    def show(items: list[str]) -> str:
        more = f" ... (+{len(items) - 8} more)" if len(items) > 8 else ""
        return ", ".join(items[:8]) + more

    parts = []
    if missing:
        parts.append(f"{len(missing)} missing: {show(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected: {show(unexpected)}")
    if shapes:
        parts.append(f"{len(shapes)} with wrong shape: {show(shapes)}")
    raise ValueError(
        f"{source}: state dict does not match the VGGT config ({'; '.join(parts)}); "
        "is config.json the one these weights were trained with?"
    )
