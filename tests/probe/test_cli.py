"""`vfm3d probe train|eval` on a real feature cache (`FeatureStore`), incl. partial frame coverage."""

from __future__ import annotations

import json

import pytest
import torch

from vfm3d.cli import main as vfm3d_main
from vfm3d.clip import ClipFolder
from vfm3d.features import FeatureKey, FeatureStore
from vfm3d.probe import ProbeConfig, ProbeDataError, StoreFeatureSource
from vfm3d.probe.data import num_frames


def fill_store(path, rooms: ClipFolder, source, fed: int = 21) -> None:
    """Cache the oracle features as if frames 0..fed-1 were fed to the backbone."""
    store = FeatureStore(path)
    for clip_id in rooms.ids:
        tokens, frame_index = source.get(clip_id)
        key = FeatureKey("oracle-0123456789abcdef", 0, None, clip_id, (fed, 32, 48), range(fed))
        store.put(key, tokens[: int(frame_index[fed - 1]) + 1], frame_index[:fed])


def test_store_source_marks_unfed_frames(rooms: ClipFolder, oracle_features, tmp_path) -> None:
    fill_store(tmp_path / "cache", rooms, oracle_features, fed=21)
    src = StoreFeatureSource(
        tmp_path / "cache", "oracle", 0, None, num_frames=lambda c: num_frames(rooms, c)
    )
    tokens, index = src.get("room01")
    assert index.shape == (24,) and index[:21].tolist() == list(range(21))
    assert index[21:].tolist() == [-1, -1, -1]
    ref, _ = oracle_features.get("room01")
    torch.testing.assert_close(tokens[0].float(), ref[:21].float(), atol=1e-2, rtol=1e-3)
    with pytest.raises(ProbeDataError, match="no cached features for backbone 'dino'"):
        StoreFeatureSource(tmp_path / "cache", "dino", 0, None, num_frames=len)
    with pytest.raises(KeyError):
        src.get("nope")
    part, index2 = src.get_frames("room01", [3, 0])
    assert torch.equal(index2, index) and torch.equal(part, tokens[0, [3, 0]])


def test_cli_train_then_eval(rooms: ClipFolder, oracle_features, tmp_path, capsys) -> None:
    fill_store(tmp_path / "cache", rooms, oracle_features, fed=21)
    cfg = ProbeConfig.cpu_small(first_n=76, min_gap=3, num_frames=2, output_size=(16, 24))
    (tmp_path / "probe.json").write_text(json.dumps(cfg.to_dict()))
    run = tmp_path / "run"
    args = ["probe", "train", "--data", str(rooms.root), "--features", str(tmp_path / "cache")]
    args += ["--backbone", "oracle", "--layer", "0", "--out", str(run), "--quiet"]
    args += ["--preset", "cpu-small", "--config", str(tmp_path / "probe.json"), "--steps", "2"]
    args += ["--quick-check", "--threads", "1"]
    assert vfm3d_main(args) == 0
    info = json.loads((run / "run.json").read_text())
    assert (info["backbone"], info["layer"], info["timestep"], info["steps"]) == (
        "oracle",
        0,
        None,
        2,
    )
    samples = json.loads((run / "eval_samples.json").read_text())["samples"]
    assert all(max(s["frames"]) < 21 for s in samples)  # only frames that have features
    assert vfm3d_main(["probe", "eval", "--run", str(run)]) == 0
    printed = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert printed == json.loads((run / "metrics.json").read_text())["metrics"]
    # a cache for another layer is a clear one-line error (exit code 2)
    bad = args.copy()
    bad[bad.index("--layer") + 1] = "3"
    assert vfm3d_main(bad) == 2
    assert "no cached features" in capsys.readouterr().err
