"""VSI-Bench MRA and accuracy."""

from __future__ import annotations

import numpy as np
import pytest

from vfm3d.metrics import mra, mra_thresholds, vsi_accuracy


def test_thresholds() -> None:
    theta = mra_thresholds()
    assert np.allclose(theta, [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95], atol=1e-12)


def test_mra_values() -> None:
    assert mra(10.0, 10.0) == 1.0
    assert mra(100.0, 10.0) == 0.0
    # relative error 0.17: passes theta <= 0.8 (1 - theta >= 0.17)
    assert abs(mra(11.7, 10.0) - 7 / 10) < 1e-12
    assert abs(mra(8.3, 10.0) - 7 / 10) < 1e-12
    assert abs(mra([10.0, 100.0], [10.0, 10.0]) - 0.5) < 1e-12
    assert mra(float("nan"), 3.0) == 0.0
    with pytest.raises(ValueError, match="non-zero"):
        mra(1.0, 0.0)


def test_vsi_accuracy_overall() -> None:
    records = [
        {"question_type": "object_counting", "prediction": "4", "ground_truth": "4"},
        {"question_type": "object_abs_distance", "prediction": "oops", "ground_truth": "2.0"},
        {"question_type": "object_size_estimation", "prediction": "50", "ground_truth": "50"},
        {"question_type": "room_size_estimation", "prediction": "20", "ground_truth": "20"},
        {"question_type": "object_rel_distance", "prediction": "A", "ground_truth": "a"},
        {"question_type": "object_rel_direction_easy", "prediction": "B", "ground_truth": "B"},
        {"question_type": "object_rel_direction_medium", "prediction": "B", "ground_truth": "C"},
        {"question_type": "object_rel_direction_hard", "prediction": "C", "ground_truth": "C"},
        {"question_type": "route_planning", "prediction": "D", "ground_truth": "A"},
        {"question_type": "obj_appearance_order", "prediction": "A", "ground_truth": "A"},
    ]
    scores = vsi_accuracy(records)
    assert scores["object_abs_distance"] == 0.0
    assert abs(scores["object_rel_direction"] - 2 / 3) < 1e-12
    assert abs(scores["overall"] - (1 + 0 + 1 + 1 + 1 + 2 / 3 + 0 + 1) / 8) < 1e-12
    with pytest.raises(ValueError, match="unknown question_type"):
        vsi_accuracy([{"question_type": "x", "prediction": "1", "ground_truth": "1"}])
