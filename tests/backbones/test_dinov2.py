"""DINOv2 adapter (per frame; with and without registers): contract, loading, token handling."""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import pytest
import torch

import vfm3d.backbones as backbones
from tests.backbones.contract import BackboneContract
from vfm3d.backbones import dinov2
from vfm3d.backbones._hf_common import first_tensor
from vfm3d.features import extract


class TestDinov2(BackboneContract):
    name = "dinov2"
    # Non-square, not the configured 16x16: position embeddings are interpolated.
    valid_input_shape = (2, 3, 16, 20)
    invalid_inputs: ClassVar[list[tuple[int, int, int, int]]] = [(1, 2, 15, 16), (1, 2, 16, 18)]

    def make_backbone(self):
        return backbones.load("dinov2", tiny=True)


class TestDinov2Registers(BackboneContract):
    name = "dinov2"
    valid_input_shape = (1, 2, 12, 16)
    invalid_inputs: ClassVar[list[tuple[int, int, int, int]]] = [(1, 1, 12, 14)]

    def make_backbone(self):
        return dinov2.tiny(num_register_tokens=3)


def video(shape=(2, 3, 16, 20), seed: int = 0) -> torch.Tensor:
    b, t, h, w = shape
    return torch.rand(b, t, 3, h, w, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("registers", [0, 2])
def test_layers_are_patch_tokens_of_each_frame(registers: int) -> None:
    """Layer i of frame (b, t) == hidden_states[i + 1] of that image, CLS/registers dropped."""
    backbone = dinov2.tiny(num_register_tokens=registers)
    assert backbone.prefix_tokens == 1 + registers
    x = video()
    ours = extract(backbone, x, [0, 1])
    pixels = backbone.normalize(x)
    for b, t in [(0, 0), (1, 2)]:
        with torch.no_grad():
            out = backbone.model(pixel_values=pixels[b, t][None], output_hidden_states=True)
        for layer in (0, 1):
            expected = out.hidden_states[layer + 1][0, 1 + registers :].reshape(4, 5, 32)
            torch.testing.assert_close(
                ours[(layer, None)].tokens[b, t], expected, atol=1e-5, rtol=1e-5
            )


def test_frames_are_independent_and_any_count_works() -> None:
    backbone = dinov2.tiny()
    x = video((1, 5, 16, 16))
    full = extract(backbone, x, [1])[(1, None)]
    assert full.frame_index.tolist() == [0, 1, 2, 3, 4]
    single = extract(backbone, x[:, 3:4], [1])[(1, None)]
    torch.testing.assert_close(full.tokens[:, 3:4], single.tokens, atol=1e-5, rtol=1e-5)


def test_patch_rule_explained() -> None:
    with pytest.raises(backbones.UnsupportedInputError, match=r"multiples of 4.*patch_size"):
        extract(dinov2.tiny(), video((1, 1, 16, 18)), [0])


@pytest.mark.parametrize("registers", [0, 2])
def test_from_pretrained_round_trip(tmp_path: Path, registers: int) -> None:
    original = dinov2.tiny(seed=2, num_register_tokens=registers)
    original.save_pretrained(tmp_path)
    loaded = backbones.load("dinov2", weights=tmp_path)
    assert type(loaded.model) is type(original.model)
    assert loaded.num_register_tokens == registers
    assert loaded.fingerprint == original.fingerprint
    x = video()
    a, b = extract(original, x, [0, 1]), extract(loaded, x, [0, 1])
    for key in a:
        assert torch.equal(a[key].tokens, b[key].tokens)


def test_preprocessor_stats_are_used(tmp_path: Path) -> None:
    dinov2.tiny().model.save_pretrained(tmp_path)
    stats = {"image_mean": [0.1, 0.2, 0.3], "image_std": [0.5, 0.5, 0.5]}
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(stats))
    loaded = dinov2.from_pretrained(tmp_path)
    x = video((1, 1, 8, 8))
    expected = (x - torch.tensor([0.1, 0.2, 0.3]).view(3, 1, 1)) / 0.5
    torch.testing.assert_close(loaded.normalize(x), expected)
    (tmp_path / "preprocessor_config.json").write_text(
        json.dumps({**stats, "image_std": [1, 0, 1]})
    )
    with pytest.raises(ValueError, match=r"image_std.*positive"):
        dinov2.from_pretrained(tmp_path)


def test_missing_or_wrong_weights(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not found"):
        dinov2.from_pretrained(tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        dinov2.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "vjepa2"}))
    with pytest.raises(ValueError, match="not a DINOv2 model"):
        dinov2.from_pretrained(tmp_path)


def test_block_output_tensor_or_tuple() -> None:
    hidden = torch.zeros(2, 3)
    assert first_tensor(hidden) is hidden
    assert first_tensor((hidden, None)) is hidden
    with pytest.raises(TypeError, match="block output"):
        first_tensor({"hidden": hidden})
