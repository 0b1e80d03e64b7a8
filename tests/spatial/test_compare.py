"""`vfm3d spatial compare`: seed-pooled official aggregates, stratified bootstrap intervals and
paired differences of eval folders (checked against `vsi_accuracy` and by construction)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vfm3d.metrics.vsi import QUESTION_TYPES
from vfm3d.spatial.compare import compare, load_scores

TYPES = [t for t in QUESTION_TYPES for _ in range(6)]


def _folder(root: Path, name: str, scores: np.ndarray) -> Path:
    folder = root / name
    folder.mkdir()
    rows = [
        {"id": i, "question_type": t, "score": float(s), "ground_truth": "1", "prediction": "1"}
        for i, (t, s) in enumerate(zip(TYPES, scores, strict=True))
    ]
    (folder / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def _scores(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 1, len(TYPES)).round(2)


def _official(scores: np.ndarray) -> dict[str, float]:
    """The official aggregate through `vsi_accuracy`'s own path, on scored records."""
    from vfm3d.spatial.evaluate import aggregate_scores

    return aggregate_scores(TYPES, scores.tolist())


def test_seed_pooled_cells_and_paired_differences(tmp_path: Path) -> None:
    a0, a1, b0 = _scores(1), _scores(2), _scores(3)
    rows = [
        ("geo", [_folder(tmp_path, "a0", a0), _folder(tmp_path, "a1", a1)]),
        ("twin", [_folder(tmp_path, "b0", b0)]),
        ("same", [_folder(tmp_path, "c0", b0)]),
    ]
    table = compare(rows, reference="twin", samples=300)
    geo = table["models"]["geo"]
    pooled = _official((a0 + a1) / 2 * 100)
    for metric in ("object_counting", "object_rel_direction", "overall"):
        assert geo[metric]["mean"] == pytest.approx(pooled[metric])
        assert geo[metric]["seeds"] == pytest.approx(
            [_official(a0 * 100)[metric], _official(a1 * 100)[metric]]
        )
        lo, hi = geo[metric]["ci95"]
        assert lo <= geo[metric]["mean"] <= hi
        twin = table["models"]["twin"][metric]["mean"]
        assert geo[metric]["diff"]["mean"] == pytest.approx(geo[metric]["mean"] - twin)
        # a row equal to the reference differs by exactly 0 on every draw
        assert table["models"]["same"][metric]["diff"]["ci95"] == pytest.approx([0.0, 0.0])
    assert geo["object_rel_direction"]["items"] == 18 and geo["overall"]["items"] == len(TYPES)
    assert "diff" not in table["models"]["twin"]["overall"]
    # the overall is the mean of the 8 tasks (official), not of the 10 question types
    assert set(table["metrics"]) == {*pooled} - {
        "object_rel_direction_easy",
        "object_rel_direction_medium",
        "object_rel_direction_hard",
    }


def test_mismatched_questions_and_bad_rows_are_refused(tmp_path: Path) -> None:
    a = _folder(tmp_path, "a", _scores(1))
    short = tmp_path / "short"
    short.mkdir()
    lines = (a / "predictions.jsonl").read_text().splitlines()[:-1]
    (short / "predictions.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match="not the same ids"):
        compare([("a", [a]), ("b", [short])])
    with pytest.raises(ValueError, match="reference"):
        compare([("a", [a])], reference="b")
    with pytest.raises(FileNotFoundError, match="spatial eval"):
        load_scores(tmp_path / "missing")


def test_command_writes_the_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from vfm3d.cli import main

    a = _folder(tmp_path, "a", _scores(1))
    b = _folder(tmp_path, "b", _scores(2))
    out = tmp_path / "table"
    code = main(
        [
            "spatial",
            "compare",
            "--out",
            str(out),
            "--reference",
            "b",
            "--row",
            f"a={a}",
            "--row",
            f"b={b}",
            "--samples",
            "100",
        ]
    )
    assert code == 0
    text = capsys.readouterr().out
    assert "| a | 1 |" in text and "overall" in text and "rel dir" in text
    record = json.loads((out / "comparison.json").read_text())
    assert record["questions"] == len(TYPES) and "object_counting" in record["metrics"]
    assert (out / "comparison.md").read_text() == text
