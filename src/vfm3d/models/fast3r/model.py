"""`Fast3R`: encoder + fusion decoder + two DPT point-map heads, and its strict loading.

At the default `Fast3RConfig` the ``state_dict()`` names and shapes equal the public release's
(``reference/fast3r-vitl-512-state-dict.tsv``: 720 entries = 712 tensors + 8 tied aliases
``*.dpt.scratch.layer_rn.{k}.weight`` of ``*.dpt.scratch.layer{k+1}_rn.weight``).

A weights folder (the layout `save_pretrained` writes and `from_pretrained` reads; also the
layout of the hub release)::

    <dir>/config.json          # Fast3RConfig.to_dict() or the release's encoder/decoder/head
                               # args; absent = the release defaults
    <dir>/model.safetensors    # safetensors only (never unpickled)
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vfm3d.models._checkpoint import (
    WEIGHTS_NAME,
    check_state_dict,
    find_safetensors,
    read_safetensors,
    safetensors_shapes,
    tied_names,
)
from vfm3d.models.fast3r.config import Fast3RConfig
from vfm3d.models.fast3r.heads import PixelwiseTaskWithDPT
from vfm3d.models.fast3r.layers import Fast3RDecoder, Fast3REncoder
from vfm3d.utils.atomic import atomic_path, atomic_write_json

CONFIG_NAME = "config.json"
#: Fast3R normalises [0, 1] RGB with mean 0.5, std 0.5 (DUSt3R's ``ImgNorm``) -> [-1, 1].
IMAGE_MEAN = 0.5
IMAGE_STD = 0.5
#: Views per DPT-head pass at inference (the reference's ``max_parallel_views_for_head``).
HEAD_CHUNK = 25


class Fast3R(nn.Module):
    """Fast3R (architecture of ``jedyang97/Fast3R_ViT_Large_512``; sizes from `Fast3RConfig`).

    ``forward(images, image_ids=None, return_layers=False, head_chunk=25) -> dict``:

    - ``images``: ``[B, T, 3, H, W]`` (or ``[T, 3, H, W]``) RGB in [0, 1], ``T`` views of one
      scene per sample, all fused in one decoder pass; ``H, W`` multiples of ``patch_size``
      (the release was trained at long side 512, e.g. 512x384 .. 512x160).
    - ``image_ids``: optional ``[T]`` / ``[B, T]`` int64 image indices (default
      `image_indices`).

    Returned keys (reference names): ``pts3d_in_other_view`` ``[B, T, H, W, 3]`` (every view's
    points in view 0's camera frame, global head), ``conf`` ``[B, T, H, W]`` (>= 1),
    ``pts3d_local`` / ``conf_local`` (each view in its own camera frame, local head), those of
    enabled heads; ``image_ids`` ``[B, T]``; with ``return_layers`` also ``decoder_layers``: the
    list of ``dec_depth + 1`` decoder outputs ``[B, T, N, C]`` (see `Fast3RDecoder`).
    """

    def __init__(self, config: Fast3RConfig | None = None) -> None:
        super().__init__()
        c = config if config is not None else Fast3RConfig()
        self.config = c
        self.name_or_path: str = "random-init"
        self.encoder = Fast3REncoder(c)
        self.decoder = Fast3RDecoder(c)
        head_args: dict[str, Any] = dict(
            hooks=c.hooks,
            dim_tokens=[c.layer_width(i) for i in c.hooks] if c.any_head else [],
            patch_size=c.patch_size,
            layer_dims=c.dpt_layer_dims,
            feature_dim=c.dpt_feature_dim,
            last_dim=c.dpt_last_dim,
            depth_mode=c.depth_mode,
            conf_mode=c.conf_mode,
            conf_vmin=c.conf_vmin,
            conf_vmax=c.conf_vmax,
        )
        self.downstream_head = PixelwiseTaskWithDPT(**head_args) if c.enable_head else None
        self.downstream_head_local = (
            PixelwiseTaskWithDPT(**head_args) if c.enable_local_head else None
        )

    # ------------------------------------------------------------------ construction
    @classmethod
    def random(cls, config: Fast3RConfig | None = None, seed: int = 0) -> Fast3R:
        """A randomly initialised model, reproducible from ``seed`` (global RNG untouched)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = cls(config)
        model.name_or_path = f"random-init(seed={seed})"
        return model

    @property
    def num_layers(self) -> int:
        """``dec_depth + 1`` decoder outputs (0 = encoder output, last = after ``dec_norm``)."""
        return self.config.num_layers

    def layer_modules(self) -> list[nn.Module]:
        """Module ``i`` returns decoder output ``i`` from its forward (for hooks):
        ``encoder.enc_norm``, ``decoder.dec_blocks[0 .. depth-2]``, ``decoder.dec_norm``."""
        blocks = list(self.decoder.dec_blocks)
        return [self.encoder.enc_norm, *blocks[:-1], self.decoder.dec_norm]

    # ------------------------------------------------------------------ image indices
    def image_indices(
        self, batch: int, views: int, device: torch.device | str | None = None
    ) -> torch.Tensor:
        """``[batch, views]`` int64 indices into ``decoder.image_idx_emb``.

        - ``random_image_idx_embedding`` False: ``0..views-1``.
        - True (the release), training mode: view 0 gets 0, the others distinct random indices
          in ``1..num_image_ids-1`` drawn per sample from the global RNG (as the reference).
        - True, eval mode: the reference draws afresh at inference too (a run-to-run random
          choice); here the draw is fixed: ``[0] + (randperm(num_image_ids - 1,
          seed=config.image_index_seed)[:views - 1] + 1)``, the same for every sample, so
          features are reproducible, do not depend on batch neighbours, and view ``t`` keeps its
          index when more views are appended.
        """
        c = self.config
        if views < 1:
            raise ValueError(f"need at least 1 view, got {views}")
        if views > c.num_image_ids:
            raise ValueError(
                f"{views} views: Fast3R's image-index table has {c.num_image_ids} entries "
                f"(at most {c.num_image_ids} views per forward)"
            )
        if not c.random_image_idx_embedding:
            ids = torch.arange(views).expand(batch, views)
        elif self.training:
            rows = [
                torch.cat([torch.zeros(1, dtype=torch.long), torch.randperm(c.num_image_ids - 1)])
                for _ in range(batch)
            ]
            ids = torch.stack([r[:views] for r in rows])
            ids[:, 1:] += 1
        else:
            gen = torch.Generator().manual_seed(int(c.image_index_seed))
            rest = torch.randperm(c.num_image_ids - 1, generator=gen)[: views - 1] + 1
            ids = torch.cat([torch.zeros(1, dtype=torch.long), rest]).expand(batch, views)
        return ids.to(device=device, dtype=torch.long).contiguous()

    def _resolve_ids(
        self, image_ids: torch.Tensor | None, batch: int, views: int, device: torch.device
    ) -> torch.Tensor:
        if image_ids is None:
            return self.image_indices(batch, views, device)
        ids = torch.as_tensor(image_ids, dtype=torch.long, device=device)
        if ids.ndim == 1:
            ids = ids.expand(batch, -1)
        if ids.shape != (batch, views):
            raise ValueError(f"image_ids must be [T] or [B, T] = {(batch, views)}, got {ids.shape}")
        if int(ids.min()) < 0 or int(ids.max()) >= self.config.num_image_ids:
            raise ValueError(f"image_ids must lie in [0, {self.config.num_image_ids - 1}]")
        return ids

    # ------------------------------------------------------------------ forward
    @staticmethod
    def _check_images(images: torch.Tensor) -> torch.Tensor:
        if images.ndim == 4:
            images = images.unsqueeze(0)
        if images.ndim != 5 or images.shape[2] != 3:
            raise ValueError(f"images must be [B, T, 3, H, W] in [0, 1], got {tuple(images.shape)}")
        return images

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """``[B, T, 3, H, W]`` in [0, 1] -> encoder tokens ``[B, T, h*w, C_enc]`` and ``(h, w)``.
        Every view is encoded on its own (shared weights)."""
        images = self._check_images(images)
        b, t, _, height, width = images.shape
        p = self.config.patch_size
        if height % p or width % p:
            raise ValueError(
                f"image size {height}x{width} must be a multiple of the patch size {p}"
            )
        normed = (images.reshape(b * t, 3, height, width) - IMAGE_MEAN) / IMAGE_STD
        tokens, _ = self.encoder(normed)
        return tokens.reshape(b, t, tokens.shape[1], tokens.shape[2]), (height // p, width // p)

    def decoder_layers(
        self,
        images: torch.Tensor,
        keep_layers: Iterable[int] | None = None,
        image_ids: torch.Tensor | None = None,
        max_layer: int | None = None,
    ) -> dict[int, torch.Tensor]:
        """Decoder outputs ``{i: [B, T, h*w, C_i]}`` for ``i`` in ``keep_layers`` (``None`` =
        all ``0..dec_depth``), stopping after ``max_layer`` (default: the deepest kept one;
        only the encoder runs for layer 0 alone). Layer numbering: see `Fast3RDecoder`."""
        images = self._check_images(images)
        b, t = images.shape[:2]
        depth = self.config.dec_depth
        keep = list(range(depth + 1)) if keep_layers is None else [int(i) for i in keep_layers]
        bad = [i for i in keep if not 0 <= i <= depth]
        if bad:
            raise ValueError(f"decoder layers {bad} out of range 0..{depth}")
        if max_layer is None:
            max_layer = max(keep, default=depth)
        tokens, _ = self.encode(images)
        ids = self._resolve_ids(image_ids, b, t, tokens.device)
        outputs = self.decoder(tokens, ids, keep_layers=keep, max_layer=max_layer)
        return {i: x.reshape(b, t, -1, x.shape[-1]) for i, x in outputs.items()}

    def forward(
        self,
        images: torch.Tensor,
        image_ids: torch.Tensor | None = None,
        return_layers: bool = False,
        head_chunk: int | None = HEAD_CHUNK,
    ) -> dict[str, Any]:
        images = self._check_images(images)
        b, t, _, height, width = images.shape
        c = self.config
        tokens, grid = self.encode(images)
        ids = self._resolve_ids(image_ids, b, t, tokens.device)
        keep: set[int] = set(range(c.num_layers)) if return_layers else set()
        if c.any_head:
            keep.update(c.hooks)
        outputs = self.decoder(tokens, ids, keep_layers=keep)
        out: dict[str, Any] = {"image_ids": ids}
        # heads see the views as a batch: [B, T*N, C] -> [T*B... ] in (b, t) order
        per_view = {
            i: x.reshape(b * t, -1, x.shape[-1]) for i, x in outputs.items() if i in c.hooks
        }
        chunk = None if self.training else head_chunk
        for head, names in (
            (self.downstream_head, ("pts3d_in_other_view", "conf")),
            (self.downstream_head_local, ("pts3d_local", "conf_local")),
        ):
            if head is None:
                continue
            points, conf = head(per_view, grid, chunk)
            out[names[0]] = points.reshape(b, t, height, width, 3)
            out[names[1]] = conf.reshape(b, t, height, width)
        if return_layers:
            out["decoder_layers"] = [
                outputs[i].reshape(b, t, -1, outputs[i].shape[-1]) for i in range(c.num_layers)
            ]
        return out

    # ------------------------------------------------------------------ saving / loading
    def save_pretrained(self, directory: str | os.PathLike[str]) -> Path:
        """Write ``config.json`` and ``model.safetensors`` (atomically each). The tied aliases
        ``*.scratch.layer_rn.{k}.weight`` are stored once, under ``layer{k+1}_rn``."""
        from safetensors.torch import save_file

        target = Path(directory)
        target.mkdir(parents=True, exist_ok=True)
        aliases = tied_names(self)
        tensors = {
            k: v.detach().to("cpu").contiguous()
            for k, v in self.state_dict().items()
            if k not in aliases
        }
        with atomic_path(target / WEIGHTS_NAME) as tmp:
            save_file(tensors, str(tmp), metadata={"format": "pt", "architecture": "fast3r"})
        atomic_write_json(target / CONFIG_NAME, self.config.to_dict())
        return target

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike[str],
        device: str | torch.device = "cpu",
        dtype: torch.dtype | None = torch.float32,
        backbone_only: bool = False,
        config: Fast3RConfig | None = None,
    ) -> Fast3R:
        """Load a weights folder (or a ``.safetensors`` file) strictly.

        ``config`` defaults to ``<dir>/config.json`` (vfm3d's or the release's layout) or,
        absent, the release. Every tensor of the file must match the config by name and shape
        and vice versa, else a ``ValueError`` names the missing / unexpected / mis-shaped
        entries. The tied aliases ``layer_rn.{k}`` may be present or not (when both names are
        present they must hold equal values). ``image_idx_emb`` is recomputed.
        ``backbone_only`` checks the whole file but builds and keeps only the encoder and the
        decoder (no heads).
        """
        source = Path(path)
        weights = find_safetensors(source)
        if config is None:
            config_file = (source if source.is_dir() else source.parent) / CONFIG_NAME
            config = (
                Fast3RConfig.from_json(config_file) if config_file.is_file() else Fast3RConfig()
            )
        with torch.device("meta"):
            reference = cls(config)
        aliases = tied_names(reference)  # alias -> canonical name
        expected = {k: v for k, v in reference.state_dict().items() if k not in aliases}
        shapes = safetensors_shapes(weights)
        found: dict[str, tuple[int, ...]] = {}
        for name, shape in shapes.items():
            canonical = aliases.get(name)
            if canonical is None:
                found[name] = shape
            elif canonical not in shapes:
                found[canonical] = shape  # only the alias name is stored
            elif shapes[canonical] != shape:
                raise ValueError(
                    f"{weights}: tied entries {name} {shape} and {canonical} "
                    f"{shapes[canonical]} differ (they are one tensor in Fast3R)"
                )
        check_state_dict(expected, found, source=str(weights), model="Fast3R")
        if backbone_only:
            config = config.replace(enable_head=False, enable_local_head=False)
            with torch.device("meta"):
                reference = cls(config)

        def keep(name: str) -> bool:
            return not backbone_only or name.startswith(("encoder.", "decoder."))

        raw = read_safetensors(weights, keep=keep)
        state: dict[str, torch.Tensor] = {}
        for name, tensor in raw.items():
            canonical = aliases.get(name)
            if canonical is None:
                state[name] = tensor
            elif canonical not in raw:
                state[canonical] = tensor
            elif not torch.equal(tensor, raw[canonical]):
                raise ValueError(
                    f"{weights}: tied entries {name} and {canonical} hold different values "
                    "(they are one tensor in Fast3R)"
                )
        for alias, canonical in tied_names(reference).items():
            state[alias] = state[canonical]
        reference.load_state_dict(state, strict=True, assign=True)
        reference.decoder.reset_buffers("cpu")
        leftover = [n for n, t in reference.state_dict().items() if t.is_meta]
        if leftover:  # pragma: no cover - guarded by check_state_dict
            raise RuntimeError(f"{weights}: tensors left uninitialised: {leftover[:5]}")
        model = reference.to(device=device, dtype=dtype) if dtype else reference.to(device=device)
        model.name_or_path = str(source)
        return model.eval()
