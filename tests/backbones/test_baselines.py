"""The floor baselines (random, pixels, constant) and the oracle pass the backbone contract."""

from __future__ import annotations

import math

import pytest
import torch

import vfm3d.backbones as backbones
from tests.backbones.contract import BackboneContract
from vfm3d.backbones.baselines import patchify
from vfm3d.backbones.oracle import camera_points
from vfm3d.features import extract


class TestRandom(BackboneContract):
    name = "random"
    valid_input_shape = (2, 3, 16, 24)
    invalid_inputs = (
        (1, 2, 12, 16),
        (1, 2, 16, 20),
    )

    def make_backbone(self):
        return backbones.load("random", tiny=True)


class TestPixels(BackboneContract):
    name = "pixels"
    valid_input_shape = (1, 2, 16, 16)
    invalid_inputs = ((1, 2, 15, 16),)

    def make_backbone(self):
        return backbones.load("pixels")


class TestConstant(BackboneContract):
    name = "constant"
    valid_input_shape = (1, 2, 8, 16)
    invalid_inputs = ((1, 2, 8, 4),)

    def make_backbone(self):
        return backbones.load("constant")


class TestOracle(BackboneContract):
    name = "oracle"
    valid_input_shape = (1, 2, 16, 16)
    invalid_inputs = ((1, 2, 16, 12),)

    def make_backbone(self):
        return backbones.load("oracle")


def test_random_layers_differ_and_seed_changes_weights() -> None:
    a = backbones.load("random", tiny=True, seed=0)
    b = backbones.load("random", tiny=True, seed=1)
    assert a.fingerprint != b.fingerprint
    assert a.fingerprint == backbones.load("random", tiny=True, seed=0).fingerprint
    frames = torch.rand(1, 2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    feats = extract(a, frames, [0, 1])
    assert not torch.allclose(feats[(0, None)].tokens, feats[(1, None)].tokens)
    other = extract(b, frames, [0])
    assert not torch.allclose(feats[(0, None)].tokens, other[(0, None)].tokens)


def test_pixels_are_the_patchified_frames() -> None:
    frames = torch.rand(1, 2, 3, 16, 8, generator=torch.Generator().manual_seed(0))
    tokens = extract(backbones.load("pixels"), frames, [0])[(0, None)].tokens
    assert tokens.shape == (1, 2, 2, 1, 192)
    # token (t=1, row 1, col 0), pixel (y=3, x=5) of the patch, green channel
    assert tokens[0, 1, 1, 0, (3 * 8 + 5) * 3 + 1] == frames[0, 1, 1, 8 + 3, 5]
    assert torch.equal(patchify(frames, 8), tokens)


def test_constant_is_constant() -> None:
    frames = torch.rand(2, 3, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    tokens = extract(backbones.load("constant"), frames, [0])[(0, None)].tokens
    assert torch.equal(tokens, tokens[:1, :1, :1, :1].expand_as(tokens))
    assert tokens.abs().sum() > 0


def test_camera_points_round_trip() -> None:
    depth = torch.full((4, 6), 2.0)
    k = torch.tensor([[3.0, 0.0, 2.5], [0.0, 3.0, 1.5], [0.0, 0.0, 1.0]])
    points = camera_points(depth, k)
    projected = (k @ points.reshape(-1, 3).T).T
    uv = projected[:, :2] / projected[:, 2:]
    v, u = torch.meshgrid(torch.arange(4.0), torch.arange(6.0), indexing="ij")
    torch.testing.assert_close(uv, torch.stack([u, v], -1).reshape(-1, 2))
    assert torch.allclose(points[..., 2], depth)


def test_oracle_features_encode_normalised_depth() -> None:
    shape = (1, 2, 16, 16)
    contract = TestOracle()
    aux = contract.make_aux(shape)
    aux["valid"][:] = True
    aux["depth"][:] = 2.0
    aux["depth"][0, 1] = 4.0  # frame 1 twice as far as frame 0
    feats = extract(backbones.load("oracle"), contract.make_frames(shape), [0], aux=aux)
    tokens = feats[(0, None)].tokens  # [1, 2, 2, 2, 20]; cell 0 channels: x, y, z, log z, valid
    z0, z1 = tokens[0, 0, ..., 2], tokens[0, 1, ..., 2]
    torch.testing.assert_close(z1, 2 * z0)
    assert torch.allclose(tokens[..., 4], torch.ones(()))
    # scale: the mean distance of frame 0's points is 1, so z0 is slightly below 1
    assert 0.8 < float(z0.mean()) < 1.0
    torch.testing.assert_close(tokens[..., 3], torch.log(tokens[..., 2]))


def test_oracle_requires_aux() -> None:
    with pytest.raises(ValueError, match="aux"):
        extract(backbones.load("oracle"), torch.rand(1, 1, 3, 8, 8), [0])


def test_baseline_sizes() -> None:
    model = backbones.load("random", tiny=True)
    assert model.num_layers == 4 and model.layer_width(0) == 128
    assert math.isclose(float(model.blocks[1].linear.weight.std()), 128**-0.5, rel_tol=0.1)
