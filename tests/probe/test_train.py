"""Probe training: learning works (oracle vs constant), exact resume, DDP, bad input, eval."""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from vfm3d.clip import ClipFolder
from vfm3d.probe import (
    InMemoryFeatureSource,
    ProbeConfig,
    ProbeDataError,
    evaluate,
    predict,
    train,
)
from vfm3d.probe.train import learning_rate

sys.path.insert(0, str(Path(__file__).parent))
from synth import features_for

HERE = Path(__file__).parent


def tiny_config(**kw) -> ProbeConfig:
    base = dict(
        first_n=24, min_gap=3, num_frames=2, output_size=(16, 24), batch_size=2, warmup_steps=2
    )
    return ProbeConfig.cpu_small(**{**base, **kw})


def test_learning_rate_schedule() -> None:
    cfg = ProbeConfig.cpu_small(lr=1e-3, min_lr=1e-5, warmup_steps=10)
    lrs = [learning_rate(s, 100, cfg) for s in range(100)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)
    assert all(a <= b for a, b in itertools.pairwise(lrs[:10]))
    assert all(a >= b for a, b in itertools.pairwise(lrs[10:]))
    assert learning_rate(100, 100, cfg) == pytest.approx(1e-5)


def _calibration_scores(
    tmp_path: Path, kind: str, train_clips: int, oracle_steps: int, **overrides
) -> dict[str, dict]:
    """Train oracle-world (layer 1, ``oracle_steps``) and the constant floor (40 steps) on
    ``train_clips`` 81-frame world clips of ``kind`` with VidFM3D's sampling and score both on
    12 HELD-OUT clips (other seeds). Returns ``{name: metrics}``."""
    from vfm3d.probe.calibrate import world_features
    from vfm3d.world import generate_dataset

    torch.manual_seed(0)
    train_dir = generate_dataset(
        tmp_path / "train", kind, train_clips, 81, 32, 32, 0, progress=False
    )
    held = generate_dataset(tmp_path / "held", kind, 12, 81, 32, 32, 77, progress=False)
    cfg = ProbeConfig.cpu_small(
        output_size=(32, 32),
        first_n=76,
        min_gap=5,
        eval_samples_per_clip=2,
        checkpoint_every=10**6,
        **overrides,
    )
    scores = {}
    for name, layer, steps in (("oracle-world", 1, oracle_steps), ("constant", 0, 40)):
        source = InMemoryFeatureSource(world_features([train_dir, held], name, layer))
        run = tmp_path / name
        train(cfg, train_dir.root, source, run, steps=steps, backbone=name, layer=layer,
              progress=False)  # fmt: skip
        scores[name] = evaluate(run, features=source, data_dir=held.root, write=False)["metrics"]
    return scores


@pytest.mark.slow
def test_probe_reads_3d_on_held_out_clips(tmp_path) -> None:
    """The instrument's calibration in small (docs/probe.md "Calibration"): on HELD-OUT world
    clips of both kinds, with VidFM3D's sampling (4 of the first 76 of 81 frames, min gap 5), a
    probe on `oracle-world` (layer 1: frame-0 point maps + pose) reads cameras and point maps, and
    the constant floor reads neither.

    Budget: 300 steps (~26 s with the clips). Measured with these seeds, pooled over both kinds:
    oracle-world AUC@30 0.58, Point Err 0.198 (0.34x the constant's), Depth Err 0.19 (0.58x);
    constant AUC@30 0.03, Point Err 0.57. The thresholds leave a margin below these; the
    calibration curve (800-1600 steps) is what reaches AUC@30 0.8.
    """
    scores = _calibration_scores(tmp_path, "mixed", 24, 300)
    world, floor = scores["oracle-world"], scores["constant"]
    assert world["auc@30"] >= 0.45, scores
    assert world["point_err"] <= 0.5 * floor["point_err"], scores
    assert world["depth_err"] <= 0.8 * floor["depth_err"], scores
    assert floor["auc@30"] <= 0.1 and floor["point_err"] >= 0.4, scores


@pytest.mark.slow
def test_oracle_world_reaches_the_camera_target_on_held_out_objects(tmp_path) -> None:
    """Issue 11's calibration target itself, AUC@30 >= 0.8, on HELD-OUT object clips: the camera
    head, the pose encoding and the metrics chain read cameras that are in the features.

    oracle-world layer 1 on 48 object training clips (81 frames, VidFM3D's sampling), 1200
    steps, camera weight 30 (docs/probe.md "Where oracle-world reaches 0.8"), ~65 s. Measured
    here (12 held-out clips): AUC@30 0.85, Point Err 0.084 (constant 0.00, 0.538); on 8
    held-out clips of three worlds: AUC@30 0.86 / 0.84 / 0.82, Point Err 0.085-0.095; with
    32 clips and 800 steps 0.83 / 0.81 / 0.75, hence this budget. Scenes land at 0.74 at this
    budget and 0.77-0.81 at 96 clips and 1600 steps, so they are held to the pooled test above.
    """
    scores = _calibration_scores(tmp_path, "object", 48, 1200, camera_weight=30.0)
    world, floor = scores["oracle-world"], scores["constant"]
    assert world["auc@30"] >= 0.8, scores
    assert world["point_err"] <= 0.5 * floor["point_err"], scores
    assert floor["auc@30"] <= 0.1, scores


def test_resume_gives_the_uninterrupted_weights(
    rooms: ClipFolder, oracle_features, tmp_path
) -> None:
    cfg = tiny_config(checkpoint_every=2)
    kwargs = dict(backbone="oracle", layer=0, seed=3, progress=False)
    train(cfg, rooms.root, oracle_features, tmp_path / "full", steps=5, **kwargs)
    part = train(
        cfg, rooms.root, oracle_features, tmp_path / "cut", steps=5, stop_after=3, **kwargs
    )
    assert part["step"] == 3 and not (tmp_path / "cut" / "model.safetensors").exists()
    train(cfg, rooms.root, oracle_features, tmp_path / "cut", steps=5, **kwargs)
    full = load_file(tmp_path / "full" / "model.safetensors")
    resumed = load_file(tmp_path / "cut" / "model.safetensors")
    assert full.keys() == resumed.keys()
    for key in full:
        assert torch.equal(full[key], resumed[key]), key
    logs = [json.loads(x) for x in (tmp_path / "cut" / "log.jsonl").read_text().splitlines()]
    assert [x["step"] for x in logs] == [1, 2, 3, 4, 5]
    ref = [json.loads(x) for x in (tmp_path / "full" / "log.jsonl").read_text().splitlines()]
    assert [x["loss"] for x in logs] == [x["loss"] for x in ref]
    # a resume with other settings is refused
    with pytest.raises(ValueError, match=r"cannot resume.*config"):
        train(tiny_config(lr=0.5), rooms.root, oracle_features, tmp_path / "cut", steps=6, **kwargs)


def test_bad_input_fails_before_training(rooms: ClipFolder, oracle_features, tmp_path) -> None:
    items = dict(oracle_features.items)
    items.pop("room00")
    with pytest.raises(ProbeDataError, match="missing for 1 of 3 clips"):
        train(tiny_config(), rooms.root, InMemoryFeatureSource(items), tmp_path / "r", steps=2)
    assert not (tmp_path / "r").exists()


def test_evaluate_on_another_folder(rooms: ClipFolder, oracle_features, tmp_path) -> None:
    """Other clips get their own fixed sample file; ``split`` names the metrics file."""
    from synth import write_rooms

    other = write_rooms(tmp_path / "test_clips", 2, prefix="test", seed=500)
    both = InMemoryFeatureSource({**oracle_features.items, **features_for(other, "oracle")})
    run = tmp_path / "run"
    train(tiny_config(), rooms.root, both, run, steps=1, backbone="oracle", layer=0, progress=False)
    result = evaluate(run, features=both, data_dir=other.root, split="test")
    assert (run / "metrics_test.json").is_file() and not (run / "metrics.json").exists()
    samples = json.loads((run / "eval_samples_test_clips.json").read_text())["samples"]
    assert {s["clip_id"] for s in samples} == {"test00", "test01"}
    assert result["settings"]["split"] == "test" and result["settings"]["num_samples"] == 2
    again = evaluate(run, features=both, data_dir=other.root, split="test", write=False)
    assert again["metrics"] == result["metrics"]


def test_evaluate_and_predict(rooms: ClipFolder, oracle_features, tmp_path) -> None:
    run = tmp_path / "run"
    train(
        tiny_config(),
        rooms.root,
        oracle_features,
        run,
        steps=2,
        backbone="oracle",
        layer=0,
        progress=False,
    )
    result = evaluate(run, features=oracle_features)
    saved = json.loads((run / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(result))
    m = result["metrics"]
    for key in ("point_err", "depth_err", "abs_rel", "delta1"):
        assert m[key] >= 0
    for k in (3, 5, 10, 30):
        assert 0 <= m[f"auc@{k}"] <= 1 and 0 <= m[f"auc_vidfm3d@{k}"] <= 1
    for t in (5, 15, 30):
        assert 0 <= m[f"rra@{t}"] <= 1 and 0 <= m[f"rta@{t}"] <= 1
    s = result["settings"]
    assert (s["backbone"], s["layer"], s["steps"]) == ("oracle", 0, 2)
    assert s["eval_samples"].endswith("eval_samples.json") and s["num_samples"] == 3
    p = predict(run, index=1, features=oracle_features)
    assert p["pred_points"].shape == (2, 16, 24, 3) and p["points"].shape == (2, 16, 24, 3)
    assert p["images"].shape == (2, 16, 24, 3) and p["pred_world_to_cam"].shape == (2, 4, 4)
