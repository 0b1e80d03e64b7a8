"""The VGGT-architecture model: VGGT-1B state-dict names, strict loading, tiny forward, blocks."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from vfm3d.models.vggt import (
    VGGT,
    Block,
    RotaryPositionEmbedding2D,
    VGGTConfig,
    check_state_dict,
)
from vfm3d.models.vggt.heads import ResidualConvUnit
from vfm3d.models.vggt.track import MultiheadAttention

TSV = Path(__file__).parent / "data" / "vggt-1b-state-dict.tsv"


def reference_shapes() -> dict[str, tuple[int, ...]]:
    """Names and shapes of the public VGGT-1B checkpoint, in its order."""
    shapes: dict[str, tuple[int, ...]] = {}
    for line in TSV.read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, shape = line.split("\t")
        shapes[name] = tuple(ast.literal_eval(shape))
    return shapes


@pytest.fixture(scope="module")
def meta_vggt_1b() -> VGGT:
    with torch.device("meta"):
        return VGGT()


@pytest.fixture(scope="module")
def tiny() -> VGGT:
    return VGGT.random(VGGTConfig.tiny(), seed=0).eval()


def frames(b: int = 1, s: int = 3, h: int = 28, w: int = 42, seed: int = 0) -> torch.Tensor:
    return torch.rand((b, s, 3, h, w), generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------- VGGT-1B structure
def test_default_config_has_exactly_the_vggt_1b_names_and_shapes(meta_vggt_1b: VGGT) -> None:
    expected = reference_shapes()
    assert len(expected) == 1797
    got = {k: tuple(v.shape) for k, v in meta_vggt_1b.state_dict().items()}
    assert [k for k in expected if k not in got] == []
    assert [k for k in got if k not in expected] == []
    assert {k: v for k, v in got.items() if v != expected[k]} == {}
    assert list(got) == list(expected)  # same order as the checkpoint, too
    total = sum(torch.Size(s).numel() for s in expected.values())
    assert abs(total / 1e6 - 1256.5) < 0.1


def test_a_checkpoint_with_the_vggt_1b_names_loads_strictly(meta_vggt_1b: VGGT) -> None:
    state = {k: torch.empty(s, device="meta") for k, s in reference_shapes().items()}
    check_state_dict(meta_vggt_1b.state_dict(), state)  # no error
    with torch.device("meta"):
        model = VGGT()
    result = model.load_state_dict(state, strict=True, assign=True)
    assert result.missing_keys == [] and result.unexpected_keys == []


def test_mismatched_state_dict_is_refused_with_the_names(meta_vggt_1b: VGGT) -> None:
    state = {k: torch.empty(s, device="meta") for k, s in reference_shapes().items()}
    del state["camera_head.embed_pose.weight"]
    state["aggregator.not_a_weight"] = torch.empty(3, device="meta")
    state["depth_head.norm.weight"] = torch.empty(7, device="meta")
    with pytest.raises(ValueError) as info:
        check_state_dict(meta_vggt_1b.state_dict(), state, source="ckpt")
    message = str(info.value)
    assert "camera_head.embed_pose.weight" in message
    assert "aggregator.not_a_weight" in message
    assert "depth_head.norm.weight: expected (2048,), got (7,)" in message


# ---------------------------------------------------------------------- config
def test_config_round_trips_through_json(tmp_path: Path) -> None:
    config = VGGTConfig.tiny(enable_track=False)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config.to_dict()))
    assert VGGTConfig.from_json(path) == config


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"embed_dim": 30}, "embed_dim"),
        ({"intermediate_layer_idx": (0, 1, 2, 5)}, "intermediate_layer_idx"),
        ({"patch_embed": "resnet"}, "patch_embed"),
        ({"img_size": 30}, "img_size"),
        ({"aa_order": ("frame",)}, "aa_order"),
    ],
)
def test_bad_config_names_the_field(changes: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        VGGTConfig.tiny(**changes)


def test_unknown_config_keys_warn() -> None:
    data = VGGTConfig.tiny().to_dict() | {"mystery": 1}
    with pytest.warns(UserWarning, match="mystery"):
        config = VGGTConfig.from_dict(data)
    assert config.extra == {"mystery": 1}


# ---------------------------------------------------------------------- forward
def test_tiny_forward_shapes_and_ranges(tiny: VGGT) -> None:
    images = frames(2, 3, 28, 42)
    queries = torch.tensor([[[5.0, 7.0], [30.0, 20.0]]]).repeat(2, 1, 1)
    with torch.no_grad():
        out = tiny(images, query_points=queries)
    assert out["pose_enc"].shape == (2, 3, 9)
    assert len(out["pose_enc_list"]) == tiny.config.camera_iterations
    assert torch.equal(out["pose_enc"], out["pose_enc_list"][-1])
    assert (out["pose_enc"][..., 7:] >= 0).all()  # relu on the fields of view
    assert out["depth"].shape == (2, 3, 28, 42, 1) and (out["depth"] > 0).all()
    assert out["depth_conf"].shape == (2, 3, 28, 42) and (out["depth_conf"] > 1).all()
    assert out["world_points"].shape == (2, 3, 28, 42, 3)
    assert out["world_points_conf"].shape == (2, 3, 28, 42)
    assert out["track"].shape == (2, 3, 2, 2)
    torch.testing.assert_close(out["track"][:, 0], queries)  # frame 0 is the query itself
    assert ((out["vis"] >= 0) & (out["vis"] <= 1)).all() and out["conf"].shape == (2, 3, 2)
    assert all(torch.isfinite(v).all() for v in out.values() if isinstance(v, torch.Tensor))


def test_no_track_outputs_without_query_points(tiny: VGGT) -> None:
    with torch.no_grad():
        out = tiny(frames()[0])  # [S, 3, H, W] is accepted as one batch
    assert "track" not in out and out["depth"].shape[:2] == (1, 3)


def test_frames_after_the_first_are_permutation_equivariant() -> None:
    """Frame 0 has its own camera/register tokens; all other frames are interchangeable."""
    tiny = VGGT.random(VGGTConfig.tiny(enable_track=False, init_values=1.0), seed=1).eval()
    with torch.no_grad():  # make the first frame's special tokens clearly different
        tiny.aggregator.camera_token[:, 0] += 1.0
        tiny.aggregator.register_token[:, 0] -= 1.0
    images = frames(1, 4)
    perm = torch.tensor([0, 3, 1, 2])
    with torch.no_grad():
        out = tiny(images)
        out_perm = tiny(images[:, perm])
        layers, _ = tiny.aggregator(images)
        layers_perm, _ = tiny.aggregator(images[:, perm])
        layers_swapped, _ = tiny.aggregator(images[:, torch.tensor([1, 0, 2, 3])])
    for key in ("pose_enc", "depth", "world_points"):
        torch.testing.assert_close(out_perm[key], out[key][:, perm], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(layers_perm[1], layers[1][:, perm], atol=1e-5, rtol=1e-4)
    # the same image in position 0 is processed differently from position 1
    assert (layers_swapped[1][:, 0] - layers[1][:, 1]).abs().max() > 0.1


def test_chunked_dense_heads_equal_one_pass(tiny: VGGT) -> None:
    images = frames(1, 3)
    with torch.no_grad():
        whole = tiny(images, frames_chunk_size=None)
        chunked = tiny(images, frames_chunk_size=1)
    for key in ("depth", "depth_conf", "world_points", "world_points_conf"):
        torch.testing.assert_close(chunked[key], whole[key], atol=1e-5, rtol=1e-5)


def test_aggregator_keeps_requested_layers_only(tiny: VGGT) -> None:
    images = frames(1, 2)
    with torch.no_grad():
        every, start = tiny.aggregator(images)
        some, _ = tiny.aggregator(images, keep_layers=[1])
    c = tiny.config
    assert sorted(every) == list(range(c.depth)) and list(some) == [1]
    assert start == 1 + c.num_register_tokens
    assert every[0].shape == (1, 2, start + 2 * 3, 2 * c.embed_dim)
    torch.testing.assert_close(some[1], every[1])


def test_heads_run_in_full_precision_under_autocast(tiny: VGGT) -> None:
    images = frames(1, 2)
    with torch.no_grad():
        full = tiny(images)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = tiny(images)
    for key in ("pose_enc", "depth", "world_points_conf"):
        assert mixed[key].dtype == torch.float32
        torch.testing.assert_close(mixed[key], full[key], atol=0.1, rtol=0.05)


def test_bad_images_are_refused(tiny: VGGT) -> None:
    with pytest.raises(ValueError, match="multiple of the patch size 14"):
        tiny(torch.rand(1, 2, 3, 28, 30))
    with pytest.raises(ValueError, match=r"\[B, S, 3, H, W\]"):
        tiny(torch.rand(1, 2, 4, 28, 28))


# ---------------------------------------------------------------------- saving / loading
def test_save_and_from_pretrained_round_trip(tiny: VGGT, tmp_path: Path) -> None:
    folder = tiny.save_pretrained(tmp_path / "vggt-tiny")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    loaded = VGGT.from_pretrained(folder)
    assert loaded.config == tiny.config and not loaded.training
    images = frames(1, 2)
    with torch.no_grad():
        torch.testing.assert_close(loaded(images)["depth"], tiny(images)["depth"])
    aggregator_only = VGGT.from_pretrained(folder, aggregator_only=True)
    assert aggregator_only.camera_head is None and aggregator_only.depth_head is None
    with torch.no_grad():
        a, _ = aggregator_only.aggregator(images)
        b, _ = tiny.aggregator(images)
    torch.testing.assert_close(a[1], b[1])


def test_torch_checkpoint_loads_with_weights_only(tiny: VGGT, tmp_path: Path) -> None:
    folder = tmp_path / "pt"
    folder.mkdir()
    torch.save(tiny.state_dict(), folder / "model.pt")
    (folder / "config.json").write_text(json.dumps(tiny.config.to_dict()))
    loaded = VGGT.from_pretrained(folder)
    for key, value in tiny.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_from_pretrained_refuses_wrong_config_and_missing_files(tiny: VGGT, tmp_path: Path) -> None:
    folder = tiny.save_pretrained(tmp_path / "w")
    with pytest.raises(ValueError, match="wrong shape"):
        VGGT.from_pretrained(folder, config=VGGTConfig.tiny(dpt_features=8))
    with pytest.raises(ValueError, match=r"missing: .*track_head"):
        VGGT.from_pretrained(folder, config=VGGTConfig.tiny(track_depth=3))
    with pytest.raises(FileNotFoundError, match="no weight file"):
        VGGT.from_pretrained(tmp_path)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ValueError, match="not a readable safetensors"):
        VGGT.from_pretrained(tmp_path / "bad")


# ---------------------------------------------------------------------- building blocks
def test_rope_depends_only_on_relative_position() -> None:
    rope = RotaryPositionEmbedding2D(100.0)
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(1, 1, 1, 16, generator=gen)
    k = torch.randn(1, 1, 1, 16, generator=gen)

    def score(pq: tuple[int, int], pk: tuple[int, int]) -> torch.Tensor:
        a = rope(q, torch.tensor([[pq]]))
        b = rope(k, torch.tensor([[pk]]))
        return (a * b).sum()

    torch.testing.assert_close(score((2, 3), (5, 1)), score((4, 6), (7, 4)))
    assert not torch.allclose(score((2, 3), (5, 1)), score((2, 3), (1, 5)))
    torch.testing.assert_close(rope(q, torch.zeros(1, 1, 2, dtype=torch.long)), q)


def test_block_with_zero_layerscale_is_identity() -> None:
    block = Block(16, 2, init_values=1e-30, qk_norm=True, rope=RotaryPositionEmbedding2D())
    x = torch.randn(2, 5, 16)
    pos = torch.randint(0, 4, (2, 5, 2))
    torch.testing.assert_close(block(x, pos=pos), x)
    assert block.attn.q_norm.weight.shape == (8,)


def test_residual_conv_unit_adds_relu_of_input_like_vggt() -> None:
    unit = ResidualConvUnit(4)
    for conv in (unit.conv1, unit.conv2):
        nn.init.zeros_(conv.weight)
        nn.init.zeros_(conv.bias)
    x = torch.randn(1, 4, 5, 5)
    torch.testing.assert_close(unit(x), torch.relu(x))


def test_multihead_attention_equals_torch_reference() -> None:
    torch.manual_seed(0)
    ours = MultiheadAttention(16, 4)
    ref = nn.MultiheadAttention(16, 4, batch_first=True)
    ref.load_state_dict(ours.state_dict())
    q, kv = torch.randn(3, 5, 16), torch.randn(3, 7, 16)
    torch.testing.assert_close(ours(q, kv, kv), ref(q, kv, kv)[0], atol=1e-5, rtol=1e-5)
