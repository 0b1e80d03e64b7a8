"""Pseudo ground truth from a tiny VGGT on tiny hand-made clips (vfm3d.data.pseudo_gt)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from vfm3d.clip import Clip, write_clip_folder
from vfm3d.data.pseudo_gt import (
    _Chunk,
    align_chunk,
    model_input_size,
    predict_pseudo_gt,
    read_pseudo_gt,
    write_pseudo_gt,
)
from vfm3d.data.transforms import resize
from vfm3d.geometry.camera import invert_rigid
from vfm3d.geometry.pose_encoding import decode_pose
from vfm3d.geometry.rotation import axis_angle_to_rotation
from vfm3d.models.vggt import VGGT, VGGTConfig


@pytest.fixture(scope="module")
def model() -> VGGT:
    vggt = VGGT.random(VGGTConfig.tiny(enable_track=False, init_values=1.0), seed=0).eval()
    with torch.no_grad():  # random heads may predict a zero field of view; make it ~1 rad
        vggt.camera_head.pose_branch.fc2.bias[7:] = 0.5
    return vggt


def make_clip(t: int = 3, h: int = 20, w: int = 30, clip_id: str = "c0", seed: int = 0) -> Clip:
    rng = np.random.default_rng(seed)
    k = np.array([[w, 0, (w - 1) / 2], [0, w, (h - 1) / 2], [0, 0, 1]], dtype=np.float32)
    return Clip(
        frames=rng.integers(0, 256, size=(t, h, w, 3), dtype=np.uint8),
        intrinsics=np.repeat(k[None], t, axis=0),
        cam_to_world=np.repeat(np.eye(4)[None], t, axis=0),
        meta={"id": clip_id, "source": "test"},
    ).validate()


def images_of(clip: Clip) -> torch.Tensor:
    return torch.from_numpy(clip.frames).permute(0, 3, 1, 2).float()[None] / 255.0


def test_model_input_size_keeps_aspect_on_patch_multiples() -> None:
    assert model_input_size(480, 640, 518, 14) == (392, 518)
    assert model_input_size(640, 480, 518, 14) == (518, 392)
    assert model_input_size(20, 30, 28, 14) == (14, 28)
    with pytest.raises(ValueError, match="long_side"):
        model_input_size(20, 30, 10, 14)


def test_native_resolution_equals_the_model_outputs(model: VGGT) -> None:
    clip = make_clip(3, 28, 42)
    gt = predict_pseudo_gt(model, clip, long_side=42)
    with torch.no_grad():
        out = model(images_of(clip))
    np.testing.assert_allclose(gt["depth"], out["depth"][0, ..., 0].numpy(), rtol=1e-6)
    np.testing.assert_allclose(gt["points"], out["world_points"][0].numpy(), rtol=1e-6)
    np.testing.assert_allclose(gt["depth_conf"], out["depth_conf"][0].numpy(), rtol=1e-6)
    world_to_cam, k = decode_pose(out["pose_enc"][0].double(), (28, 42))
    np.testing.assert_allclose(gt["cam_to_world"], invert_rigid(world_to_cam).numpy(), atol=1e-9)
    np.testing.assert_allclose(gt["intrinsics"][:, 0, 0], k[:, 0, 0].numpy(), rtol=1e-5)
    np.testing.assert_allclose(gt["intrinsics"][:, :2, 2], [[20.5, 13.5]] * 3)  # (W-1)/2, (H-1)/2


def test_other_resolutions_are_mapped_back_to_the_clip(model: VGGT) -> None:
    clip = make_clip(2, 20, 30)
    gt = predict_pseudo_gt(model, clip)  # runs at 14 x 28
    assert gt["depth"].shape == (2, 20, 30) and gt["depth"].dtype == np.float32
    assert gt["points"].shape == (2, 20, 30, 3) and gt["points_conf"].shape == (2, 20, 30)
    assert gt["cam_to_world"].shape == (2, 4, 4) and gt["cam_to_world"].dtype == np.float64
    assert (gt["depth"] > 0).all() and (gt["depth_conf"] >= 1).all()
    rot = gt["cam_to_world"][:, :3, :3]
    np.testing.assert_allclose(
        rot @ rot.transpose(0, 2, 1), np.eye(3)[None].repeat(2, 0), atol=1e-9
    )
    np.testing.assert_allclose(gt["cam_to_world"][:, 3], [[0, 0, 0, 1]] * 2)
    small_frames = resize((20, 30), (14, 28)).warp_image(clip.frames)
    with torch.no_grad():
        small = model(images_of(Clip(small_frames, clip.intrinsics, clip.cam_to_world)))
    _, k_small = decode_pose(small["pose_enc"][0].double(), (14, 28))
    np.testing.assert_allclose(gt["intrinsics"][:, 0, 0], k_small[:, 0, 0] * 30 / 28, rtol=1e-5)
    np.testing.assert_allclose(gt["intrinsics"][:, 1, 1], k_small[:, 1, 1] * 20 / 14, rtol=1e-5)
    depth_small = small["depth"][0, ..., 0]
    np.testing.assert_allclose(gt["depth"].mean(), float(depth_small.mean()), rtol=1e-2)
    np.testing.assert_allclose(gt["intrinsics"][:, :2, 2], [[14.5, 9.5]] * 2, atol=1e-5)


def test_mixed_precision_gives_float32_close_results(model: VGGT) -> None:
    clip = make_clip(2, 28, 28)
    full = predict_pseudo_gt(model, clip)
    mixed = predict_pseudo_gt(model, clip, amp_dtype=torch.bfloat16)
    assert mixed["depth"].dtype == np.float32
    np.testing.assert_allclose(mixed["depth"], full["depth"], rtol=0.05)


def test_align_chunk_undoes_a_similarity() -> None:
    gen = torch.Generator().manual_seed(0)
    s = 2.5
    rot_g = axis_angle_to_rotation(torch.tensor([0.3, -0.2, 0.5], dtype=torch.float64))
    t_g = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    cam_to_world = torch.eye(4, dtype=torch.float64).repeat(2, 1, 1)
    cam_to_world[1, :3, :3] = axis_angle_to_rotation(torch.tensor([0.0, 0.4, 0.0]).double())
    cam_to_world[:, :3, 3] = torch.rand(2, 3, generator=gen).double()
    depth = 1 + torch.rand(2, 4, 5, generator=gen)
    points = torch.randn(2, 4, 5, 3, generator=gen)
    ref = _Chunk(depth, depth, points, depth, cam_to_world, torch.eye(3).repeat(2, 1, 1))
    moved_c2w = cam_to_world.clone()
    moved_c2w[:, :3, :3] = rot_g @ cam_to_world[:, :3, :3]
    moved_c2w[:, :3, 3] = (cam_to_world[:, :3, 3] @ rot_g.T + t_g) / s
    moved_points = ((points.double() @ rot_g.T + t_g) / s).float()
    moved = _Chunk(depth / s, depth, moved_points, depth, moved_c2w, ref.intrinsics)
    back = align_chunk(moved, depth[0], cam_to_world[0])
    torch.testing.assert_close(back.depth, depth)
    torch.testing.assert_close(back.cam_to_world, cam_to_world)
    torch.testing.assert_close(back.points, points, atol=1e-5, rtol=1e-5)


def test_chunks_share_the_anchor_frame(model: VGGT) -> None:
    clip = make_clip(4, 28, 28)
    chunked = predict_pseudo_gt(model, clip, batch_frames=2)
    first = predict_pseudo_gt(model, clip.subset([0, 1]))
    pair = predict_pseudo_gt(model, clip.subset([0, 2]))
    assert chunked["depth"].shape == (4, 28, 28)
    for key in ("depth", "points", "cam_to_world"):
        np.testing.assert_allclose(chunked[key][:2], first[key], rtol=1e-5, atol=1e-6)
    scale = np.median(first["depth"][0] / pair["depth"][0])
    np.testing.assert_allclose(chunked["depth"][2], scale * pair["depth"][1], rtol=1e-5)
    with pytest.raises(ValueError, match="batch_frames"):
        predict_pseudo_gt(model, clip, batch_frames=1)


def test_write_is_beside_clips_atomic_and_resumable(model: VGGT, tmp_path: Path) -> None:
    clips = [make_clip(2, 20, 30, "a", 1), make_clip(3, 14, 28, "b", 2)]
    write_clip_folder(tmp_path, clips)
    done = write_pseudo_gt(tmp_path, model, progress=False)
    assert [p.name for p in done["written"]] == [
        "a.pseudo_gt.safetensors",
        "b.pseudo_gt.safetensors",
    ]
    assert not list(tmp_path.glob(".*.tmp"))
    arrays, info = read_pseudo_gt(tmp_path / "b.pseudo_gt.safetensors")
    expected = predict_pseudo_gt(model, clips[1])
    for key, value in expected.items():
        np.testing.assert_array_equal(arrays[key], value)
    assert info["clip_id"] == "b" and info["input_hw"] == [14, 28]
    assert info["model"] == model.name_or_path

    again = write_pseudo_gt(tmp_path, model, progress=False)
    assert again["written"] == [] and len(again["skipped"]) == 2
    (tmp_path / "a.pseudo_gt.safetensors").write_bytes(b"half-written")  # corrupt: redone
    fixed = write_pseudo_gt(tmp_path, model, progress=False)
    assert [p.name for p in fixed["written"]] == ["a.pseudo_gt.safetensors"]
    other = write_pseudo_gt(tmp_path, model, model_id="another-model", progress=False)
    assert len(other["written"]) == 2
    assert (
        len(
            write_pseudo_gt(
                tmp_path, model, model_id="another-model", overwrite=True, progress=False
            )["written"]
        )
        == 2
    )


def test_refuses_a_model_without_heads(tmp_path: Path) -> None:
    folder = VGGT.random(VGGTConfig.tiny(), seed=0).save_pretrained(tmp_path / "w")
    headless = VGGT.from_pretrained(folder, aggregator_only=True)
    with pytest.raises(ValueError, match="camera_head"):
        predict_pseudo_gt(headless, make_clip())
    with pytest.raises(FileNotFoundError, match=r"index\.json"):
        write_pseudo_gt(tmp_path / "nowhere", VGGT.random(VGGTConfig.tiny()), progress=False)
