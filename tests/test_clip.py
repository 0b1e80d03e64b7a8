"""The Clip record: validation names the bad field; the on-disk format round-trips exactly."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.numpy import load_file

from vfm3d.clip import Clip, ClipFolder, ClipValidationError, write_clip_folder


def make_clip(t: int = 3, h: int = 8, w: int = 10, clip_id: str = "c0") -> Clip:
    rng = np.random.default_rng(0)
    k = np.array([[10.0, 0, 4.5], [0, 10.0, 3.5], [0, 0, 1]], dtype=np.float32)
    c2w = np.tile(np.eye(4), (t, 1, 1))
    c2w[:, :3, 3] = rng.normal(size=(t, 3))
    return Clip(
        frames=rng.integers(0, 255, size=(t, h, w, 3), dtype=np.uint8),
        intrinsics=np.tile(k, (t, 1, 1)),
        cam_to_world=c2w,
        depth=rng.uniform(1, 5, size=(t, h, w)).astype(np.float32),
        valid=rng.uniform(size=(t, h, w)) > 0.2,
        dynamic=np.zeros((t, h, w), dtype=bool),
        meta={"id": clip_id, "source": "test", "objects": [{"class": "box", "size": [1, 2, 3]}]},
    )


def test_valid_clip_passes() -> None:
    make_clip().validate()


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda c: setattr(c, "frames", c.frames.astype(np.float32)), "frames"),
        (lambda c: setattr(c, "frames", c.frames[..., :2]), "frames"),
        (lambda c: setattr(c, "depth", c.depth.astype(np.float64)), "depth"),
        (lambda c: setattr(c, "depth", c.depth[:2]), "depth"),
        (lambda c: setattr(c, "intrinsics", c.intrinsics[:2]), "intrinsics"),
        (lambda c: setattr(c, "cam_to_world", c.cam_to_world[:, :3]), "cam_to_world"),
        (lambda c: setattr(c, "valid", c.valid[:, :4]), "valid"),
        (lambda c: c.cam_to_world.__setitem__((0, 0, 3), np.nan), "cam_to_world"),
        (lambda c: c.cam_to_world.__setitem__((1, 0, 0), 2.0), "cam_to_world"),
        (lambda c: c.cam_to_world.__setitem__((1, slice(0, 3), 0), [-1, 0, 0]), "cam_to_world"),
        (lambda c: c.intrinsics.__setitem__((0, 0, 0), 0.0), "intrinsics"),
        (lambda c: c.intrinsics.__setitem__((2, 1, 1), -3.0), "intrinsics"),
        (lambda c: c.intrinsics.__setitem__((0, 1, 2), np.inf), "intrinsics"),
        (lambda c: setattr(c, "valid", None), "valid"),
    ],
)
def test_validation_names_the_field(mutate, field: str) -> None:
    clip = make_clip()
    mutate(clip)
    with pytest.raises(ClipValidationError, match=field):
        clip.validate()


def test_save_load_round_trip_exact(tmp_path) -> None:
    clip = make_clip()
    path = clip.save(tmp_path / "c0.safetensors")
    back = Clip.load(path)
    for name in ("frames", "depth", "valid", "intrinsics", "cam_to_world", "dynamic"):
        a, b = getattr(clip, name), getattr(back, name)
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    assert back.meta == clip.meta


def test_format_readable_with_safetensors_numpy_and_json(tmp_path) -> None:
    from safetensors import safe_open

    path = make_clip().save(tmp_path / "c0.safetensors")
    arrays = load_file(str(path))
    assert arrays["frames"].dtype == np.uint8
    assert arrays["cam_to_world"].dtype == np.float64
    with safe_open(str(path), framework="numpy") as handle:
        meta = json.loads(handle.metadata()["meta"])
    assert meta["id"] == "c0"


def test_folder_round_trip(tmp_path) -> None:
    clips = [make_clip(clip_id=f"clip{i}") for i in range(3)]
    folder = write_clip_folder(tmp_path / "ds", clips, info={"kind": "test"})
    index = json.loads((tmp_path / "ds" / "index.json").read_text())
    assert [e["id"] for e in index["clips"]] == ["clip0", "clip1", "clip2"]
    assert folder.info["kind"] == "test"
    again = ClipFolder(tmp_path / "ds")
    assert len(again) == 3
    np.testing.assert_array_equal(again.load("clip1").frames, clips[1].frames)


def test_subset_and_world_to_cam() -> None:
    clip = make_clip(t=4)
    sub = clip.subset([3, 1])
    assert sub.num_frames == 2 and sub.meta["frame_indices"] == [3, 1]
    clip.meta["timestamps"] = [0.0, 0.5, 1.0, 1.5]
    assert clip.subset([3, 1]).meta["timestamps"] == [1.5, 0.5]
    w2c = clip.world_to_cam()
    np.testing.assert_allclose(w2c @ clip.cam_to_world, np.tile(np.eye(4), (4, 1, 1)), atol=1e-12)


def test_unreadable_file_is_clear(tmp_path) -> None:
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(ClipValidationError, match=r"bad\.safetensors"):
        Clip.load(bad)
    with pytest.raises(FileNotFoundError):
        Clip.load(tmp_path / "missing.safetensors")
