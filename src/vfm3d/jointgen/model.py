"""`JointGenerator`: a Wan video DiT with a reconstruction head on its denoising features (JOG3R).

Parts: the frozen ``AutoencoderKLWan`` (frames <-> normalised latents, as wan-mini and the Wan
pipelines: posterior mode, ``(z - latents_mean) / latents_std`` per channel), the
``WanTransformer3DModel`` (flow matching: velocity ``eps - z0`` at model timestep
``1000 sigma``), a text encoder (`vfm3d.jointgen.captions.PromptEncoder`, optional: without one
the model is unconditional) and the reconstruction head `ReconHead`.

**Head placement.** Forward hooks on ``transformer.blocks[i]`` for ``i`` in ``head_blocks``
(default: the middle block and the last, ``(L // 2 - 1, L - 1)``) capture the block outputs
``[B, T'*h*w, C]`` of the *same* forward that predicts the velocity, i.e. the features of the
noisy latent at the sampled timestep, as JOG3R trains its head. Tokens are in (t, h, w) order
(the patch embedding is a Conv3d then ``flatten(2)``), so they reshape to per-latent-frame grids
``[B, T', h, w, C]``; the chosen blocks are concatenated on channels (``C * len(head_blocks)``).
With ``early_exit`` (V2C) the forward stops after the deepest head block.

**Head.** The probe's model (`vfm3d.probe.model.ProbeModel`: LayerNorm + Linear input, camera
and register tokens, alternating frame/global attention, `CameraHead` and the two `DPTHead`s)
with a small `ProbeConfig` (default `ProbeConfig.cpu_small`). Outputs for every predicted frame
(VGGT/DUSt3R style, all in frame 0's camera coordinates): point map + confidence, depth +
confidence, and the camera as ``absT_quaR_FoV`` (world_to_cam, quaternion XYZW, fov_h, fov_w).

**Time mapping** (the VAE compresses time 4x: ``T = 4k + 1`` frames -> ``T' = k + 1`` latent
frames; latent 0 encodes frame 0 alone, latent ``j >= 1`` frames ``4j-3 .. 4j``):

- ``"expand"`` (default): a prediction for **every** input frame. Frame ``t`` reads the tokens
  of its latent frame ``j(t)`` (0 for t = 0, else ``(t - 1) // 4 + 1``, `TokenGrid.frame_index`)
  plus a learnt embedding of its position inside the latent group (``(t - 1) % 4``; 0 for frame
  0), so the head's frame and global attention can tell the four frames of a group apart.
  ``S = T``.
- ``"latent"``: one prediction per latent frame, at input frame ``0`` for latent 0 and ``4j``
  (the last frame it encodes) for latent ``j``: ``S = T'`` (cheaper for long Wan2.1 clips).

Either way the output's ``frames [S]`` names the input frame of each prediction.

Folder (`save_pretrained`, a Wan diffusers folder plus the head): ``transformer/``, ``vae/``,
``scheduler/`` (UniPC, flow shift 3), ``text_encoder/`` + ``tokenizer/`` (when conditioned),
``empty_prompt_embedding.safetensors`` (``prompt_embeds [1, L, text_dim]``: the empty prompt
through the text encoder, the unconditional embedding), ``head/config.json`` +
``head/model.safetensors``, and ``jog3r.json`` (written last; `from_pretrained` requires it).
Note: the ``wan2.1`` adapter pads the empty prompt to 512 tokens; for the miniature (L = 32)
that is the same embedding followed by more zero tokens.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vfm3d.jointgen.captions import PromptEncoder
from vfm3d.probe.config import ProbeConfig
from vfm3d.probe.model import ProbeModel

CONFIG_FILE = "jog3r.json"
FORMAT = "vfm3d.jointgen.JointGenerator"
HEAD_DIR = "head"
TIME_MAPPINGS = ("expand", "latent")
DEFAULT_INIT = "zoo/wan-mini"


class _EarlyExit(Exception):
    """Raised from the deepest head block's hook to stop the DiT forward (V2C)."""


def resolve_model_path(text: str | os.PathLike[str]) -> Path:
    """``zoo/<name>`` -> the shipped folder (`vfm3d.backbones.registry.zoo_root`), else a path.

    Raises FileNotFoundError naming what was looked for.
    """
    name = str(text)
    if name.startswith("zoo/"):
        from vfm3d.backbones.registry import zoo_root

        path = zoo_root() / name.removeprefix("zoo/")
        if not path.is_dir():
            raise FileNotFoundError(
                f"{name}: not shipped (looked in {path}); train it first or pass a folder"
            )
        return path
    path = Path(name)
    if not path.is_dir():
        raise FileNotFoundError(f"model folder not found: {path}")
    return path


def default_head_blocks(num_layers: int) -> tuple[int, ...]:
    """The middle block and the last: ``(L // 2 - 1, L - 1)`` (one block when L <= 2)."""
    blocks = {max(0, num_layers // 2 - 1), num_layers - 1}
    return tuple(sorted(blocks))


def frame_mapping(
    latent_frames: int, stride: int, time_mapping: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(frames, latent, offset)`` ``[S]`` int64 for ``latent_frames`` latent frames.

    ``frames``: the input frame of each prediction; ``latent``: the latent frame it reads;
    ``offset``: its position inside the latent group (module docstring, "Time mapping").
    """
    if time_mapping not in TIME_MAPPINGS:
        raise ValueError(f"time_mapping must be one of {TIME_MAPPINGS}, got {time_mapping!r}")
    if latent_frames < 1 or stride < 1:
        raise ValueError(f"need latent_frames >= 1 and stride >= 1, got {latent_frames}, {stride}")
    if time_mapping == "latent":
        latent = torch.arange(latent_frames)
        return latent * stride, latent, torch.zeros_like(latent)
    frames = torch.arange((latent_frames - 1) * stride + 1)
    latent = torch.where(frames == 0, 0, (frames - 1) // stride + 1)
    offset = torch.where(frames == 0, 0, (frames - 1) % stride)
    return frames, latent, offset


class ReconHead(nn.Module):
    """Block features -> point maps, depth, cameras for each predicted frame (module docstring).

    ``in_channels``: the DiT's width ``C``; the probe reads ``C * len(blocks)`` channels.
    """

    def __init__(
        self,
        config: ProbeConfig,
        in_channels: int,
        blocks: Sequence[int],
        time_mapping: str = "expand",
        temporal_stride: int = 4,
    ) -> None:
        super().__init__()
        if time_mapping not in TIME_MAPPINGS:
            raise ValueError(f"time_mapping must be one of {TIME_MAPPINGS}, got {time_mapping!r}")
        if not blocks:
            raise ValueError("the head needs at least one DiT block")
        self.config = config
        self.in_channels = int(in_channels)
        self.blocks = tuple(int(b) for b in blocks)
        self.time_mapping = time_mapping
        self.temporal_stride = int(temporal_stride)
        channels = self.in_channels * len(self.blocks)
        self.probe = ProbeModel(config, channels)
        # only "expand" reads it (an unused parameter would stall DistributedDataParallel)
        self.frame_embed = (
            nn.Parameter(torch.zeros(self.temporal_stride, channels))
            if time_mapping == "expand"
            else None
        )

    def spec(self) -> dict[str, Any]:
        """JSON-ready constructor arguments (``head/config.json``)."""
        return {
            "probe": self.config.to_dict(),
            "in_channels": self.in_channels,
            "blocks": list(self.blocks),
            "time_mapping": self.time_mapping,
            "temporal_stride": self.temporal_stride,
        }

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> ReconHead:
        config = ProbeConfig.from_dict(spec["probe"])
        return cls(
            config,
            int(spec["in_channels"]),
            spec["blocks"],
            spec["time_mapping"],
            int(spec["temporal_stride"]),
        )

    def forward(
        self, grids: Sequence[torch.Tensor], out_size: tuple[int, int]
    ) -> dict[str, torch.Tensor | list[torch.Tensor]]:
        """``grids``: per head block ``[B, T', h, w, C]``; returns `ProbeModel.forward`'s dict
        (``[B, S, ...]``) plus ``frames [S]`` (input frame of each prediction)."""
        feats = torch.cat(list(grids), dim=-1)
        frames, latent, offset = frame_mapping(
            feats.shape[1], self.temporal_stride, self.time_mapping
        )
        feats = feats[:, latent.to(feats.device)]
        if self.frame_embed is not None:
            embed = self.frame_embed[offset.to(feats.device)].to(feats.dtype)
            feats = feats + embed[None, :, None, None, :]
        out = self.probe(feats.float(), out_size)
        out["frames"] = frames.to(feats.device)
        return out


@dataclass
class Captured:
    """Block outputs of one DiT forward, as ``[B, T', h, w, C]`` grids keyed by block index."""

    grids: dict[int, torch.Tensor]


class JointGenerator(nn.Module):
    """Wan DiT + frozen Wan VAE + optional text encoder + `ReconHead` (module docstring).

    ``empty_prompt``: ``[1, L, text_dim]``, the unconditional embedding used when there is no
    text encoder (with one, "" goes through it). ``info``: provenance (init source, ...).
    """

    def __init__(
        self,
        transformer: nn.Module,
        vae: nn.Module,
        empty_prompt: torch.Tensor,
        text: PromptEncoder | None = None,
        head: ReconHead | None = None,
        info: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        cfg = transformer.config
        if int(cfg.patch_size[0]) != 1:
            raise ValueError(f"temporal patch {cfg.patch_size[0]} not supported (need 1)")
        if int(cfg.in_channels) != int(vae.config.z_dim):
            raise ValueError(
                f"transformer in_channels {cfg.in_channels} != VAE z_dim {vae.config.z_dim}"
            )
        if empty_prompt.ndim != 3 or empty_prompt.shape[0] != 1:
            raise ValueError(f"empty_prompt must be [1, L, D], got {list(empty_prompt.shape)}")
        if empty_prompt.shape[-1] != int(cfg.text_dim):
            raise ValueError(f"empty_prompt width {empty_prompt.shape[-1]} != {cfg.text_dim}")
        if text is not None and text.dim != int(cfg.text_dim):
            raise ValueError(f"text encoder width {text.dim} != DiT text_dim {cfg.text_dim}")
        if head is not None:
            width = int(cfg.num_attention_heads) * int(cfg.attention_head_dim)
            if head.in_channels != width:
                raise ValueError(f"head reads {head.in_channels} channels, the DiT has {width}")
            bad = [b for b in head.blocks if not 0 <= b < int(cfg.num_layers)]
            if bad:
                raise ValueError(f"head blocks {bad} outside [0, {cfg.num_layers})")
        self.transformer = transformer
        self.vae = vae.requires_grad_(False).eval()
        self.text = text
        self.head = head
        self.register_buffer("empty_prompt", empty_prompt.detach().clone().float())
        self.info = dict(info or {})
        mean = torch.tensor(vae.config.latents_mean, dtype=torch.float32).view(1, -1, 1, 1, 1)
        std = torch.tensor(vae.config.latents_std, dtype=torch.float32).view(1, -1, 1, 1, 1)
        self.register_buffer("latents_mean", mean, persistent=False)
        self.register_buffer("latents_std", std, persistent=False)

    # ---------------------------------------------------------------- facts
    @property
    def device(self) -> torch.device:
        return next(self.transformer.parameters()).device

    @property
    def vae_factors(self) -> tuple[int, int]:
        """(temporal, spatial) compression of the VAE."""
        from vfm3d.backbones.wan import _vae_factors

        return _vae_factors(self.vae)

    @property
    def patch(self) -> tuple[int, int]:
        _, p_h, p_w = (int(x) for x in self.transformer.config.patch_size)
        return p_h, p_w

    @property
    def latent_channels(self) -> int:
        return int(self.vae.config.z_dim)

    def check_size(self, frames: int, height: int, width: int) -> None:
        """Raise ValueError unless ``frames = s_t k + 1`` and H, W are multiples of the token size."""
        ft, fs = self.vae_factors
        ph, pw = self.patch
        if frames < 1 or (frames - 1) % ft:
            raise ValueError(
                f"frames must be {ft}k+1 (1, {ft + 1}, {2 * ft + 1}, ...), got {frames}"
            )
        if height % (fs * ph) or width % (fs * pw):
            raise ValueError(
                f"height and width must be multiples of {fs * ph}x{fs * pw} (VAE {fs} x patch), "
                f"got {height}x{width}"
            )

    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        """``(C, T', h', w')`` of the latents of a ``frames`` x H x W video."""
        self.check_size(frames, height, width)
        ft, fs = self.vae_factors
        return (self.latent_channels, (frames - 1) // ft + 1, height // fs, width // fs)

    # ---------------------------------------------------------------- prompts and latents
    def encode_prompts(self, prompts: Sequence[str | None]) -> torch.Tensor:
        """``[B, L, text_dim]`` conditioning; None / "" = the empty prompt (unconditional)."""
        if self.text is not None:
            return self.text(list(prompts)).to(self.device)
        if any(p for p in prompts):
            raise ValueError("this model has no text encoder: it generates unconditionally only")
        return self.empty_prompt.to(self.device).expand(len(prompts), -1, -1)

    def empty_embedding(self) -> torch.Tensor:
        """``[1, L, text_dim]``: the unconditional embedding (through the encoder if any)."""
        if self.text is not None:
            with torch.no_grad():
                return self.text([""]).detach().float().cpu()
        return self.empty_prompt.detach().cpu()

    @torch.no_grad()
    def encode_video(self, frames: torch.Tensor) -> torch.Tensor:
        """``[B, T, 3, H, W]`` in [0, 1] -> normalised latents ``[B, C, T', h', w']`` (posterior
        mode, ``(z - mean) / std`` per channel)."""
        if frames.ndim != 5 or frames.shape[2] != 3:
            raise ValueError(f"frames must be [B, T, 3, H, W], got {list(frames.shape)}")
        self.check_size(frames.shape[1], frames.shape[3], frames.shape[4])
        vae_dtype = next(self.vae.parameters()).dtype
        video = (frames.permute(0, 2, 1, 3, 4) * 2.0 - 1.0).to(self.device, vae_dtype)
        z = self.vae.encode(video).latent_dist.mode().float()
        return (z - self.latents_mean) / self.latents_std

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents ``[B, C, T', h', w']`` -> frames ``[B, T, 3, H, W]`` in [0, 1]."""
        from vfm3d.models.wan_flow import decode_latents

        vae_dtype = next(self.vae.parameters()).dtype
        return decode_latents(self.vae, latents.to(vae_dtype)).float()

    # ---------------------------------------------------------------- forward
    @contextlib.contextmanager
    def _hooks(self, blocks: Sequence[int], early_exit: bool) -> Iterator[dict[int, torch.Tensor]]:
        captured: dict[int, torch.Tensor] = {}
        deepest = max(blocks)
        handles = []

        def make(index: int) -> Any:
            def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
                if index not in captured:
                    captured[index] = output[0] if isinstance(output, tuple) else output
                if early_exit and index == deepest:
                    raise _EarlyExit

            return hook

        try:
            for index in sorted(set(blocks)):
                handles.append(self.transformer.blocks[index].register_forward_hook(make(index)))
            yield captured
        finally:
            for handle in handles:
                handle.remove()

    def forward(
        self,
        latents: torch.Tensor,
        timestep: torch.Tensor,
        context: torch.Tensor,
        run_head: bool = True,
        early_exit: bool = False,
        out_size: tuple[int, int] | None = None,
    ) -> dict[str, Any]:
        """One DiT forward on noisy latents, the head on the same forward's block outputs.

        Args:
            latents: ``[B, C, T', h', w']`` noisy normalised latents.
            timestep: ``[B]`` model timesteps ``1000 * sigma``.
            context: ``[B, L, text_dim]`` encoder hidden states (`encode_prompts`).
            run_head: run the reconstruction head (needs one).
            early_exit: stop the DiT after the deepest head block (no velocity returned).
            out_size: ``(H, W)`` of the maps (default: the video size, latent x VAE factor).

        Returns a dict: ``velocity [B, C, T', h', w']`` (absent with ``early_exit``) and, with
        the head, ``pose_enc [B, S, 9]``, ``pose_enc_list``, ``points [B, S, H, W, 3]``,
        ``points_conf``, ``depth``, ``depth_conf [B, S, H, W]`` and ``frames [S]``.
        """
        if early_exit and not run_head:
            raise ValueError("early_exit needs run_head")
        if run_head and self.head is None:
            raise ValueError("this model has no reconstruction head")
        dtype = self.transformer.dtype
        kwargs = dict(
            hidden_states=latents.to(dtype),
            timestep=timestep.to(latents.device),
            encoder_hidden_states=context.to(latents.device, dtype),
            return_dict=False,
        )
        out: dict[str, Any] = {}
        if not run_head:
            out["velocity"] = self.transformer(**kwargs)[0].to(latents.dtype)
            return out
        assert self.head is not None
        with self._hooks(self.head.blocks, early_exit) as captured:
            try:
                out["velocity"] = self.transformer(**kwargs)[0].to(latents.dtype)
            except _EarlyExit:
                pass
        grids = self.block_grids(captured, latents.shape)
        _, fs = self.vae_factors
        size = out_size or (latents.shape[-2] * fs, latents.shape[-1] * fs)
        out.update(self.head([grids[b] for b in self.head.blocks], (int(size[0]), int(size[1]))))
        return out

    def block_grids(
        self, captured: dict[int, torch.Tensor], latent_shape: Sequence[int]
    ) -> dict[int, torch.Tensor]:
        """Block outputs ``[B, T'*h*w, C]`` -> ``[B, T', h, w, C]`` (tokens in (t, h, w) order)."""
        b, _, t, h, w = (int(x) for x in latent_shape)
        ph, pw = self.patch
        grids = {}
        for index, tokens in captured.items():
            if tokens.shape[:2] != (b, t * (h // ph) * (w // pw)):
                raise RuntimeError(f"block {index}: unexpected output shape {list(tokens.shape)}")
            grids[index] = tokens.reshape(b, t, h // ph, w // pw, tokens.shape[-1])
        return grids

    # ---------------------------------------------------------------- construction
    @classmethod
    def from_wan(
        cls,
        init: str | os.PathLike[str] = DEFAULT_INIT,
        corpus: Sequence[str] | None = None,
        head_config: ProbeConfig | None = None,
        head_blocks: Sequence[int] | None = None,
        time_mapping: str = "expand",
        max_tokens: int | None = None,
        seed: int = 0,
        device: str | torch.device = "cpu",
        head: bool = True,
    ) -> JointGenerator:
        """Start from a Wan model: ``zoo/wan-mini`` or a local Wan2.1 diffusers folder.

        Text encoder: the folder's ``text_encoder/`` + ``tokenizer/`` (frozen; Wan2.1's
        UMT5-XXL, ``max_tokens`` default 512) if present, else with ``corpus`` a miniature one
        built here (`PromptEncoder.build`, trainable, ``max_tokens`` default 32), else none
        (unconditional, the folder's stored empty prompt). Head: random from ``seed``
        (``head_config`` default `ProbeConfig.cpu_small`), ``head=False`` for none.
        """
        from vfm3d.backbones import wan
        from vfm3d.utils.training import seeded_init

        path = resolve_model_path(init)
        backbone = wan.from_pretrained(path, device="cpu")
        transformer = backbone.transformer.float().requires_grad_(True)
        vae = backbone.vae.float()
        empty = backbone.prompt_tensor("embeds").detach().float().cpu()
        text: PromptEncoder | None = None
        if (path / "text_encoder").is_dir() and (path / "tokenizer").is_dir():
            text = PromptEncoder.from_pretrained(path, max_tokens or 512, trainable=False)
        elif corpus is not None:
            text_dim = int(transformer.config.text_dim)
            text = PromptEncoder.build(corpus, text_dim, seed=seed, max_tokens=max_tokens or 32)
        recon = None
        if head:
            recon = seeded_init(
                seed,
                lambda: build_head(transformer, vae, head_config, head_blocks, time_mapping),
            )
        gen = cls(transformer, vae, empty, text, recon, info={"init": str(init)})
        if text is not None:
            gen.empty_prompt = gen.empty_embedding()
        return gen.to(device)

    @classmethod
    def tiny(
        cls,
        seed: int = 0,
        corpus: Sequence[str] | None = None,
        head_blocks: Sequence[int] | None = None,
        time_mapping: str = "expand",
        head: bool = True,
    ) -> JointGenerator:
        """A random tiny model for tests: the ``wan2.1`` adapter's tiny configs (2 blocks of
        width 32, text_dim 16, VAE x8 space / x4 time, 4 latent channels), `tiny_head_config`,
        and with ``corpus`` a text encoder (16 wide, 2 layers) with its tokenizer."""
        from diffusers import AutoencoderKLWan, WanTransformer3DModel

        from vfm3d.backbones.wan import tiny_configs
        from vfm3d.utils.training import seeded_init

        t_cfg, v_cfg = tiny_configs()
        transformer, vae = seeded_init(
            seed, lambda: (WanTransformer3DModel(**t_cfg), AutoencoderKLWan(**v_cfg))
        )
        text = None
        if corpus is not None:
            text = PromptEncoder.build(corpus, int(t_cfg["text_dim"]), seed=seed, max_tokens=16)
        empty = torch.zeros(1, 16, int(t_cfg["text_dim"]))
        recon = None
        if head:
            recon = seeded_init(
                seed + 1,
                lambda: build_head(transformer, vae, tiny_head_config(), head_blocks, time_mapping),
            )
        gen = cls(transformer, vae, empty, text, recon, info={"init": f"tiny:{seed}"})
        if text is not None:
            gen.empty_prompt = gen.empty_embedding()
        return gen

    # ---------------------------------------------------------------- (de)serialisation
    def save_pretrained(
        self, folder: str | os.PathLike[str], extra: dict[str, Any] | None = None
    ) -> Path:
        """Write the folder described in the module docstring (``jog3r.json`` last)."""
        from safetensors.torch import save_file

        from vfm3d.backbones._diffusers_common import EMPTY_PROMPT_FILE, save_prompt_file
        from vfm3d.models.wan_flow import scheduler
        from vfm3d.utils.atomic import atomic_path, atomic_write_json

        root = Path(folder)
        root.mkdir(parents=True, exist_ok=True)
        (root / CONFIG_FILE).unlink(missing_ok=True)
        self.transformer.save_pretrained(root / "transformer", safe_serialization=True)
        self.vae.save_pretrained(root / "vae", safe_serialization=True)
        scheduler().save_pretrained(root / "scheduler")
        if self.text is not None:
            self.text.save_pretrained(root)
            self.empty_prompt = self.empty_embedding().to(self.empty_prompt.device)
        save_prompt_file(root / EMPTY_PROMPT_FILE, {"prompt_embeds": self.empty_prompt})
        if self.head is not None:
            (root / HEAD_DIR).mkdir(exist_ok=True)
            atomic_write_json(root / HEAD_DIR / "config.json", self.head.spec())
            state = {k: v.detach().cpu().contiguous() for k, v in self.head.state_dict().items()}
            with atomic_path(root / HEAD_DIR / "model.safetensors") as tmp:
                save_file(state, str(tmp))
        record = {
            "format": FORMAT,
            "text_encoder": self.text is not None,
            "text_trainable": bool(self.text is not None and self.text.trainable),
            "max_tokens": int(self.empty_prompt.shape[1]),
            "head": self.head is not None,
            "info": self.info,
            **(extra or {}),
        }
        atomic_write_json(root / CONFIG_FILE, record)
        return root

    @classmethod
    def from_pretrained(
        cls,
        folder: str | os.PathLike[str],
        device: str | torch.device = "cpu",
        dtype: torch.dtype | None = None,
    ) -> JointGenerator:
        """Load a `save_pretrained` folder or ``zoo/<name>`` (raises if ``jog3r.json`` is absent).

        ``dtype`` applies to the transformer (and the text encoder); the VAE and head stay float32.
        """
        from diffusers import AutoencoderKLWan, WanTransformer3DModel
        from safetensors.torch import load_file

        from vfm3d.backbones._diffusers_common import EMPTY_PROMPT_FILE

        root = resolve_model_path(folder)
        if not (root / CONFIG_FILE).is_file():
            raise FileNotFoundError(f"{root}: not a joint generator folder (no {CONFIG_FILE})")
        meta = json.loads((root / CONFIG_FILE).read_text())
        if meta.get("format") != FORMAT:
            raise ValueError(f"{root / CONFIG_FILE}: unsupported format {meta.get('format')!r}")
        kwargs = {"torch_dtype": dtype} if dtype is not None else {}
        transformer = WanTransformer3DModel.from_pretrained(root / "transformer", **kwargs)
        vae = AutoencoderKLWan.from_pretrained(root / "vae")
        empty = load_file(str(root / EMPTY_PROMPT_FILE))["prompt_embeds"]
        text = None
        if meta.get("text_encoder"):
            text = PromptEncoder.from_pretrained(
                root, int(meta["max_tokens"]), bool(meta.get("text_trainable")), dtype
            )
        head = None
        if meta.get("head"):
            spec = json.loads((root / HEAD_DIR / "config.json").read_text())
            head = ReconHead.from_spec(spec)
            head.load_state_dict(load_file(str(root / HEAD_DIR / "model.safetensors")))
        gen = cls(transformer, vae, empty, text, head, info=meta.get("info"))
        gen.meta = meta
        return gen.to(device).eval()


def tiny_head_config(**overrides: Any) -> ProbeConfig:
    """A minute probe config for tests: width 16, 2 heads, 2 block pairs, small DPT heads."""
    small: dict[str, Any] = dict(
        embed_dim=16,
        num_heads=2,
        depth=2,
        dpt_layers=(0, 0, 1, 1),
        camera_trunk_depth=1,
        camera_iters=2,
        dpt_features=8,
        dpt_out_channels=(4, 8, 8, 8),
    )
    small.update(overrides)
    return ProbeConfig.cpu_small(**small)


def build_head(
    transformer: nn.Module,
    vae: nn.Module,
    config: ProbeConfig | None = None,
    blocks: Sequence[int] | None = None,
    time_mapping: str = "expand",
) -> ReconHead:
    """A random `ReconHead` for ``transformer`` (width, blocks) and ``vae`` (temporal stride)."""
    from vfm3d.backbones.wan import _vae_factors

    cfg = transformer.config
    width = int(cfg.num_attention_heads) * int(cfg.attention_head_dim)
    blocks = tuple(blocks) if blocks is not None else default_head_blocks(int(cfg.num_layers))
    stride = _vae_factors(vae)[0] * int(cfg.patch_size[0])
    return ReconHead(config or ProbeConfig.cpu_small(), width, blocks, time_mapping, stride)
