"""The shipped ``zoo/vgllm-mini`` works, shown by numbers on held-out world rooms:

- its official VSI score beats the same architecture untrained (a random-init twin: the
  floor of a model that has learnt nothing, not even the answer format);
- on the metric questions it beats the trivial answer (the training mean of each numeric
  question type: VSI-Bench's chance row for numeric tasks): on ``object_size_estimation`` and
  on the mean MRA of it and ``object_abs_distance``. (The frequency baseline's modal answer is
  unstable on a few training rooms, so the mean is the floor here; the comparison in
  docs/spatial.md has both baselines on the full held-out set.) On the multiple-choice tasks
  it is at most a few points above chance at this size: stated there, not asserted here.

Rooms: the first `ROOMS` clips of vgllm-mini's held-out folder (``vfm3d world --kind room
--seed 1000000 --frames 81 --height 64 --width 96``; its training rooms are seed 0's), questions
`scene_questions(..., seed 0, per_scene 2)`; the frequency answers come from the questions of
the first `TRAIN_ROOMS` training rooms (seed 0). Measured when shipped (6 rooms, 120
questions): overall 0.361 vs the random twin's 0.000; object size MRA 0.750 vs the mean
answer's 0.625; metric tasks 0.508 vs 0.454 (the failure message prints all three).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from vfm3d.metrics.vsi import score_answer
from vfm3d.spatial import SceneFacts, scene_questions
from vfm3d.spatial.evaluate import aggregate_scores, chance_predictions
from vfm3d.spatial.example import heldout_rooms
from vfm3d.spatial.model import generate_answers, load_vgllm
from vfm3d.spatial.prompts import build_prompt
from vfm3d.spatial.questions import QuestionConfig, generate_questions
from vfm3d.world import generate_dataset

ROOMS = 6
TRAIN_ROOMS = 12
METRIC_TASKS = ("object_abs_distance", "object_size_estimation")


@pytest.fixture(scope="module")
def heldout() -> list[tuple[object, list[dict]]]:
    out = []
    for clip in heldout_rooms(ROOMS):
        questions = scene_questions(SceneFacts.from_clip(clip), 0, QuestionConfig(per_scene=2))
        out.append((clip, [q.record(i, "world", clip.id) for i, q in enumerate(questions)]))
    return out


def _answer(model, processor, heldout) -> list[dict]:
    rows = []
    n = int(processor.extra.get("num_frames", 8))
    for clip, records in heldout:
        frames, _ = processor.sample(clip.frames, n)
        with torch.inference_mode():
            answers = generate_answers(
                model, processor, [frames] * len(records), [build_prompt(r) for r in records]
            )
        for record, answer in zip(records, answers, strict=True):
            score = score_answer(record["question_type"], answer, record["ground_truth"])
            rows.append({**record, "prediction": answer, "score": score})
    return rows


def _scores(rows: list[dict]) -> dict[str, float]:
    out = aggregate_scores([r["question_type"] for r in rows], [r["score"] for r in rows])
    out["metric_tasks"] = float(np.mean([out[t] for t in METRIC_TASKS]))
    return out


def test_vgllm_mini_beats_its_random_twin_and_the_frequency_baseline(
    heldout, tmp_path: Path
) -> None:
    model, processor = load_vgllm("zoo/vgllm-mini")
    shipped = _scores(_answer(model, processor, heldout))

    torch.manual_seed(0)
    random_twin = type(model)(model.config)  # same classes and sizes, fresh random weights
    random_twin.load_state_dict(
        {k: v for k, v in model.state_dict().items() if k.startswith("model.vggt.")}, strict=False
    )  # the same frozen geometry encoder: only what training learnt is missing
    random_twin.eval()
    untrained = _scores(_answer(random_twin, processor, heldout))

    generate_dataset(tmp_path, "room", TRAIN_ROOMS, 81, 64, 96, seed=0, progress=False)
    train, _ = generate_questions(tmp_path, seed=0, config=QuestionConfig(per_scene=8))
    records = [r for _, rs in heldout for r in rs]
    mean_answer = _scores(chance_predictions(records, train))

    measured = {"shipped": shipped, "random_twin": untrained, "mean_answer": mean_answer}
    assert shipped["overall"] > untrained["overall"] + 0.10, measured
    assert shipped["object_size_estimation"] > mean_answer["object_size_estimation"] + 0.08, (
        measured
    )
    assert shipped["metric_tasks"] > mean_answer["metric_tasks"] + 0.03, measured
