"""The Open-Sora 2.0 MMDiT: release state-dict names, strict loading, tiny forward, RoPE, blocks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from vfm3d.models.opensora2 import (
    OpenSora2,
    OpenSora2Config,
    RotaryEmbedding3D,
    apply_rope,
    pack,
    position_ids,
    timestep_embedding,
    unpack,
)

TSV_NAME = "opensora-v2-state-dict.tsv"
#: The reference list: a copy beside the tests, else the project's shared reference folder.
TSV_CANDIDATES = (
    Path(__file__).parent / "data" / TSV_NAME,
    Path(__file__).resolve().parents[3] / "shared" / "reference" / TSV_NAME,
)


def reference_shapes() -> dict[str, tuple[int, ...]]:
    """Names and shapes of the released ``Open_Sora_v2.safetensors``, in its module order."""
    tsv = next((p for p in TSV_CANDIDATES if p.is_file()), None)
    assert tsv is not None, (
        f"{TSV_NAME} not found (looked in {', '.join(map(str, TSV_CANDIDATES))})"
    )
    lines = tsv.read_text().splitlines()
    assert lines[0].split("\t") == ["name", "shape", "dtype"]
    shapes: dict[str, tuple[int, ...]] = {}
    for line in lines[1:]:
        name, shape, dtype = line.split("\t")
        assert dtype == "bfloat16", name
        shapes[name] = tuple(int(s) for s in shape.split(","))
    return shapes


@pytest.fixture(scope="module")
def tiny() -> OpenSora2:
    return OpenSora2.random(OpenSora2Config.tiny(), seed=0).eval()


def inputs(
    model: OpenSora2, b: int = 2, t: int = 3, h: int = 4, w: int = 6, n_txt: int = 5, seed: int = 0
) -> dict[str, torch.Tensor]:
    """Random model inputs for a latent of (t, h, w) = packed grid (t, h/2, w/2)."""
    c = model.config
    gen = torch.Generator().manual_seed(seed)
    latent = torch.randn(b, c.latent_channels, t, h, w, generator=gen)
    img = pack(latent, c.patch_size)
    ids = position_ids(t, h // c.patch_size, w // c.patch_size)[None].repeat(b, 1, 1)
    return {
        "img": img,
        "img_ids": ids,
        "txt": torch.randn(b, n_txt, c.context_in_dim, generator=gen),
        "txt_ids": torch.zeros(b, n_txt, 3),
        "timesteps": torch.rand(b, generator=gen),
        "y_vec": torch.randn(b, c.vec_in_dim, generator=gen),
        "cond": torch.randn(b, img.shape[1], c.cond_channels, generator=gen),
    }


# ---------------------------------------------------------------------- the release
def test_release_preset_has_exactly_the_released_names_and_shapes() -> None:
    expected = reference_shapes()
    assert len(expected) == 1082
    with torch.device("meta"):
        model = OpenSora2()
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert [k for k in expected if k not in got] == []
    assert [k for k in got if k not in expected] == []
    assert {k: v for k, v in got.items() if v != expected[k]} == {}
    assert list(got) == list(expected)  # the same module order, too
    assert sum(torch.Size(s).numel() for s in expected.values()) == 11_891_390_528
    assert list(model.buffers()) == []  # RoPE tables are computed, not stored
    c = model.config
    assert (c.num_layers, c.head_dim, c.latent_channels, c.cond_channels) == (57, 128, 16, 68)


def test_a_state_dict_with_a_missing_extra_or_misshaped_key_is_refused_by_name(
    tmp_path: Path,
) -> None:
    """On the meta device, through the same header check `from_pretrained` runs."""
    from vfm3d.models._checkpoint import check_state_dict

    with torch.device("meta"):
        model = OpenSora2()
    state = {k: torch.empty(s, device="meta") for k, s in reference_shapes().items()}
    check_state_dict(model.state_dict(), state)  # the release passes
    del state["single_blocks.20.v_mlp.weight"]
    state["double_blocks.0.img_attn.qkv.weight"] = torch.empty(9216, 3072, device="meta")
    state["cond_in.weight"] = torch.empty(3072, 64, device="meta")
    with pytest.raises(ValueError) as info:
        check_state_dict(model.state_dict(), state, source="ckpt", model="Open-Sora 2.0 MMDiT")
    message = str(info.value)
    assert "single_blocks.20.v_mlp.weight" in message
    assert "double_blocks.0.img_attn.qkv.weight" in message
    assert "cond_in.weight: expected (3072, 68), got (3072, 64)" in message


# ---------------------------------------------------------------------- saving / loading
def test_save_and_from_pretrained_round_trip(tiny: OpenSora2, tmp_path: Path) -> None:
    folder = tiny.save_pretrained(tmp_path / "tiny")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    loaded = OpenSora2.from_pretrained(folder)
    assert loaded.config == tiny.config and not loaded.training
    x = inputs(tiny)
    with torch.no_grad():
        torch.testing.assert_close(loaded(**x), tiny(**x))
    half = OpenSora2.from_pretrained(folder / "model.safetensors", dtype=torch.bfloat16)
    assert half.dtype == torch.bfloat16


def test_checkpoint_with_missing_or_extra_key_names_it(tiny: OpenSora2, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    state = {k: v.clone() for k, v in tiny.state_dict().items()}
    config = json.dumps(tiny.config.to_dict())
    missing = dict(state)
    del missing["double_blocks.1.txt_mlp.2.bias"]
    extra = dict(state, **{"guidance_in.in_layer.weight": torch.zeros(32, 256)})
    for name, tensors, pattern in (
        ("missing", missing, r"1 missing: double_blocks\.1\.txt_mlp\.2\.bias"),
        ("extra", extra, r"1 unexpected: guidance_in\.in_layer\.weight"),
    ):
        folder = tmp_path / name
        folder.mkdir()
        save_file(tensors, str(folder / "model.safetensors"))
        (folder / "config.json").write_text(config)
        with pytest.raises(ValueError, match=pattern):
            OpenSora2.from_pretrained(folder)


def test_release_file_name_and_config_errors(tiny: OpenSora2, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    folder = tmp_path / "release-layout"
    folder.mkdir()
    save_file(dict(tiny.state_dict()), str(folder / "Open_Sora_v2.safetensors"))
    # no config.json: the release preset is assumed, and the tiny file does not fit it
    with pytest.raises(ValueError, match="wrong shape"):
        OpenSora2.from_pretrained(folder)
    loaded = OpenSora2.from_pretrained(folder, config=tiny.config)
    assert loaded.name_or_path == str(folder)
    with pytest.raises(FileNotFoundError, match="no weight file"):
        OpenSora2.from_pretrained(tmp_path / "release-layout" / "..")
    (tmp_path / "w.pt").write_bytes(b"")
    with pytest.raises(ValueError, match="only safetensors"):
        OpenSora2.from_pretrained(tmp_path / "w.pt")


def test_config_round_trip_and_bad_fields(tmp_path: Path) -> None:
    config = OpenSora2Config.tiny(cond_embed=False)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config.to_dict()))
    assert OpenSora2Config.from_json(path) == config
    for changes, field in (
        ({"axes_dim": (4, 6, 8)}, "axes_dim"),
        ({"hidden_size": 30}, "hidden_size"),
        ({"in_channels": 63}, "in_channels"),
        ({"rope_pairing": "spiral"}, "rope_pairing"),
    ):
        with pytest.raises(ValueError, match=field):
            OpenSora2Config.tiny(**changes)
    with pytest.warns(UserWarning, match="mystery"):
        assert OpenSora2Config.from_dict(config.to_dict() | {"mystery": 1}).extra == {"mystery": 1}


# ---------------------------------------------------------------------- forward
def test_tiny_forward_shape_and_cond(tiny: OpenSora2) -> None:
    x = inputs(tiny)
    with torch.no_grad():
        out = tiny(**x)
        no_image = tiny(**(x | {"cond": torch.zeros_like(x["cond"])}))
    assert out.shape == x["img"].shape == (2, 3 * 2 * 3, 64)
    assert torch.isfinite(out).all()
    assert not torch.allclose(out, no_image)  # cond_in reaches the output
    with pytest.raises(ValueError, match="pass cond"):
        tiny(**(x | {"cond": None}))
    bare = OpenSora2.random(OpenSora2Config.tiny(cond_embed=False)).eval()
    assert bare.cond_in is None and "cond_in.weight" not in bare.state_dict()
    with pytest.raises(ValueError, match="cond must be None"):
        bare(**x)


def test_block_outputs_reach_hooks_and_make_the_output(tiny: OpenSora2) -> None:
    x = inputs(tiny, n_txt=5)
    seen: dict[str, object] = {}
    handles = [
        tiny.double_blocks[1].register_forward_hook(lambda m, i, o: seen.setdefault("double", o)),
        tiny.single_blocks[1].register_forward_hook(lambda m, i, o: seen.setdefault("single", o)),
    ]
    try:
        with torch.no_grad():
            out = tiny(**x)
    finally:
        for handle in handles:
            handle.remove()
    img, txt = seen["double"]  # type: ignore[misc]
    n_img = x["img"].shape[1]
    assert img.shape == (2, n_img, 32) and txt.shape == (2, 5, 32)
    joint = seen["single"]
    assert joint.shape == (2, 5 + n_img, 32)  # text tokens first
    with torch.no_grad():
        vec = tiny.embed(**x)[2]
        torch.testing.assert_close(tiny.final_layer(joint[:, 5:], vec), out)
    assert tiny.blocks()[2] is tiny.single_blocks[0] and len(tiny.blocks()) == 4


def test_rope_positions_are_three_axis(tiny: OpenSora2) -> None:
    """Moving tokens with their ids permutes the output; reordering frames, rows or columns while
    the ids stay put changes it (each of the t, h, w axes is encoded)."""
    x = inputs(tiny, t=3, h=4, w=6)
    grid = (3, 2, 3)
    with torch.no_grad():
        out = tiny(**x).reshape(2, *grid, -1)

    def reorder(tensor: torch.Tensor, axis: int, order: list[int]) -> torch.Tensor:
        shaped = tensor.reshape(2, *grid, tensor.shape[-1])
        return shaped.index_select(axis + 1, torch.tensor(order)).reshape(tensor.shape)

    for axis, order in ((0, [2, 0, 1]), (1, [1, 0]), (2, [2, 1, 0])):
        tokens = {k: reorder(x[k], axis, order) for k in ("img", "cond")}
        with torch.no_grad():
            moved = tiny(**(x | tokens | {"img_ids": reorder(x["img_ids"], axis, order)}))
            kept = tiny(**(x | tokens))
        expected = out.index_select(axis + 1, torch.tensor(order)).reshape(moved.shape)
        torch.testing.assert_close(moved, expected, atol=1e-5, rtol=1e-4)
        assert (kept - expected).abs().max() > 1e-3, f"axis {axis} is not position-encoded"


def test_rope_scores_depend_on_relative_position_per_axis() -> None:
    rope = RotaryEmbedding3D((4, 6, 6), 10_000.0)
    gen = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, 1, 1, 16, generator=gen), torch.randn(1, 1, 1, 16, generator=gen)

    def score(pq: tuple[float, ...], pk: tuple[float, ...]) -> torch.Tensor:
        a = apply_rope(q, rope(torch.tensor([[pq]])))
        b = apply_rope(k, rope(torch.tensor([[pk]])))
        return (a * b).sum()

    torch.testing.assert_close(score((1, 2, 3), (4, 0, 5)), score((3, 5, 1), (6, 3, 3)))
    for axis in range(3):
        shifted = [1.0, 2.0, 3.0]
        shifted[axis] += 1
        assert not torch.allclose(score((1, 2, 3), (0, 0, 0)), score(tuple(shifted), (0, 0, 0)))
    torch.testing.assert_close(apply_rope(q, rope(torch.zeros(1, 1, 3))), q)  # text ids: identity


def test_half_and_interleaved_pairings_differ_by_a_permutation() -> None:
    """Liger's half-split RoPE on x equals Flux's interleaved RoPE on x with its dims reordered
    (2j -> j, 2j+1 -> D/2 + j): the same rotations, a different pairing of dimensions."""
    rope = RotaryEmbedding3D((4, 6, 6), 10_000.0)
    x = torch.randn(2, 3, 7, 16)
    tables = rope(torch.rand(2, 7, 3) * 10)
    interleave = torch.stack([torch.arange(8), torch.arange(8) + 8], dim=-1).reshape(-1)
    half = apply_rope(x, tables, "half")
    inter = apply_rope(x[..., interleave], tables, "interleaved")
    torch.testing.assert_close(inter, half[..., interleave])
    assert not torch.allclose(apply_rope(x, tables, "interleaved"), half)


def test_pack_order_and_round_trip() -> None:
    x = torch.arange(2 * 3 * 2 * 4 * 6, dtype=torch.float32).reshape(2, 3, 2, 4, 6)
    packed = pack(x)
    assert packed.shape == (2, 2 * 2 * 3, 12)
    # token (t=1, h=0, w=2) = pixels rows 0-1, cols 4-5 of frame 1; channels (c, ph, pw)
    token = packed[0, 1 * 6 + 0 * 3 + 2]
    torch.testing.assert_close(token[:4], x[0, 0, 1, 0:2, 4:6].reshape(-1))
    torch.testing.assert_close(unpack(packed, 2, 2, 3), x)
    ids = position_ids(2, 2, 3)
    assert ids[1 * 6 + 0 * 3 + 2].tolist() == [1.0, 0.0, 2.0]
    with pytest.raises(ValueError, match="multiple of the patch size"):
        pack(torch.zeros(1, 1, 1, 3, 4))


def test_timestep_embedding_is_cos_then_sin_of_1000t() -> None:
    emb = timestep_embedding(torch.tensor([0.0, 0.5]), 8)
    assert emb.shape == (2, 8)
    torch.testing.assert_close(emb[0], torch.tensor([1.0] * 4 + [0.0] * 4))
    torch.testing.assert_close(emb[1, 0], torch.cos(torch.tensor(500.0)))
    torch.testing.assert_close(emb[1, 4], torch.sin(torch.tensor(500.0)))
