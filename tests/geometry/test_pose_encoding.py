"""VGGT absT_quaR_FoV pose encoding."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from vfm3d.geometry import decode_pose, encode_pose, make_rigid, random_rotation


@given(st.integers(0, 2**31 - 1), st.floats(30.0, 2000.0), st.floats(30.0, 2000.0))
def test_encode_decode_round_trip(seed: int, fx: float, fy: float) -> None:
    generator = torch.Generator().manual_seed(seed)
    world_to_cam = make_rigid(
        random_rotation((2, 3), generator),
        torch.randn(2, 3, 3, generator=generator, dtype=torch.float64),
    )
    height, width = 48, 80
    intrinsics = torch.tensor(
        [[fx, 0.0, width / 2], [0.0, fy, height / 2], [0.0, 0.0, 1.0]], dtype=torch.float64
    ).expand(2, 3, 3, 3)
    encoding = encode_pose(world_to_cam, intrinsics, (height, width))
    assert encoding.shape == (2, 3, 9)
    assert bool((encoding[..., 6] >= 0).all())  # qw >= 0
    decoded, k = decode_pose(encoding, (height, width))
    assert torch.allclose(decoded, world_to_cam, atol=1e-10)
    assert torch.allclose(k, intrinsics, rtol=1e-10)
    # and back again: the encoding is a fixed point
    assert torch.allclose(encode_pose(decoded, k, (height, width)), encoding, atol=1e-10)


def test_known_encoding() -> None:
    # 90 degrees about z, translation (1, 2, 3), fx = W / 2 -> fov_w = 90 degrees
    rotation = torch.tensor(
        [[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64
    )
    world_to_cam = make_rigid(rotation, torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))[:3]
    intrinsics = torch.tensor([[50.0, 0, 50], [0, 30.0, 30], [0, 0, 1]], dtype=torch.float64)
    encoding = encode_pose(world_to_cam, intrinsics, (60, 100))
    s = math.sqrt(0.5)
    expected = torch.tensor(
        [1.0, 2.0, 3.0, 0.0, 0.0, s, s, math.pi / 2, math.pi / 2], dtype=torch.float64
    )
    assert torch.allclose(encoding, expected, atol=1e-12)


def test_decode_puts_principal_point_at_centre() -> None:
    encoding = torch.tensor([0, 0, 0, 0, 0, 0, 1.0, 1.0, 1.2], dtype=torch.float64)
    _, k = decode_pose(encoding, (37, 64))
    assert float(k[0, 2]) == 32.0 and float(k[1, 2]) == 18.5


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="image_hw"):
        encode_pose(torch.eye(4), torch.eye(3), (0, 10))
    with pytest.raises(ValueError, match="encoding"):
        decode_pose(torch.zeros(8), (10, 10))
