"""``vfm3d spatial compare``: one VSI-Bench table of several ``vfm3d spatial eval`` outputs on
the same questions, seeds pooled per row, bootstrap intervals over questions and paired
differences against a reference row.

Example (VG-LLM's comparison: geometry tokens vs none, two seeds each)::

    vfm3d spatial compare --out eval/table --reference no-geometry \\
        --row vgllm-mini=eval/g0,eval/g1 --row no-geometry=eval/n0,eval/n1 \\
        --row blind=eval/b0,eval/b1 --row chance=eval/chance --row frequency=eval/frequency

Cells are VSI-Bench's (x100): the official aggregate (`vfm3d.spatial.evaluate.aggregate_scores`:
mean per question type, relative direction = the mean of its three levels, overall = the mean of
the 8 tasks) of each question's score **averaged over the row's seeds** (every folder must have
scored the same question ids). ``seeds`` lists each seed's own aggregate. Intervals: the
stratified percentile bootstrap over questions (`vfm3d.spatial.evaluate.bootstrap_intervals`:
resampling within each question type, so the task mix is the benchmark's). The aggregate is
linear in the per-question scores, so a paired difference (row - reference) is the aggregate of
the per-question differences, and its interval the same bootstrap of those differences (the
draws pick the same questions for both rows).

The table is `vfm3d.report.comparison`'s layout (``metrics``, ``reference``, ``models``), so
`vfm3d.report.comparison.to_markdown` / ``write_table`` print and save it.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vfm3d.metrics.vsi import TASKS

#: Columns: the 8 VSI-Bench tasks and the overall score.
DEFAULT_METRICS = (*TASKS, "overall")
#: Short column names for the markdown table (JSON keys stay the official names).
SHORT_NAMES = {
    "object_counting": "count",
    "object_abs_distance": "abs dist",
    "object_size_estimation": "obj size",
    "room_size_estimation": "room size",
    "object_rel_distance": "rel dist",
    "object_rel_direction": "rel dir",
    "route_planning": "route",
    "obj_appearance_order": "appr order",
    "overall": "overall",
}


def load_scores(folder: Path) -> dict[str, tuple[str, float]]:
    """``{question id: (question_type, score)}`` of one ``vfm3d spatial eval`` output folder."""
    from vfm3d.utils.training import read_jsonl

    path = Path(folder) / "predictions.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found (run `vfm3d spatial eval ... --out {folder}`)")
    out: dict[str, tuple[str, float]] = {}
    for row in read_jsonl(path):
        if "score" not in row or "question_type" not in row:
            raise ValueError(
                f"{path}: a record without 'score' / 'question_type' (id {row.get('id')})"
            )
        score = float(row["score"])
        if not np.isfinite(score):
            raise ValueError(f"{path}: question {row.get('id')} has a non-finite score")
        out[str(row["id"])] = (str(row["question_type"]), score)
    if not out:
        raise ValueError(f"{path}: no predictions")
    return out


def _count(types: Sequence[str], metric: str) -> int:
    """Questions behind ``metric``: its type's, the three levels' for relative direction, all
    for ``overall``."""
    from vfm3d.metrics.vsi import DIRECTION_LEVELS

    if metric == "overall":
        return len(types)
    if metric == "object_rel_direction":
        return sum(1 for t in types if t in DIRECTION_LEVELS)
    return sum(1 for t in types if t == metric)


def _cell(
    types: Sequence[str],
    scores: np.ndarray,
    per_seed: Sequence[np.ndarray],
    metrics: Sequence[str],
    samples: int,
    seed: int,
) -> dict[str, dict[str, Any]]:
    from vfm3d.spatial.evaluate import aggregate_scores, bootstrap_intervals

    value = aggregate_scores(types, scores.tolist())
    ci = bootstrap_intervals(types, scores.tolist(), samples=samples, seed=seed)
    seeds = [aggregate_scores(types, s.tolist()) for s in per_seed]
    cells: dict[str, dict[str, Any]] = {}
    for metric in metrics:
        if metric not in value:
            continue
        cells[metric] = {
            "seeds": [s[metric] for s in seeds],
            "mean": value[metric],
            "ci95": ci.get(metric, [value[metric], value[metric]]),
            "items": _count(types, metric),
        }
    return cells


def compare(
    rows: Sequence[tuple[str, Sequence[Path]]],
    metrics: Sequence[str] = DEFAULT_METRICS,
    reference: str | None = None,
    samples: int | None = None,
    seed: int = 0,
    scale: float = 100.0,
) -> dict[str, Any]:
    """The comparison table (module docstring) of eval folders ``rows`` = ``[(name, [folder per
    seed])]``; scores multiplied by ``scale`` (100: VSI-Bench's percentages)."""
    from vfm3d.report.comparison import BOOTSTRAP_SAMPLES

    samples = BOOTSTRAP_SAMPLES if samples is None else int(samples)
    names = [name for name, _ in rows]
    if len(set(names)) != len(names):
        raise ValueError(f"a row is given twice: {names}")
    if reference is not None and reference not in names:
        raise ValueError(f"reference {reference!r} is not one of the rows {names}")
    ids: list[str] | None = None
    types: list[str] = []
    averaged: dict[str, np.ndarray] = {}
    seeds_of: dict[str, list[np.ndarray]] = {}
    for name, folders in rows:
        if not folders:
            raise ValueError(f"row {name!r}: no eval folder")
        runs = []
        for folder in folders:
            run = load_scores(Path(folder))
            if ids is None:
                ids = sorted(run)
                types = [run[i][0] for i in ids]
            elif sorted(run) != ids:
                raise ValueError(
                    f"{folder}: scored {len(run)} questions, not the same ids as the first row's "
                    f"{len(ids)}; compare evaluations of one question set"
                )
            if [run[i][0] for i in ids] != types:
                raise ValueError(f"{folder}: question types differ from the first row's")
            runs.append(np.asarray([run[i][1] for i in ids], np.float64) * scale)
        seeds_of[name] = runs
        averaged[name] = np.mean(np.stack(runs), axis=0)
    table: dict[str, Any] = {
        "metrics": list(metrics),
        "reference": reference,
        "models": {},
        "scale": scale,
        "questions": len(ids or []),
        "bootstrap": {"samples": samples, "seed": seed, "stratified": True, "over": "questions"},
    }
    for name, _ in rows:
        entry: dict[str, Any] = {"seeds": len(seeds_of[name])}
        entry.update(_cell(types, averaged[name], seeds_of[name], metrics, samples, seed))
        if reference is not None and name != reference:
            diff = averaged[name] - averaged[reference]
            cells = _cell(types, diff, [diff], metrics, samples, seed)
            for metric, cell in cells.items():
                if metric in entry:
                    entry[metric]["diff"] = {
                        "mean": cell["mean"],
                        "ci95": cell["ci95"],
                        "items": cell["items"],
                    }
        table["models"][name] = entry
    table["folders"] = {name: [str(f) for f in folders] for name, folders in rows}
    counts: dict[str, int] = {}
    for t in types:
        counts[t] = counts.get(t, 0) + 1
    table["question_counts"] = dict(sorted(counts.items()))
    return table


def short_columns(table: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``table`` with `SHORT_NAMES` as metric names (for a narrower markdown)."""
    out = dict(table)
    out["metrics"] = [SHORT_NAMES.get(m, m) for m in table["metrics"]]
    out["models"] = {
        name: {SHORT_NAMES.get(k, k): v for k, v in entry.items()}
        for name, entry in table["models"].items()
    }
    return out


def compare_main(args: argparse.Namespace) -> int:
    """``vfm3d spatial compare``: write ``OUT/comparison.json`` (official names) and
    ``OUT/comparison.md`` (short column names, x100, 1 decimal), print the markdown."""
    from vfm3d.report.comparison import parse_row, to_markdown
    from vfm3d.utils.atomic import atomic_write_json, atomic_write_text

    rows = [parse_row(text) for text in args.row]
    metrics = [m for m in str(args.metrics).split(",") if m]
    table = compare(rows, metrics, args.reference, samples=args.samples)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    text = to_markdown(short_columns(table), digits=1)
    atomic_write_json(out / "comparison.json", table)
    atomic_write_text(out / "comparison.md", text)
    print(text, end="")
    return 0


__all__ = ["DEFAULT_METRICS", "SHORT_NAMES", "compare", "compare_main", "load_scores"]
