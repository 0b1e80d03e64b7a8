"""FeatureStore: keys, round trip, corruption, merging; extract_to_store: skipping, resizing."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import vfm3d.backbones as backbones
from tests.features.helpers import make_clip, make_folder
from tests.features.test_extract import FakeDiffusion
from vfm3d.backbones.base import UnsupportedInputError
from vfm3d.features import (
    CorruptShardError,
    FeatureKey,
    FeatureStore,
    extract,
    extract_to_store,
)
from vfm3d.features.runner import clip_to_inputs, resize_inputs


def _key(**overrides) -> FeatureKey:
    fields = dict(
        backbone="random-0123",
        layer=2,
        timestep=None,
        clip_id="c0",
        input_size=(3, 16, 16),
        frame_indices=(0, 1, 2),
        seed=0,
    )
    fields.update(overrides)
    return FeatureKey(**fields)


def test_key_digest_is_stable_and_distinguishes_fields() -> None:
    key = _key()
    canonical = (
        '{"backbone":"random-0123","clip_id":"c0","frame_indices":[0,1,2],'
        '"input_size":[3,16,16],"layer":2,"seed":0,"timestep":null}'
    )
    assert key.digest == hashlib.sha256(canonical.encode()).hexdigest()[:32]
    assert key.digest == "9bd42a132f7e2a89c91acd34e40cb221"  # fixed forever: caches depend on it
    assert FeatureKey.from_dict(key.to_dict()) == key
    variants = [
        _key(backbone="random-x"),
        _key(layer=3),
        _key(timestep=0),
        _key(clip_id="c1"),
        _key(input_size=(3, 16, 24)),
        _key(frame_indices=(0, 2, 4)),
        _key(seed=1),
    ]
    assert len({v.digest for v in [key, *variants]}) == 8
    with pytest.raises(ValueError, match="frame_indices"):
        _key(frame_indices=(0, 1))


def _tokens(seed: int = 0, shape=(3, 2, 2, 8)) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def test_round_trip_float16_and_bfloat16(tmp_path: Path) -> None:
    for dtype, torch_dtype in (("float16", torch.float16), ("bfloat16", torch.bfloat16)):
        store = FeatureStore(tmp_path / dtype, dtype=dtype)
        tokens, index = _tokens(), torch.tensor([0, 1, 2])
        store.put(_key(), tokens, index, {"note": "x"})
        assert store.has(_key()) and not store.has(_key(layer=5))
        again = FeatureStore(tmp_path / dtype)  # a new reader sees the rank part
        feats = again.get(_key())
        assert feats.tokens.dtype == torch_dtype and feats.tokens.shape == (1, 3, 2, 2, 8)
        torch.testing.assert_close(feats.tokens[0].float(), tokens, atol=0.02, rtol=0.01)
        assert torch.equal(feats.frame_index, index)
        assert feats.layer == 2 and feats.timestep is None
        only = again.get(_key(), feature_frames=[2, 0])
        assert torch.equal(only.tokens[0], feats.tokens[0, [2, 0]])
        (entry,) = again.entries(clip_id="c0", layer=2)
        assert entry.meta == {"note": "x"} and entry.shape == (3, 2, 2, 8)
        assert again.entries(layer=3) == []


def test_merge_folds_parts_into_manifest(tmp_path: Path) -> None:
    for rank in (0, 1):
        FeatureStore(tmp_path, rank=rank).put(
            _key(clip_id=f"c{rank}"), _tokens(rank), torch.arange(3)
        )
    assert sorted(p.name for p in tmp_path.glob("manifest*")) == [
        "manifest.part-0.jsonl",
        "manifest.part-1.jsonl",
    ]
    store = FeatureStore(tmp_path)
    assert len(store) == 2
    assert store.merge() == 2
    assert [p.name for p in tmp_path.glob("manifest*")] == ["manifest.json"]
    assert sorted(k.clip_id for k in FeatureStore(tmp_path).keys()) == ["c0", "c1"]


def test_torn_journal_line_is_ignored(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path)
    store.put(_key(layer=0), _tokens(0), torch.arange(3))
    with open(store.part_path, "a") as journal:  # a crash in the middle of an append
        journal.write('\n{"shards": {"shards/xx/half.safetensors": {"sha')
    store.put(_key(layer=1), _tokens(1), torch.arange(3))
    again = FeatureStore(tmp_path)
    assert sorted(k.layer for k in again.keys()) == [0, 1]
    torch.testing.assert_close(
        again.get(_key(layer=1)).tokens[0].float(), _tokens(1), atol=0.02, rtol=0.01
    )


def test_bad_put_arguments(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path)
    with pytest.raises(ValueError, match="frame_index"):
        store.put(_key(), _tokens(), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="frame_index"):
        store.put(_key(), _tokens(), torch.tensor([0, 1, 3]))
    with pytest.raises(ValueError, match="bfloat16"):
        store.put(_key(), _tokens() * 1e6, torch.arange(3))
    with pytest.raises(KeyError, match="no cached features"):
        store.get(_key())
    with pytest.raises(ValueError, match="unknown filter"):
        store.entries(colour="red")
    assert len(store) == 0


def _flip_byte(path: Path, offset: int = -5) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_corrupt_shard_detected_dropped_and_recomputed(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "data", num_clips=2, frames=3)
    model = backbones.load("random", tiny=True)
    store = FeatureStore(tmp_path / "cache")
    first = extract_to_store(store, model, folder, [0, 2], progress=False)
    assert (first.computed, first.skipped, first.forwards) == (4, 0, 2)
    key = store.keys(clip_id="c1", layer=2)[0]
    shard = store.entries(clip_id="c1", layer=2)[0].shard
    _flip_byte(tmp_path / "cache" / shard)
    reader = FeatureStore(tmp_path / "cache")
    with pytest.raises(CorruptShardError, match=shard.replace(".", r"\.")):
        reader.get(key)
    assert not reader.has(key) and not FeatureStore(tmp_path / "cache").has(key)
    assert (tmp_path / "cache" / "corrupt").is_dir()
    again = extract_to_store(
        FeatureStore(tmp_path / "cache"), model, folder, [0, 2], progress=False
    )
    assert (again.computed, again.skipped) == (2, 2)
    fresh = FeatureStore(tmp_path / "cache").get(key)
    direct = extract(model, clip_to_inputs(folder.load("c1"), 3)[0], [2])[(2, None)]
    torch.testing.assert_close(fresh.tokens.float(), direct.tokens, atol=0.02, rtol=0.01)


def test_verify_reports_corrupt_shards(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path)
    shard = store.put(_key(), _tokens(), torch.arange(3))
    store.put(_key(layer=1), _tokens(1), torch.arange(3))
    _flip_byte(tmp_path / shard, offset=200)
    assert FeatureStore(tmp_path).verify() == [shard]
    assert [k.layer for k in FeatureStore(tmp_path).keys()] == [1]


def test_extract_to_store_skips_and_adds_only_missing(tmp_path: Path) -> None:
    clips = [make_clip("a", frames=5, seed=1), make_clip("b", frames=7, seed=2)]
    model = FakeDiffusion()
    store = FeatureStore(tmp_path)
    run = extract_to_store(store, model, clips, [1, 3], timesteps=[250, 749], progress=False)
    assert (run.computed, run.skipped, run.forwards) == (8, 0, 2)
    rerun = extract_to_store(store, model, clips, [1, 3], timesteps=[250, 749], progress=False)
    assert (rerun.computed, rerun.skipped, rerun.forwards) == (0, 8, 0)
    more = extract_to_store(
        store, model, clips, [1, 4], timesteps=[250, 749], timestep_batch=1, progress=False
    )
    assert (more.computed, more.skipped, more.forwards) == (4, 4, 4)
    assert len(FeatureStore(tmp_path)) == 12
    # clip b has 7 frames: the rule T = 2k+1 allows all 7
    (entry,) = store.entries(clip_id="b", layer=4, timestep=749)
    assert entry.key.input_size == (7, 16, 16) and entry.key.frame_indices == tuple(range(7))
    frames = clip_to_inputs(clips[1], 7)[0]
    direct = extract(model, frames, [4], [749])[(4, 749)].tokens
    torch.testing.assert_close(store.get(entry.key).tokens.float(), direct, atol=0.02, rtol=0.01)


def test_num_frames_and_resize_rules(tmp_path: Path) -> None:
    clips = [make_clip("a", frames=6, height=12, width=16)]
    model = backbones.load("random", tiny=True)
    store = FeatureStore(tmp_path)
    with pytest.raises(UnsupportedInputError, match=r"multiples of 8.*--resize"):
        extract_to_store(store, model, clips, [0], progress=False)
    summary = extract_to_store(
        store, model, clips, [0], num_frames=4, resize=(16, 8), progress=False
    )
    assert summary.computed == 1
    (entry,) = store.entries()
    assert entry.key.input_size == (4, 16, 8) and entry.shape == (4, 2, 1, 128)
    with pytest.raises(ValueError, match="num_frames"):
        extract_to_store(store, model, clips, [0], num_frames=9, resize=(16, 8), progress=False)
    fake = FakeDiffusion()
    with pytest.raises(UnsupportedInputError, match="2k\\+1"):
        extract_to_store(
            store, fake, clips, [0], [1], num_frames=4, resize=(16, 16), progress=False
        )


def test_resize_keeps_intrinsics_consistent() -> None:
    clip = make_clip("a", frames=2, height=16, width=16)
    frames, aux = clip_to_inputs(clip, 2, with_geometry=True)
    small, small_aux = resize_inputs(frames, aux, (8, 4))
    assert small.shape == (1, 2, 3, 8, 4) and small_aux["depth"].shape == (1, 2, 8, 4)
    k, k2 = aux["intrinsics"][0, 0], small_aux["intrinsics"][0, 0]
    # the principal point at the image centre stays at the centre
    assert torch.allclose(k2[0, 2], torch.tensor((4 - 1) / 2)) and k[0, 2] == 7.5
    assert torch.allclose(k2[1, 1], k[1, 1] / 2) and torch.allclose(k2[0, 0], k[0, 0] / 4)
    assert small_aux["valid"].dtype == torch.bool


def test_same_clip_id_with_other_frames_is_refused(tmp_path: Path) -> None:
    model = backbones.load("random", tiny=True)
    store = FeatureStore(tmp_path)
    extract_to_store(store, model, [make_clip("a", frames=3, seed=1)], [0], progress=False)
    with pytest.raises(ValueError, match="different clip with the same id"):
        extract_to_store(store, model, [make_clip("a", frames=3, seed=2)], [0], progress=False)
    (entry,) = store.entries()
    assert entry.meta["backbone_name"] == "random" and len(entry.meta["frames_sha256"]) == 16
    assert store.entry(entry.key) == entry and store.entry(replace(entry.key, layer=1)) is None


def test_windowed_extraction_reads_each_window_on_its_own(tmp_path: Path) -> None:
    """``window=W``: clip frames [kW, (k+1)W) go through the model alone (batched), their tokens
    are concatenated in time, ``frame_index`` points into the right window, and the cache key
    never collides with whole-clip features."""
    from vfm3d.features.runner import windowed_fingerprint

    clip = make_clip("a", frames=11, seed=3)  # 3 windows of 3 frames; frames 9, 10 uncovered
    model = FakeDiffusion()  # T = 2k+1: 3 frames -> 2 feature frames per window
    store = FeatureStore(tmp_path)
    summary = extract_to_store(store, model, [clip], [2], [749], window=3, progress=False)
    assert summary.forwards == 3
    (entry,) = store.entries()
    assert entry.key.backbone == windowed_fingerprint(model.fingerprint, 3) != model.fingerprint
    assert entry.key.input_size == (9, 16, 16)
    feats = store.get(entry.key)
    assert feats.tokens.shape[1] == 6
    frames = clip_to_inputs(clip, 9)[0]
    for k in range(3):
        alone = extract(model, frames[:, 3 * k : 3 * k + 3], [2], [749])[(2, 749)]
        got = feats.tokens[:, 2 * k : 2 * k + 2].float()
        assert got.shape == alone.tokens.shape
        idx = feats.frame_index[3 * k : 3 * k + 3]
        torch.testing.assert_close(idx, alone.frame_index + 2 * k)
    # non-diffusion model: windowed tokens equal each window's own forward exactly
    rnd = backbones.load("random", tiny=True)
    clip8 = make_clip("b", frames=8, seed=4)
    extract_to_store(store, rnd, [clip8], [1], window=4, progress=False)
    (entry,) = store.entries(clip_id="b")
    tokens = store.get(entry.key).tokens.float()
    frames = clip_to_inputs(clip8, 8)[0]
    for k in range(2):
        alone = extract(rnd, frames[:, 4 * k : 4 * k + 4], [1])[(1, None)].tokens
        torch.testing.assert_close(tokens[:, 4 * k : 4 * k + 4], alone, atol=0.02, rtol=0.01)
    with pytest.raises(UnsupportedInputError, match="window: 4 frames not supported"):
        extract_to_store(store, model, [clip], [2], [749], window=4, progress=False)
    with pytest.raises(UnsupportedInputError, match="shorter than one window"):
        extract_to_store(store, model, [make_clip("c", frames=3)], [2], [749], window=5,
                         progress=False)  # fmt: skip
