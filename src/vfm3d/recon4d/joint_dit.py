"""Sora3R's joint latent DiT: a ``WanTransformer3DModel`` that denoises point-map latents
conditioned on the clean video latent.

Input: ``[clean video latent ⊕ noisy point-map latent]`` concatenated on the channel axis, in that
order (``in_channels = 2 C``; both latents normalised per channel, ``C`` = the VAE's ``z_dim``);
output: the velocity of the point-map latent (``out_channels = C``). Everything else is the video
DiT's architecture. The text conditioning is a fixed null embedding (``prompt_embeds``
``[1, L, text_dim]``, the video model's empty-prompt embedding), stored with the model.

**Initialisation from the video DiT** (`JointDiT.from_video_dit`): every weight is copied; the
patch embedding's Conv3d weight ``[D, 2C, p_t, p_h, p_w]`` becomes ``[W | 0]``: the video half is
the pretrained ``W`` and the point-map half is zero (the bias is the pretrained bias).
Guarantee (tested): at initialisation ``JointDiT(video, pm, t) == video_dit(video, t)`` for every
``pm``, i.e. the network starts as exactly the pretrained video DiT applied to the clean video.
Why this choice:

- it is function-preserving: no weight is rescaled, no activation changes scale (copying ``W``
  into both halves would feed the blocks ``W (z_video + z_pm)``, a sum of two latents no layer was
  trained on; Marigold's ``W / 2`` halves feed their average, also off-distribution);
- the pretrained blocks see real video latents from the first step, and the 3D knowledge that
  vfm3d measures in video-DiT features is knowledge about videos: the geometry signal the DiT must
  turn into point maps flows through pretrained weights immediately, instead of through a new
  zero-initialised path that must first grow;
- the zero half is not stuck: the gradient of the loss with respect to it is (error signal at the
  embedding) x (point-map latent), non-zero from the first step, so the noisy point-map path opens
  at once (as the zero-initialised additions of ControlNet and InstructPix2Pix do);
- the output projection keeps its pretrained role's shape: a velocity in the same latent space
  (the point-map VAE is a copy of the video VAE, same ``z_dim``).

The cost: the timestep embedding the blocks get is the point-map latent's noise level, while the
video they see is clean, so at large ``t`` the pretrained function is evaluated off its training
distribution (it is on it as ``t`` -> 0). ``pointmap_init="denoiser"`` is the opposite choice
(video half 0, point-map half ``W``: InstructPix2Pix's choice, where the noisy input keeps the
pretrained weights; guarantee: ``JointDiT(video, pm, t) == video_dit(pm, t)``, the pretrained
denoiser applied to the point-map latent), and ``"half"`` is Marigold's (``W / 2`` each; guarantee:
``== video_dit((video + pm) / 2, t)``), for comparisons. `JointDiT.random_init` is the same
architecture from a random initialisation (the paper's "does the video prior help?" twin).

Flow matching (`joint_flow_loss`), wan-mini's convention (`vfm3d.models.wan_flow`): ``sigma ~
logit-normal`` (``sigmoid(N(0, 1))``, no shift at training time), ``z_sigma = (1 - sigma) z0 +
sigma eps``, target velocity ``eps - z0``, model timestep ``1000 sigma``; MSE. The shift (3, as
Wan2.1) enters only the sampler's sigma schedule (`vfm3d.recon4d.sampling`).

Folder (`save_pretrained`): the ``WanTransformer3DModel`` files (``config.json``,
``diffusion_pytorch_model.safetensors``), ``empty_prompt_embedding.safetensors`` (key
``prompt_embeds``) and ``joint_dit.json`` (input order, how it was initialised; written last,
required by `from_pretrained`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vfm3d.backbones._diffusers_common import EMPTY_PROMPT_FILE

CONFIG_FILE = "joint_dit.json"
FORMAT = "vfm3d.recon4d.JointDiT"
INPUT_ORDER = ("video_latent", "pointmap_latent")
POINTMAP_INITS = ("zeros", "denoiser", "half")
#: Tokens of the null prompt used when a video DiT is given without its embedding.
DEFAULT_NULL_TOKENS = 8


def joint_config(video_config: Mapping[str, Any]) -> dict[str, Any]:
    """The JointDiT's ``WanTransformer3DModel`` config from the video DiT's: ``in_channels``
    doubled, ``out_channels`` = the latent channels. Raises ValueError for image-to-video or
    channel-changing video DiTs."""
    cfg = {k: v for k, v in dict(video_config).items() if not k.startswith("_")}
    c_in = int(cfg["in_channels"])
    c_out = int(cfg.get("out_channels") or c_in)
    if c_out != c_in or cfg.get("image_dim") is not None:
        raise ValueError(
            f"need a text-to-video DiT with in_channels == out_channels (got {c_in} -> {c_out}, "
            f"image_dim {cfg.get('image_dim')})"
        )
    cfg.update(in_channels=2 * c_in, out_channels=c_in)
    return cfg


class JointDiT(nn.Module):
    """``transformer`` (``WanTransformer3DModel``, ``in_channels = 2 C``, ``out_channels = C``)
    with its null prompt ``prompt_embeds`` ``[1, L, text_dim]`` (a buffer, saved with it).

    ``init`` records how the weights were initialised (``"video-dit:zeros"``, ``"random"``, ...).
    """

    def __init__(
        self, transformer: nn.Module, prompt_embeds: torch.Tensor, init: str = "unknown"
    ) -> None:
        super().__init__()
        cfg = transformer.config
        if int(cfg.in_channels) != 2 * int(cfg.out_channels):
            raise ValueError(
                f"JointDiT needs in_channels = 2 * out_channels, got {cfg.in_channels} and "
                f"{cfg.out_channels}"
            )
        if int(cfg.patch_size[0]) != 1:
            raise ValueError(f"temporal patch {cfg.patch_size[0]} not supported (need 1)")
        if prompt_embeds.ndim != 3 or prompt_embeds.shape[0] != 1:
            raise ValueError(f"prompt_embeds must be [1, L, D], got {list(prompt_embeds.shape)}")
        if prompt_embeds.shape[-1] != int(cfg.text_dim):
            raise ValueError(
                f"prompt_embeds width {prompt_embeds.shape[-1]} != text_dim {cfg.text_dim}"
            )
        self.transformer = transformer
        self.register_buffer("prompt_embeds", prompt_embeds.detach().clone().float())
        self.init = init

    @property
    def latent_channels(self) -> int:
        """``C``: channels of the video latent, of the point-map latent and of the output."""
        return int(self.transformer.config.out_channels)

    # ---------------------------------------------------------------- construction
    @classmethod
    def from_video_dit(
        cls,
        dit: nn.Module,
        prompt_embeds: torch.Tensor | None = None,
        pointmap_init: str = "zeros",
    ) -> JointDiT:
        """Widen a video DiT (``WanTransformer3DModel``, ``C -> C``); see the module docstring.

        The video DiT is left untouched (weights are copied). ``prompt_embeds``: the video model's
        empty-prompt embedding ``[1, L, text_dim]`` (wan-mini: its
        ``empty_prompt_embedding.safetensors``; a `WanBackbone`: ``prompt_tensor("embeds")``);
        None -> zeros ``[1, 8, text_dim]`` (the tiny Wan's), which differs from what a trained
        model saw. ``pointmap_init``: ``"zeros"`` (default), ``"denoiser"`` or ``"half"``.
        """
        from diffusers import WanTransformer3DModel

        from vfm3d.utils.training import seeded_init

        if pointmap_init not in POINTMAP_INITS:
            raise ValueError(
                f"pointmap_init must be one of {POINTMAP_INITS}, got {pointmap_init!r}"
            )
        cfg = joint_config(dit.config)
        c = int(dit.config.in_channels)
        param = next(dit.parameters())
        # seeded_init: building the (overwritten) random weights leaves torch's global RNG alone.
        joint = seeded_init(0, lambda: WanTransformer3DModel(**cfg)).to(param.device)
        # Each weight takes the video DiT's dtype (keeps its float32 modules float32 under bf16).
        dtypes = {name: p.dtype for name, p in dit.named_parameters()}
        for name, p in joint.named_parameters():
            p.data = p.data.to(dtypes.get(name, p.dtype))
        state = dict(dit.state_dict())
        w = state.pop("patch_embedding.weight")
        missing, unexpected = joint.load_state_dict(state, strict=False)
        if list(missing) != ["patch_embedding.weight"] or unexpected:
            raise RuntimeError(f"unexpected weight names: missing {missing}, extra {unexpected}")
        video_half, pm_half = {
            "zeros": (w, torch.zeros_like(w)),
            "denoiser": (torch.zeros_like(w), w),
            "half": (w / 2, w / 2),
        }[pointmap_init]
        with torch.no_grad():
            joint.patch_embedding.weight[:, :c].copy_(video_half)
            joint.patch_embedding.weight[:, c:].copy_(pm_half)
        if prompt_embeds is None:
            prompt_embeds = torch.zeros(1, DEFAULT_NULL_TOKENS, int(cfg["text_dim"]))
        return cls(joint, prompt_embeds, init=f"video-dit:{pointmap_init}").to(param.device)

    @classmethod
    def random_init(
        cls,
        config: Mapping[str, Any],
        prompt_embeds: torch.Tensor | None = None,
        seed: int = 0,
    ) -> JointDiT:
        """The same architecture as `from_video_dit` of a DiT with ``config`` (the *video* DiT's
        config, ``in_channels = C``), random weights from ``seed`` (diffusers' default init)."""
        from diffusers import WanTransformer3DModel

        from vfm3d.utils.training import seeded_init

        cfg = joint_config(config)
        joint = seeded_init(seed, lambda: WanTransformer3DModel(**cfg))
        if prompt_embeds is None:
            prompt_embeds = torch.zeros(1, DEFAULT_NULL_TOKENS, int(cfg["text_dim"]))
        return cls(joint, prompt_embeds, init=f"random:{seed}")

    def save_pretrained(self, folder: str | os.PathLike[str]) -> Path:
        """Write the transformer (diffusers layout, safetensors), the null prompt and
        ``joint_dit.json`` into ``folder``."""
        from vfm3d.backbones._diffusers_common import save_prompt_file
        from vfm3d.utils.atomic import atomic_write_json

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.transformer.save_pretrained(folder, safe_serialization=True)
        save_prompt_file(folder / EMPTY_PROMPT_FILE, {"prompt_embeds": self.prompt_embeds})
        atomic_write_json(
            folder / CONFIG_FILE,
            {
                "format": FORMAT,
                "input_order": list(INPUT_ORDER),
                "latent_channels": self.latent_channels,
                "init": self.init,
            },
        )
        return folder

    @classmethod
    def from_pretrained(
        cls,
        folder: str | os.PathLike[str],
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> JointDiT:
        """Load a folder written by `save_pretrained` (raises if ``joint_dit.json`` is absent)."""
        from diffusers import WanTransformer3DModel
        from safetensors.torch import load_file

        folder = Path(folder)
        cfg_path = folder / CONFIG_FILE
        if not cfg_path.is_file():
            raise FileNotFoundError(f"{folder}: not a JointDiT folder (no {CONFIG_FILE})")
        meta = json.loads(cfg_path.read_text())
        if meta.get("format") != FORMAT or tuple(meta.get("input_order", ())) != INPUT_ORDER:
            raise ValueError(f"{cfg_path}: unsupported format or input order: {meta}")
        transformer = WanTransformer3DModel.from_pretrained(folder, torch_dtype=dtype)
        prompt = load_file(str(folder / EMPTY_PROMPT_FILE))["prompt_embeds"]
        return cls(transformer, prompt, init=str(meta.get("init", "unknown"))).to(device)

    # ---------------------------------------------------------------- forward
    def forward(
        self, video_latent: torch.Tensor, noisy_latent: torch.Tensor, timestep: torch.Tensor
    ) -> torch.Tensor:
        """Velocity ``[B, C, T', h', w']`` of the point-map latent.

        ``video_latent`` (clean) and ``noisy_latent`` ``[B, C, T', h', w']``, both normalised;
        ``timestep`` ``[B]`` = ``1000 * sigma`` (the model's timestep, as diffusers' flow
        schedulers pass it).
        """
        if (
            video_latent.shape != noisy_latent.shape
            or video_latent.shape[1] != self.latent_channels
        ):
            raise ValueError(
                f"video and point-map latents must both be [B, {self.latent_channels}, T', h', w'],"
                f" got {list(video_latent.shape)} and {list(noisy_latent.shape)}"
            )
        dtype = self.transformer.dtype
        x = torch.cat([video_latent, noisy_latent], dim=1).to(dtype)
        context = self.prompt_embeds.to(x.device, dtype).expand(x.shape[0], -1, -1)
        out = self.transformer(
            hidden_states=x, timestep=timestep, encoder_hidden_states=context, return_dict=False
        )[0]
        return out.to(noisy_latent.dtype)


def joint_flow_loss(
    dit: JointDiT,
    video_latent: torch.Tensor,
    pm_latent: torch.Tensor,
    generator: torch.Generator | None = None,
    sigma: torch.Tensor | None = None,
) -> torch.Tensor:
    """Flow-matching MSE of the point-map velocity (wan-mini's convention, module docstring).

    ``video_latent`` (clean, the condition) and ``pm_latent`` (clean, the target ``z0``)
    ``[B, C, T', h', w']``, normalised. ``sigma`` ``[B]`` and ``eps`` are drawn from ``generator``
    on the CPU (``sigma`` first, as wan-mini), unless ``sigma`` is given.
    """
    batch = pm_latent.shape[0]
    if sigma is None:
        sigma = torch.sigmoid(torch.randn(batch, generator=generator))
    sigma = sigma.to(pm_latent.device, torch.float32)
    eps = torch.randn(pm_latent.shape, generator=generator).to(pm_latent)
    s = sigma.view(-1, 1, 1, 1, 1).to(pm_latent.dtype)
    noisy = (1.0 - s) * pm_latent + s * eps
    pred = dit(video_latent, noisy, sigma * 1000.0)
    return F.mse_loss(pred.float(), (eps - pm_latent).float())
