"""Training Sora3R (`vfm3d zoo train sora3r-mini`) from a tiny random Wan folder (``--init``):
a loadable model folder, losses lowered, the random-init twin, flips that mirror X, the DDP
path, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from vfm3d.cli import main as vfm3d_main
from vfm3d.recon4d.pointmap_vae import pointmap_targets
from vfm3d.recon4d.sora3r import CONFIG_FILE, Sora3RModel
from vfm3d.recon4d.train_sora3r import (
    Distributed,
    TrainConfig,
    flip_pointmaps,
    train_sora3r,
)
from vfm3d.zoo import DataSpec, sora3r_mini
from vfm3d.zoo.common import data_folders, load_clips, prepare_data, read_jsonl

SPEC = DataSpec(seed=3, train_clips=2, heldout_clips=1, frames=9, height=32, width=32, shards=1)


@pytest.fixture(scope="module")
def tiny_wan(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Wan diffusers folder (transformer/, vae/, scheduler/, empty prompt)."""
    from diffusers import AutoencoderKLWan, WanTransformer3DModel

    from vfm3d.backbones.wan import tiny_configs
    from vfm3d.zoo.common import seeded_init
    from vfm3d.zoo.wan_mini import save_model

    tcfg, vcfg = tiny_configs()
    vae, dit = seeded_init(0, lambda: (AutoencoderKLWan(**vcfg), WanTransformer3DModel(**tcfg)))
    prompt = torch.randn(1, 8, 16, generator=torch.Generator().manual_seed(0))
    return save_model(tmp_path_factory.mktemp("wan") / "tiny-wan", vae, dit, prompt)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sora3r-data")
    for name, spec in sora3r_mini.datasets(SPEC).items():
        prepare_data(root / name, spec, progress=False)
    return root


def _train(out: Path, data: Path, init: Path, steps: int, *extra: str) -> int:
    args = ["zoo", "train", "sora3r-mini", "--out", str(out), "--steps", str(steps)]
    args += ["--data", str(data), "--init", str(init), "--train-clips", "2"]
    args += ["--heldout-clips", "1", "--shards", "1", "--seed", "3", "--batch", "2"]
    return vfm3d_main([*args, "--no-progress", *extra])


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, data_dir: Path, tiny_wan: Path) -> Path:
    out = tmp_path_factory.mktemp("run") / "sora3r"
    assert _train(out, data_dir, tiny_wan, 8) == 0
    return out


def test_training_writes_a_loadable_folder_and_lowers_the_losses(trained: Path) -> None:
    model_dir = trained / "model"
    for name in (CONFIG_FILE, "provenance.json", "video_vae/config.json"):
        assert (model_dir / name).is_file(), name
    assert (model_dir / "pointmap_vae" / "pointmap_vae.json").is_file()
    assert (model_dir / "joint_dit" / "joint_dit.json").is_file()
    model = Sora3RModel.from_pretrained(trained)  # the run folder is recognised too
    assert model.frames == 9 and model.size == (32, 32) and model.dit.init == "video-dit:zeros"
    stats = model.pointmap_vae.vae.config.latents_std
    assert len(stats) == 4 and stats != [1.0] * 4  # set from the training point maps
    record = json.loads((trained / "provenance.json").read_text())
    assert "zoo train sora3r-mini" in record["command"] and "--init" in record["command"]
    assert set(record["datasets"]) == {"static", "dynamic"}
    assert record["datasets"]["dynamic"]["kind"] == "dynamic"
    assert record["steps_done"] == {"pointmap_vae": 8, "dit": 8}
    summary = record["summary"]
    assert summary["data"]["train_clips"] == 4 and summary["data"]["kinds"]["dynamic"] == 2
    assert set(summary["curves"]) == {"pointmap_vae", "dit"}
    held = summary["heldout"]
    assert held["pointmap_vae_train_loss_after"] < held["pointmap_vae_train_loss_before"]
    assert held["dit_train_flow_loss_after"] < held["dit_train_flow_loss_before"]
    for key in ("pointmap_vae_heldout_after", "dit_heldout_after"):
        assert {"point_error", "depth_abs_rel", "valid_accuracy"} <= set(held[key]), key
    assert held["dit_heldout_after"]["flow_loss"] > 0
    assert json.loads((trained / "heldout_metrics.json").read_text()) == held
    for stage in ("pointmap_vae", "dit"):
        assert [r["step"] for r in read_jsonl(trained / f"train_{stage}.jsonl")] == [0, 7]
    assert (trained / "training_curve.png").stat().st_size > 1000


def test_random_init_twin_reuses_the_point_map_vae(
    trained: Path, data_dir: Path, tiny_wan: Path, tmp_path: Path
) -> None:
    out = tmp_path / "twin"
    assert _train(out, data_dir, tiny_wan, 2, "--random-init", "--pointmap-vae", str(trained)) == 0
    record = json.loads((out / "provenance.json").read_text())
    assert f"--pointmap-vae {trained}" in record["command"]
    held = record["summary"]["heldout"]
    assert held["pointmap_vae_source"] == str((trained / "pointmap_vae_stage").resolve())
    source = json.loads((trained / "heldout_metrics.json").read_text())
    assert held["pointmap_vae_heldout_after"] == source["pointmap_vae_heldout_after"]
    assert (out / "train_pointmap_vae.jsonl").read_text() == (
        trained / "train_pointmap_vae.jsonl"
    ).read_text()
    config = json.loads((out / "model" / CONFIG_FILE).read_text())
    assert config["init"] == "random:3" and config["trained_on"]["random_init"]
    assert "--random-init" in json.loads((out / "provenance.json").read_text())["command"]
    a = Sora3RModel.from_pretrained(trained).pointmap_vae.state_dict()
    b = Sora3RModel.from_pretrained(out).pointmap_vae.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_pointmap_vae_source_must_be_finished(tmp_path: Path) -> None:
    from vfm3d.recon4d.train_sora3r import copy_pointmap_vae_stage

    with pytest.raises(FileNotFoundError, match="no finished point-map VAE stage"):
        copy_pointmap_vae_stage(tmp_path / "nothing", tmp_path / "run")


def test_flips_mirror_the_point_map_before_encoding() -> None:
    """flip_pointmaps(points of a clip) == points of the mirrored clip: image columns reversed,
    cx -> W - 1 - cx, and every camera mirrored (M c2w M, M = diag(-1, 1, 1, 1))."""
    from vfm3d.world import render_clip

    clip = render_clip("dynamic", seed=2, frames=5, height=24, width=32)
    depth, valid = torch.from_numpy(clip.depth), torch.from_numpy(clip.valid)
    k, c2w = torch.from_numpy(clip.intrinsics).double(), torch.from_numpy(clip.cam_to_world)
    points, mask = pointmap_targets(depth, valid, k, c2w)
    mirror = torch.diag(torch.tensor([-1.0, 1.0, 1.0, 1.0], dtype=torch.float64))
    k_m = k.clone()
    k_m[:, 0, 2] = 31 - k[:, 0, 2]
    expected, expected_mask = pointmap_targets(
        depth.flip(-1), valid.flip(-1), k_m, mirror @ c2w @ mirror
    )
    got, got_mask = flip_pointmaps(points, mask)
    assert torch.equal(got_mask, expected_mask)
    torch.testing.assert_close(got[got_mask], expected[expected_mask], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(got[got_mask], points[mask])


def test_the_ddp_path_in_a_one_process_group(
    data_dir: Path, tiny_wan: Path, tmp_path: Path
) -> None:
    """The DistributedDataParallel wrapping (gloo, world size 1), as under torchrun."""
    import torch.distributed as dist

    clips = load_clips([data_folders(data_dir / "static", SPEC)[0][0]])
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        cfg = TrainConfig(vae_batch=2, dit_batch=2, eval_steps=1)
        summary = train_sora3r(
            tmp_path / "run", clips, None, {"pointmap_vae": 2, "dit": 2}, 0, "cpu", tiny_wan, cfg,
            progress=False,
        )  # fmt: skip
    finally:
        dist.destroy_process_group()
    assert summary["world_size"] == 1 and summary["data"]["heldout_clips"] == 0
    assert Sora3RModel.from_pretrained(tmp_path / "run").frames == 9
    with pytest.raises(ValueError, match="divisible"):
        Distributed(rank=0, world=3).share(8)


def test_bad_arguments(
    data_dir: Path, tiny_wan: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _train(tmp_path / "a", data_dir, tmp_path / "missing", 1) == 2
    assert "--init" in capsys.readouterr().err
    args = ["zoo", "train", "vggt-mini", "--out", str(tmp_path / "b"), "--random-init"]
    assert vfm3d_main(args) == 2
    assert "--random-init: not an option of zoo model 'vggt-mini'" in capsys.readouterr().err
    clips = load_clips([data_folders(data_dir / "static", SPEC)[0][0]])
    clips.frames = clips.frames[:, :8]  # 8 frames: not 4k+1
    with pytest.raises(ValueError, match="4k\\+1"):
        train_sora3r(tmp_path / "c", clips, None, {"pointmap_vae": 1, "dit": 1}, init=tiny_wan)
