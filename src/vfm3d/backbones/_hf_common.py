"""Shared plumbing for the transformers ViT-style adapters (V-JEPA 2, VideoMAE, DINOv2).

What is shared:

- loading a local ``from_pretrained`` directory (``local_files_only=True``, never remote code),
  checking its ``model_type`` and refusing checkpoints that leave block weights uninitialised;
- building a tiny random-initialised config reproducibly from a seed (without touching the global
  RNG);
- pixel normalisation: frames ``[B, T, 3, H, W]`` in [0, 1] -> ``(x - mean) / std``, with mean/std
  read from the weights folder's preprocessor config when present (else the model's defaults);
- `HFTokenBackbone`: the `Backbone` methods common to models whose blocks map a token sequence
  ``[N, P + L, C]`` to one of the same shape (``P`` prefix tokens such as CLS/registers, then ``L``
  patch tokens in (t, y, x) raster order).

Layer ``i`` is the output of block ``i`` (0-based), before any final norm.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import torch
from torch import nn

from vfm3d.backbones.base import (
    Backbone,
    InputRules,
    Prepared,
    TokenGrid,
    UnsupportedInputError,
)
from vfm3d.utils.atomic import atomic_write_json

if TYPE_CHECKING:
    from transformers import PretrainedConfig, PreTrainedModel

#: ImageNet statistics (``IMAGENET_DEFAULT_MEAN``/``STD`` in transformers), the published default of
#: V-JEPA 2, VideoMAE and DINOv2.
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

#: Preprocessor config files searched (in order) for ``image_mean`` / ``image_std``.
PREPROCESSOR_FILES: tuple[str, ...] = ("preprocessor_config.json", "video_preprocessor_config.json")


@dataclass(frozen=True)
class ExplainedRules(InputRules):
    """`InputRules` whose refusal messages also say *why* the violated rule exists."""

    frames_note: str = ""
    size_note: str = ""

    def check(self, num_frames: int, height: int, width: int) -> None:
        try:
            super().check(num_frames, height, width)
        except UnsupportedInputError as err:
            note = self.size_note if self.frames_ok(num_frames) else self.frames_note
            if not note:
                raise
            raise UnsupportedInputError(f"{err} ({note})") from None


# --------------------------------------------------------------------------- config / loading
def as_pair(value: int | Sequence[int]) -> tuple[int, int]:
    """``16`` -> ``(16, 16)``; ``[16, 8]`` -> ``(16, 8)`` (transformers allows both in configs)."""
    if isinstance(value, Iterable):
        pair = tuple(int(v) for v in value)
        if len(pair) != 2:
            raise ValueError(f"expected an int or a pair, got {value!r}")
        return pair[0], pair[1]
    return int(value), int(value)


def check_weights_dir(path: str | os.PathLike[str]) -> Path:
    """Return ``path`` as a `Path` if it is a transformers directory, else raise FileNotFoundError."""
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"weights directory not found: {folder}")
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"{folder} has no config.json: expected a transformers `from_pretrained` directory "
            "(config.json + model.safetensors), as published on the hub"
        )
    return folder


def read_model_type(folder: Path) -> str:
    """The ``model_type`` field of ``folder/config.json``."""
    config_file = folder / "config.json"
    try:
        config = json.loads(config_file.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{config_file} is not valid JSON: {err}") from err
    model_type = config.get("model_type")
    if not isinstance(model_type, str):
        raise ValueError(f"{config_file} has no string field 'model_type'")
    return model_type


def load_hf_model(
    model_cls: type[PreTrainedModel],
    path: str | os.PathLike[str],
    *,
    model_types: Sequence[str],
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    optional_prefixes: Sequence[str] = (),
) -> PreTrainedModel:
    """Load ``model_cls`` from the local directory ``path`` (offline; no remote code).

    ``model_types``: accepted ``config.json`` ``model_type`` values. ``optional_prefixes``: weight
    names that may be missing from the checkpoint because no exposed layer uses them (final norm,
    predictor, ...); any other missing weight is an error, since transformers would silently leave
    it random.
    """
    folder = check_weights_dir(path)
    model_type = read_model_type(folder)
    if model_type not in model_types:
        raise ValueError(
            f"{folder}/config.json has model_type {model_type!r}; this adapter loads "
            f"{' or '.join(repr(t) for t in model_types)} ({model_cls.__name__})"
        )
    model, info = model_cls.from_pretrained(
        folder,
        local_files_only=True,
        trust_remote_code=False,
        dtype=dtype or torch.float32,
        output_loading_info=True,
    )
    missing = [
        k for k in info.get("missing_keys", []) if not k.startswith(tuple(optional_prefixes))
    ]
    if missing:
        shown = ", ".join(sorted(missing)[:8])
        raise ValueError(
            f"checkpoint in {folder} lacks {len(missing)} weights of {model_cls.__name__} "
            f"(e.g. {shown}); refusing to run with randomly initialised blocks"
        )
    return model.to(device).eval().requires_grad_(False)


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed torch's CPU RNG inside the block and restore the caller's RNG state afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def build_tiny_model(
    model_cls: type[PreTrainedModel],
    config: PretrainedConfig,
    *,
    seed: int,
    device: str | torch.device,
    dtype: torch.dtype | None,
) -> PreTrainedModel:
    """Random-initialise ``model_cls(config)`` reproducibly from ``seed`` (built on CPU, then moved)."""
    with seeded(seed):
        model = model_cls(config)
    return model.to(device=device, dtype=dtype or torch.float32).eval().requires_grad_(False)


def apply_overrides(defaults: dict[str, Any], overrides: dict[str, Any] | None) -> dict[str, Any]:
    """``defaults`` updated with ``overrides`` (a copy; neither argument is modified)."""
    merged = dict(defaults)
    merged.update(overrides or {})
    return merged


# --------------------------------------------------------------------------- pixel statistics
def _stat_triplet(value: Any, field_name: str, source: Path) -> tuple[float, float, float]:
    if isinstance(value, (int, float)):
        value = [value] * 3
    if not isinstance(value, list) or len(value) != 3:
        raise ValueError(
            f"{source}: field {field_name!r} must be a list of 3 numbers, got {value!r}"
        )
    try:
        triplet = tuple(float(v) for v in value)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"{source}: field {field_name!r} must hold numbers, got {value!r}"
        ) from err
    return triplet[0], triplet[1], triplet[2]


def read_pixel_stats(
    folder: str | os.PathLike[str] | None,
    default_mean: Sequence[float] = IMAGENET_MEAN,
    default_std: Sequence[float] = IMAGENET_STD,
) -> tuple[tuple[float, float, float], tuple[float, float, float], str]:
    """``(mean, std, source)`` for pixels in [0, 1].

    Read from the first of `PREPROCESSOR_FILES` in ``folder`` that has ``image_mean`` and
    ``image_std``; otherwise the defaults (``source`` = ``"default"``).
    """
    if folder is not None:
        for name in PREPROCESSOR_FILES:
            file = Path(folder) / name
            if not file.is_file():
                continue
            try:
                config = json.loads(file.read_text())
            except json.JSONDecodeError as err:
                raise ValueError(f"{file} is not valid JSON: {err}") from err
            if "image_mean" in config and "image_std" in config:
                mean = _stat_triplet(config["image_mean"], "image_mean", file)
                std = _stat_triplet(config["image_std"], "image_std", file)
                if min(std) <= 0:
                    raise ValueError(f"{file}: field 'image_std' must be positive, got {std}")
                return mean, std, name
    mean_t = _stat_triplet(list(default_mean), "default_mean", Path("<defaults>"))
    std_t = _stat_triplet(list(default_std), "default_std", Path("<defaults>"))
    return mean_t, std_t, "default"


def first_tensor(output: Any) -> torch.Tensor:
    """A block's hidden states whether the block returns a tensor or a tuple ``(hidden, ...)``."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise TypeError(f"unexpected block output type {type(output).__name__}")


# --------------------------------------------------------------------------- base adapter
@dataclass(frozen=True)
class Layout:
    """What an adapter derives from its model's config."""

    rules: InputRules
    grid: TokenGrid
    hidden_size: int
    #: Tokens before the patch tokens in every sequence (CLS, registers).
    prefix_tokens: int = 0


class HFTokenBackbone(Backbone):
    """A transformers ViT-style model behind the `Backbone` interface.

    Subclasses set ``default_name`` and ``block_path`` and implement `layout` (config -> rules,
    grid, width, prefix tokens), `_model_inputs` (normalised pixels -> model keyword arguments)
    and `run`.

    Attributes:
        model: the transformers model (kept whole, so that ``state_dict`` matches the checkpoint).
        block_path: dotted path of the block list inside ``model`` (``"encoder.layer"``); layer
            ``i`` is the output of ``model.<block_path>[i]``.
        prefix_tokens: tokens before the patch tokens in every sequence (CLS, registers).
        pixel_source: where the pixel mean/std came from (a file name or ``"default"``).
    """

    default_name: ClassVar[str] = "hf"
    block_path: ClassVar[str] = "encoder.layer"

    def __init__(
        self,
        model: PreTrainedModel,
        *,
        name: str | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        pixel_source: str = "default",
    ) -> None:
        """``mean``/``std``: per-channel pixel statistics for [0, 1] input (ImageNet if None)."""
        super().__init__()
        layout = self.layout(model.config)
        self.model = model
        self.name = name or self.default_name
        self.rules = layout.rules
        self.grid = layout.grid
        self.hidden_size = int(layout.hidden_size)
        self.prefix_tokens = int(layout.prefix_tokens)
        self.pixel_source = pixel_source
        device = next(model.parameters()).device
        defaults = (("pixel_mean", mean, IMAGENET_MEAN), ("pixel_std", std, IMAGENET_STD))
        for key, value, default in defaults:
            value = default if value is None else value
            stats = torch.tensor(value, dtype=torch.float32, device=device).view(3, 1, 1)
            self.register_buffer(key, stats, persistent=False)

    @classmethod
    def layout(cls, config: PretrainedConfig) -> Layout:
        """Rules, token grid, width and prefix tokens from the model's config."""
        raise NotImplementedError

    # ------------------------------------------------------------ description
    @property
    def blocks(self) -> nn.ModuleList:
        """The transformer blocks (``model.<block_path>``)."""
        blocks = self.model.get_submodule(self.block_path)
        assert isinstance(blocks, nn.ModuleList)
        return blocks

    @property
    def num_layers(self) -> int:
        return len(self.blocks)

    def layer_width(self, layer: int) -> int:
        if not 0 <= layer < self.num_layers:
            raise IndexError(
                f"layer {layer} out of range: valid layers are 0..{self.num_layers - 1}"
            )
        return self.hidden_size

    def layer_modules(self) -> Sequence[nn.Module]:
        return list(self.blocks)

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info["pixel_stats"] = self.pixel_source
        info["layer_meaning"] = "output of block i (0-based), before the final norm"
        return info

    # ------------------------------------------------------------ running
    def normalize(self, frames: torch.Tensor) -> torch.Tensor:
        """``[B, T, 3, H, W]`` in [0, 1] -> normalised, same shape, on the model's device/dtype."""
        frames = frames.to(device=self.pixel_mean.device, dtype=torch.float32)
        return ((frames - self.pixel_mean) / self.pixel_std).to(self.dtype)

    def check_frames(self, frames: torch.Tensor) -> tuple[int, int, int, int]:
        """Validate ``frames`` ``[B, T, 3, H, W]`` against the layout and `rules`; return B, T, H, W."""
        if frames.ndim != 5 or frames.shape[2] != 3:
            raise ValueError(f"frames must be [B, T, 3, H, W], got shape {tuple(frames.shape)}")
        batch, num_frames, _, height, width = frames.shape
        self.rules.check(num_frames, height, width)
        return batch, num_frames, height, width

    def prepare(
        self,
        frames: torch.Tensor,
        timesteps: Sequence[int] | None,
        generator: torch.Generator,
        aux: dict[str, torch.Tensor] | None = None,
    ) -> Prepared:
        """Normalise ``frames`` ``[B, T, 3, H, W]`` in [0, 1]; ``timesteps`` must be None."""
        if timesteps is not None:
            raise ValueError(f"{self.name} is not a diffusion model: pass timesteps=None")
        batch, num_frames, height, width = self.check_frames(frames)
        h, w = self.grid.spatial_shape(height, width)
        feature_frames = self.grid.num_feature_frames(num_frames)
        return Prepared(
            batch=self._model_inputs(self.normalize(frames)),
            num_clips=batch,
            timesteps=None,
            feature_shape=(feature_frames, h, w),
            info={"input_shape": (num_frames, height, width)},
        )

    def _model_inputs(self, pixels: torch.Tensor) -> dict[str, Any]:
        """Normalised ``[B, T, 3, H, W]`` -> keyword arguments for `run`."""
        raise NotImplementedError

    def layer_output_to_grid(self, layer: int, output: Any, prepared: Prepared) -> torch.Tensor:
        """Block output ``[N, P + L, C]`` -> ``[B, T', h, w, C]`` (prefix tokens dropped).

        For per-frame models ``N = B * T`` (frame-major within each clip); for video models
        ``N = B``. Patch tokens are in (t, y, x) raster order in both cases.
        """
        hidden = first_tensor(output)
        feature_frames, h, w = prepared.feature_shape
        patches = hidden[:, self.prefix_tokens :]
        expected = prepared.num_clips * feature_frames * h * w
        if patches.shape[0] * patches.shape[1] != expected:
            raise ValueError(
                f"layer {layer} of {self.name}: got {tuple(hidden.shape)} tokens, expected "
                f"{prepared.num_clips} clips x {feature_frames}x{h}x{w} patch tokens "
                f"(+{self.prefix_tokens} prefix tokens per sequence)"
            )
        return patches.reshape(prepared.num_clips, feature_frames, h, w, patches.shape[-1])

    # ------------------------------------------------------------ saving
    def save_pretrained(self, path: str | os.PathLike[str]) -> None:
        """Write the model (transformers layout, safetensors) and its pixel statistics to ``path``.

        The folder loads back with this adapter's ``from_pretrained`` (and with transformers).
        """
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(folder, safe_serialization=True)
        atomic_write_json(
            folder / PREPROCESSOR_FILES[0],
            {
                "do_normalize": True,
                "do_rescale": True,
                "rescale_factor": 1 / 255,
                "image_mean": self.pixel_mean.flatten().tolist(),
                "image_std": self.pixel_std.flatten().tolist(),
            },
        )


# --------------------------------------------------------------------------- constructors
BackboneT = TypeVar("BackboneT", bound=HFTokenBackbone)


def load_backbone(
    backbone_cls: type[BackboneT],
    model_cls: type[PreTrainedModel],
    path: str | os.PathLike[str],
    *,
    name: str | None,
    device: str | torch.device,
    dtype: torch.dtype | None,
    model_types: Sequence[str],
    optional_prefixes: Sequence[str] = (),
) -> BackboneT:
    """`load_hf_model` + the folder's pixel statistics, wrapped in ``backbone_cls``."""
    model = load_hf_model(
        model_cls,
        path,
        model_types=model_types,
        device=device,
        dtype=dtype,
        optional_prefixes=optional_prefixes,
    )
    mean, std, source = read_pixel_stats(path)
    return backbone_cls(model, name=name, mean=mean, std=std, pixel_source=source)


def tiny_backbone(
    backbone_cls: type[BackboneT],
    model_cls: type[PreTrainedModel],
    config: PretrainedConfig,
    *,
    name: str | None,
    device: str | torch.device,
    dtype: torch.dtype | None,
    seed: int,
) -> BackboneT:
    """``backbone_cls`` around a random-initialised ``model_cls(config)`` (ImageNet statistics)."""
    model = build_tiny_model(model_cls, config, seed=seed, device=device, dtype=dtype)
    return backbone_cls(model, name=name)
