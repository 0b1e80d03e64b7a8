"""T2V, T2V+C, V2C and the camera-trajectory smoother."""

from __future__ import annotations

import pytest
import torch

from vfm3d.geometry import axis_angle_to_rotation
from vfm3d.jointgen.model import JointGenerator
from vfm3d.jointgen.modes import (
    rotation_log,
    smooth_trajectory,
    text_to_video,
    trajectory_jitter,
    video_to_cameras,
)
from vfm3d.zoo.wan_mini import sample_latents, shifted_sigmas

CORPUS = ["a red sofa in a room, the camera walks left", "a blue car on the ground"]


@pytest.fixture(scope="module")
def gen() -> JointGenerator:
    return JointGenerator.tiny(seed=0, corpus=CORPUS).eval()


def _steady(frames: int = 12) -> torch.Tensor:
    """A straight constant-velocity path with a constant body angular velocity."""
    t = torch.arange(frames, dtype=torch.float64)
    r0 = axis_angle_to_rotation(torch.tensor([0.3, -0.2, 0.1], dtype=torch.float64))
    omega = torch.tensor([0.02, 0.08, -0.03], dtype=torch.float64)
    poses = torch.eye(4, dtype=torch.float64).repeat(frames, 1, 1)
    poses[:, :3, :3] = r0 @ axis_angle_to_rotation(t[:, None] * omega)
    poses[:, :3, 3] = torch.tensor([0.5, 0.1, -0.2]) + t[:, None] * torch.tensor([0.1, 0.0, 0.2])
    return poses


def test_smoother_leaves_a_steady_path_unchanged() -> None:
    steady = _steady()
    assert torch.allclose(smooth_trajectory(steady), steady, atol=1e-10)
    assert torch.allclose(smooth_trajectory(steady, weight=50.0), steady, atol=1e-10)
    assert trajectory_jitter(steady)["translation"] < 1e-12
    short = steady[:2].clone()
    short[1, :3, 3] += 1.0
    assert torch.equal(smooth_trajectory(short), short)


def test_smoother_reduces_jitter() -> None:
    steady = _steady()
    gen = torch.Generator().manual_seed(0)
    noisy = steady.clone()
    noisy[:, :3, 3] += 0.03 * torch.randn(12, 3, generator=gen, dtype=torch.float64)
    kick = axis_angle_to_rotation(0.03 * torch.randn(12, 3, generator=gen, dtype=torch.float64))
    noisy[:, :3, :3] = noisy[:, :3, :3] @ kick
    smoothed = smooth_trajectory(noisy)
    before, after = trajectory_jitter(noisy), trajectory_jitter(smoothed)
    assert after["translation"] < 0.5 * before["translation"]
    assert after["rotation_deg"] < 0.5 * before["rotation_deg"]

    def error(poses: torch.Tensor) -> tuple[float, float]:
        centres = (poses[:, :3, 3] - steady[:, :3, 3]).norm(dim=-1).mean()
        rel = steady[:, :3, :3].transpose(-1, -2) @ poses[:, :3, :3]
        return float(centres), float(rotation_log(rel).norm(dim=-1).mean())

    assert all(a < b for a, b in zip(error(smoothed), error(noisy), strict=True))
    det = torch.linalg.det(smoothed[:, :3, :3])
    assert torch.allclose(det, torch.ones_like(det))
    assert torch.equal(smooth_trajectory(noisy, weight=0.0), noisy)


@torch.no_grad()
def test_v2c_shapes_and_determinism(gen: JointGenerator) -> None:
    torch.manual_seed(0)
    video = torch.rand(2, 9, 3, 32, 32)
    pred = video_to_cameras(gen, video, timestep=100, seed=1)
    assert pred.frames.tolist() == list(range(9))
    assert pred.pose_enc.shape == (2, 9, 9)
    assert pred.cam_to_world.shape == pred.cam_to_world_raw.shape == (2, 9, 4, 4)
    assert pred.intrinsics.shape == (2, 9, 3, 3)
    assert pred.points.shape == (2, 9, 32, 32, 3)
    assert pred.depth.shape == pred.points_conf.shape == pred.depth_conf.shape == (2, 9, 32, 32)
    rot = pred.cam_to_world[..., :3, :3]
    eye = torch.eye(3, dtype=rot.dtype).expand_as(rot)
    assert torch.allclose(rot.transpose(-1, -2) @ rot, eye, atol=1e-9)
    again = video_to_cameras(gen, video, timestep=100, seed=1)
    assert torch.equal(again.pose_enc, pred.pose_enc)
    other = video_to_cameras(gen, video, timestep=100, seed=2)
    assert not torch.equal(other.pose_enc, pred.pose_enc)
    raw = video_to_cameras(gen, video, timestep=100, seed=1, smooth=False)
    assert torch.equal(raw.cam_to_world, raw.cam_to_world_raw)
    with pytest.raises(ValueError, match="timestep"):
        video_to_cameras(gen, video, timestep=1000)


@torch.no_grad()
def test_t2v_matches_wan_mini_sampler_and_is_seeded(gen: JointGenerator) -> None:
    shape = (1, *gen.latent_shape(9, 32, 32))
    empty = gen.encode_prompts([None])
    reference = sample_latents(gen.transformer, empty, shape, steps=4, seed=7)
    ours = text_to_video(gen, None, seeds=[7], steps=4)
    assert torch.allclose(ours.latents, reference, atol=1e-6)
    assert ours.videos.shape == (1, 9, 3, 32, 32) and ours.cameras is None
    pair = text_to_video(gen, "a red sofa", seeds=[3, 7], steps=4)
    single = text_to_video(gen, "a red sofa", seeds=[7], steps=4)
    assert torch.allclose(pair.latents[1], single.latents[0], atol=1e-5)  # own noise per seed
    assert not torch.allclose(pair.latents[1], ours.latents[0])  # the prompt conditions
    again = text_to_video(gen, "a red sofa", seeds=[3, 7], steps=4)
    assert torch.equal(again.videos, pair.videos)
    guided = text_to_video(gen, "a red sofa", seeds=[7], steps=4, guidance=3.0)
    assert not torch.allclose(guided.latents, single.latents)


@torch.no_grad()
def test_t2v_with_cameras_reads_the_last_step(gen: JointGenerator) -> None:
    result = text_to_video(gen, ["a red sofa", None], seeds=[0, 1], steps=3, cameras=True)
    cams = result.cameras
    assert cams is not None and cams.pose_enc.shape == (2, 9, 9)
    assert cams.points.shape == (2, 9, 32, 32, 3)
    assert cams.timestep == pytest.approx(float(shifted_sigmas(3)[2]) * 1000.0)
    assert cams.meta["mode"] == "T2V+C"
    plain = text_to_video(gen, ["a red sofa", None], seeds=[0, 1], steps=3)
    assert torch.equal(plain.videos, result.videos)  # reading the head changes nothing
