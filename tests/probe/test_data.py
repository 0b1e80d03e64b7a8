"""Probe data: frame sampling, feature-frame mapping (T' < T), targets, pairing errors."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from vfm3d.clip import ClipFolder
from vfm3d.geometry import probe_targets
from vfm3d.probe import (
    InMemoryFeatureSource,
    ProbeConfig,
    ProbeDataError,
    ProbeDataset,
    SampleSpec,
)
from vfm3d.probe.data import (
    check_pairing,
    make_eval_samples,
    read_samples,
    resize_targets,
    sample_frames,
    write_samples,
)


def small_config(**kw) -> ProbeConfig:
    return ProbeConfig.cpu_small(**{"first_n": 24, "min_gap": 3, "output_size": (16, 24), **kw})


def test_sample_frames_rule_and_determinism() -> None:
    for seed in range(50):
        idx = sample_frames(80, 4, 76, 5, np.random.default_rng(seed))
        assert idx[0] == 0 and len(idx) == 4
        assert all(b - a >= 5 for a, b in itertools.pairwise(idx))
        assert idx[-1] < 76
    a = sample_frames(80, 4, 76, 5, np.random.default_rng(3))
    assert a == sample_frames(80, 4, 76, 5, np.random.default_rng(3))
    assert sample_frames(16, 4, 76, 5, np.random.default_rng(0)) == [0, 5, 10, 15]  # no slack
    with pytest.raises(ProbeDataError, match="min gap 5"):
        sample_frames(15, 4, 76, 5, np.random.default_rng(0))


def test_strided_features_map_through_frame_index(rooms: ClipFolder) -> None:
    """T' < T: each sampled frame gets feature frame frame_index[f] (causal stride 4 here)."""
    items = {}
    for clip_id in rooms.ids:
        t = 24
        frame_index = torch.where(torch.arange(t) == 0, 0, (torch.arange(t) - 1) // 4 + 1)
        t_feat = int(frame_index.max()) + 1
        tokens = torch.arange(t_feat, dtype=torch.float32).view(-1, 1, 1, 1).expand(t_feat, 2, 3, 4)
        items[clip_id] = (tokens.clone(), frame_index)
    source = InMemoryFeatureSource(items)
    config = small_config()
    assert check_pairing(rooms, source, config)["grid"] == (2, 3)
    ds = ProbeDataset(rooms, source, config, seed=5)
    for i in range(6):
        item = ds[i]
        expected = torch.where(item["frames"] == 0, 0, (item["frames"] - 1) // 4 + 1).float()
        assert torch.equal(item["features"][:, 0, 0, 0], expected)
        assert item["features"].shape == (4, 2, 3, 4)


def test_item_targets_use_the_shared_normalisation(rooms: ClipFolder, oracle_features) -> None:
    config = small_config(output_size=None)
    ds = ProbeDataset(rooms, oracle_features, config, seed=0)
    item = ds[1]
    clip = rooms.load(item["clip_id"])
    frames = item["frames"].tolist()
    ref = probe_targets(
        torch.from_numpy(clip.depth[frames]).double(),
        torch.from_numpy(clip.valid[frames]),
        torch.from_numpy(clip.intrinsics[frames]).double(),
        torch.from_numpy(clip.cam_to_world[frames]),
    )
    torch.testing.assert_close(item["points"], ref.points.float())
    torch.testing.assert_close(item["world_to_cam"][0], torch.eye(4, dtype=torch.float64))
    mean0 = item["points"][0][item["valid"][0]].norm(dim=-1).mean()
    assert float(mean0) == pytest.approx(1.0, abs=1e-5)
    assert item["pose_enc"].shape == (4, 9)
    assert item["images"].dtype == torch.uint8 and item["images"].shape == (4, 32, 48, 3)
    # same index, same sample; a different seed gives other frames somewhere
    assert ds[1]["frames"].tolist() == frames
    other = ProbeDataset(rooms, oracle_features, config, seed=1)
    assert any(other[i]["frames"].tolist() != ds[i]["frames"].tolist() for i in range(6))


def test_resize_keeps_intrinsics_right() -> None:
    """Pixel centres at integers: a 3D point projects to (u + 0.5) * s - 0.5 after resizing."""
    k = np.array([[[50.0, 0, 23.5], [0, 48.0, 15.5], [0, 0, 1]]], dtype=np.float32)
    depth = np.random.default_rng(0).uniform(1, 2, (1, 32, 48)).astype(np.float32)
    valid = np.ones((1, 32, 48), bool)
    valid[0, :2] = False
    d, v, k2 = resize_targets(depth, valid, k, (16, 36))
    assert d.shape == (1, 16, 36) and v.shape == (1, 16, 36)
    point = torch.tensor([0.3, -0.2, 2.0], dtype=torch.float64)
    uv = (torch.from_numpy(k[0]).double() @ point)[:2] / 2.0
    uv2 = (k2[0] @ point)[:2] / 2.0
    torch.testing.assert_close(uv2[0], (uv[0] + 0.5) * 36 / 48 - 0.5)
    torch.testing.assert_close(uv2[1], (uv[1] + 0.5) * 16 / 32 - 0.5)
    # nearest: every output value is one of the source values, validity follows
    assert set(d.flatten().tolist()) <= set(depth.flatten().tolist())
    assert not bool(v[0, 0].any()) and bool(v[0, 2:].all())


def test_eval_samples_fixed_and_round_trip(rooms: ClipFolder, oracle_features, tmp_path) -> None:
    config = small_config(eval_samples_per_clip=2)
    a = make_eval_samples(rooms, oracle_features, config, seed=3)
    assert a == make_eval_samples(rooms, oracle_features, config, seed=3)
    assert len(a) == 2 * len(rooms)
    write_samples(tmp_path / "s.json", a)
    assert read_samples(tmp_path / "s.json") == a


def test_pairing_errors_name_the_problem(rooms: ClipFolder, oracle_features) -> None:
    config = small_config()
    items = dict(oracle_features.items)
    missing = InMemoryFeatureSource({k: v for k, v in items.items() if k != "room01"})
    with pytest.raises(ProbeDataError, match=r"missing for 1 of 3 clips: 'room01'"):
        check_pairing(rooms, missing, config)
    tokens, index = items["room02"]
    short = InMemoryFeatureSource({**items, "room02": (tokens, index[:20])})
    with pytest.raises(ProbeDataError, match=r"room02.*frame count mismatch.*24 frames.*20"):
        check_pairing(rooms, short, config)
    bad = tokens.clone()
    bad[3, 1, 1, 0] = float("nan")
    with pytest.raises(ProbeDataError, match=r"room02.*NaN"):
        check_pairing(rooms, InMemoryFeatureSource({**items, "room02": (bad, index)}), config)
    with pytest.raises(ProbeDataError, match="too short"):
        check_pairing(rooms, oracle_features, small_config(num_frames=4, min_gap=10, first_n=40))
    # a quick check misses the NaN in frame 3, but loading a sample that uses it fails
    nan_source = InMemoryFeatureSource({**items, "room02": (bad, index)})
    check_pairing(rooms, nan_source, config, full_scan=False)
    ds = ProbeDataset(rooms, nan_source, config, samples=[SampleSpec("room02", (0, 3, 6, 9))])
    with pytest.raises(ProbeDataError, match=r"room02.*NaN"):
        ds[0]
    wide = InMemoryFeatureSource({**items, "room02": (torch.zeros(24, 4, 6, 7), index)})
    with pytest.raises(ProbeDataError, match=r"room02.*differ"):
        check_pairing(rooms, wide, config)
