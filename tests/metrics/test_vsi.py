"""VSI-Bench scoring: MRA, answer extraction and aggregation as the official lmms-eval code."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vfm3d.metrics import mra, mra_thresholds, vsi_accuracy
from vfm3d.metrics.vsi import (
    CHOICE_TASKS,
    NUMERIC_TASKS,
    extract_answer,
    first_number,
    score_answer,
)


# ---------------------------------------------------------------------- a reference
# The official rules written out independently (lmms_eval/tasks/vsibench/utils.py, release):
# fuzzy match = first " "-token, rstrip ".", strip; to_float = float() or None; MRA over
# linspace(.5, .95, int((.95 - .5) / .05 + 2)); a None on either side -> worst case 0.
def _official_score(kind: str, prediction: str, ground_truth: str) -> float:
    answer = prediction.split(" ")[0].rstrip(".").strip()
    if kind in CHOICE_TASKS:
        return 1.0 if answer.lower() == ground_truth.lower() else 0.0
    try:
        pred = float(answer)
    except ValueError:
        return 0.0
    try:
        gt = float(ground_truth)
    except ValueError:
        return 0.0
    conf = np.linspace(0.5, 0.95, int((0.95 - 0.5) / 0.05 + 2))
    return float((abs(pred - gt) / gt <= 1 - conf).mean())


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


def test_answer_extraction() -> None:
    assert extract_answer("3 chairs") == "3"
    assert extract_answer("3.") == "3"
    assert extract_answer(" 3") == ""  # a leading space: the first token is empty
    assert extract_answer("B. the sofa") == "B"
    assert extract_answer("3\nchairs") == "3\nchairs"  # only spaces split
    assert extract_answer("") == ""


@pytest.mark.parametrize(
    ("kind", "prediction", "truth", "score"),
    [
        ("object_counting", "3 chairs", "3", 1.0),
        ("object_counting", "3.", "3", 1.0),
        ("object_counting", " 3", "3", 0.0),  # official: "" does not parse -> worst case
        ("object_counting", "", "3", 0.0),
        ("object_counting", "nan", "3", 0.0),  # float("nan") parses; NaN fails every theta
        ("object_counting", "inf", "3", 0.0),
        ("object_counting", "three", "3", 0.0),
        ("object_abs_distance", "1e3", "1000", 1.0),  # float() reads exponents
        ("object_abs_distance", "1e3", "3", 0.0),
        ("object_abs_distance", "2.5m", "2.5", 0.0),
        ("object_abs_distance", "2.5 m", "2.5", 1.0),
        ("room_size_estimation", "11.7", "10", 0.7),
        ("object_rel_distance", "B. the sofa", "B", 1.0),
        ("object_rel_distance", "b", "B", 1.0),
        ("object_rel_distance", "B", "b", 1.0),
        ("object_rel_distance", "", "B", 0.0),
        ("object_rel_distance", " B", "B", 0.0),
        ("object_rel_distance", "(B)", "B", 0.0),
        ("object_rel_distance", "B.", "B", 1.0),
        ("route_planning", "nan", "A", 0.0),
    ],
)
def test_score_edge_cases(kind: str, prediction: str, truth: str, score: float) -> None:
    assert score_answer(kind, prediction, truth) == pytest.approx(score, abs=1e-12)
    assert score_answer(kind, prediction, truth) == _official_score(kind, prediction, truth)


def test_scores_equal_the_official_rules_on_random_outputs() -> None:
    rng = np.random.default_rng(0)
    pieces = ["3", "3.", " 3", "3.0", "1e3", "nan", "-2", "B", "b.", "A", "c ", "x", "", "2.5"]
    tails = ["", " chairs", ".", "\n", " m", "  "]
    for _ in range(400):
        kind = str(rng.choice(NUMERIC_TASKS + CHOICE_TASKS))
        prediction = str(rng.choice(pieces)) + str(rng.choice(tails))
        truth = (
            str(rng.choice(["A", "B", "C"]))
            if kind in CHOICE_TASKS
            else f"{rng.uniform(0.5, 9):.1f}"
        )
        assert score_answer(kind, prediction, truth) == _official_score(kind, prediction, truth)


def test_unparseable_ground_truth_and_zero() -> None:
    assert score_answer("object_counting", "3", "three") == 0.0  # the official TypeError path
    with pytest.raises(ValueError, match="must not be 0"):
        score_answer("object_counting", "3", "0")
    with pytest.raises(ValueError, match="unknown question_type"):
        score_answer("object_count", "3", "3")


def test_first_number_mode() -> None:
    """lmms-eval since 2026-07: the first number anywhere, digits or English words."""
    assert first_number(" 3") == 3.0
    assert first_number("There are 3 boxes.") == 3.0
    assert first_number("Three boxes.") == 3.0
    assert first_number("twenty-one") == 21.0
    assert first_number("three hundred and twenty-one chairs") == 321.0
    assert first_number("one apple, room 2") == 1.0
    assert first_number("1e3") == 1.0
    assert first_number("nan") is None and first_number("") is None
    assert score_answer("object_counting", " 3", "3", numeric_answer="first_number") == 1.0
    assert score_answer("object_counting", "nan", "3", numeric_answer="first_number") == 0.0
    # choice answers are extracted the same way in both modes
    assert score_answer("route_planning", " B", "B", numeric_answer="first_number") == 0.0
    with pytest.raises(ValueError, match="numeric_answer"):
        score_answer("object_counting", "3", "3", numeric_answer="regex")


def _records() -> list[dict[str, str]]:
    return [
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


def test_vsi_accuracy_overall() -> None:
    scores = vsi_accuracy(_records())
    assert scores["object_abs_distance"] == 0.0
    assert abs(scores["object_rel_direction"] - 2 / 3) < 1e-12
    assert abs(scores["overall"] - (1 + 0 + 1 + 1 + 1 + 2 / 3 + 0 + 1) / 8) < 1e-12
    assert scores["object_rel_direction_medium"] == 0.0  # the levels are reported too
    with pytest.raises(ValueError, match="unknown question_type"):
        vsi_accuracy([{"question_type": "x", "prediction": "1", "ground_truth": "1"}])
    with pytest.raises(ValueError, match="no 'prediction'"):
        vsi_accuracy([{"question_type": "object_counting", "ground_truth": "1"}])


def test_missing_direction_level_counts_zero() -> None:
    records = [r for r in _records() if r["question_type"] != "object_rel_direction_hard"]
    scores = vsi_accuracy(records)
    assert "object_rel_direction_hard" not in scores
    # easy 1, medium 0, hard missing -> (1 + 0 + 0) / 3, not the mean of the two present
    assert abs(scores["object_rel_direction"] - 1 / 3) < 1e-12
    assert abs(scores["overall"] - (1 + 0 + 1 + 1 + 1 + 1 / 3 + 0 + 1) / 8) < 1e-12
    # no level at all: no direction entry, and it is not counted in the overall
    records = [r for r in _records() if not r["question_type"].startswith("object_rel_dir")]
    scores = vsi_accuracy(records)
    assert "object_rel_direction" not in scores
    assert abs(scores["overall"] - (1 + 0 + 1 + 1 + 1 + 0 + 1) / 7) < 1e-12


def test_missing_task_overall_is_mean_of_present() -> None:
    records = [r for r in _records() if r["question_type"] not in ("route_planning",)]
    scores = vsi_accuracy(records)
    assert "route_planning" not in scores
    assert abs(scores["overall"] - (1 + 0 + 1 + 1 + 1 + 2 / 3 + 1) / 7) < 1e-12
    only = vsi_accuracy(
        [{"question_type": "object_counting", "prediction": "3 chairs", "ground_truth": "3"}]
    )
    assert only == {"object_counting": 1.0, "overall": 1.0}
    assert vsi_accuracy([]) == {}


def test_per_type_mean_and_raw_outputs() -> None:
    records = [
        {"question_type": "object_counting", "prediction": "3 chairs", "ground_truth": "3"},
        {"question_type": "object_counting", "prediction": " 3", "ground_truth": "3"},
        {"question_type": "object_counting", "prediction": "nan", "ground_truth": "3"},
        {"question_type": "object_counting", "prediction": "4.", "ground_truth": "3"},
    ]
    # 1, 0, 0, and |4 - 3| / 3 = 0.333 <= 1 - theta for theta <= 0.65 (4 of 10)
    expected = (1 + 0 + 0 + 0.4) / 4
    assert math.isclose(vsi_accuracy(records)["object_counting"], expected, abs_tol=1e-12)
