"""VSI-Bench scoring on raw model outputs, equal to the official code.

Reference: VSI-Bench (Yang et al., "Thinking in Space", 2024), ``lmms_eval/tasks/vsibench/utils.py``
of vision-x-nyu/thinking-in-space (the release the paper's numbers come from) and of
EvolvingLMMs-Lab/lmms-eval (the same functions until its 2026-07 change, see below).

One record (`score_answer`):

1. Answer extraction (``fuzzy_matching``): ``prediction.split(" ")[0].rstrip(".").strip()``, the
   first token split at literal spaces only. ``"3 chairs"`` -> ``"3"``, ``"3."`` -> ``"3"``,
   ``"B. the sofa"`` -> ``"B"``; but ``" 3"`` -> ``""`` (a leading space makes the first token
   empty) and ``"3\\nchairs"`` stays one token.
2. Multiple choice (`CHOICE_TASKS`): 1 if ``answer.lower() == ground_truth.lower()`` else 0 (the
   ground truth is not stripped).
3. Numeric (`NUMERIC_TASKS`): ``float()`` of the answer and of the ground truth; if either fails
   the record scores the worst case, 0. Otherwise Mean Relative Accuracy
   ``MRA = mean_theta 1[|pred - gt| / gt <= 1 - theta]`` over the 10 thresholds
   ``np.linspace(0.5, 0.95, int((0.95 - 0.5) / 0.05 + 2))`` (float rounding makes the count 10).
   ``float()`` accepts ``"1e3"`` (1000), ``"nan"`` and ``"inf"`` (both score 0: the comparisons
   are false). A ground truth of 0 is an error (the official code divides by it).

Aggregation (`vsi_accuracy`): the mean score of each ``question_type``; ``object_rel_direction``
= (easy + medium + hard) / 3 where a missing level counts 0 (the official release pops the three
levels without a default and raises ``KeyError`` when one is missing; this follows the variant
that pops with default 0, and leaves the entry out when no level is present at all); ``overall``
= the unweighted mean of the task entries present (the 8 `TASKS` when all are there; the three
levels are not counted on their own). Scores are fractions in [0, 1] (the paper prints x100).

``numeric_answer="first_number"`` switches numeric extraction to lmms-eval's since 2026-07
(``extract_number``, lmms-eval PR #1386): the first number in the whole answer, written in
digits (``-?\\d+(\\.\\d+)?``: ``" 3"`` -> 3, ``"1e3"`` -> 1) or in English words (``"three"``,
``"twenty-one"``, ``"three hundred and twenty-one"``), whichever comes first; none -> 0. Choice
answers are extracted the same way in both modes. Numbers published before that change (the
paper, VG-LLM) used the default ``"first_token"``.
"""

from __future__ import annotations

import re
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
QUESTION_TYPES = NUMERIC_TASKS + CHOICE_TASKS
"""The 10 ``question_type`` names of VSI-Bench records."""
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
"""The 8 tasks of the VSI-Bench table (relative direction merges its three levels)."""
NUMERIC_ANSWER_MODES = ("first_token", "first_number")


def mra_thresholds() -> np.ndarray:
    """The 10 confidence thresholds theta of MRA, built exactly as the official code does."""
    start, end, interval = 0.5, 0.95, 0.05
    return np.linspace(start, end, int((end - start) / interval + 2))


def mra(
    pred: float | Sequence[float] | np.ndarray,
    gt: float | Sequence[float] | np.ndarray,
) -> float:
    """Mean Relative Accuracy of numeric answers, averaged over items -> float in [0, 1].

    `pred` and `gt` are scalars or equal-length sequences; `gt` must be finite and non-zero. A
    NaN/inf prediction (unparseable answer) scores 0, as the official worst case.
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


def extract_answer(prediction: object) -> str:
    """The official answer extraction: first space-separated token, ``rstrip(".")``, ``strip()``."""
    return str(prediction).split(" ")[0].rstrip(".").strip()


def parse_float(text: object) -> float | None:
    """``float(text)``, or None where that fails (the official ``to_float``)."""
    try:
        return float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return None


_NUMBER_WORDS = {
    word: value
    for value, word in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen "
        "fourteen fifteen sixteen seventeen eighteen nineteen".split()
    )
}
_NUMBER_WORDS.update(
    {
        word: 10 * (i + 2)
        for i, word in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split())
    }
)
_NUMBER_WORDS.update({"hundred": 100, "thousand": 1000})
_DIGITS = re.compile(r"-?\d+(?:\.\d+)?")
_WORD = re.compile(r"[a-z]+")


def first_number(text: object) -> float | None:
    """The first number in ``text`` (lmms-eval's ``extract_number`` since 2026-07), or None.

    Digits (``-?\\d+(\\.\\d+)?``) or a run of English number words (``"and"`` skipped inside a
    run; ``hundred`` multiplies the running value, ``thousand`` closes a group), whichever
    starts first. ``"There are 3 boxes"`` -> 3, ``"twenty-one"`` -> 21, ``"1e3"`` -> 1.
    """
    if text is None:
        return None
    s = str(text).strip().lower()
    if not s:
        return None
    digits = _DIGITS.search(s)
    words: list[int] = []
    words_at: int | None = None
    for match in _WORD.finditer(s):
        token = match.group(0)
        if words_at is None:
            if token in _NUMBER_WORDS:
                words_at, words = match.start(), [_NUMBER_WORDS[token]]
        elif token in _NUMBER_WORDS:
            words.append(_NUMBER_WORDS[token])
        elif token != "and":
            break
    if digits is not None and (words_at is None or digits.start() < words_at):
        return float(digits.group(0))
    if words_at is None:
        return None
    total = current = 0
    for value in words:
        if value == 100:
            current = max(current, 1) * 100
        elif value == 1000:
            total += max(current, 1) * 1000
            current = 0
        else:
            current += value
    return float(total + current)


def mean_relative_accuracy(pred: float, gt: float) -> float:
    """MRA of one numeric answer, computed as the official code does (Python floats):
    ``mean(|pred - gt| / gt <= 1 - theta)``; NaN or inf ``pred`` -> 0.

    Raises:
        ValueError: ``gt == 0`` (the official code raises ZeroDivisionError).
    """
    if gt == 0:
        raise ValueError("MRA divides by the ground truth; it must not be 0")
    rel = abs(float(pred) - float(gt)) / float(gt)
    return float(np.mean(rel <= 1 - mra_thresholds()))


def exact_match(pred: str, gt: str) -> float:
    """The official ``exact_match``: 1.0 if ``pred.lower() == gt.lower()`` else 0.0 (no strip;
    `extract_answer` has stripped the prediction)."""
    return 1.0 if str(pred).lower() == str(gt).lower() else 0.0


def score_answer(
    question_type: str,
    prediction: object,
    ground_truth: object,
    numeric_answer: str = "first_token",
) -> float:
    """Score one raw model output against its record's ``ground_truth`` -> float in [0, 1].

    See the module docstring for the official rules; ``numeric_answer`` is ``"first_token"``
    (default, the paper's) or ``"first_number"`` (lmms-eval since 2026-07).

    Raises:
        ValueError: unknown ``question_type`` or ``numeric_answer``; a numeric ground truth of 0.
    """
    if numeric_answer not in NUMERIC_ANSWER_MODES:
        raise ValueError(
            f"numeric_answer must be one of {NUMERIC_ANSWER_MODES}, got {numeric_answer!r}"
        )
    if question_type in CHOICE_TASKS:
        return exact_match(extract_answer(prediction), str(ground_truth))
    if question_type in NUMERIC_TASKS:
        if numeric_answer == "first_token":
            pred = parse_float(extract_answer(prediction))
        else:
            pred = first_number(prediction)
        gt = parse_float(ground_truth)
        if pred is None or gt is None:
            return 0.0  # the official worst case (its TypeError branch)
        return mean_relative_accuracy(pred, gt)
    raise ValueError(f"unknown question_type {question_type!r}; VSI-Bench has {QUESTION_TYPES}")


def vsi_accuracy(
    records: Iterable[Mapping[str, object]],
    numeric_answer: str = "first_token",
) -> dict[str, float]:
    """Score VSI-Bench answers -> ``{question_type or task: score, ..., "overall": ...}`` in [0, 1].

    Each record has ``question_type`` (an official type name), ``prediction`` (the raw model
    output) and ``ground_truth`` (the record's, a letter for choice types). The result holds the
    mean score of every question type present (the three direction levels included), the merged
    ``object_rel_direction`` (a missing level counts 0; absent when no level is present) and
    ``overall`` (the mean of the `TASKS` entries present; absent for no records). See the module
    docstring for the official rules and ``numeric_answer``.
    """
    per_type: dict[str, list[float]] = {}
    for i, record in enumerate(records):
        for key in ("question_type", "prediction", "ground_truth"):
            if key not in record:
                raise ValueError(f"vsi_accuracy: record {i} has no {key!r}")
        kind = str(record["question_type"])
        try:
            score = score_answer(kind, record["prediction"], record["ground_truth"], numeric_answer)
        except ValueError as error:
            raise ValueError(f"vsi_accuracy: record {i}: {error}") from error
        per_type.setdefault(kind, []).append(score)
    out = {kind: float(np.mean(scores)) for kind, scores in per_type.items()}
    if any(level in out for level in DIRECTION_LEVELS):
        out["object_rel_direction"] = sum(out.get(level, 0.0) for level in DIRECTION_LEVELS) / 3.0
    # summed in the official order (types sorted by name as pandas groups them, then the
    # merged direction), so that the float result is the same to the last bit
    present = [out[kind] for kind in sorted(per_type) if kind not in DIRECTION_LEVELS]
    if "object_rel_direction" in out:
        present.append(out["object_rel_direction"])
    if present:
        out["overall"] = sum(present) / len(present)
    return out
