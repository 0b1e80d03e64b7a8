"""The demo's spatial step (`vfm3d.spatial.example`): held-out rooms, one question per task,
answers from the shipped model scored officially, files written."""

from __future__ import annotations

import json
from pathlib import Path

from vfm3d.metrics.vsi import score_answer
from vfm3d.spatial.example import ORDER, ask_example, heldout_rooms, pick_questions


def test_picked_questions_are_one_per_task_in_order() -> None:
    clip = heldout_rooms(1)[0]
    assert clip.id == "room-s1000000-000000"
    records = pick_questions(clip, 8)
    tasks = [
        "object_rel_direction" if r["question_type"].startswith("object_rel_dir") else
        r["question_type"] for r in records
    ]  # fmt: skip
    assert len(set(tasks)) == len(tasks) and tasks == [t for t in ORDER if t in tasks]
    assert pick_questions(clip, 3) == records[:3]


def test_ask_example_writes_scored_answers(tmp_path: Path) -> None:
    result = ask_example(tmp_path, scenes=1, per_scene=3)
    rows = [json.loads(line) for line in (tmp_path / "questions.jsonl").read_text().splitlines()]
    assert len(rows) == 3 == result["questions"]
    for row in rows:
        assert row["score"] == score_answer(
            row["question_type"], row["prediction"], row["ground_truth"]
        )
    assert (tmp_path / f"frames_{rows[0]['scene_name']}.png").is_file()
    assert "held-out rooms" in (tmp_path / "report.html").read_text()
    assert json.loads((tmp_path / "summary.json").read_text())["questions"] == 3
