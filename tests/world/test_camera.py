"""Camera helpers of the world: look-at poses and intrinsics from a field of view."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from vfm3d.world.camera import (
    SmoothSignal,
    fov_from_intrinsics,
    intrinsics_from_fov,
    look_at,
    normalised_times,
)

coord = st.floats(-50.0, 50.0, allow_nan=False)


@given(
    eye=st.tuples(coord, coord, coord),
    target=st.tuples(coord, coord, coord),
    roll=st.floats(-0.5, 0.5),
)
def test_look_at_is_a_proper_opencv_pose(eye, target, roll) -> None:
    eye, target = np.array(eye), np.array(target)
    forward = target - eye
    # skip degenerate inputs: coincident points or looking (almost) straight up/down
    if np.linalg.norm(forward) < 1e-3 or np.linalg.norm(forward[:2]) < 1e-3 * np.linalg.norm(
        forward
    ):
        return
    cam_to_world = look_at(eye, target, roll)
    rot = cam_to_world[:3, :3]
    np.testing.assert_allclose(rot.T @ rot, np.eye(3), atol=1e-9)
    assert np.linalg.det(rot) == pytest.approx(1.0, abs=1e-9)
    np.testing.assert_allclose(cam_to_world[:3, 3], eye)
    np.testing.assert_allclose(cam_to_world[3], [0, 0, 0, 1])
    # +z (optical axis) points at the target; the target projects to the principal point
    np.testing.assert_allclose(rot[:, 2], forward / np.linalg.norm(forward), atol=1e-9)
    target_cam = rot.T @ (target - eye)
    np.testing.assert_allclose(target_cam[:2], 0.0, atol=1e-6 * max(1.0, np.linalg.norm(forward)))
    if roll == 0.0:
        assert abs(rot[2, 0]) < 1e-9, "x axis is horizontal"
        assert rot[2, 1] <= 1e-12, "y axis (image down) points down in the z-up world"


def test_look_at_batched_matches_single() -> None:
    rng = np.random.default_rng(0)
    eyes = rng.normal(size=(5, 3)) * 5
    targets = rng.normal(size=(5, 3))
    rolls = rng.uniform(-0.2, 0.2, size=5)
    batched = look_at(eyes, targets, rolls)
    for i in range(5):
        np.testing.assert_allclose(batched[i], look_at(eyes[i], targets[i], rolls[i]), atol=1e-12)
    with pytest.raises(ValueError, match="coincide"):
        look_at(np.zeros(3), np.zeros(3))
    with pytest.raises(ValueError, match="parallel"):
        look_at(np.zeros(3), np.array([0.0, 0.0, 1.0]))


@given(fov=st.floats(10.0, 150.0), height=st.integers(8, 1024), width=st.integers(8, 1024))
def test_intrinsics_fov_round_trip(fov, height, width) -> None:
    k = intrinsics_from_fov(fov, height, width)
    fov_x, fov_y = fov_from_intrinsics(k, height, width)
    assert fov_x == pytest.approx(fov, rel=1e-9)
    assert k[0, 0] == k[1, 1] and k[0, 2] == (width - 1) / 2 and k[1, 2] == (height - 1) / 2
    assert np.tan(np.radians(fov_y) / 2) == pytest.approx(
        np.tan(np.radians(fov) / 2) * height / width
    )


def test_smooth_signal_and_times() -> None:
    signal = SmoothSignal(np.random.default_rng(3))
    s = np.linspace(0, 1, 1001)
    values = signal(s)
    assert np.all(np.abs(values) <= 1.0 + 1e-12)
    assert np.max(np.abs(np.diff(values))) < 0.02, "smooth: small steps at fine sampling"
    np.testing.assert_array_equal(normalised_times(1), [0.0])
    np.testing.assert_allclose(normalised_times(5), [0, 0.25, 0.5, 0.75, 1.0])
    with pytest.raises(ValueError, match="frames"):
        normalised_times(0)
    with pytest.raises(ValueError, match="fov"):
        intrinsics_from_fov(180.0, 8, 8)
