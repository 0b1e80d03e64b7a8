"""The ``oracle-world`` backbone: frame-0 point maps (and poses) pass the backbone contract and
equal the probe's targets."""

from __future__ import annotations

import pytest
import torch

import vfm3d.backbones as backbones
from tests.backbones.contract import BackboneContract
from vfm3d.features import extract
from vfm3d.geometry import encode_pose, probe_targets


def _moving_aux(shape: tuple[int, int, int, int]) -> dict[str, torch.Tensor]:
    """Contract ground truth with a camera that moves and turns (frame 0 not at the origin)."""
    aux = BackboneContract().make_aux(shape)
    b, t = shape[:2]
    c2w = torch.eye(4, dtype=torch.float64).repeat(b, t, 1, 1)
    for i in range(t):
        a = 0.3 * i + 0.2
        c2w[:, i, :3, :3] = torch.tensor(
            [[torch.cos(torch.tensor(a)), 0, torch.sin(torch.tensor(a))], [0, 1, 0],
             [-torch.sin(torch.tensor(a)), 0, torch.cos(torch.tensor(a))]], dtype=torch.float64
        )  # fmt: skip
        c2w[:, i, :3, 3] = torch.tensor([0.5 * i + 1.0, -0.2 * i, 0.1 * i], dtype=torch.float64)
    aux["cam_to_world"] = c2w
    return aux


class TestOracleWorld(BackboneContract):
    name = "oracle-world"
    valid_input_shape = (1, 3, 16, 16)
    invalid_inputs = ((1, 2, 16, 12),)

    def make_backbone(self):
        return backbones.load("oracle-world")

    def make_aux(self, shape):
        return _moving_aux(shape)


def test_layer_widths_and_registry() -> None:
    model = backbones.load("oracle-world")
    assert "oracle-world" in backbones.available()
    assert model.num_layers == 2 and model.layer_width(0) == 16 and model.layer_width(1) == 25
    assert model.needs_geometry


def test_features_are_the_probe_targets_in_frame_0_coordinates() -> None:
    shape = (1, 3, 16, 16)
    aux = _moving_aux(shape)
    aux["valid"][:] = True
    frames = torch.rand(1, 3, 3, 16, 16)
    feats = extract(backbones.load("oracle-world", dtype=torch.float64), frames, [0, 1], aux=aux)
    tokens0, tokens1 = feats[(0, None)].tokens, feats[(1, None)].tokens  # [1, 3, 2, 2, C]
    targets = probe_targets(
        aux["depth"].double(), aux["valid"], aux["intrinsics"].double(), aux["cam_to_world"]
    )
    # cell (row 0, col 0) of token (0, 0) of frame 2 = mean of target points over pixels 0..3
    expected = targets.points[0, 2, :4, :4].reshape(-1, 3).mean(0)
    torch.testing.assert_close(tokens0[0, 2, 0, 0, :3], expected)
    assert torch.allclose(tokens0[..., 3], torch.ones((), dtype=torch.float64))
    # frame 0 is the reference: its points have mean distance 1, its pose is the identity
    assert float(targets.points[0, 0].norm(dim=-1).mean()) == pytest.approx(1.0)
    pose = encode_pose(targets.world_to_cam, aux["intrinsics"].double(), (16, 16))
    torch.testing.assert_close(tokens1[0, :, 1, 1, 16:], pose[0])
    torch.testing.assert_close(tokens1[..., :16], tokens0)
    torch.testing.assert_close(pose[0, 0, :7], torch.tensor([0, 0, 0, 0, 0, 0, 1.0]).double())


def test_oracle_world_requires_poses() -> None:
    aux = BackboneContract().make_aux((1, 1, 8, 8))
    aux.pop("cam_to_world")
    with pytest.raises(ValueError, match="cam_to_world"):
        extract(backbones.load("oracle-world"), torch.rand(1, 1, 3, 8, 8), [0], aux=aux)
