"""The camera and point chain end to end: targets -> encoding -> evaluation path -> metrics.

A ground-truth "prediction" (the sample's own ``pose_enc``, ``points`` and ``depth``) through the
evaluation path (`MetricAccumulator`, what `evaluate` runs) must score AUC@30 = 1 and Point Err ~ 0,
on world clips of both kinds with the probe's own frame sampling; known perturbations must cost
what they should.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from vfm3d.clip import write_clip_folder
from vfm3d.geometry import decode_pose, encode_pose, invert_rigid
from vfm3d.geometry.rotation import quaternion_xyzw_to_rotation, rotation_to_quaternion_xyzw
from vfm3d.probe import InMemoryFeatureSource, ProbeConfig, ProbeDataset
from vfm3d.probe.data import collate, make_eval_samples
from vfm3d.probe.evaluate import MetricAccumulator
from vfm3d.world import render_clip

sys.path.insert(0, str(Path(__file__).parent))
from synth import features_for


@pytest.fixture(scope="module")
def batches(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    root = tmp_path_factory.mktemp("roundtrip") / "clips"
    clips = [render_clip(k, 7 + i, 41, 16, 24, clip_id=f"{k}{i}") for k in ("object", "scene")
             for i in range(3)]  # fmt: skip
    folder = write_clip_folder(root, clips)
    source = InMemoryFeatureSource(features_for(folder, "constant"))
    config = ProbeConfig.cpu_small(first_n=41, min_gap=5, num_frames=4, batch_size=3)
    specs = make_eval_samples(folder, source, config, seed=0, per_clip=2)
    dataset = ProbeDataset(folder, source, config, samples=specs)
    return [collate(dataset[i] for i in range(j, j + 3)) for j in range(0, len(dataset), 3)]


def _score(batches: list[dict], edit=None) -> dict[str, float]:
    scores = MetricAccumulator()
    for batch in batches:
        pred = {"points": batch["points"], "depth": batch["depth"], "pose_enc": batch["pose_enc"]}
        scores.add(edit(pred) if edit else pred, batch)
    return scores.result()


def test_targets_are_rebased_and_encoded_as_documented(batches) -> None:
    for batch in batches:
        w2c, c2w, enc = batch["world_to_cam"], batch["cam_to_world"], batch["pose_enc"]
        eye = torch.eye(4, dtype=torch.float64).expand(w2c.shape[0], 4, 4)
        torch.testing.assert_close(w2c[:, 0], eye)  # frame 0 = identity
        torch.testing.assert_close(w2c @ c2w, torch.eye(4, dtype=torch.float64).expand_as(w2c))
        torch.testing.assert_close(enc[:, 0, :7], torch.tensor([0, 0, 0, 0, 0, 0, 1.0]).expand(
            w2c.shape[0], 7))  # fmt: skip
        # absT_quaR_FoV of world_to_cam, quaternion XYZW with w >= 0, FoV from the focal length
        torch.testing.assert_close(enc[..., :3].double(), w2c[..., :3, 3], atol=1e-6, rtol=1e-5)
        q = rotation_to_quaternion_xyzw(w2c[..., :3, :3])
        torch.testing.assert_close(enc[..., 3:7].double(), q, atol=1e-6, rtol=1e-5)
        assert bool((enc[..., 6] >= 0).all())
        h, w = batch["depth"].shape[-2:]
        fov_w = 2 * torch.atan((w / 2) / batch["intrinsics"][..., 0, 0])
        torch.testing.assert_close(enc[..., 8], fov_w, atol=1e-6, rtol=1e-5)
        # decoding gives world_to_cam back
        dec, _ = decode_pose(enc.double(), (h, w))
        torch.testing.assert_close(dec, w2c, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(invert_rigid(dec), c2w, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(encode_pose(dec, batch["intrinsics"].double(), (h, w)),
                                   enc.double(), atol=1e-5, rtol=1e-5)  # fmt: skip


def test_ground_truth_prediction_scores_perfectly(batches) -> None:
    m = _score(batches)
    assert m["auc@30"] == 1.0 and m["auc_vidfm3d@30"] == 1.0 and m["auc@3"] == 1.0
    assert m["rra@5"] == 1.0 and m["rta@5"] == 1.0
    assert m["point_err"] < 1e-5 and m["depth_err"] < 1e-6
    assert m["abs_rel"] < 1e-6 and m["delta1"] == 1.0


def test_perturbations_cost_what_they_should(batches) -> None:
    """A 10 degree rotation of every frame but the first about the optical axis: relative rotation
    errors of 10 deg for pairs with frame 0 and 0 for the others; AUC@30 = 1/2 * (1 + 20/30)."""

    def turn(pred: dict) -> dict:
        enc = pred["pose_enc"].clone().double()
        a = torch.tensor(torch.pi * 10 / 180, dtype=torch.float64)
        spin = torch.tensor([[a.cos(), -a.sin(), 0], [a.sin(), a.cos(), 0], [0, 0, 1]])
        rot = quaternion_xyzw_to_rotation(enc[:, 1:, 3:7])
        rot = spin.double() @ rot  # world_to_cam: rotate each camera about its own z axis
        enc[:, 1:, 3:7] = rotation_to_quaternion_xyzw(rot)
        enc[:, 1:, :3] = (spin.double() @ enc[:, 1:, :3, None])[..., 0]  # the same rigid change
        return {**pred, "pose_enc": enc}

    m = _score(batches, turn)
    # pairs (0, j): 10 deg rotation error, translation direction error <= 10 deg; other pairs 0
    assert m["auc@30"] == pytest.approx(0.5 * (1 + 20 / 30), abs=0.02)
    assert m["rra@5"] == pytest.approx(0.5)

    def zero_motion(pred: dict) -> dict:  # the floor: every camera at frame 0's pose
        enc = pred["pose_enc"].clone()
        enc[..., :7] = enc[:, :1, :7]
        return {**pred, "pose_enc": enc}

    assert _score(batches, zero_motion)["auc@30"] < 0.1


def test_per_sample_records_average_to_the_pooled_metrics(batches) -> None:
    """The bootstrap over clips resamples per-sample records; their means must be the metrics."""
    import numpy as np

    noise = torch.Generator().manual_seed(3)

    def shake(pred: dict) -> dict:
        enc = pred["pose_enc"].clone().double()
        enc[:, 1:, :7] += 0.2 * torch.randn(enc[:, 1:, :7].shape, generator=noise).double()
        pts = pred["points"] + 0.1 * torch.randn(pred["points"].shape, generator=noise)
        return {**pred, "pose_enc": enc, "points": pts}

    scores = MetricAccumulator()
    for k, batch in enumerate(batches):
        pred = {"points": batch["points"], "depth": batch["depth"], "pose_enc": batch["pose_enc"]}
        scores.add(shake(pred), batch, [f"c{k}-{j}" for j in range(batch["depth"].shape[0])])
    m, records = scores.result(), scores.per_sample()
    assert len(records) == sum(b["depth"].shape[0] for b in batches)
    assert {len(r["rot_err"]) for r in records} == {6}  # 4 frames -> 6 pairs each
    for key in ("point_err", "depth_err", "auc@30"):
        assert np.mean([r[key] for r in records]) == pytest.approx(m[key], abs=1e-9)
    assert 0.0 < m["auc@30"] < 1.0  # the shake made the camera metric non-trivial
    with pytest.raises(ValueError, match="clip_ids"):
        scores.add(pred, batches[0], ["only-one"])
