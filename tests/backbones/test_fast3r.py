"""Fast3R adapter: the backbone contract, layer numbering, loading, the registry and a tiny sweep."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import pytest
import torch

import vfm3d.backbones as backbones
from tests.backbones.contract import BackboneContract
from vfm3d.backbones import fast3r as fast3r_adapter
from vfm3d.backbones.base import UnsupportedInputError
from vfm3d.features.extract import extract
from vfm3d.models.fast3r import Fast3R, Fast3RConfig


class TestFast3R(BackboneContract):
    name = "fast3r"
    valid_input_shape = (1, 3, 32, 48)  # not square, not the trained 512: RoPE is relative
    invalid_inputs: ClassVar[list[tuple[int, int, int, int]]] = [(1, 2, 32, 40), (1, 2, 24, 32)]

    def make_backbone(self):
        return backbones.load("fast3r", tiny=True)


def video(b: int = 2, t: int = 3, h: int = 32, w: int = 48, seed: int = 0) -> torch.Tensor:
    return torch.rand((b, t, 3, h, w), generator=torch.Generator().manual_seed(seed))


def test_layers_are_the_decoder_outputs_as_fast3r_counts_them() -> None:
    backbone = fast3r_adapter.tiny(seed=3)
    c = backbone.config
    assert backbone.num_layers == c.dec_depth + 1 == 5
    assert [backbone.layer_width(i) for i in range(5)] == [32, 48, 48, 48, 48]
    x = video()
    feats = extract(backbone, x, list(range(5)))
    with torch.no_grad():
        expected = backbone.model.decoder_layers(x)
    for layer in range(5):
        tokens = feats[(layer, None)].tokens
        assert tokens.shape == (2, 3, 2, 3, backbone.layer_width(layer))
        torch.testing.assert_close(tokens, expected[layer].reshape(tokens.shape))
    assert torch.equal(feats[(0, None)].frame_index, torch.arange(3))
    # the last layer is normalised (dec_norm), the one before it is not
    last = feats[(4, None)].tokens
    assert last.mean(-1).abs().max() < 1e-4 and (last.std(-1) - 1).abs().max() < 0.05


def test_layer_zero_runs_only_the_encoder_and_views_interact_after_it() -> None:
    backbone = fast3r_adapter.tiny(seed=0)
    calls = [0]
    handle = backbone.model.decoder.decoder_embed.register_forward_hook(
        lambda *_: calls.__setitem__(0, calls[0] + 1)
    )
    x = video(1, 3)
    try:
        extract(backbone, x, [0])
    finally:
        handle.remove()
    assert calls == [0]  # early exit: no decoder work for layer 0 alone
    y = x.clone()
    y[:, 2] = torch.rand_like(y[:, 2])  # change only the last frame
    a = extract(backbone, x, [0, 2])
    b = extract(backbone, y, [0, 2])
    torch.testing.assert_close(a[(0, None)].tokens[:, 0], b[(0, None)].tokens[:, 0])
    assert (a[(2, None)].tokens[:, 0] - b[(2, None)].tokens[:, 0]).abs().max() > 1e-4


def test_batch_neighbours_do_not_change_a_clips_features() -> None:
    backbone = fast3r_adapter.tiny(seed=1)
    x = video(2, 3)
    both = extract(backbone, x, [4])[(4, None)].tokens
    alone = extract(backbone, x[1:], [4])[(4, None)].tokens
    torch.testing.assert_close(both[1:], alone, atol=1e-5, rtol=1e-4)


def test_frame_count_rule_names_the_image_index_limit() -> None:
    backbone = fast3r_adapter.tiny()
    with pytest.raises(UnsupportedInputError, match="T <= 1000"):
        backbone.rules.check(1001, 32, 32)
    assert "H, W multiples of 16" in backbone.describe()["rules"]


def test_loads_a_saved_fast3r_folder_through_the_registry(tmp_path: Path) -> None:
    model = Fast3R.random(Fast3RConfig.tiny(), seed=5).eval()
    folder = model.save_pretrained(tmp_path / "fast3r-mini")
    backbone = backbones.load("fast3r", weights=folder)
    assert isinstance(backbone, fast3r_adapter.Fast3RBackbone)
    assert not any(p.requires_grad for p in backbone.parameters())
    assert all(k.startswith(("model.encoder.", "model.decoder.")) for k in backbone.state_dict())
    x = video(1, 2)
    with torch.no_grad():
        expected = model.decoder_layers(x, keep_layers=[4])[4]
    got = extract(backbone, x, [4])[(4, None)].tokens
    torch.testing.assert_close(got, expected.reshape(got.shape))
    assert backbone.describe()["widths"] == [32, 48]


def test_listed_by_vfm3d_backbones() -> None:
    from vfm3d.backbones.cli import describe_all, format_table

    assert "fast3r" in backbones.available()
    rows = describe_all(["fast3r"])
    assert rows[0]["family"] == "3d-expert" and rows[0]["layers"] == 5
    assert "fast3r" in format_table(rows)


TINY_SPEC = """
seed = 0

[world]
kind = "mixed"
train_clips = 2
eval_kinds = ["object"]
eval_clips = 1
frames = 6
height = 32
width = 32

[extract]
num_frames = 6

[probe]
preset = "cpu_small"
steps = 2
first_n = 6
min_gap = 1
num_frames = 3

[[backbones]]
name = "fast3r"
tiny = true
layers = [4]
"""


def test_probe_runs_on_the_tiny_config_end_to_end(tmp_path: Path) -> None:
    from vfm3d.probe.sweep import load_spec, run_sweep

    spec_file = tmp_path / "spec.toml"
    spec_file.write_text(TINY_SPEC)
    rows = run_sweep(load_spec(spec_file), tmp_path / "out", progress=False, log=lambda *_: None)
    assert len(rows) == 1
    row = rows[0]
    assert row["backbone"] == "fast3r-tiny" and row["layer"] == 4 and row["split"] == "object"
    assert row["point_err"] >= 0
