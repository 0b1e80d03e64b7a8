"""Relative pose errors, RRA/RTA and AUC (VGGT and VidFM3D modes)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vfm3d.geometry import axis_angle_to_rotation, make_rigid, random_rotation
from vfm3d.metrics import auc_from_errors, camera_auc, relative_pose_errors, rra_rta

F64 = torch.float64


def _rz(degrees: float) -> torch.Tensor:
    return axis_angle_to_rotation(torch.tensor([0.0, 0.0, math.radians(degrees)], dtype=F64))


def _two_cameras(rotation_1: torch.Tensor, centre_0: tuple[float, float, float]) -> torch.Tensor:
    return torch.stack(
        [
            make_rigid(torch.eye(3, dtype=F64), torch.tensor(centre_0, dtype=F64)),
            make_rigid(rotation_1, torch.zeros(3, dtype=F64)),
        ]
    )


@pytest.mark.parametrize("convention", ["vggt", "camera"])
def test_pure_rotation_error_of_10_degrees(convention: str) -> None:
    gt = _two_cameras(torch.eye(3, dtype=F64), (1.0, 0.0, 0.0))
    pred = _two_cameras(_rz(10.0), (1.0, 0.0, 0.0))
    rot, trans = relative_pose_errors(pred, gt, convention=convention)  # type: ignore[arg-type]
    assert rot.shape == (1,) and abs(float(rot[0]) - 10.0) < 1e-9
    scores = rra_rta(rot, trans, thresholds=(5, 15))
    assert scores["RRA@5"] == 0.0 and scores["RRA@15"] == 1.0
    assert scores["RTA@5"] == 1.0 and scores["RTA@15"] == 1.0


def test_translation_direction_error_is_sign_and_scale_free() -> None:
    gt = _two_cameras(torch.eye(3, dtype=F64), (1.0, 0.0, 0.0))
    c, s = math.cos(math.radians(20)), math.sin(math.radians(20))
    _, trans = relative_pose_errors(_two_cameras(torch.eye(3, dtype=F64), (c, s, 0.0)), gt)
    assert abs(float(trans[0]) - 20.0) < 1e-6
    _, flipped = relative_pose_errors(_two_cameras(torch.eye(3, dtype=F64), (-5.0, 0.0, 0.0)), gt)
    assert float(flipped[0]) < 1e-5  # opposite direction and another scale: no error


def test_pairs_follow_combinations_and_pool_over_batch() -> None:
    generator = torch.Generator().manual_seed(0)
    gt = make_rigid(
        random_rotation((2, 4), generator), torch.randn(2, 4, 3, generator=generator, dtype=F64)
    )
    pred = gt.clone()
    pred[1, 3, :3, :3] = pred[1, 3, :3, :3] @ _rz(7.0)  # only pairs with frame 3 of sequence 1
    rot, _ = relative_pose_errors(pred, gt)
    assert rot.shape == (12,)  # 2 sequences x C(4, 2)
    wrong = {i for i in range(12) if float(rot[i]) > 1}
    # combinations(4, 2): (0,1) (0,2) (0,3) (1,2) (1,3) (2,3); sequence 1 starts at 6
    assert wrong == {6 + 2, 6 + 4, 6 + 5}
    assert torch.allclose(rot[sorted(wrong)], torch.full((3,), 7.0, dtype=F64), atol=1e-9)


@pytest.mark.parametrize("mode", ["vggt", "vidfm3d"])
def test_auc_of_perfect_poses_is_one(mode: str) -> None:
    generator = torch.Generator().manual_seed(1)
    gt = make_rigid(
        random_rotation((5,), generator), torch.randn(5, 3, generator=generator, dtype=F64)
    )
    auc = camera_auc(gt.clone(), gt, mode=mode)  # type: ignore[arg-type]
    assert set(auc) == {"AUC@3", "AUC@5", "AUC@10", "AUC@30"}
    assert all(value == 1.0 for value in auc.values())


def test_modes_differ_as_their_definitions_predict() -> None:
    # every pair has max error 0.99 degrees: inside the first 1-degree bin (vggt) but in the
    # second 30/31-degree bin (vidfm3d), so vidfm3d's cumsum starts at 0
    rot = torch.full((10,), 0.99, dtype=F64)
    trans = torch.full((10,), 0.5, dtype=F64)
    vggt = auc_from_errors(rot, trans, thresholds=(3, 30), mode="vggt")
    vidfm3d = auc_from_errors(rot, trans, thresholds=(3, 30), mode="vidfm3d")
    assert vggt == {"AUC@3": 1.0, "AUC@30": 1.0}
    assert abs(vidfm3d["AUC@3"] - 2.0 / 3.0) < 1e-12
    assert abs(vidfm3d["AUC@30"] - 29.0 / 30.0) < 1e-12


def test_auc_matches_reference_formulas_on_random_errors() -> None:
    rng = np.random.default_rng(0)
    rot = rng.uniform(0, 40, size=300)
    trans = rng.uniform(0, 40, size=300)
    rot[:5] = [0.0, 1.0, 3.0, 5.0, 30.0]  # bin edges
    max_err = np.maximum(rot, trans)
    ours = auc_from_errors(torch.from_numpy(rot), torch.from_numpy(trans), (3, 5, 10, 30), "vggt")
    for k in (3, 5, 10, 30):
        hist = np.histogram(max_err, bins=np.arange(k + 1))[0] / len(max_err)
        assert abs(ours[f"AUC@{k}"] - np.mean(np.cumsum(hist))) < 1e-12
    ours = auc_from_errors(
        torch.from_numpy(rot), torch.from_numpy(trans), (3, 5, 10, 30), "vidfm3d"
    )
    hist = torch.histc(torch.from_numpy(max_err), bins=31, min=0, max=30) / len(max_err)
    for k in (3, 5, 10, 30):
        assert abs(ours[f"AUC@{k}"] - float(torch.cumsum(hist[:k], 0).mean())) < 1e-12


def test_bad_input() -> None:
    gt = torch.eye(4, dtype=F64).expand(3, 4, 4)
    with pytest.raises(ValueError, match="length mismatch"):
        relative_pose_errors(gt[:2], gt)
    with pytest.raises(ValueError, match="at least 2 poses"):
        relative_pose_errors(gt[:1], gt[:1])
    nan = gt.clone()
    nan[1, 0, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        camera_auc(nan, gt)
    with pytest.raises(ValueError, match="mode"):
        auc_from_errors(torch.ones(3), torch.ones(3), mode="other")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"in \[1, 31\]"):
        auc_from_errors(torch.ones(3), torch.ones(3), thresholds=(45,), mode="vidfm3d")
