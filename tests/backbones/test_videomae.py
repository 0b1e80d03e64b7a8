"""VideoMAE adapter: the backbone contract, loading (incl. pre-training checkpoints), fixed size."""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import pytest
import torch

import vfm3d.backbones as backbones
from tests.backbones.contract import BackboneContract
from vfm3d.backbones import videomae
from vfm3d.backbones.base import UnsupportedInputError
from vfm3d.features import extract


class TestVideoMAE(BackboneContract):
    name = "videomae"
    valid_input_shape = (2, 4, 16, 16)
    # Only exactly num_frames=4 at image_size=16x16 is accepted.
    invalid_inputs: ClassVar[list[tuple[int, int, int, int]]] = [
        (1, 2, 16, 16),
        (1, 6, 16, 16),
        (1, 4, 32, 32),
        (1, 4, 16, 20),
    ]

    def make_backbone(self):
        return backbones.load("videomae", tiny=True)


def clip(t: int = 4, size: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.rand(1, t, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_rules_and_grid_come_from_config() -> None:
    backbone = videomae.tiny(
        config_overrides={"num_frames": 6, "tubelet_size": 3, "image_size": 24}
    )
    assert backbone.rules.fixed_frames == 6 and backbone.rules.fixed_size == (24, 24)
    assert backbone.grid.temporal_stride == 3 and backbone.grid.patch_size == (4, 4)
    feats = extract(backbone, clip(6, 24), [0])[(0, None)]
    assert feats.tokens.shape == (1, 2, 6, 6, 32)
    assert feats.frame_index.tolist() == [0, 0, 0, 1, 1, 1]
    with pytest.raises(ValueError, match="not a multiple of tubelet_size"):
        videomae.tiny(config_overrides={"num_frames": 5})


def test_refusals_explain_the_fixed_position_table() -> None:
    backbone = videomae.tiny()
    with pytest.raises(UnsupportedInputError, match=r"T = 4.*num_frames=4"):
        extract(backbone, clip(t=8), [0])
    with pytest.raises(UnsupportedInputError, match=r"H x W = 16 x 16.*image_size=16x16"):
        extract(backbone, clip(size=32), [0])


@pytest.mark.parametrize("mean_pooling", [True, False])
def test_layers_match_unmasked_hidden_states(mean_pooling: bool) -> None:
    """Layer i == hidden_states[i + 1] of an unmasked forward on ImageNet-normalised pixels."""
    backbone = videomae.tiny(config_overrides={"use_mean_pooling": mean_pooling})
    x = clip()
    ours = extract(backbone, x, [0, 1])
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    with torch.no_grad():
        out = backbone.model(pixel_values=(x - mean) / std, output_hidden_states=True)
    for layer in (0, 1):
        expected = out.hidden_states[layer + 1].reshape(1, 2, 4, 4, 32)
        torch.testing.assert_close(ours[(layer, None)].tokens, expected, atol=1e-5, rtol=1e-5)
    # The model's final layernorm (use_mean_pooling=False) is not part of any layer.
    same = torch.allclose(out.last_hidden_state, out.hidden_states[-1])
    assert same == mean_pooling


def test_from_pretrained_round_trip(tmp_path: Path) -> None:
    original = videomae.tiny(seed=5)
    original.save_pretrained(tmp_path)
    loaded = backbones.load("videomae", weights=tmp_path)
    assert loaded.fingerprint == original.fingerprint
    x = clip()
    a, b = extract(original, x, [0, 1]), extract(loaded, x, [0, 1])
    for key in a:
        assert torch.equal(a[key].tokens, b[key].tokens)


def test_pretraining_checkpoint_loads_encoder(tmp_path: Path) -> None:
    """Published VideoMAE weights (e.g. MCG-NJU/videomae-base) are VideoMAEForPreTraining."""
    from transformers import VideoMAEConfig, VideoMAEForPreTraining

    config = VideoMAEConfig(**videomae.TINY_CONFIG, use_mean_pooling=False)
    torch.manual_seed(0)
    pretraining = VideoMAEForPreTraining(config).eval()
    pretraining.save_pretrained(tmp_path)
    loaded = videomae.from_pretrained(tmp_path)
    x = clip()
    with torch.no_grad():
        out = pretraining.videomae(pixel_values=loaded.normalize(x), output_hidden_states=True)
    torch.testing.assert_close(
        extract(loaded, x, [1])[(1, None)].tokens, out.hidden_states[2].reshape(1, 2, 4, 4, 32)
    )


def test_missing_or_wrong_weights(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not found"):
        videomae.from_pretrained(tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        backbones.load("videomae", weights=tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "dinov2"}))
    with pytest.raises(ValueError, match="model_type 'dinov2'"):
        videomae.from_pretrained(tmp_path)


def test_bfloat16_tiny_runs() -> None:
    backbone = videomae.tiny(dtype=torch.bfloat16)
    feats = extract(backbone, clip(), [1])[(1, None)]
    assert feats.tokens.dtype == torch.bfloat16
    reference = extract(videomae.tiny(), clip(), [1])[(1, None)].tokens
    torch.testing.assert_close(feats.tokens.float(), reference, atol=0.1, rtol=0.1)
