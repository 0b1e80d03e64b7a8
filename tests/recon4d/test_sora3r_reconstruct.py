"""Sora3R reconstruction: a tiny model folder, `vfm3d reconstruct` on an mp4 and a clip folder at
the input's resolution (files readable by evo, trimesh, safetensors), uncertainty for K > 1,
windows, determinism, consistency of the resized outputs, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from tests.data.test_video_input import write_video
from vfm3d.cli import main as vfm3d_main
from vfm3d.clip import ClipFolderWriter
from vfm3d.recon4d.sora3r import (
    CONFIG_FILE,
    Sora3RModel,
    Sora3RReconstructor,
    is_sora3r_model,
    load_sora3r,
    recover_cameras,
    resolve_model_folder,
)
from vfm3d.world import render_clip

FRAMES = 5  # the tiny Wan VAE: temporal factor 4, spatial 8; 32x32 -> 4x4 latents


def tiny_model() -> Sora3RModel:
    """A random tiny Sora3R (the tiny Wan's VAE and DiT, widened): 5-frame 32x32 windows."""
    from diffusers import AutoencoderKLWan, WanTransformer3DModel

    from vfm3d.backbones.wan import tiny_configs
    from vfm3d.recon4d.joint_dit import JointDiT
    from vfm3d.recon4d.pointmap_vae import PointmapVAE
    from vfm3d.zoo.common import seeded_init

    tcfg, vcfg = tiny_configs()
    vae, dit = seeded_init(0, lambda: (AutoencoderKLWan(**vcfg), WanTransformer3DModel(**tcfg)))
    prompt = torch.randn(1, 8, 16, generator=torch.Generator().manual_seed(5))
    return Sora3RModel(
        vae,
        PointmapVAE.from_video_vae(vae),
        JointDiT.from_video_dit(dit, prompt),
        {"frames": FRAMES, "height": 32, "width": 32, "steps": 2, "fallback_fov_deg": 50.0},
    )


def save_tiny_model(folder: Path) -> Path:
    return tiny_model().save_pretrained(folder, video_vae_source="tiny")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("sora3r") / "model")


@pytest.fixture(scope="module")
def clip():
    return render_clip("dynamic", seed=11, frames=7, height=48, width=64, clip_id="walk")


def test_folder_layout_and_loading(model_dir: Path) -> None:
    for name in (CONFIG_FILE, "video_vae/config.json", "pointmap_vae/pointmap_vae.json"):
        assert (model_dir / name).is_file(), name
    assert (model_dir / "joint_dit" / "joint_dit.json").is_file()
    config = json.loads((model_dir / CONFIG_FILE).read_text())
    assert config["video_vae"]["copied"] and config["init"] == "video-dit:zeros"
    model = load_sora3r(model_dir)
    assert model.frames == FRAMES and model.size == (32, 32) and model.multiple == 16
    assert is_sora3r_model(model_dir) and is_sora3r_model(model_dir.parent)  # run folder
    assert resolve_model_folder(model_dir.parent) == model_dir
    assert is_sora3r_model("zoo/sora3r-mini") and not is_sora3r_model("zoo/vggt-mini")


def test_mp4_end_to_end_at_the_input_resolution(tmp_path: Path, model_dir: Path, clip) -> None:
    import trimesh
    from evo.tools import file_interface
    from safetensors.torch import load_file as load_torch

    video = write_video(tmp_path / "walk.mp4", clip.frames)
    out = tmp_path / "recon"
    argv = ["reconstruct", str(video), "--model", str(model_dir), "--out", str(out), "--quiet"]
    assert vfm3d_main([*argv, "--samples", "2", "--steps", "2", "--seed", "1"]) == 0
    folder = out / "walk"
    for name in ("points.ply", "trajectory_tum.txt", "depth.safetensors", "cameras.json"):
        assert (folder / name).is_file(), name
    assert (folder / "report.html").is_file() and (folder / "uncertainty.safetensors").is_file()
    traj = file_interface.read_tum_trajectory_file(str(folder / "trajectory_tum.txt"))
    assert traj.num_poses == 7
    depth = load_torch(str(folder / "depth.safetensors"))["depth"]
    assert tuple(depth.shape) == (7, 48, 64)
    unc = load_file(str(folder / "uncertainty.safetensors"))
    assert unc["uncertainty"].shape == (7, 48, 64) and unc["valid_fraction"].shape == (7, 48, 64)
    assert np.isfinite(unc["uncertainty"]).all() and (unc["uncertainty"] >= 0).all()
    cloud = trimesh.load(str(folder / "points.ply"))
    assert len(cloud.vertices) > 0
    cams = json.loads((folder / "cameras.json").read_text())["frames"]
    assert len(cams) == 7 and (cams[0]["width"], cams[0]["height"]) == (64, 48)
    k = np.array(cams[0]["K"])  # the model's (W - 1) / 2 principal point, mapped to 64 x 48
    np.testing.assert_allclose(k[:2, 2], [31.5, 23.5], atol=1e-6)
    info = json.loads((folder / "reconstruction.json").read_text())
    assert info["input_hw"] == [48, 64] and info["model_hw"] == [32, 32]
    assert [w["frames"] for w in info["windows"]] == [[0, 5], [3, 7]]  # default overlap 2
    assert info["samples"] == 2 and info["steps"] == 2 and info["seed"] == 1


def test_clip_folder_is_scored_without_uncertainty_for_one_sample(
    tmp_path: Path, model_dir: Path, clip
) -> None:
    writer = ClipFolderWriter(tmp_path / "clips")
    writer.add(clip)
    out = tmp_path / "recon"
    argv = ["reconstruct", str(tmp_path / "clips"), "--model", str(model_dir), "--out", str(out)]
    assert vfm3d_main([*argv, "--quiet", "--overlap", "1"]) == 0
    metrics = json.loads((out / "walk" / "metrics.json").read_text())
    assert {"ate", "rpe_trans", "rpe_rot_deg", "abs_rel", "delta1"} <= set(metrics)
    assert not (out / "walk" / "uncertainty.safetensors").exists()
    info = json.loads((out / "walk" / "reconstruction.json").read_text())
    assert [w["frames"] for w in info["windows"]] == [[0, 5], [4, 7]] and info["overlap"] == 1


def test_deterministic_consistent_and_windowed(model_dir: Path, clip) -> None:
    from vfm3d.geometry import invert_rigid, project, transform_points

    model = load_sora3r(model_dir)
    runner = Sora3RReconstructor(model, steps=2, samples=2, seed=3, progress=False)
    a, b = runner.reconstruct(clip), runner.reconstruct(clip)
    assert np.array_equal(a.depth, b.depth) and np.array_equal(a.uncertainty, b.uncertainty)
    assert a.frames.shape == (7, 48, 64, 3) and np.array_equal(a.frames, clip.frames)
    assert runner.windows(12) == [(0, 5), (3, 8), (6, 11), (9, 12)]
    # depth, intrinsics, cameras and points agree at the input resolution
    assert a.valid.any() and not a.valid.all()  # predicted geometry and predicted sky
    cam = transform_points(
        invert_rigid(torch.from_numpy(a.cam_to_world)), torch.from_numpy(a.points).double()
    )
    uv, _ = project(cam.double(), torch.from_numpy(a.intrinsics))
    grid = np.stack(np.meshgrid(np.arange(64), np.arange(48)), -1)
    np.testing.assert_allclose(
        uv.numpy()[a.valid], np.broadcast_to(grid, uv.shape)[a.valid], atol=1e-3
    )
    np.testing.assert_allclose(cam[..., 2].numpy(), a.depth, rtol=1e-4, atol=1e-5)
    assert not a.confident().any() or a.valid[a.confident()].all()
    short = runner.reconstruct(clip.subset(range(3)))  # fewer frames than a window: padded
    assert short.depth.shape == (3, 48, 64)
    one = Sora3RReconstructor(model, steps=2, samples=1, progress=False).reconstruct(clip)
    assert one.uncertainty is None and one.valid_fraction is None


def test_recovery_falls_back_to_the_default_field_of_view() -> None:
    points = torch.zeros(2, 8, 8, 3)
    points[..., 2] = 1.0
    valid = torch.zeros(2, 8, 8, dtype=torch.bool)  # nothing to fit the focal on
    out = recover_cameras(points, valid, fallback_fov_deg=90.0)
    assert out["focal_fallback"] and out["fallback"][1]
    np.testing.assert_allclose(out["intrinsics"][0, 0, 0], 4.0)


def test_bad_inputs_are_clear_errors(
    tmp_path: Path, model_dir: Path, clip, capsys: pytest.CaptureFixture[str]
) -> None:
    writer = ClipFolderWriter(tmp_path / "clips")
    writer.add(clip)
    base = ["reconstruct", str(tmp_path / "clips"), "--out", str(tmp_path / "r"), "--quiet"]
    assert vfm3d_main([*base, "--model", str(model_dir), "--window", "9"]) == 2
    assert "windows of the 5 frames" in capsys.readouterr().err
    assert vfm3d_main([*base, "--model", "zoo/vggt-mini", "--samples", "2"]) == 2
    assert "only apply to Sora3R" in capsys.readouterr().err
    model = load_sora3r(model_dir)
    with pytest.raises(ValueError, match="overlap"):
        Sora3RReconstructor(model, overlap=FRAMES)
    with pytest.raises(ValueError, match="multiples of 16"):
        Sora3RReconstructor(model, size=(24, 32))
    with pytest.raises(FileNotFoundError, match="not a Sora3R model folder"):
        load_sora3r(tmp_path / "clips")
    # a video VAE that is not the one the model was trained with
    tampered = save_tiny_model(tmp_path / "tampered")
    config = json.loads((tampered / CONFIG_FILE).read_text())
    config["video_vae"]["sha256"] = "0" * 64
    (tampered / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(ValueError, match="sha256"):
        load_sora3r(tampered)
