"""The Fast3R model: release state-dict names (tied aliases), strict loading, tiny forward."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from vfm3d.models._checkpoint import safetensors_shapes, tied_names
from vfm3d.models.fast3r import Fast3R, Fast3RConfig
from vfm3d.models.fast3r.heads import ResidualConvUnit, reg_dense_conf, reg_dense_depth
from vfm3d.models.fast3r.layers import image_index_table

TSV = Path(__file__).parent / "data" / "fast3r-vitl-512-state-dict.tsv"
ALIASES = {
    f"{head}.dpt.scratch.layer_rn.{k}.weight": f"{head}.dpt.scratch.layer{k + 1}_rn.weight"
    for head in ("downstream_head", "downstream_head_local")
    for k in range(4)
}


def reference_shapes() -> dict[str, tuple[int, ...]]:
    """Names and shapes of the public release (header ``name shape dtype``), in its order."""
    shapes: dict[str, tuple[int, ...]] = {}
    for line in TSV.read_text().splitlines()[1:]:
        name, shape, _ = line.split("\t")
        shapes[name] = tuple(int(s) for s in shape.split(","))
    return shapes


@pytest.fixture(scope="module")
def meta_release() -> Fast3R:
    with torch.device("meta"):
        return Fast3R()


@pytest.fixture(scope="module")
def tiny() -> Fast3R:
    return Fast3R.random(Fast3RConfig.tiny(), seed=0).eval()


def frames(b: int = 1, t: int = 3, h: int = 32, w: int = 48, seed: int = 0) -> torch.Tensor:
    return torch.rand((b, t, 3, h, w), generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------- release structure
def test_release_preset_has_exactly_the_reference_names_and_shapes(meta_release: Fast3R) -> None:
    expected = reference_shapes()
    assert len(expected) == 720
    got = {k: tuple(v.shape) for k, v in meta_release.state_dict().items()}
    assert [k for k in expected if k not in got] == []
    assert [k for k in got if k not in expected] == []
    assert {k: v for k, v in got.items() if v != expected[k]} == {}
    assert list(got) == list(expected)  # same order too
    unique = sum(p.numel() for p in meta_release.parameters())  # parameters() dedups ties
    assert unique == 647_551_368
    assert len(set(map(id, meta_release.state_dict(keep_vars=True).values()))) == 712


def test_the_eight_aliases_are_tied(meta_release: Fast3R) -> None:
    assert tied_names(meta_release) == ALIASES
    state = meta_release.state_dict(keep_vars=True)
    for alias, name in ALIASES.items():
        assert state[alias] is state[name]


def test_image_index_buffer_is_recomputed_not_stored(meta_release: Fast3R) -> None:
    buffer = meta_release.decoder.image_idx_emb
    assert tuple(buffer.shape) == (1000, 1024)
    assert "decoder.image_idx_emb" not in meta_release.state_dict()
    # the MAE 1-D sin-cos formula (base 10000), computed independently in numpy
    dim, pos = 16, np.arange(7, dtype=float)
    omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=float) / (dim / 2.0))
    angles = np.einsum("m,d->md", pos, omega)
    expected = np.concatenate([np.sin(angles), np.cos(angles)], axis=1)
    np.testing.assert_allclose(image_index_table(7, dim).numpy(), expected, atol=1e-7)


def test_release_config_facts() -> None:
    c = Fast3RConfig()
    assert c.hooks == (0, 12, 18, 24) and c.num_layers == 25
    assert (c.patch_size, c.img_size, c.rope_freq) == (16, 512, 100.0)
    assert c.layer_width(0) == c.layer_width(24) == 1024
    with torch.device("meta"):
        model = Fast3R(c)
    assert model.decoder.dec_blocks[0].norm1.eps == 1e-5
    assert model.encoder.enc_blocks[0].norm1.eps == 1e-6
    assert model.decoder.dec_norm.eps == model.encoder.enc_norm.eps == 1e-6
    assert model.decoder.dec_blocks[0].attn.rope is None
    assert model.encoder.enc_blocks[0].attn.rope is model.encoder.rope


def test_reference_config_json_maps_onto_the_release_preset() -> None:
    """The keyword arguments of the public class, as its hub ``config.json`` stores them."""
    hub = {
        "encoder_args": {
            "attn_implementation": "flash_attention",
            "depth": 24,
            "embed_dim": 1024,
            "encoder_type": "croco",
            "img_size": 512,
            "mlp_ratio": 4,
            "num_heads": 16,
            "patch_embed_cls": "PatchEmbedDust3R",
            "patch_size": 16,
            "pos_embed": "RoPE100",
        },
        "decoder_args": {
            "attn_bias_for_inference_enabled": False,
            "attn_drop": 0.0,
            "attn_implementation": "flash_attention",
            "decoder_type": "fast3r",
            "depth": 24,
            "drop": 0.0,
            "embed_dim": 1024,
            "enc_embed_dim": 1024,
            "mlp_ratio": 4.0,
            "num_heads": 16,
            "qkv_bias": True,
            "random_image_idx_embedding": True,
        },
        "head_args": {
            "conf_mode": ["exp", 1, math.inf],
            "depth_mode": ["exp", -math.inf, math.inf],
            "head_type": "dpt",
            "landscape_only": False,
            "output_mode": "pts3d",
            "patch_size": 16,
            "with_local_head": True,
        },
        "freeze": "none",
    }
    assert Fast3RConfig.from_dict(json.loads(json.dumps(hub))) == Fast3RConfig()
    bad = json.loads(json.dumps(hub))
    bad["decoder_args"]["decoder_type"] = "llama"
    with pytest.raises(ValueError, match="decoder_type"):
        Fast3RConfig.from_dict(bad)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"enc_embed_dim": 30}, "enc_embed_dim"),
        ({"dpt_hooks": (0, 1, 2, 9)}, "dpt_hooks"),
        ({"patch_size": 12, "img_size": 48}, "patch_size"),
        ({"depth_mode": "cube"}, "depth_mode"),
    ],
)
def test_bad_config_names_the_field(changes: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        Fast3RConfig.tiny(**changes)


def test_config_round_trips_and_unknown_keys_warn(tmp_path: Path) -> None:
    config = Fast3RConfig.tiny(enable_local_head=False, conf_vmax=5.0)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config.to_dict()))
    assert Fast3RConfig.from_json(path) == config
    with pytest.warns(UserWarning, match="mystery"):
        assert Fast3RConfig.from_dict(config.to_dict() | {"mystery": 1}).extra == {"mystery": 1}


# ---------------------------------------------------------------------- forward
@pytest.mark.parametrize("views", [1, 2, 4])
def test_tiny_forward_shapes(tiny: Fast3R, views: int) -> None:
    with torch.no_grad():
        out = tiny(frames(2, views), return_layers=True)
    assert out["pts3d_in_other_view"].shape == (2, views, 32, 48, 3)
    assert out["pts3d_local"].shape == (2, views, 32, 48, 3)
    assert out["conf"].shape == out["conf_local"].shape == (2, views, 32, 48)
    assert (out["conf"] >= 1).all() and (out["conf_local"] >= 1).all()
    layers = out["decoder_layers"]
    c = tiny.config
    assert len(layers) == c.dec_depth + 1 == 5
    assert layers[0].shape == (2, views, 6, c.enc_embed_dim)
    assert all(x.shape == (2, views, 6, c.dec_embed_dim) for x in layers[1:])
    assert all(torch.isfinite(v).all() for v in out.values() if isinstance(v, torch.Tensor))


def test_decoder_numbering_encoder_blocks_and_final_norm(tiny: Fast3R) -> None:
    x = frames(1, 2)
    seen: dict[str, torch.Tensor] = {}
    handles = [
        tiny.decoder.dec_blocks[-1].register_forward_hook(
            lambda m, i, o: seen.__setitem__("last_block", o)
        ),
        tiny.decoder.dec_blocks[0].register_forward_hook(
            lambda m, i, o: seen.__setitem__("first_block", o)
        ),
    ]
    try:
        with torch.no_grad():
            layers = tiny.decoder_layers(x)
            tokens, grid = tiny.encode(x)
    finally:
        for h in handles:
            h.remove()
    assert grid == (2, 3) and sorted(layers) == list(range(5))
    torch.testing.assert_close(layers[0], tokens)  # 0 = the encoder output (before embed)
    torch.testing.assert_close(layers[1].reshape(1, 12, -1), seen["first_block"])
    final = tiny.decoder.dec_norm(seen["last_block"])
    torch.testing.assert_close(layers[4].reshape(1, 12, -1), final)  # last = after dec_norm
    assert len(tiny.layer_modules()) == 5


def test_max_layer_stops_early(tiny: Fast3R) -> None:
    calls = [0] * tiny.config.dec_depth
    handles = [
        b.register_forward_hook(lambda *_, i=i: calls.__setitem__(i, calls[i] + 1))
        for i, b in enumerate(tiny.decoder.dec_blocks)
    ]
    try:
        with torch.no_grad():
            only0 = tiny.decoder_layers(frames(1, 2), keep_layers=[0])
            assert calls == [0, 0, 0, 0] and list(only0) == [0]  # encoder only
            tiny.decoder_layers(frames(1, 2), keep_layers=[2])
            assert calls == [1, 1, 0, 0]
    finally:
        for h in handles:
            h.remove()
    with pytest.raises(ValueError, match=r"out of range 0\.\.4"):
        tiny.decoder_layers(frames(1, 2), keep_layers=[5])


def test_image_indices_like_the_reference_but_fixed_at_inference() -> None:
    model = Fast3R.random(Fast3RConfig.tiny(enable_head=False, enable_local_head=False))
    model.eval()
    ids = model.image_indices(3, 5)
    assert ids.shape == (3, 5) and (ids[:, 0] == 0).all()
    assert (ids == ids[0]).all()  # the same for every sample of a batch
    assert len(set(ids[0].tolist())) == 5 and int(ids.max()) <= 999
    assert torch.equal(model.image_indices(1, 3)[0], ids[0, :3])  # prefix-stable
    assert torch.equal(model.image_indices(3, 5), ids)  # deterministic
    other = Fast3R(model.config.replace(image_index_seed=1)).eval()
    assert not torch.equal(other.image_indices(1, 5), ids[:1])
    model.train()
    torch.manual_seed(0)
    drawn = model.image_indices(4, 5)
    assert (drawn[:, 0] == 0).all() and not (drawn == drawn[0]).all()  # random per sample
    seq = Fast3R(model.config.replace(random_image_idx_embedding=False))
    assert seq.image_indices(2, 4).tolist() == [[0, 1, 2, 3]] * 2
    with pytest.raises(ValueError, match="1000 entries"):
        model.eval().image_indices(1, 1001)


def test_views_are_fused_and_equivariant_under_permutation_with_their_indices() -> None:
    model = Fast3R.random(Fast3RConfig.tiny(enable_local_head=False), seed=1).eval()
    x = frames(1, 4)
    ids = torch.tensor([0, 17, 401, 9])
    perm = torch.tensor([2, 0, 3, 1])
    with torch.no_grad():
        out = model(x, image_ids=ids)
        out_perm = model(x[:, perm], image_ids=ids[perm])
        changed = x.clone()
        changed[:, 3] = torch.rand_like(changed[:, 3])
        out_changed = model(changed, image_ids=ids)
    for key in ("pts3d_in_other_view", "conf"):
        torch.testing.assert_close(out_perm[key], out[key][:, perm], atol=1e-5, rtol=1e-4)
    # view 0's prediction depends on view 3 (one decoder over all views)
    assert (
        out_changed["pts3d_in_other_view"][:, 0] - out["pts3d_in_other_view"][:, 0]
    ).abs().max() > 1e-5


def test_inference_attention_scale_only_in_eval_mode() -> None:
    cfg = Fast3RConfig.tiny(enable_head=False, enable_local_head=False)
    x, ids = frames(1, 2), torch.tensor([0, 1])
    for bias, differs in ((False, False), (True, True)):
        model = Fast3R.random(cfg.replace(attn_bias_for_inference=bias), seed=2)
        with torch.no_grad():
            train = model.train().decoder_layers(x, image_ids=ids)[4]
            infer = model.eval().decoder_layers(x, image_ids=ids)[4]
        assert (not torch.allclose(train, infer, atol=1e-6)) == differs
    scale = model.decoder.dec_blocks[0].attn.inference_scale
    assert scale == pytest.approx(24**-0.5 * math.sqrt(math.log(137) / math.log(20)))


def test_odd_token_grid_and_portrait_frames(tiny: Fast3R) -> None:
    with torch.no_grad():
        odd = tiny(frames(1, 2, 48, 80))  # 3 x 5 tokens: the coarsest DPT stage is cropped
        portrait = tiny(frames(1, 2, 48, 32))
    assert odd["pts3d_local"].shape == (1, 2, 48, 80, 3)
    assert portrait["conf"].shape == (1, 2, 48, 32)


def test_bad_images_are_refused(tiny: Fast3R) -> None:
    with pytest.raises(ValueError, match="multiple of the patch size 16"):
        tiny(torch.rand(1, 2, 3, 32, 40))
    with pytest.raises(ValueError, match=r"\[B, T, 3, H, W\]"):
        tiny(torch.rand(1, 2, 4, 32, 32))
    with pytest.raises(ValueError, match="image_ids"):
        tiny(frames(1, 2), image_ids=torch.tensor([0, 1000]))


def test_head_parts_follow_dust3r() -> None:
    unit = ResidualConvUnit(4)
    for conv in (unit.conv1, unit.conv2):
        torch.nn.init.zeros_(conv.weight)
        torch.nn.init.zeros_(conv.bias)
    x = torch.randn(1, 4, 5, 5)
    torch.testing.assert_close(unit(x), x)  # skip adds x itself (non-inplace ReLU)
    xyz = torch.tensor([[3.0, 0.0, 4.0], [0.0, 0.0, 0.0]])
    torch.testing.assert_close(
        reg_dense_depth(xyz, "exp"),
        torch.tensor([[0.6, 0.0, 0.8], [0, 0, 0]]) * torch.expm1(torch.tensor([[5.0], [0.0]])),
    )
    torch.testing.assert_close(reg_dense_conf(torch.zeros(2)), torch.full((2,), 2.0))


def test_chunked_heads_equal_one_pass(tiny: Fast3R) -> None:
    x = frames(1, 3)
    with torch.no_grad():
        whole = tiny(x, head_chunk=None)
        chunked = tiny(x, head_chunk=1)
    for key in ("pts3d_in_other_view", "conf", "pts3d_local", "conf_local"):
        torch.testing.assert_close(chunked[key], whole[key], atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------- saving / loading
def test_save_and_from_pretrained_round_trip(tiny: Fast3R, tmp_path: Path) -> None:
    folder = tiny.save_pretrained(tmp_path / "fast3r-tiny")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    names = safetensors_shapes(folder / "model.safetensors")
    assert not any(".layer_rn." in k for k in names)  # aliases stored once, as layer{k}_rn
    assert len(names) == len(tiny.state_dict()) - 8
    loaded = Fast3R.from_pretrained(folder)
    assert loaded.config == tiny.config and not loaded.training
    buffer = loaded.decoder.image_idx_emb
    assert not buffer.is_meta
    torch.testing.assert_close(buffer, tiny.decoder.image_idx_emb)
    x = frames(1, 2)
    with torch.no_grad():
        a, b = loaded(x), tiny(x)
    for key in ("pts3d_in_other_view", "conf_local"):
        torch.testing.assert_close(a[key], b[key])
    state = loaded.state_dict(keep_vars=True)
    for alias, name in ALIASES.items():
        assert state[alias] is state[name]
    backbone_only = Fast3R.from_pretrained(folder, backbone_only=True)
    assert backbone_only.downstream_head is None and backbone_only.downstream_head_local is None
    with torch.no_grad():
        torch.testing.assert_close(backbone_only.decoder_layers(x)[4], tiny.decoder_layers(x)[4])


def _write(tmp_path: Path, name: str, tensors: dict, config: Fast3RConfig) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(config.to_dict()))
    return folder


def test_alias_names_are_accepted_once_or_twice(tiny: Fast3R, tmp_path: Path) -> None:
    state = {k: v.clone() for k, v in tiny.state_dict().items()}
    only_alias = {k: v for k, v in state.items() if k not in ALIASES.values()}
    for folder in (
        _write(tmp_path, "both", state, tiny.config),
        _write(tmp_path, "alias", only_alias, tiny.config),
    ):
        loaded = Fast3R.from_pretrained(folder)
        for key, value in tiny.state_dict().items():
            assert torch.equal(loaded.state_dict()[key], value), (folder.name, key)
    differ = dict(state)
    alias = next(iter(ALIASES))
    differ[alias] = differ[alias] + 1.0
    with pytest.raises(ValueError, match="hold different values"):
        Fast3R.from_pretrained(_write(tmp_path, "differ", differ, tiny.config))


def test_missing_extra_and_misshaped_keys_are_named(tiny: Fast3R, tmp_path: Path) -> None:
    state = {k: v for k, v in tiny.state_dict().items() if k not in ALIASES}
    missing = {k: v for k, v in state.items() if k != "decoder.dec_norm.weight"}
    with pytest.raises(ValueError, match=r"1 missing: decoder\.dec_norm\.weight"):
        Fast3R.from_pretrained(_write(tmp_path, "missing", missing, tiny.config))
    extra = state | {"decoder.mystery": torch.zeros(3)}
    with pytest.raises(ValueError, match=r"1 unexpected: decoder\.mystery"):
        Fast3R.from_pretrained(_write(tmp_path, "extra", extra, tiny.config))
    buffer = state | {"decoder.image_idx_emb": tiny.decoder.image_idx_emb}
    with pytest.raises(ValueError, match=r"unexpected: decoder\.image_idx_emb"):
        Fast3R.from_pretrained(_write(tmp_path, "buffer", buffer, tiny.config))
    with pytest.raises(ValueError, match="wrong shape"):
        Fast3R.from_pretrained(
            _write(tmp_path, "shape", state, tiny.config),
            config=tiny.config.replace(dpt_last_dim=4),
        )
    with pytest.raises(FileNotFoundError, match="no weight file"):
        Fast3R.from_pretrained(tmp_path)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ValueError, match="not a readable safetensors"):
        Fast3R.from_pretrained(tmp_path / "bad")
    torch.save(state, tmp_path / "model.pt")
    with pytest.raises(ValueError, match="only safetensors"):
        Fast3R.from_pretrained(tmp_path / "model.pt")


def test_release_names_load_strictly_on_the_meta_device(meta_release: Fast3R) -> None:
    """A file holding the 712 canonical release names passes the strict check."""
    from vfm3d.models._checkpoint import check_state_dict

    expected = {k: v for k, v in meta_release.state_dict().items() if k not in ALIASES}
    file_names = {k: s for k, s in reference_shapes().items() if k not in ALIASES}
    assert len(file_names) == 712
    check_state_dict(expected, file_names, model="Fast3R")  # no error
