"""Clips of the procedural world: format, cameras, intrinsics, determinism, meta, datasets, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from vfm3d.cli import main as vfm3d_main
from vfm3d.clip import Clip, ClipFolder
from vfm3d.world import (
    FOV_RANGE_DEG,
    Motion,
    clip_seed,
    colorize_depth,
    contact_sheet,
    generate_dataset,
    render_clip,
)
from vfm3d.world import generate as generate_module
from vfm3d.world.textures import evaluate, hash3, random_texture

H, W, T = 40, 56, 5
KINDS = ("object", "scene", "dynamic")


@pytest.fixture(scope="module")
def clips() -> dict[tuple[str, int], Clip]:
    return {(k, s): render_clip(k, s, T, H, W) for k in KINDS for s in (0, 1)}


def test_dtypes_shapes_and_masks(clips) -> None:
    for (kind, _), clip in clips.items():
        assert clip.frames.shape == (T, H, W, 3) and clip.frames.dtype == np.uint8
        assert clip.depth.dtype == np.float32 and clip.depth.shape == (T, H, W)
        assert clip.valid.dtype == np.bool_ and clip.dynamic.dtype == np.bool_
        assert clip.intrinsics.dtype == np.float32 and clip.cam_to_world.dtype == np.float64
        assert np.all(clip.depth[clip.valid] > 0)
        assert np.all(clip.depth[~clip.valid] == 0)
        assert clip.valid.mean() > 0.05
        if kind != "dynamic":
            assert not clip.dynamic.any()
        clip.validate()
    assert min(clip.valid.mean() for clip in clips.values()) < 0.95, "sky is invalid"


def test_rotations_orthonormal_det_plus_one(clips) -> None:
    for clip in clips.values():
        rot = clip.cam_to_world[:, :3, :3]
        np.testing.assert_allclose(
            rot @ np.swapaxes(rot, 1, 2), np.broadcast_to(np.eye(3), rot.shape), atol=1e-12
        )
        np.testing.assert_allclose(np.linalg.det(rot), 1.0, atol=1e-12)
        np.testing.assert_array_equal(clip.cam_to_world[:, 3], np.tile([0, 0, 0, 1.0], (T, 1)))


def test_intrinsics_match_sampled_fov(clips) -> None:
    for clip in clips.values():
        meta = clip.meta
        assert meta["fov_range_deg"] == list(FOV_RANGE_DEG)
        fov_x = np.radians(meta["fov_x_deg"])
        fov_y = np.radians(meta["fov_y_deg"])
        assert np.all(
            (np.degrees(fov_x) >= FOV_RANGE_DEG[0] - 1e-6)
            & (np.degrees(fov_x) <= FOV_RANGE_DEG[1] + 1e-6)
        )
        k = clip.intrinsics.astype(np.float64)
        np.testing.assert_allclose(k[:, 0, 0], (W / 2) / np.tan(fov_x / 2), rtol=1e-5)
        np.testing.assert_allclose(k[:, 1, 1], (H / 2) / np.tan(fov_y / 2), rtol=1e-5)
        np.testing.assert_allclose(k[:, 0, 0], k[:, 1, 1], rtol=1e-6)  # square pixels
        np.testing.assert_allclose(k[:, 0, 2], (W - 1) / 2)  # pixel centres at integers
        np.testing.assert_allclose(k[:, 1, 2], (H - 1) / 2)
        assert np.all(k[:, 0, 1] == 0)


def test_object_orbit_varies_radius_and_focal(clips) -> None:
    clip = render_clip("object", 4, 12, H, W)
    centre = np.asarray(clip.meta["objects"][0]["center"])
    dist = np.linalg.norm(clip.cam_to_world[:, :3, 3] - centre, axis=1)
    assert dist.max() - dist.min() > 0.01 * dist.mean()
    assert np.ptp(clip.intrinsics[:, 0, 0]) > 0
    # the camera looks at the main object: its box centre projects into every frame
    w2c = clip.world_to_cam()
    cam = np.einsum("tij,j->ti", w2c[:, :3, :3], centre) + w2c[:, :3, 3]
    assert np.all(cam[:, 2] > 0)
    uv = np.einsum("tij,tj->ti", clip.intrinsics.astype(np.float64), cam)
    u, v = uv[:, 0] / uv[:, 2], uv[:, 1] / uv[:, 2]
    assert np.all((u > 0) & (u < W - 1) & (v > 0) & (v < H - 1))


def test_scene_camera_moves_smoothly() -> None:
    clip = render_clip("scene", 3, 20, H, W)
    centres = clip.cam_to_world[:, :3, 3]
    steps = np.linalg.norm(np.diff(centres, axis=0), axis=1)
    assert steps.sum() > 0.5, "the camera walks (0.05 m per frame)"
    assert steps.max() < 3.0 * np.median(steps) + 1e-6, "no jumps"
    fwd = clip.cam_to_world[:, :3, 2]
    turn = np.degrees(np.arccos(np.clip(np.sum(fwd[1:] * fwd[:-1], axis=1), -1, 1)))
    assert turn.max() < 30.0


def test_same_seed_identical_bytes_different_seeds_differ(tmp_path) -> None:
    for kind in KINDS:
        a = render_clip(kind, 7, 3, 24, 32, clip_id="x")
        b = render_clip(kind, 7, 3, 24, 32, clip_id="x")
        c = render_clip(kind, 8, 3, 24, 32, clip_id="x")
        a.save(tmp_path / "a.safetensors")
        b.save(tmp_path / "b.safetensors")
        c.save(tmp_path / "c.safetensors")
        assert (tmp_path / "a.safetensors").read_bytes() == (
            tmp_path / "b.safetensors"
        ).read_bytes()
        assert (tmp_path / "a.safetensors").read_bytes() != (
            tmp_path / "c.safetensors"
        ).read_bytes()
        assert not np.array_equal(a.frames, c.frames)


def test_meta_records_objects(clips) -> None:
    for (kind, seed), clip in clips.items():
        meta = clip.meta
        assert meta["source"] == "world" and meta["kind"] == kind and meta["seed"] == seed
        assert meta["frame_indices"] == list(range(T)) and meta["fps"] > 0
        assert meta["id"] == f"world-{kind}-{seed}"
        assert len(meta["objects"]) >= 1
        for obj in meta["objects"]:
            assert isinstance(obj["class"], str)
            assert len(obj["center"]) == 3 and len(obj["size"]) == 3 and len(obj["color"]) == 3
            assert all(s > 0 for s in obj["size"])
            assert isinstance(obj["yaw"], float) and isinstance(obj["dynamic"], bool)
            assert obj["center"][2] > 0 and obj["center"][2] - obj["size"][2] / 2 >= -1e-6
            if obj["dynamic"]:
                assert len(obj["centers"]) == T and len(obj["yaws"]) == T
        json.dumps(meta)
    dynamic_objects = [
        o for s in (0, 1) for o in clips[("dynamic", s)].meta["objects"] if o["dynamic"]
    ]
    assert dynamic_objects, "dynamic clips have moving objects"


def test_object_boxes_contain_visible_surfaces() -> None:
    """Every surface point lies in the ground plane or inside some recorded object box."""
    clip = render_clip("scene", 2, 2, H, W)
    objs = clip.meta["objects"]
    v, u = np.nonzero(clip.valid[0])
    rays = np.linalg.inv(clip.intrinsics[0].astype(np.float64)) @ np.stack([u, v, np.ones_like(u)])
    pts = (rays * clip.depth[0][v, u]).T @ clip.cam_to_world[0, :3, :3].T + clip.cam_to_world[
        0, :3, 3
    ]
    inside = np.abs(pts[:, 2]) < 1e-3  # ground
    for obj in objs:
        c, s = np.cos(obj["yaw"]), np.sin(obj["yaw"])
        rel = pts - np.asarray(obj["center"])
        local = np.stack(
            [c * rel[:, 0] + s * rel[:, 1], -s * rel[:, 0] + c * rel[:, 1], rel[:, 2]], 1
        )
        inside |= np.all(np.abs(local) <= np.asarray(obj["size"]) / 2 + 1e-3, axis=1)
    assert inside.mean() > 0.999


def test_single_frame_and_bad_arguments() -> None:
    clip = render_clip("object", 0, 1, 8, 8)
    assert clip.frames.shape == (1, 8, 8, 3)
    with pytest.raises(ValueError, match="kind"):
        render_clip("nope", 0, 2, 16, 16)
    with pytest.raises(ValueError, match="frames"):
        render_clip("object", 0, 0, 16, 16)
    with pytest.raises(ValueError, match="height and width"):
        render_clip("object", 0, 2, 7, 16)
    with pytest.raises(ValueError, match="seed"):
        render_clip("object", -1, 2, 16, 16)


def test_textures_deterministic_and_in_range() -> None:
    rng = np.random.default_rng(0)
    ix = np.arange(-50, 50, dtype=np.int32)
    np.testing.assert_array_equal(hash3(ix, ix * 3, -ix, 5), hash3(ix, ix * 3, -ix, 5))
    assert len(np.unique(hash3(ix, ix, ix, 5))) == len(ix)
    pts = rng.uniform(-5, 5, size=(3, 500)).astype(np.float32)
    for kind in ("checker", "stripes", "noise", "cells"):
        tex = random_texture(np.random.default_rng(1), 0.3, kind=kind)
        col = evaluate(tex, *pts)
        assert col.shape == (500, 3) and np.all((col >= 0) & (col <= 1))
        assert col.std(axis=0).max() > 0.03, f"{kind} texture has detail"
        np.testing.assert_array_equal(col, evaluate(tex, *pts))


# ---------------------------------------------------------------------- datasets
def test_generate_dataset_and_resume(tmp_path, monkeypatch) -> None:
    out = tmp_path / "ds"
    folder = generate_dataset(out, "mixed", 3, 2, 16, 24, seed=11, progress=False)
    assert folder.ids == ["object-s11-000000", "scene-s11-000001", "object-s11-000002"]
    first = folder.load("scene-s11-000001")
    assert first.meta["seed"] == clip_seed(11, 1) and first.meta["kind"] == "scene"
    np.testing.assert_array_equal(
        first.frames, render_clip("scene", clip_seed(11, 1), 2, 16, 24).frames
    )
    # simulate a crash after the first clip: index lists one clip, the others are gone
    index = json.loads((out / "index.json").read_text())
    index["clips"] = index["clips"][:1]
    (out / "index.json").write_text(json.dumps(index))
    (out / "scene-s11-000001.safetensors").unlink()
    calls = []
    real = generate_module.render_clip
    monkeypatch.setattr(
        generate_module, "render_clip", lambda *a, **k: calls.append(a) or real(*a, **k)
    )
    folder = generate_dataset(out, "mixed", 3, 2, 16, 24, seed=11, progress=False)
    assert len(calls) == 2 and sorted(folder.ids) == [
        "object-s11-000000",
        "object-s11-000002",
        "scene-s11-000001",
    ]
    np.testing.assert_array_equal(folder.load("scene-s11-000001").frames, first.frames)
    # a different spec in the same folder is refused, unless overwrite
    with pytest.raises(FileExistsError, match="overwrite"):
        generate_dataset(out, "object", 2, 2, 16, 24, seed=11, progress=False)
    folder = generate_dataset(out, "object", 2, 2, 16, 24, seed=11, overwrite=True, progress=False)
    assert folder.ids == ["object-s11-000000", "object-s11-000001"]
    assert not (out / "scene-s11-000001.safetensors").exists()


def test_generate_refuses_foreign_folder(tmp_path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        generate_dataset(tmp_path, "object", 1, 1, 16, 16, seed=0, progress=False)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_contact_sheet(tmp_path, clips) -> None:
    chosen = [clips[("object", 0)], clips[("scene", 1)]]
    path = contact_sheet(chosen, tmp_path / "sheet.png", max_frames=3)
    image = np.asarray(Image.open(path))
    assert image.ndim == 3 and image.shape[1] >= 3 * W and image.shape[0] >= 4 * H
    depth_rgb = colorize_depth(chosen[0].depth[0], chosen[0].valid[0])
    assert np.all(depth_rgb[~chosen[0].valid[0]] == 0)
    assert len(np.unique(depth_rgb.reshape(-1, 3), axis=0)) > 10


# ---------------------------------------------------------------------- CLI
def _cli(*args: str) -> int:
    return vfm3d_main(["world", *args])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--frames", "0"], "--frames must be >= 1"),
        (["--height", "7"], "--height and --width must be >= 8"),
        (["--width", "4"], "--height and --width must be >= 8"),
        (["--clips", "0"], "--clips must be >= 1"),
        (["--deg-per-frame", "-2"], "--deg-per-frame and --m-per-frame must be >= 0"),
    ],
)
def test_cli_refuses_nonsense(tmp_path, capsys, args, message) -> None:
    rc = _cli(
        "--out", str(tmp_path / "o"), "--frames", "2", "--height", "16", "--width", "16", *args
    )
    err = capsys.readouterr().err
    assert rc == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_cli_refuses_non_empty_dir_and_overwrites(tmp_path, capsys) -> None:
    out = tmp_path / "o"
    out.mkdir()
    (out / "something").write_text("x")
    common = ["--out", str(out), "--clips", "1", "--frames", "2", "--height", "16", "--width", "16"]
    assert _cli(*common) == 2
    assert "not empty" in capsys.readouterr().err
    assert _cli(*common, "--overwrite", "--preview") == 0
    printed = capsys.readouterr().out
    assert "preview:" in printed and (out / "preview.png").is_file()
    assert len(ClipFolder(out)) == 1
    # rerunning the same command resumes (nothing to do) instead of refusing
    assert _cli(*common) == 0


def _inside_box(point: np.ndarray, center, size, yaw: float, margin: float) -> bool:
    c, s = np.cos(yaw), np.sin(yaw)
    rel = point - np.asarray(center)
    local = np.array([c * rel[0] + s * rel[1], -s * rel[0] + c * rel[1], rel[2]])
    return bool(np.all(np.abs(local) <= np.asarray(size) / 2 + margin))


@pytest.mark.parametrize("kind", KINDS)
def test_camera_never_inside_objects(kind: str) -> None:
    """Cameras keep clear of every object box (static, and movers at every frame)."""
    for seed in range(12):
        clip = render_clip(kind, 100 + seed, 6, 8, 8)
        eyes = clip.cam_to_world[:, :3, 3]
        assert np.all(eyes[:, 2] > 0.2), "camera above the ground"
        for obj in clip.meta["objects"]:
            for t, eye in enumerate(eyes):
                center = obj["centers"][t] if obj["dynamic"] else obj["center"]
                yaw = obj["yaws"][t] if obj["dynamic"] else obj["yaw"]
                assert not _inside_box(eye, center, obj["size"], yaw, 0.1), (seed, obj["class"], t)


@pytest.mark.parametrize("kind", KINDS)
def test_a_shorter_clip_is_a_prefix_of_a_longer_one(kind: str) -> None:
    """Motion is a per-frame rate: a clip of 4 frames is the first 4 frames of a clip of 9
    (same camera path; same world for static kinds; movers are laid out per clip)."""
    short = render_clip(kind, 21, 4, 24, 32)
    long = render_clip(kind, 21, 9, 24, 32)
    sub = long.subset([0, 1, 2, 3])
    np.testing.assert_allclose(short.cam_to_world, sub.cam_to_world, atol=1e-9)
    np.testing.assert_allclose(short.intrinsics, sub.intrinsics, rtol=1e-6)
    assert short.meta["objects"][0]["class"] == long.meta["objects"][0]["class"]
    assert short.meta["motion"]["deg_per_frame"] == long.meta["motion"]["deg_per_frame"]
    if kind == "dynamic":
        return
    np.testing.assert_array_equal(short.valid, sub.valid)
    np.testing.assert_allclose(short.depth, sub.depth, rtol=1e-5)
    assert np.abs(short.frames.astype(int) - sub.frames).max() <= 1


@pytest.mark.parametrize(
    ("kind", "motion"), [("object", Motion(deg_per_frame=3.0)), ("scene", Motion(m_per_frame=0.08))]
)
def test_motion_is_a_per_frame_rate_recorded_in_meta(kind: str, motion: Motion) -> None:
    """Orbits turn ``deg_per_frame`` about the object per frame and walks step ``m_per_frame``
    (within the smooth wobbles), at any clip length; meta records the rates."""
    for frames in (9, 33):
        for seed in (0, 1, 2):
            clip = render_clip(kind, seed, frames, 8, 8, motion=motion)
            meta = clip.meta["motion"]
            assert meta["deg_per_frame"] == motion.deg_per_frame
            assert meta["m_per_frame"] == motion.m_per_frame and meta["reference_frames"] == 81
            eyes = clip.cam_to_world[:, :3, 3]
            if kind == "object":
                assert meta["path"] == "orbit"
                centre = np.asarray(clip.meta["objects"][0]["center"])
                az = np.unwrap(np.arctan2(eyes[:, 1] - centre[1], eyes[:, 0] - centre[0]))
                rate = abs(az[-1] - az[0]) / (frames - 1)
                assert rate == pytest.approx(np.radians(3.0), rel=0.25), (seed, frames)
            else:
                assert meta["path"] == "walk"
                step = np.linalg.norm(np.diff(eyes[:, :2], axis=0), axis=1).mean()
                assert step == pytest.approx(0.08, rel=0.25), (seed, frames)
                assert meta["camera_step_m"] == pytest.approx(step, rel=0.1)


def test_default_rates_and_bad_motion() -> None:
    assert (Motion().deg_per_frame, Motion().m_per_frame) == (4.5, 0.05)
    clip = render_clip("object", 0, 3, 8, 8)
    assert clip.meta["motion"]["deg_per_frame"] == 4.5
    with pytest.raises(ValueError, match="deg_per_frame"):
        Motion(deg_per_frame=-1.0)
    with pytest.raises(ValueError, match="m_per_frame"):
        Motion(m_per_frame=float("nan"))


def test_object_pixel_counts(clips) -> None:
    """``pixels`` counts each object's visible pixels per frame (movers add up to the mask)."""
    for (kind, _), clip in clips.items():
        objs = clip.meta["objects"]
        counts = np.array([o["pixels"] for o in objs])  # [objects, T]
        assert counts.shape == (len(objs), T) and np.all(counts >= 0)
        assert np.all(counts.sum(axis=0) <= clip.valid.sum(axis=(1, 2)))
        movers = np.array([o["dynamic"] for o in objs])
        np.testing.assert_array_equal(counts[movers].sum(axis=0), clip.dynamic.sum(axis=(1, 2)))
        if kind == "object":
            assert np.all(counts[0] > 0), "the orbited object is always in view"


def test_cli_motion_rates_reach_the_clips(tmp_path) -> None:
    out = tmp_path / "o"
    rc = _cli("--out", str(out), "--clips", "1", "--frames", "3", "--height", "8", "--width", "8",
              "--kind", "scene", "--deg-per-frame", "2.5", "--m-per-frame", "0.1")  # fmt: skip
    assert rc == 0
    folder = ClipFolder(out)
    assert folder.info["world_spec"]["motion"]["m_per_frame"] == 0.1
    meta = folder.load(folder.ids[0]).meta["motion"]
    assert (meta["deg_per_frame"], meta["m_per_frame"]) == (2.5, 0.1)
