"""Resize / crop / pad: intrinsics follow the pixels, records invert and compose."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.data.scene import MARKER_UV, make_truth, project
from vfm3d.clip import Clip
from vfm3d.data.transforms import (
    PixelTransform,
    apply_to_clip,
    center_crop,
    crop,
    crop_to_aspect,
    pad,
    pad_to_multiple,
    parse_hw,
    resize,
    resize_short_side,
    restore_to_original,
)


def truth_clip(num_frames: int = 2) -> tuple[Clip, object]:
    truth = make_truth(num_frames, seed=12, blob=1)
    valid = np.ones(truth.depth.shape, bool)
    valid[:, 0, :] = False
    clip = Clip(
        frames=truth.frames,
        intrinsics=truth.intrinsics.astype(np.float32),
        cam_to_world=truth.cam_to_world,
        depth=np.where(valid, truth.depth, 0).astype(np.float32),
        valid=valid,
        dynamic=np.zeros(truth.depth.shape, bool),
        meta={"id": "c"},
    )
    return clip.validate(), truth


def test_resize_keeps_pixel_edges() -> None:
    t = resize((4, 8), (2, 4))
    # the new pixel 0 covers old pixels 0 and 1: its centre is their mean
    np.testing.assert_allclose(t.inverse().apply_points([0.0, 0.0]), [0.5, 0.5])
    np.testing.assert_allclose(
        t.apply_points([[-0.5, -0.5], [7.5, 3.5]]), [[-0.5, -0.5], [3.5, 1.5]]
    )


@pytest.mark.parametrize(
    "make",
    [
        lambda hw: resize(hw, (9, 16)),
        lambda hw: resize(hw, (32, 48)),
        lambda hw: crop(hw, 2, 3, 10, 12),
        lambda hw: center_crop(hw, (8, 8)),
        lambda hw: crop_to_aspect(hw, 16, 9),
        lambda hw: pad(hw, 1, 2, 3, 4),
        lambda hw: resize_short_side(hw, 8).then(pad_to_multiple((8, 12), 5)),
    ],
)
def test_clip_intrinsics_follow_the_pixels(make) -> None:
    clip, truth = truth_clip()
    t = make((clip.height, clip.width))
    out = apply_to_clip(clip, t)
    assert out.frames.shape[1:3] == tuple(t.out_hw)
    for i in range(clip.num_frames):
        uv = project(out.intrinsics[i], out.cam_to_world[i], truth.markers[i])
        np.testing.assert_allclose(uv, t.apply_points(np.array(MARKER_UV, float)), atol=1e-3)
    # nearest: every output depth value exists in the input (never blended)
    assert np.isin(out.depth, np.append(clip.depth.ravel(), 0.0)).all()
    assert out.valid.dtype == bool and (out.depth[~out.valid] == 0).all()
    np.testing.assert_allclose(out.cam_to_world, clip.cam_to_world)


def test_crop_and_pad_are_exact_copies() -> None:
    clip, _ = truth_clip()
    out = apply_to_clip(clip, crop((16, 24), 2, 3, 10, 12))
    np.testing.assert_array_equal(out.frames, clip.frames[:, 2:12, 3:15])
    np.testing.assert_array_equal(out.depth, clip.depth[:, 2:12, 3:15])
    padded = apply_to_clip(clip, pad((16, 24), 1, 2, 3, 4))
    assert padded.frames.shape[1:3] == (19, 31)
    np.testing.assert_array_equal(padded.frames[:, 1:17, 3:27], clip.frames)
    assert (padded.frames[:, 0] == 0).all() and not padded.valid[:, :, :3].any()


def test_records_compose_and_restore() -> None:
    clip, _ = truth_clip()
    once = apply_to_clip(clip, crop_to_aspect((16, 24), 1, 1))
    twice = apply_to_clip(once, resize((16, 16), (8, 8)))
    record = PixelTransform.from_dict(twice.meta["transform"])
    assert record.in_hw == (16, 24) and record.out_hw == (8, 8)
    direct = apply_to_clip(clip, crop_to_aspect((16, 24), 1, 1).then(resize((16, 16), (8, 8))))
    np.testing.assert_allclose(direct.intrinsics, twice.intrinsics, rtol=1e-6)
    restored = restore_to_original(twice.depth, twice.meta)
    assert restored.shape == clip.depth.shape
    assert (restored[:, :, :4] == 0).all()  # cropped-away columns come back as fill
    # restoring an identity-size crop gives back the original values inside the crop
    crop_only = apply_to_clip(clip, crop((16, 24), 0, 4, 16, 16))
    back = restore_to_original(crop_only.depth, crop_only.meta)
    np.testing.assert_array_equal(back[:, :, 4:20], clip.depth[:, :, 4:20])


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="not inside"):
        crop((4, 4), 0, 0, 5, 4)
    with pytest.raises(ValueError, match="cannot compose"):
        resize((4, 4), (2, 2)).then(resize((4, 4), (2, 2)))
    with pytest.raises(ValueError, match="HxW"):
        parse_hw("12by4")
    with pytest.raises(ValueError, match="transform expects"):
        apply_to_clip(truth_clip()[0], resize((8, 8), (4, 4)))
    assert parse_hw("480x640") == (480, 640)


sizes = st.tuples(st.integers(1, 64), st.integers(1, 64))


@given(sizes, sizes, st.integers(0, 5), st.integers(0, 5))
def test_inverse_and_intrinsics_agree_with_points(in_hw, out_hw, top, left) -> None:
    t = resize(in_hw, out_hw).then(pad(out_hw, top, 0, left, 1))
    points = np.array([[0.0, 0.0], [3.5, -2.0], [in_hw[1] - 1.0, in_hw[0] - 1.0]])
    np.testing.assert_allclose(t.inverse().apply_points(t.apply_points(points)), points, atol=1e-9)
    k = np.array([[10.0, 0, 4.0], [0, 12.0, 3.0], [0, 0, 1]])
    cam = np.array([0.3, -0.2, 2.0])
    uv = (k @ cam)[:2] / cam[2]
    k2 = t.apply_intrinsics(k)
    np.testing.assert_allclose((k2 @ cam)[:2] / cam[2], t.apply_points(uv), atol=1e-9)
    assert PixelTransform.from_dict(t.to_dict()) == t
