"""V-JEPA 2 adapter: the backbone contract, loading, and the crop-size / final-norm traps."""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import pytest
import torch
from safetensors.torch import load_file, save_file

import vfm3d.backbones as backbones
from tests.backbones.contract import BackboneContract
from vfm3d.backbones import vjepa2
from vfm3d.backbones._hf_common import read_pixel_stats
from vfm3d.backbones.base import UnsupportedInputError
from vfm3d.features import extract


class TestVJEPA2(BackboneContract):
    name = "vjepa2"
    valid_input_shape = (2, 4, 16, 16)
    # T not a multiple of the tubelet (2), T below one tubelet, size != crop_size (16).
    invalid_inputs: ClassVar[list[tuple[int, int, int, int]]] = [
        (1, 3, 16, 16),
        (1, 1, 16, 16),
        (1, 4, 32, 32),
        (1, 4, 16, 20),
    ]

    def make_backbone(self):
        return backbones.load("vjepa2", tiny=True)


def frames(shape=(1, 4, 16, 16), seed: int = 0) -> torch.Tensor:
    b, t, h, w = shape
    return torch.rand(b, t, 3, h, w, generator=torch.Generator().manual_seed(seed))


def test_rules_and_grid_come_from_config() -> None:
    model = vjepa2.tiny(config_overrides={"crop_size": 24, "patch_size": 8, "tubelet_size": 3})
    assert model.rules.fixed_size == (24, 24)
    assert model.rules.frame_step == 3 and model.rules.min_frames == 3
    assert model.grid.temporal_stride == 3 and model.grid.patch_size == (8, 8)
    assert model.num_layers == 2 and model.layer_width(1) == 32


def test_frames_per_clip_does_not_limit_inference() -> None:
    """``frames_per_clip`` (4 in the tiny config) is the training length only: 8 frames work."""
    backbone = vjepa2.tiny()
    feats = extract(backbone, frames((1, 8, 16, 16)), [1])[(1, None)]
    assert feats.tokens.shape == (1, 4, 4, 4, 32)
    assert feats.frame_index.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]


def test_rotary_positions_assume_crop_size() -> None:
    """The trap behind the fixed-size rule: positions are computed from config.crop_size."""
    backbone = vjepa2.tiny()
    attention = backbone.model.encoder.layer[0].attention
    grid = 16 // 4

    def true_ids(t: int, h: int, w: int) -> list[torch.Tensor]:
        tt, yy, xx = torch.meshgrid(
            torch.arange(t), torch.arange(h), torch.arange(w), indexing="ij"
        )
        return [tt.flatten(), yy.flatten(), xx.flatten()]

    ok = attention.get_position_ids(torch.zeros(1, 2 * grid * grid, 32))
    for got, want in zip(ok, true_ids(2, grid, grid)):
        assert torch.equal(got, want)
    # A 32x32 input has an 8x8 grid, but the model still assumes 4x4: wrong (t, y, x).
    wrong = attention.get_position_ids(torch.zeros(1, 2 * 8 * 8, 32))
    assert not all(torch.equal(g, w) for g, w in zip(wrong, true_ids(2, 8, 8)))
    with pytest.raises(UnsupportedInputError, match=r"H x W = 16 x 16.*crop_size=16"):
        extract(backbone, frames((1, 2, 32, 32)), [0])


def test_tubelet_refusal_names_rule() -> None:
    with pytest.raises(UnsupportedInputError, match=r"T = 2k\+0.*tubelet_size=2"):
        extract(vjepa2.tiny(), frames((1, 5, 16, 16)), [0])


def test_layers_are_block_outputs_without_final_norm() -> None:
    """hidden_states[i + 1] == layer i; last_hidden_state == layernorm(hidden_states[-1])."""
    backbone = vjepa2.tiny()
    x = frames((2, 4, 16, 16))
    ours = extract(backbone, x, [0, 1])
    pixels = (x - torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)) / torch.tensor(
        [0.229, 0.224, 0.225]
    ).view(3, 1, 1)
    with torch.no_grad():
        out = backbone.model(
            pixel_values_videos=pixels, skip_predictor=True, output_hidden_states=True
        )
    assert len(out.hidden_states) == backbone.num_layers + 1
    for layer in (0, 1):
        expected = out.hidden_states[layer + 1].reshape(2, 2, 4, 4, 32)
        torch.testing.assert_close(ours[(layer, None)].tokens, expected, atol=1e-5, rtol=1e-5)
    last = out.hidden_states[-1]
    with torch.no_grad():
        normed = backbone.model.encoder.layernorm(last)
    torch.testing.assert_close(out.last_hidden_state, normed)
    assert not torch.allclose(out.last_hidden_state, last, atol=1e-2)


def test_from_pretrained_round_trip(tmp_path: Path) -> None:
    original = vjepa2.tiny(seed=3)
    original.save_pretrained(tmp_path)
    loaded = backbones.load("vjepa2", weights=tmp_path)
    assert loaded.fingerprint == original.fingerprint
    assert loaded.pixel_source == "preprocessor_config.json"
    x = frames()
    a, b = extract(original, x, [0, 1]), extract(loaded, x, [0, 1])
    for key in a:
        assert torch.equal(a[key].tokens, b[key].tokens)
    assert not torch.equal(
        a[(1, None)].tokens, extract(vjepa2.tiny(seed=4), x, [1])[(1, None)].tokens
    )


def test_plain_transformers_dir_and_video_preprocessor_stats(tmp_path: Path) -> None:
    """A published-layout folder: model only, stats in video_preprocessor_config.json."""
    original = vjepa2.tiny()
    original.model.save_pretrained(tmp_path)
    assert vjepa2.from_pretrained(tmp_path).pixel_source == "default"
    stats = {"image_mean": [0.5, 0.5, 0.5], "image_std": [0.25, 0.25, 0.25], "crop_size": 16}
    (tmp_path / "video_preprocessor_config.json").write_text(json.dumps(stats))
    loaded = vjepa2.from_pretrained(tmp_path)
    assert loaded.pixel_source == "video_preprocessor_config.json"
    x = frames()
    torch.testing.assert_close(loaded.normalize(x), (x - 0.5) / 0.25)


def test_missing_or_wrong_weights(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not found"):
        backbones.load("vjepa2", weights=tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match="not found"):
        vjepa2.from_pretrained(tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        vjepa2.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "videomae"}))
    with pytest.raises(ValueError, match="model_type 'videomae'"):
        vjepa2.from_pretrained(tmp_path)
    (tmp_path / "preprocessor_config.json").write_text(
        json.dumps({"image_mean": [0.5], "image_std": [1, 1, 1]})
    )
    with pytest.raises(ValueError, match="image_mean"):
        read_pixel_stats(tmp_path)


def test_checkpoint_missing_block_weights_is_refused(tmp_path: Path) -> None:
    vjepa2.tiny().model.save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    kept = {k: v for k, v in weights.items() if not k.startswith("encoder.layer.1.")}
    assert len(kept) < len(weights)
    save_file(kept, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"lacks .*encoder\.layer\.1\."):
        vjepa2.from_pretrained(tmp_path)


def test_tiny_is_seeded_and_leaves_global_rng_alone() -> None:
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = vjepa2.tiny(seed=7)
    after = torch.rand(1)
    assert torch.equal(before, after)
    assert a.fingerprint == vjepa2.tiny(seed=7).fingerprint != vjepa2.tiny(seed=8).fingerprint
