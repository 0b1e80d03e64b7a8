"""Rotation conversions: XYZW order, w >= 0, round trips, angles."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from vfm3d.geometry import (
    axis_angle_to_rotation,
    quaternion_xyzw_to_rotation,
    rotation_angle,
    rotation_to_quaternion_xyzw,
)

finite = st.floats(-1.0, 1.0, allow_nan=False)


@given(st.tuples(finite, finite, finite, finite).filter(lambda q: sum(v * v for v in q) > 1e-3))
def test_quaternion_round_trip_xyzw(q: tuple[float, float, float, float]) -> None:
    quat = torch.tensor(q, dtype=torch.float64)
    quat = quat / quat.norm()
    rotation = quaternion_xyzw_to_rotation(quat)
    back = rotation_to_quaternion_xyzw(rotation)
    expected = quat if quat[3] >= 0 else -quat
    # q and -q agree when w == 0; compare the rotations then
    assert torch.allclose(quaternion_xyzw_to_rotation(back), rotation, atol=1e-12)
    if abs(float(quat[3])) > 1e-6:
        assert torch.allclose(back, expected, atol=1e-12)
    assert float(back[3]) >= 0


def test_xyzw_order_matches_scipy() -> None:
    rng = np.random.default_rng(0)
    rotations = Rotation.random(20, random_state=rng)
    ours = rotation_to_quaternion_xyzw(torch.from_numpy(rotations.as_matrix()))
    theirs = torch.from_numpy(rotations.as_quat())  # scipy: scalar-last (XYZW)
    theirs = torch.where(theirs[:, 3:] < 0, -theirs, theirs)
    assert torch.allclose(ours, theirs, atol=1e-12)


def test_rotation_angle_all_ranges() -> None:
    angles = torch.tensor([0.0, 1e-9, 0.3, math.pi / 2, 3.0, math.pi - 1e-7], dtype=torch.float64)
    axis = torch.tensor([1.0, 2.0, -0.5], dtype=torch.float64)
    axis = axis / axis.norm()
    rotation = axis_angle_to_rotation(angles[:, None] * axis)
    assert torch.allclose(rotation_angle(rotation), angles, atol=1e-12)
    assert torch.allclose(
        rotation_angle(rotation[2], degrees=True),
        torch.tensor(0.3 * 180 / math.pi, dtype=torch.float64),
    )


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="zero quaternion"):
        quaternion_xyzw_to_rotation(torch.zeros(4))
    with pytest.raises(ValueError, match=r"rotation must have shape \[\.\.\., 3, 3\]"):
        rotation_to_quaternion_xyzw(torch.zeros(4, 4))


def test_quaternion_gradient_is_finite_at_identity() -> None:
    rotation = torch.eye(3, dtype=torch.float64).requires_grad_(True)
    rotation_to_quaternion_xyzw(rotation).sum().backward()
    assert rotation.grad is not None and bool(torch.isfinite(rotation.grad).all())
    angles = torch.tensor([0.2, -0.1, 0.3], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda a: rotation_to_quaternion_xyzw(axis_angle_to_rotation(a)), (angles,)
    )
