"""`extract` on a fake diffusion backbone: timesteps, noise, batching, early exit, errors."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
import torch
from torch import nn

import vfm3d.backbones as backbones
from tests.backbones.contract import BackboneContract
from vfm3d.backbones.base import Backbone, InputRules, Prepared, TokenGrid
from vfm3d.features import bare_forward, extract


class _Block(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.linear = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.tanh(self.linear(x))


class FakeDiffusion(Backbone):
    """Causal temporal stride 2 (T = 2k+1), patch 4, noise drawn once per clip batch."""

    name = "fake-diffusion"
    is_diffusion = True
    rules = InputRules(frame_step=2, frame_offset=1, spatial_multiple=4)
    grid = TokenGrid(temporal_stride=2, causal_first_frame=True, patch_size=(4, 4))

    def __init__(self, width: int = 8, depth: int = 5) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Linear(3 * 16, width)
        self.blocks = nn.ModuleList([_Block(width) for _ in range(depth)])
        self.width = width

    @property
    def num_layers(self) -> int:
        return len(self.blocks)

    def layer_width(self, layer: int) -> int:
        return self.width

    def layer_modules(self) -> Sequence[nn.Module]:
        return list(self.blocks)

    def prepare(self, frames, timesteps, generator, aux=None) -> Prepared:
        b, t, _, h, w = frames.shape
        t_feat = self.grid.num_feature_frames(t)
        # "VAE": keep frame 0, then the mean of each group of 2 frames.
        keep = [frames[:, :1]] + [
            frames[:, 1 + 2 * i : 3 + 2 * i].mean(1, keepdim=True) for i in range(t_feat - 1)
        ]
        latents = torch.cat(keep, 1)
        noise = torch.randn(latents.shape, generator=generator, device=generator.device)
        sigma = torch.tensor([ts / 1000 for ts in timesteps]).view(-1, 1, 1, 1, 1, 1)
        noisy = (1 - sigma) * latents[None] + sigma * noise[None]  # [nT, B, T', 3, H, W]
        noisy = noisy.flatten(0, 1)
        x = noisy.reshape(-1, t_feat, 3, h // 4, 4, w // 4, 4).permute(0, 1, 3, 5, 2, 4, 6)
        x = x.reshape(x.shape[0], t_feat, h // 4, w // 4, 48)
        return Prepared(
            {"x": x}, num_clips=b, timesteps=list(timesteps), feature_shape=x.shape[1:4]
        )

    def run(self, prepared: Prepared) -> Any:
        x = self.embed(prepared.batch["x"])
        for block in self.blocks:
            x = block(x)
        return x

    def layer_output_to_grid(self, layer, output, prepared) -> torch.Tensor:
        return output


class TestFakeDiffusionContract(BackboneContract):
    name = "fake-diffusion"
    valid_input_shape = (2, 5, 8, 12)
    invalid_inputs = ((1, 4, 8, 12), (1, 5, 8, 10))
    timesteps = (250, 749)

    def make_backbone(self) -> Backbone:
        return FakeDiffusion()


def _frames(shape=(1, 5, 3, 8, 8), seed: int = 0) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


def test_seed_changes_noise_and_timesteps_differ() -> None:
    model = FakeDiffusion()
    a = extract(model, _frames(), [2], timesteps=[100, 900], seed=0)
    b = extract(model, _frames(), [2], timesteps=[100, 900], seed=1)
    assert not torch.allclose(a[(2, 100)].tokens, b[(2, 100)].tokens)
    assert not torch.allclose(a[(2, 100)].tokens, a[(2, 900)].tokens)


def test_timestep_batch_one_equals_all_in_one() -> None:
    model = FakeDiffusion()
    together = extract(model, _frames(), [1, 3], timesteps=[10, 500, 990])
    apart = extract(model, _frames(), [1, 3], timesteps=[10, 500, 990], timestep_batch=1)
    assert sorted(together) == sorted(apart)
    for key in together:
        torch.testing.assert_close(together[key].tokens, apart[key].tokens)


def test_out_of_memory_halves_the_timestep_batch() -> None:
    model = FakeDiffusion()
    sizes = []
    real_run = model.run

    def run(prepared: Prepared) -> Any:
        sizes.append(len(prepared.timesteps))
        if len(prepared.timesteps) > 1:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real_run(prepared)

    model.run = run
    feats = extract(model, _frames(), [1], timesteps=[10, 500, 990])
    assert sizes == [3, 1, 2, 1, 1]
    reference = extract(FakeDiffusion(), _frames(), [1], timesteps=[10, 500, 990])
    for key, value in reference.items():
        torch.testing.assert_close(feats[key].tokens, value.tokens)
    with pytest.raises(torch.OutOfMemoryError):
        extract(model, _frames(), [1], timesteps=[10, 500], timestep_batch=2)


def test_bare_forward_matches_last_layer() -> None:
    model = FakeDiffusion()
    out = bare_forward(model, _frames(), [749], seed=3)
    feats = extract(model, _frames(), [model.num_layers - 1], [749], seed=3)
    torch.testing.assert_close(out, feats[(model.num_layers - 1, 749)].tokens)


def test_hooks_removed_when_run_fails() -> None:
    model = FakeDiffusion()

    def boom(*_: Any) -> None:
        raise RuntimeError("boom")

    handle = model.blocks[1].register_forward_hook(boom)
    with pytest.raises(RuntimeError, match="boom"):
        extract(model, _frames(), [0, 3], [500])
    handle.remove()
    assert all(len(b._forward_hooks) == 0 for b in model.blocks)


def test_layer_modules_not_run_is_reported() -> None:
    model = FakeDiffusion()
    model.layer_modules = lambda: [nn.Linear(8, 8)] * model.num_layers  # never called by run
    with pytest.raises(RuntimeError, match="never run"):
        extract(model, _frames(), [0], [500])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"timesteps": [1001]}, r"\[0, 1000\]"),
        ({"timesteps": [0.5]}, "integer"),
        ({"timesteps": [500], "timestep_batch": 0}, "timestep_batch"),
        ({"timesteps": [500], "layers": []}, "at least one layer"),
    ],
)
def test_bad_arguments(kwargs: dict, message: str) -> None:
    kwargs.setdefault("layers", [0])
    with pytest.raises(ValueError, match=message):
        extract(FakeDiffusion(), _frames(), **kwargs)


def test_frames_type_and_dtype() -> None:
    model = backbones.load("pixels")
    with pytest.raises(TypeError, match=r"torch\.Tensor"):
        extract(model, _frames().numpy(), [0])
    with pytest.raises(ValueError, match="floating point"):
        extract(model, (_frames() * 255).to(torch.uint8), [0])
