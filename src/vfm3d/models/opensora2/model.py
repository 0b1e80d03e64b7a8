"""`OpenSora2`: the Open-Sora 2.0 MMDiT and its strict loading.

At the default `OpenSora2Config` the ``state_dict()`` names and shapes equal the released
``Open_Sora_v2.safetensors`` (``reference/opensora-v2-state-dict.tsv``: 1082 tensors, no
buffers), so ``OpenSora2.from_pretrained`` loads it by name, strictly.

Weights (what `from_pretrained` reads)::

    <dir>/config.json           # OpenSora2Config.to_dict(); absent = the release preset
    <dir>/model.safetensors     # as `save_pretrained` writes it
    # or the release file itself: <dir>/Open_Sora_v2.safetensors, or a path to any .safetensors

Only safetensors are read (nothing is unpickled).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor, nn

from vfm3d.models._checkpoint import (
    check_state_dict,
    find_safetensors,
    read_safetensors,
    safetensors_shapes,
)
from vfm3d.models.opensora2.config import OpenSora2Config
from vfm3d.models.opensora2.layers import (
    DoubleStreamBlock,
    LastLayer,
    MLPEmbedder,
    RotaryEmbedding3D,
    SingleStreamBlock,
    timestep_embedding,
)
from vfm3d.utils.atomic import atomic_path, atomic_write_json

CONFIG_NAME = "config.json"
#: Weight files looked for in a folder, in order (ours, then the release's name).
WEIGHT_NAMES = ("model.safetensors", "Open_Sora_v2.safetensors")
MODEL_NAME = "Open-Sora 2.0 MMDiT"


class OpenSora2(nn.Module):
    """Open-Sora 2.0 MMDiT (architecture of the 11B release; sizes from `OpenSora2Config`).

    ``forward(img, img_ids, txt, txt_ids, timesteps, y_vec, cond=None) -> [B, Li, in_channels]``:

    - ``img`` ``[B, Li, in_channels]``: noisy latents packed 2x2 (`layers.pack`), tokens in
      (t, h, w) order; ``img_ids`` ``[B, Li, 3]`` their (t, h, w) ids (`layers.position_ids`).
    - ``txt`` ``[B, Lt, context_in_dim]``: T5 token embeddings (512 tokens in the release);
      ``txt_ids`` ``[B, Lt, 3]``: zeros.
    - ``timesteps`` ``[B]`` in [0, 1] (after the time shift; 1 = pure noise; embedded as
      ``1000 t``); ``y_vec`` ``[B, vec_in_dim]``: CLIP pooled embedding.
    - ``cond`` ``[B, Li, in_channels + patch_size^2]``: packed ``mask ⊕ mask * reference latent``
      (image-to-video; zeros = text-to-video); required when ``config.cond_embed``.

    Returns the velocity prediction, packed like ``img``. The outputs of ``double_blocks[i]``
    (``(img, txt)``) and ``single_blocks[j]`` (``[B, Lt + Li, C]``, text first) are visible to
    forward hooks; `blocks` lists them in depth order.
    """

    def __init__(self, config: OpenSora2Config | None = None) -> None:
        super().__init__()
        c = config if config is not None else OpenSora2Config()
        self.config = c
        self.name_or_path: str = "random-init"
        self.pe_embedder = RotaryEmbedding3D(c.axes_dim, c.theta, c.rope_pairing)
        self.img_in = nn.Linear(c.in_channels, c.hidden_size, bias=True)
        self.time_in = MLPEmbedder(256, c.hidden_size)
        self.vector_in = MLPEmbedder(c.vec_in_dim, c.hidden_size)
        self.cond_in = (
            nn.Linear(c.cond_channels, c.hidden_size, bias=True) if c.cond_embed else None
        )
        self.txt_in = nn.Linear(c.context_in_dim, c.hidden_size)
        self.double_blocks = nn.ModuleList(
            DoubleStreamBlock(c.hidden_size, c.num_heads, c.mlp_ratio, c.qkv_bias, c.rope_pairing)
            for _ in range(c.depth)
        )
        self.single_blocks = nn.ModuleList(
            SingleStreamBlock(c.hidden_size, c.num_heads, c.mlp_ratio, c.rope_pairing)
            for _ in range(c.depth_single_blocks)
        )
        self.final_layer = LastLayer(c.hidden_size, c.in_channels)

    # ------------------------------------------------------------------ construction
    @classmethod
    def random(cls, config: OpenSora2Config | None = None, seed: int = 0) -> OpenSora2:
        """A randomly initialised model, reproducible from ``seed`` (global RNG untouched)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = cls(config)
        model.name_or_path = f"random-init(seed={seed})"
        return model

    def blocks(self) -> list[nn.Module]:
        """``double_blocks`` then ``single_blocks``: index ``i < depth`` is ``double_blocks[i]``,
        index ``depth + j`` is ``single_blocks[j]``."""
        return [*self.double_blocks, *self.single_blocks]

    @property
    def dtype(self) -> torch.dtype:
        return self.img_in.weight.dtype

    # ------------------------------------------------------------------ forward
    def embed(
        self,
        img: Tensor,
        img_ids: Tensor,
        txt: Tensor,
        txt_ids: Tensor,
        timesteps: Tensor,
        y_vec: Tensor,
        cond: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, Tensor, tuple[Tensor, Tensor]]:
        """Everything before the blocks: ``(img [B, Li, C], txt [B, Lt, C], vec [B, C], rope)``;
        ``rope`` covers the joined ``[text, image]`` sequence."""
        c = self.config
        if img.ndim != 3 or img.shape[-1] != c.in_channels:
            raise ValueError(f"img must be [B, L, {c.in_channels}], got {tuple(img.shape)}")
        if txt.ndim != 3 or txt.shape[-1] != c.context_in_dim:
            raise ValueError(f"txt must be [B, L, {c.context_in_dim}], got {tuple(txt.shape)}")
        if img_ids.shape[:2] != img.shape[:2] or txt_ids.shape[:2] != txt.shape[:2]:
            raise ValueError(
                f"ids must match their tokens: img {tuple(img.shape)} / img_ids "
                f"{tuple(img_ids.shape)}, txt {tuple(txt.shape)} / txt_ids {tuple(txt_ids.shape)}"
            )
        dtype = self.dtype
        x = self.img_in(img.to(dtype))
        if self.cond_in is not None:
            if cond is None:
                raise ValueError("this model has cond_in (image-to-video): pass cond")
            if cond.shape != (*img.shape[:2], c.cond_channels):
                raise ValueError(
                    f"cond must be [B, L, {c.cond_channels}] like img, got {tuple(cond.shape)}"
                )
            x = x + self.cond_in(cond.to(dtype))
        elif cond is not None:
            raise ValueError("this model has no cond_in (cond_embed=False): cond must be None")
        vec = self.time_in(timestep_embedding(timesteps, 256).to(dtype))
        vec = vec + self.vector_in(y_vec.to(dtype))
        context = self.txt_in(txt.to(dtype))
        rope = self.pe_embedder(torch.cat((txt_ids, img_ids), dim=1))
        return x, context, vec, rope

    def forward(
        self,
        img: Tensor,
        img_ids: Tensor,
        txt: Tensor,
        txt_ids: Tensor,
        timesteps: Tensor,
        y_vec: Tensor,
        cond: Tensor | None = None,
    ) -> Tensor:
        x, context, vec, rope = self.embed(img, img_ids, txt, txt_ids, timesteps, y_vec, cond)
        for block in self.double_blocks:
            x, context = block(x, context, vec, rope)
        n_txt = context.shape[1]
        joint = torch.cat((context, x), dim=1)
        for block in self.single_blocks:
            joint = block(joint, vec, rope)
        return self.final_layer(joint[:, n_txt:], vec)

    # ------------------------------------------------------------------ saving / loading
    def save_pretrained(self, directory: str | os.PathLike[str]) -> Path:
        """Write ``config.json`` and ``model.safetensors`` into ``directory`` (atomically each)."""
        from safetensors.torch import save_file

        target = Path(directory)
        target.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in self.state_dict().items()}
        with atomic_path(target / WEIGHT_NAMES[0]) as tmp:
            save_file(tensors, str(tmp), metadata={"format": "pt", "architecture": "opensora2"})
        atomic_write_json(target / CONFIG_NAME, self.config.to_dict())
        return target

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike[str],
        device: str | torch.device = "cpu",
        dtype: torch.dtype | None = None,
        config: OpenSora2Config | None = None,
    ) -> OpenSora2:
        """Load a weights folder or ``.safetensors`` file strictly (see the module docstring).

        ``config`` defaults to ``config.json`` beside the weights or, absent, the release preset.
        Every tensor of the file must match a parameter by name and shape and vice versa;
        otherwise a ``ValueError`` names the missing / unexpected / mis-shaped tensors (checked
        from the file header before any data is read). ``dtype`` None keeps the file's dtypes.
        """
        source = Path(path)
        weights = find_safetensors(source, WEIGHT_NAMES)
        if config is None:
            config_file = (source if source.is_dir() else source.parent) / CONFIG_NAME
            config = (
                OpenSora2Config.from_json(config_file)
                if config_file.is_file()
                else OpenSora2Config()
            )
        with torch.device("meta"):
            model = cls(config)
        check_state_dict(
            model.state_dict(), safetensors_shapes(weights), source=str(weights), model=MODEL_NAME
        )
        state = read_safetensors(weights)
        if dtype is not None:
            state = {k: v.to(dtype) for k, v in state.items()}
        model.load_state_dict(state, strict=True, assign=True)
        leftover = [n for n, t in model.state_dict().items() if t.is_meta]
        if leftover:  # pragma: no cover - guarded by check_state_dict
            raise RuntimeError(f"{weights}: tensors left uninitialised: {leftover[:5]}")
        model = model.to(device=device)
        model.name_or_path = str(source)
        return model.eval()
