"""VSI-Bench scoring (reference: VSI-Bench, Yang et al. "Thinking in Space", official
`lmms_eval/tasks/vsibench/utils.py`).

- Numeric answers: Mean Relative Accuracy `MRA = mean_theta 1[|pred - gt| / gt <= 1 - theta]`
  over theta in {0.50, 0.55, ..., 0.95}; the official code builds these 10 values as
  `np.linspace(0.5, 0.95, int((0.95 - 0.5) / 0.05 + 2))` (float rounding makes the count 10).
- Multiple choice: exact match (case-insensitive) of the answer string.
- Overall: relative direction is the mean of its easy/medium/hard levels; the overall score is
  the unweighted mean of the 8 task scores.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

NUMERIC_TASKS = (
    "object_counting",
    "object_abs_distance",
    "object_size_estimation",
    "room_size_estimation",
)
CHOICE_TASKS = (
    "object_rel_distance",
    "object_rel_direction_easy",
    "object_rel_direction_medium",
    "object_rel_direction_hard",
    "route_planning",
    "obj_appearance_order",
)
DIRECTION_LEVELS = CHOICE_TASKS[1:4]
TASKS = (
    "object_counting",
    "object_abs_distance",
    "object_size_estimation",
    "room_size_estimation",
    "object_rel_distance",
    "object_rel_direction",
    "route_planning",
    "obj_appearance_order",
)


def mra_thresholds() -> np.ndarray:
    """The 10 confidence thresholds theta of MRA, built exactly as the official code does."""
    start, end, interval = 0.5, 0.95, 0.05
    return np.linspace(start, end, int((end - start) / interval + 2))


def mra(
    pred: float | Sequence[float] | np.ndarray,
    gt: float | Sequence[float] | np.ndarray,
) -> float:
    """Mean Relative Accuracy of numeric answers, averaged over items -> float in [0, 1].

    `pred` and `gt` are scalars or equal-length sequences; `gt` must be non-zero. A NaN/inf
    prediction (unparseable answer) scores 0, as the official worst case.
    """
    p = np.atleast_1d(np.asarray(pred, dtype=np.float64))
    g = np.atleast_1d(np.asarray(gt, dtype=np.float64))
    if p.shape != g.shape or p.ndim != 1 or p.size == 0:
        raise ValueError(
            f"pred and gt must be equal-length, non-empty; got {p.shape} and {g.shape}"
        )
    if not np.all(np.isfinite(g)) or np.any(g == 0):
        raise ValueError("gt must be finite and non-zero (MRA divides by gt)")
    theta = mra_thresholds()
    with np.errstate(invalid="ignore"):
        rel = np.abs(p - g) / g
        hits = rel[:, None] <= 1.0 - theta[None, :]
    hits &= np.isfinite(rel)[:, None]
    return float(hits.mean(axis=1).mean())


def exact_match(pred: str, gt: str) -> float:
    """1.0 if the answers match case-insensitively (after stripping), else 0.0."""
    return 1.0 if pred.strip().lower() == gt.strip().lower() else 0.0


def vsi_accuracy(
    records: Iterable[Mapping[str, object]],
) -> dict[str, float]:
    """Score VSI-Bench answers -> `{task: score, ..., "overall": mean of the 8 tasks}` in [0, 1].

    Each record has `question_type` (an official type name), `prediction` and `ground_truth`.
    Numeric types score MRA (an unparseable prediction scores 0); the others exact match.
    `object_rel_direction` is the mean of its three levels' scores. `overall` is only present
    when all 8 tasks have records.
    """
    per_type: dict[str, list[float]] = {}
    for i, record in enumerate(records):
        for key in ("question_type", "prediction", "ground_truth"):
            if key not in record:
                raise ValueError(f"vsi_accuracy: record {i} has no {key!r}")
        kind = str(record["question_type"])
        if kind in NUMERIC_TASKS:
            try:
                value = float(str(record["prediction"]).strip())
            except ValueError:
                value = float("nan")
            score = mra(value, float(str(record["ground_truth"])))
        elif kind in CHOICE_TASKS:
            score = exact_match(str(record["prediction"]), str(record["ground_truth"]))
        else:
            raise ValueError(f"vsi_accuracy: record {i} has unknown question_type {kind!r}")
        per_type.setdefault(kind, []).append(score)
    out = {kind: float(np.mean(scores)) for kind, scores in per_type.items()}
    levels = [out[level] for level in DIRECTION_LEVELS if level in out]
    if levels:
        out["object_rel_direction"] = float(np.mean(levels))
    if all(task in out for task in TASKS):
        out["overall"] = float(np.mean([out[task] for task in TASKS]))
    return out
