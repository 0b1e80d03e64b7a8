"""Shared machinery of the diffusers video-diffusion adapters (Wan2.1, CogVideoX, HunyuanVideo).

The diffusion-feature recipe (DESIGN.md, "Diffusion features") is the same for every family:

1. frames ``[B, T, 3, H, W]`` in [0, 1] -> ``[B, 3, T, H, W]`` in [-1, 1] (what the pipelines'
   ``VideoProcessor`` feeds the VAE);
2. VAE encode, posterior **mode** (deterministic), then the family's latent normalisation;
3. one noise draw ``[B, C, T', h', w']`` from the extraction generator, shared by every timestep
   (so a clip's features at timestep t do not depend on which other timesteps ran with it);
4. noise added with the scheduler's own ``scale_noise`` (flow matching) or ``add_noise``
   (DDPM/DDIM), batch ``n_t * B`` in timestep-major order (sample ``i * B + b`` is timestep ``i``,
   clip ``b``), with a per-sample timestep tensor;
5. the transformer runs with the empty-prompt conditioning; hooks capture block outputs.

Timestep conventions (``timestep_mode``):

- ``"index"`` (default; what the VidFM3D code does): ``t`` indexes the scheduler's own schedule after
  ``scheduler.set_timesteps(num_train_timesteps)`` (descending: index 0 is the noisiest). The model
  timestep is ``scheduler.timesteps[t]`` and noise is added with that value. The paper's "t=749"
  is this index: Wan2.1 (UniPC, flow shift 3) -> model timestep 502 (sigma 0.50); CogVideoX
  (DDIM, trailing) -> model timestep 250.
- ``"value"``: ``t`` is the model timestep value itself (0..num_train_timesteps-1, larger = noisier).
  DDPM/DDIM: ``add_noise`` at ``t`` directly. Flow matching: sigma = ``t / num_train_timesteps``
  (the relation diffusers' flow schedulers use between timesteps and sigmas); a copy of the
  scheduler is given a schedule holding exactly those sigmas (its static shift undone first) and
  timesteps, and its own ``scale_noise``/``add_noise`` is used.

Either way ``Prepared.info["model_timesteps"]`` records the timestep values the transformer saw.
"""

from __future__ import annotations

import copy
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from vfm3d.backbones.base import Backbone, InputRules, Prepared, TokenGrid, UnsupportedInputError
from vfm3d.utils.atomic import atomic_path

TimestepMode = Literal["index", "value"]
TIMESTEP_MODES: tuple[str, ...] = ("index", "value")
DEFAULT_TIMESTEP_MODE: TimestepMode = "index"

#: File, in a weights directory, holding the stored empty-prompt conditioning.
EMPTY_PROMPT_FILE = "empty_prompt_embedding.safetensors"

#: Scheduler classes a weights directory's ``scheduler/`` folder may name.
ALLOWED_SCHEDULERS: tuple[str, ...] = (
    "FlowMatchEulerDiscreteScheduler",
    "UniPCMultistepScheduler",
    "CogVideoXDDIMScheduler",
    "CogVideoXDPMScheduler",
    "DDIMScheduler",
    "DDPMScheduler",
    "DPMSolverMultistepScheduler",
)


# --------------------------------------------------------------------------- files
def require_subfolder(path: Path, sub: str) -> Path:
    """``path / sub`` as a directory, or a `FileNotFoundError` naming the missing folder."""
    folder = Path(path) / sub
    if not folder.is_dir():
        raise FileNotFoundError(
            f"{folder} not found: a diffusers weights directory needs a '{sub}/' sub-folder"
        )
    return folder


def load_scheduler(path: Path | None, default: Any) -> Any:
    """The scheduler in ``path/scheduler/`` when present, else ``default`` (the pipeline default).

    Only the diffusers classes in `ALLOWED_SCHEDULERS` are accepted (no arbitrary class lookup).
    """
    if path is None:
        return default
    config_file = Path(path) / "scheduler" / "scheduler_config.json"
    if not config_file.is_file():
        return default
    class_name = json.loads(config_file.read_text()).get("_class_name")
    if class_name not in ALLOWED_SCHEDULERS:
        raise ValueError(
            f"{config_file}: scheduler class {class_name!r} not supported; "
            f"expected one of {', '.join(ALLOWED_SCHEDULERS)}"
        )
    import diffusers

    return getattr(diffusers, class_name).from_pretrained(path, subfolder="scheduler")


def load_prompt_file(path: Path) -> dict[str, torch.Tensor]:
    """Read a stored empty-prompt conditioning file (safetensors, no pickle)."""
    from safetensors.torch import load_file

    return dict(load_file(str(path)))


def save_prompt_file(path: str | Path, tensors: Mapping[str, torch.Tensor]) -> None:
    """Write an empty-prompt conditioning file atomically (keys as the adapter documents)."""
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp))


def check_prompt_tensors(
    tensors: Mapping[str, torch.Tensor], shapes: Mapping[str, tuple[int | None, ...]], source: str
) -> None:
    """Check that ``tensors`` holds each key of ``shapes`` with that shape (None = any size)."""
    for key, shape in shapes.items():
        if key not in tensors:
            raise ValueError(f"{source}: missing tensor {key!r} (expected keys {sorted(shapes)})")
        got = tuple(tensors[key].shape)
        if len(got) != len(shape) or any(s is not None and g != s for g, s in zip(got, shape)):
            raise ValueError(f"{source}: tensor {key!r} has shape {got}, expected {shape}")


# --------------------------------------------------------------------------- noise
def _is_flow_scheduler(scheduler: Any) -> bool:
    return hasattr(scheduler, "scale_noise") or bool(
        getattr(scheduler.config, "use_flow_sigmas", False)
    )


def _flow_shift(scheduler: Any) -> float:
    config = scheduler.config
    if getattr(config, "use_dynamic_shifting", False):
        raise ValueError(
            "timestep_mode='value' is not supported for schedulers with dynamic shifting; "
            "use timestep_mode='index'"
        )
    if hasattr(config, "flow_shift") and getattr(config, "use_flow_sigmas", False):
        return float(config.flow_shift)
    return float(getattr(config, "shift", 1.0))


def resolve_timesteps(
    scheduler: Any, timesteps: Sequence[int], mode: str
) -> tuple[Any, torch.Tensor]:
    """Map requested ``timesteps`` to ``(scheduler_ready, model_timesteps [n_t])``.

    ``scheduler_ready`` is a copy of ``scheduler`` whose table holds every model timestep, so its
    own ``scale_noise``/``add_noise`` can be called with them. See the module docstring for modes.
    """
    if mode not in TIMESTEP_MODES:
        raise ValueError(f"timestep_mode must be one of {TIMESTEP_MODES}, got {mode!r}")
    if len(timesteps) == 0:
        raise ValueError("a diffusion backbone needs at least one timestep")
    n_train = int(scheduler.config.num_train_timesteps)
    for t in timesteps:
        if int(t) != t or not 0 <= int(t) < n_train:
            raise ValueError(
                f"timestep {t} out of range: expected an integer in [0, {n_train - 1}]"
            )
    sched = copy.deepcopy(scheduler)
    if mode == "index":
        sched.set_timesteps(n_train)
        table = sched.timesteps
        return sched, torch.stack([table[int(t)] for t in timesteps])
    if not _is_flow_scheduler(sched):
        sched.set_timesteps(n_train)
        return sched, torch.tensor([int(t) for t in timesteps], dtype=torch.long)
    # Flow matching, value mode: undo the static shift so the scheduler's own shifting lands on
    # sigma = t / n_train, then read the model timesteps back from its table.
    shift = _flow_shift(sched)
    sigmas = torch.tensor([int(t) / n_train for t in timesteps], dtype=torch.float64)
    unshifted = sigmas / (shift - (shift - 1.0) * sigmas)
    sched.set_timesteps(sigmas=unshifted.numpy())
    # The table's timesteps are sigma * n_train up to rounding (UniPC truncates to int): pin them to
    # the requested values so the model sees exactly t and the scheduler's lookup finds them.
    exact = torch.tensor([int(t) for t in timesteps], dtype=sched.timesteps.dtype)
    sched.timesteps = exact.to(sched.timesteps.device)
    return sched, exact.clone()


def add_noise(
    scheduler: Any, latents: torch.Tensor, noise: torch.Tensor, model_timesteps: torch.Tensor
) -> torch.Tensor:
    """Noisy latents via the scheduler's own ``scale_noise`` (flow) or ``add_noise`` (DDPM-style).

    ``latents``/``noise`` ``[N, ...]``; ``model_timesteps`` ``[N]`` (one per sample).
    """
    t = model_timesteps.to(latents.device)
    if hasattr(scheduler, "scale_noise"):
        return scheduler.scale_noise(latents, t, noise)
    if hasattr(scheduler, "add_noise"):
        return scheduler.add_noise(latents, noise, t)
    raise TypeError(f"{type(scheduler).__name__} has neither scale_noise nor add_noise")


def draw_noise(
    shape: Sequence[int], generator: torch.Generator, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """Standard normal noise from ``generator`` (drawn on the generator's device, then moved)."""
    gen_device = generator.device if generator is not None else torch.device("cpu")
    noise = torch.randn(tuple(shape), generator=generator, device=gen_device, dtype=torch.float32)
    return noise.to(device=device, dtype=dtype)


# --------------------------------------------------------------------------- backbone
class DiffusersVideoBackbone(Backbone):
    """Base of the VAE + video-DiT adapters. Subclasses supply the model-specific bits.

    Subclass hooks: `_blocks` (the block stack, in layer order), `_normalise_latents`
    (``[B, C, T', h', w']`` -> normalised as the pipeline does), `_model_inputs` (noisy latents ->
    transformer keyword arguments); they call `_set_geometry` in ``__init__``. Layer width is
    ``num_attention_heads * attention_head_dim`` of the transformer config (all three families).
    Prompt tensors are registered as buffers, so they enter the fingerprint.
    """

    is_diffusion = True

    def __init__(
        self,
        name: str,
        transformer: nn.Module,
        vae: nn.Module,
        scheduler: Any,
        prompt: Mapping[str, torch.Tensor],
        timestep_mode: str = DEFAULT_TIMESTEP_MODE,
    ) -> None:
        super().__init__()
        if timestep_mode not in TIMESTEP_MODES:
            raise ValueError(
                f"timestep_mode must be one of {TIMESTEP_MODES}, got {timestep_mode!r}"
            )
        self.name = name
        # Registered first so that `Backbone.dtype` reports the transformer's dtype.
        self.transformer = transformer
        self.vae = vae
        self.scheduler = scheduler
        self.timestep_mode = timestep_mode
        self._prompt_keys = tuple(prompt)
        for key, value in prompt.items():
            self.register_buffer(f"prompt_{key}", value.detach().clone(), persistent=True)
        self.vae_factors = (1, 1)
        self.patch = (1, 1, 1)

    def _set_geometry(
        self,
        vae_temporal: int,
        vae_spatial: int,
        patch: tuple[int, int, int],
        rules: InputRules | None = None,
    ) -> None:
        """Rules and token grid from the VAE factors and the (t, h, w) patch of the transformer.

        Default rules: ``T = (vae_temporal * p_t) k + 1``; H, W multiples of ``vae_spatial * p``.
        Causal VAEs encode frame 0 alone, hence ``causal_first_frame``.
        """
        p_t, p_h, p_w = patch
        self.vae_factors = (int(vae_temporal), int(vae_spatial))
        self.patch = (int(p_t), int(p_h), int(p_w))
        stride = vae_temporal * p_t
        self.rules = rules or InputRules(
            frame_step=stride,
            frame_offset=1,
            spatial_multiple=math.lcm(vae_spatial * p_h, vae_spatial * p_w),
        )
        self.grid = TokenGrid(
            temporal_stride=stride,
            causal_first_frame=True,
            patch_size=(vae_spatial * p_h, vae_spatial * p_w),
        )

    # ---------------------------------------------------------------- description
    def _blocks(self) -> list[nn.Module]:
        raise NotImplementedError

    @property
    def num_layers(self) -> int:
        return len(self._blocks())

    def layer_width(self, layer: int) -> int:
        cfg = self.transformer.config
        return int(cfg.num_attention_heads * cfg.attention_head_dim)

    def layer_modules(self) -> Sequence[nn.Module]:
        return self._blocks()

    def describe(self) -> dict[str, Any]:
        """`Backbone.describe` plus the timestep convention and the scheduler class."""
        info = super().describe()
        info["timestep_mode"] = self.timestep_mode
        info["scheduler"] = type(self.scheduler).__name__
        return info

    # ---------------------------------------------------------------- helpers
    def prompt_tensor(self, key: str) -> torch.Tensor:
        """A stored empty-prompt tensor (batch 1)."""
        return getattr(self, f"prompt_{key}")

    def _vae_dtype(self) -> torch.dtype:
        return next(self.vae.parameters()).dtype

    @torch.no_grad()
    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """``frames`` ``[B, T, 3, H, W]`` in [0, 1] -> normalised latents ``[B, C, T', h', w']``."""
        video = frames.permute(0, 2, 1, 3, 4).to(device=self.device, dtype=self._vae_dtype())
        posterior = self.vae.encode(video * 2.0 - 1.0).latent_dist
        return self._normalise_latents(posterior.mode())

    def _normalise_latents(self, latents: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _model_inputs(
        self, noisy: torch.Tensor, model_timesteps: torch.Tensor, info: dict[str, Any]
    ) -> dict[str, Any]:
        raise NotImplementedError

    def _expected_latent_shape(self, num_frames: int, height: int, width: int) -> tuple[int, ...]:
        """(T', h', w') of the causal VAE's latents for an input of that size."""
        vae_t, vae_s = self.vae_factors
        return ((num_frames - 1) // vae_t + 1, height // vae_s, width // vae_s)

    def _feature_shape(self, latent_shape: Sequence[int]) -> tuple[int, int, int]:
        t_, h_, w_ = (int(x) for x in latent_shape[-3:])
        p_t, p_h, p_w = self.patch
        return (t_ // p_t, h_ // p_h, w_ // p_w)

    # ---------------------------------------------------------------- Backbone API
    @torch.no_grad()
    def prepare(
        self,
        frames: torch.Tensor,
        timesteps: Sequence[int] | None,
        generator: torch.Generator,
        aux: dict[str, torch.Tensor] | None = None,
    ) -> Prepared:
        """VAE-encode, normalise, add noise at each timestep; batch ``len(timesteps) * B``.

        ``frames`` ``[B, T, 3, H, W]`` in [0, 1]. Sample ``i * B + b`` = timestep ``i``, clip ``b``.
        """
        if frames.ndim != 5 or frames.shape[2] != 3:
            raise ValueError(f"frames must be [B, T, 3, H, W], got {tuple(frames.shape)}")
        if not timesteps:
            raise ValueError(f"{self.name} is a diffusion backbone: pass timesteps (e.g. [749])")
        b, t, _, h, w = frames.shape
        self.rules.check(t, h, w)
        latents = self.encode(frames)
        expected = self._expected_latent_shape(t, h, w)
        if tuple(latents.shape[2:]) != expected:
            raise UnsupportedInputError(
                f"VAE produced latents {tuple(latents.shape[2:])} for {t}x{h}x{w}, expected "
                f"{expected}; the rule is {self.rules.describe()}"
            )
        sched, t_model = resolve_timesteps(self.scheduler, list(timesteps), self.timestep_mode)
        n_t = len(timesteps)
        noise = draw_noise(latents.shape, generator, latents.device, latents.dtype)
        t_per_sample = t_model.repeat_interleave(b)
        noisy = add_noise(
            sched, latents.repeat(n_t, 1, 1, 1, 1), noise.repeat(n_t, 1, 1, 1, 1), t_per_sample
        )
        info: dict[str, Any] = {
            "model_timesteps": [float(v) for v in t_model],
            "latent_shape": tuple(latents.shape[1:]),
            "timestep_mode": self.timestep_mode,
        }
        batch = self._model_inputs(noisy, t_per_sample.to(latents.device), info)
        return Prepared(
            batch=batch,
            num_clips=b,
            timesteps=[int(v) for v in timesteps],
            feature_shape=self._feature_shape(latents.shape[2:]),
            info=info,
        )

    @torch.no_grad()
    def run(self, prepared: Prepared) -> Any:
        """Run the transformer on ``prepared.batch`` (hooks on the blocks capture the layers)."""
        return self.transformer(**prepared.batch, return_dict=False)

    def layer_output_to_grid(self, layer: int, output: Any, prepared: Prepared) -> torch.Tensor:
        """Block output (a tensor, or a tuple whose first item is the video stream)
        ``[N, T'*h*w, C]`` in (t, h, w) order -> ``[N, T', h, w, C]``."""
        tokens = output[0] if isinstance(output, tuple) else output
        t_, h_, w_ = prepared.feature_shape
        n, length, c = tokens.shape
        if length != t_ * h_ * w_:
            raise ValueError(
                f"{self.name}: block {layer} output has {length} video tokens, "
                f"expected {t_}*{h_}*{w_}"
            )
        return tokens.reshape(n, t_, h_, w_, c)


# --------------------------------------------------------------------------- building
def empty_prompt_from_dir(
    path: Path,
    encoder_subfolders: Sequence[str],
    encode: Any,
    shapes: Mapping[str, tuple[int | None, ...]],
) -> dict[str, torch.Tensor]:
    """The empty-prompt conditioning for a weights directory.

    When every folder of ``encoder_subfolders`` exists, ``encode()`` computes it with the local text
    encoder(s); otherwise ``path/empty_prompt_embedding.safetensors`` is read. Neither present is a
    `FileNotFoundError` naming both options. The result is checked against ``shapes``.
    """
    path = Path(path)
    if all((path / sub).is_dir() for sub in encoder_subfolders):
        tensors, source = encode(), f"text encoder in {path}"
    elif (path / EMPTY_PROMPT_FILE).is_file():
        tensors, source = load_prompt_file(path / EMPTY_PROMPT_FILE), str(path / EMPTY_PROMPT_FILE)
    else:
        raise FileNotFoundError(
            f"{path}: no empty-prompt conditioning: expected the text encoder sub-folders "
            f"{', '.join(s + '/' for s in encoder_subfolders)} or a stored {EMPTY_PROMPT_FILE} "
            f"(keys {sorted(shapes)})"
        )
    tensors = {k: v.detach().to("cpu") for k, v in tensors.items() if k in shapes}
    check_prompt_tensors(tensors, shapes, source)
    return tensors


def seeded_build(seed: int, build: Any) -> Any:
    """Call ``build()`` with torch's RNG seeded by ``seed``, leaving the global RNG untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def load_models(
    path: Path,
    transformer_cls: Any,
    vae_cls: Any,
    dtype: torch.dtype | None,
    vae_dtype: torch.dtype,
) -> tuple[nn.Module, nn.Module]:
    """``transformer/`` (in ``dtype``) and ``vae/`` (in ``vae_dtype``) of a diffusers folder."""
    transformer = transformer_cls.from_pretrained(
        str(require_subfolder(path, "transformer")), torch_dtype=dtype
    )
    vae = vae_cls.from_pretrained(str(require_subfolder(path, "vae")), torch_dtype=vae_dtype)
    return transformer, vae


def encode_prompt_with_pipeline(
    pipeline_cls: Any,
    path: str | os.PathLike[str],
    text_parts: Mapping[str, Any],
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    **encode_kwargs: Any,
) -> tuple[torch.Tensor, ...]:
    """Run ``pipeline_cls.encode_prompt(prompt="")`` with the local text encoders of ``path``.

    ``text_parts`` maps pipeline component names (= sub-folders) to the class loading them, e.g.
    ``{"tokenizer": AutoTokenizer, "text_encoder": UMT5EncoderModel}``; every other component of
    the pipeline is None. Returns the pipeline's outputs moved to the CPU (float32 if floating).
    """
    import inspect

    components: dict[str, Any] = {}
    for component, loader in text_parts.items():
        folder = str(require_subfolder(Path(path), component))
        if "tokenizer" in component:
            components[component] = loader.from_pretrained(folder)
        else:
            model = loader.from_pretrained(folder, torch_dtype=dtype or torch.float32)
            components[component] = model.to(device).eval()
    params = inspect.signature(pipeline_cls.__init__).parameters
    for key, param in params.items():
        if key != "self" and key not in components and param.default is inspect.Parameter.empty:
            components[key] = None
    pipe = pipeline_cls(**components)
    with torch.no_grad():
        outputs = pipe.encode_prompt(prompt="", device=torch.device(device), **encode_kwargs)
    return tuple(
        o.detach().to("cpu", torch.float32 if o.is_floating_point() else o.dtype)
        if isinstance(o, torch.Tensor)
        else o
        for o in outputs
    )


def cast_like_from_pretrained(model: nn.Module, dtype: torch.dtype) -> None:
    """Cast ``model`` to ``dtype`` but keep its ``_keep_in_fp32_modules`` in float32 for half
    dtypes, as diffusers' ``from_pretrained(torch_dtype=...)`` does."""
    nn.Module.to(model, dtype)
    keep = getattr(model, "_keep_in_fp32_modules", None) or []
    if dtype in (torch.float16, torch.bfloat16) and keep:
        for name, module in model.named_modules():
            if any(k in name.split(".") for k in keep):
                nn.Module.to(module, torch.float32)


def finish(
    backbone: DiffusersVideoBackbone,
    device: str | torch.device,
    dtype: torch.dtype | None,
    vae_dtype: torch.dtype | None = torch.float32,
    cast_transformer: bool = True,
) -> DiffusersVideoBackbone:
    """Move to ``device``; transformer and prompt buffers in ``dtype``, VAE in ``vae_dtype``.

    ``cast_transformer=False`` when ``from_pretrained(torch_dtype=...)`` already chose the dtypes
    (it keeps the model's ``_keep_in_fp32_modules`` in float32, a blanket cast would not).
    """
    backbone.to(device)
    if dtype is not None:
        if cast_transformer and backbone.transformer.dtype != dtype:
            cast_like_from_pretrained(backbone.transformer, dtype)
        for key in backbone._prompt_keys:
            buf = backbone.prompt_tensor(key)
            if buf.is_floating_point():
                setattr(backbone, f"prompt_{key}", buf.to(dtype))
    if vae_dtype is not None and backbone._vae_dtype() != vae_dtype:
        backbone.vae.to(vae_dtype)
    return backbone.eval().requires_grad_(False)


def build_random_backbone(
    backbone_cls: Any,
    transformer: Any,
    vae: Any,
    prompt: Any,
    scheduler: Any,
    name: str,
    device: str | torch.device,
    dtype: torch.dtype | None,
    seed: int,
    **backbone_kwargs: Any,
) -> DiffusersVideoBackbone:
    """Random-initialised ``backbone_cls`` with RNG seeded by ``seed``.

    ``transformer``/``vae``/``scheduler`` are zero-argument builders; ``prompt(transformer)``
    returns the (zero) empty-prompt tensors passed as keyword arguments to ``backbone_cls``.
    """

    def build() -> DiffusersVideoBackbone:
        model = transformer()
        return backbone_cls(name, model, vae(), scheduler(), **prompt(model), **backbone_kwargs)

    return finish(seeded_build(seed, build), device, dtype)
