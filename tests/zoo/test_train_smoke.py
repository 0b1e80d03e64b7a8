"""Smoke tests of `vfm3d zoo train`: every model trains end to end for a few steps on a tiny
world, writes its documented files, loads through its adapter, and resumes exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from vfm3d.backbones import load
from vfm3d.cli import main as vfm3d_main
from vfm3d.zoo import MODELS, DataSpec
from vfm3d.zoo.common import clip_seeds, prepare_data, read_jsonl

#: zoo models that are backbones (sora3r-mini is a reconstructor: tests/recon4d).
BACKBONE_MODELS = [name for name, (_, adapter) in MODELS.items() if adapter is not None]

SPEC = DataSpec(seed=3, train_clips=2, heldout_clips=1, frames=9, height=32, width=32, shards=1)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return prepare_data(tmp_path_factory.mktemp("zoo-data"), SPEC, progress=False)


def _train(name: str, out: Path, data: Path, steps: int) -> int:
    args = ["zoo", "train", name, "--out", str(out), "--steps", str(steps), "--data", str(data)]
    args += ["--train-clips", "2", "--heldout-clips", "1", "--shards", "1", "--seed", "3"]
    return vfm3d_main([*args, "--batch", "2", "--no-progress"])


@pytest.mark.parametrize("name", BACKBONE_MODELS)
def test_train_end_to_end(name: str, data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / name
    assert _train(name, out, data_dir, steps=2) == 0
    record = json.loads((out / "provenance.json").read_text())
    assert record["name"] == name and record["seed"] == 3
    assert "zoo train" in record["command"] and record["device"].startswith("cpu")
    assert record["data"]["heldout_seed"] == SPEC.heldout_seed
    assert all(n == 2 for n in record["steps_done"].values())
    assert record["git_commit"]
    for stage in record["steps"]:
        steps = [r["step"] for r in read_jsonl(out / f"train_{stage}.jsonl")]
        assert steps == [0, 1]
    assert (out / "training_curve.png").stat().st_size > 1000
    backbone = load(MODELS[name][1], weights=out / "model")
    assert backbone.num_layers == 4
    if name == "wan-mini":
        assert (out / "samples.png").is_file()
        assert (out / "model" / "empty_prompt_embedding.safetensors").is_file()
        stats = backbone.vae.config.latents_std
        assert len(stats) == 16 and all(s > 0 for s in stats) and stats != [1.0] * 16


def test_resume_equals_uninterrupted(data_dir: Path, tmp_path: Path) -> None:
    """2 steps then resumed to 4 == 4 steps at once (same batches, restored optimiser)."""
    assert _train("vggt-mini", tmp_path / "a", data_dir, steps=2) == 0
    first = load_file(str(tmp_path / "a" / "model" / "model.safetensors"))
    assert _train("vggt-mini", tmp_path / "a", data_dir, steps=4) == 0
    assert _train("vggt-mini", tmp_path / "b", data_dir, steps=4) == 0
    resumed = load_file(str(tmp_path / "a" / "model" / "model.safetensors"))
    straight = load_file(str(tmp_path / "b" / "model" / "model.safetensors"))
    key = "aggregator.frame_blocks.0.attn.qkv.weight"
    assert not torch.equal(first[key], resumed[key])
    for name, tensor in straight.items():
        torch.testing.assert_close(resumed[name], tensor, rtol=0, atol=0, msg=name)
    steps = [r["step"] for r in read_jsonl(tmp_path / "a" / "train_geo.jsonl")]
    assert steps == [0, 1, 3]


def test_heldout_seeds_are_disjoint() -> None:
    spec = DataSpec()
    train = set().union(*(clip_seeds(spec.shard_seed(k), spec.shard_clips(k)) for k in range(4)))
    assert len(train) == spec.train_clips
    assert not train & clip_seeds(spec.heldout_seed, spec.heldout_clips)


def test_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        vfm3d_main(["zoo", "train", "sora-mini", "--out", str(tmp_path)])
    code = vfm3d_main(["zoo", "train", "vggt-mini", "--out", str(tmp_path), "--steps", "0"])
    assert code == 2 and "--steps must be >= 1" in capsys.readouterr().err
    with pytest.raises(ValueError, match="shards"):
        DataSpec(train_clips=2, shards=3)
