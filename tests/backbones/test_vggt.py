"""VGGT adapter: the backbone contract, layer semantics and loading from a weights folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import pytest
import torch

import vfm3d.backbones as backbones
from tests.backbones.contract import BackboneContract
from vfm3d.backbones import vggt as vggt_adapter
from vfm3d.features.extract import extract
from vfm3d.models.vggt import VGGT, VGGTConfig


class TestVGGT(BackboneContract):
    name = "vggt"
    valid_input_shape = (1, 3, 28, 42)  # not the configured 28x28: position embeddings resize
    invalid_inputs: ClassVar[list[tuple[int, int, int, int]]] = [(1, 2, 28, 30), (1, 2, 20, 28)]

    def make_backbone(self):
        return backbones.load("vggt", tiny=True)


def video(b: int = 2, t: int = 3, h: int = 28, w: int = 42, seed: int = 0) -> torch.Tensor:
    return torch.rand((b, t, 3, h, w), generator=torch.Generator().manual_seed(seed))


def test_layers_are_frame_global_concat_patch_tokens() -> None:
    backbone = vggt_adapter.tiny(seed=3)
    x = video()
    feats = extract(backbone, x, [0, 1])
    with torch.no_grad():
        layers, start = backbone.aggregator(x)
    c = backbone.config
    assert start == 1 + c.num_register_tokens
    for layer in (0, 1):
        tokens = feats[(layer, None)].tokens
        assert tokens.shape == (2, 3, 2, 3, 2 * c.embed_dim)
        expected = layers[layer][:, :, start:].reshape(2, 3, 2, 3, -1)
        torch.testing.assert_close(tokens, expected)
    # the first half is the frame block's output, the second the global block's: they differ
    last = feats[(1, None)].tokens
    assert not torch.allclose(last[..., : c.embed_dim], last[..., c.embed_dim :])


def test_frames_interact_through_global_attention() -> None:
    backbone = vggt_adapter.tiny(seed=0)
    x = video(1, 3)
    y = x.clone()
    y[:, 2] = torch.rand_like(y[:, 2])  # change only the last frame
    a = extract(backbone, x, [1])[(1, None)].tokens
    b = extract(backbone, y, [1])[(1, None)].tokens
    assert (a[:, 0] - b[:, 0]).abs().max() > 1e-4  # frame 0's tokens see frame 2


def test_loads_a_saved_vggt_folder_through_the_registry(tmp_path: Path) -> None:
    model = VGGT.random(VGGTConfig.tiny(init_values=1.0), seed=5).eval()
    folder = model.save_pretrained(tmp_path / "vggt-mini")
    backbone = backbones.load("vggt", weights=folder)
    assert isinstance(backbone, vggt_adapter.VGGTBackbone)
    assert not any(p.requires_grad for p in backbone.parameters())
    assert all(k.startswith("aggregator.") for k in backbone.state_dict())
    x = video(1, 2)
    with torch.no_grad():
        expected, start = model.aggregator(x)
    got = extract(backbone, x, [1])[(1, None)].tokens
    torch.testing.assert_close(got, expected[1][:, :, start:].reshape(got.shape))
    assert backbone.describe()["widths"] == [64]


def test_corrupt_weights_folder_is_refused(tmp_path: Path) -> None:
    model = VGGT.random(VGGTConfig.tiny(), seed=0)
    folder = model.save_pretrained(tmp_path / "w")
    wrong = VGGTConfig.tiny(embed_dim=64, num_heads=4).to_dict()
    (folder / "config.json").write_text(json.dumps(wrong))
    with pytest.raises(ValueError, match="wrong shape"):
        backbones.load("vggt", weights=folder)


def test_zoo_name_loads_a_saved_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from vfm3d.backbones import registry

    monkeypatch.setattr(registry, "zoo_root", lambda: tmp_path)
    VGGT.random(VGGTConfig.tiny(), seed=2).save_pretrained(tmp_path / "vggt-mini")
    assert "zoo/vggt-mini" in backbones.available()
    backbone = backbones.load("zoo/vggt-mini")
    assert isinstance(backbone, vggt_adapter.VGGTBackbone) and backbone.num_layers == 2
