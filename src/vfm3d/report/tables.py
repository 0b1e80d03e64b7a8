"""Result rows -> ``results.csv`` and ``results.md``.

A result row is a flat dict: identifying columns (``backbone``, ``layer``, ``timestep``, ``split``)
then metric columns (``point_err``, ``depth_err``, ``auc@5``, ...). Missing values print as ``-``.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vfm3d.utils.atomic import atomic_write_text

ID_COLUMNS = ("backbone", "layer", "timestep", "split")
#: metrics shown in the markdown table, in order; lower is better for *_err, higher for auc/rra.
HEADLINE_METRICS = ("point_err", "depth_err", "auc@5", "auc@30", "rra@15", "abs_rel")


def lower_is_better(metric: str) -> bool:
    """True for error-like metrics (``*_err``, ``abs_rel``, ``rmse``...), False for AUC/RRA/delta."""
    return not metric.startswith(("auc", "rra", "rta", "delta"))


def columns_of(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Identifying columns first, then every other key in first-seen order."""
    seen: list[str] = [c for c in ID_COLUMNS if any(c in r for r in rows)]
    for row in rows:
        for key in row:
            if key not in seen:
                seen.append(key)
    return seen


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:.1f}"
    return str(value)


def to_csv(rows: Sequence[dict[str, Any]], path: str | os.PathLike[str] | None = None) -> str:
    """Write all columns of ``rows`` as CSV (atomically when ``path`` is given); return the text."""
    cols = columns_of(rows)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: ("" if row.get(c) is None else row.get(c)) for c in cols})
    text = buffer.getvalue()
    if path is not None:
        atomic_write_text(Path(path), text)
    return text


def to_markdown(
    rows: Sequence[dict[str, Any]],
    metrics: Sequence[str] = HEADLINE_METRICS,
    path: str | os.PathLike[str] | None = None,
    bold_best: bool = True,
) -> str:
    """A markdown table of ``rows`` with the identifying columns and ``metrics``.

    With ``bold_best`` the best value of each metric column (per ``split``) is bold.
    """
    ids = [c for c in ID_COLUMNS if any(c in r for r in rows)]
    mets = [m for m in metrics if any(r.get(m) is not None for r in rows)]
    best: dict[tuple[str, Any], float] = {}
    if bold_best:
        for m in mets:
            for r in rows:
                v = r.get(m)
                if not isinstance(v, (int, float)) or math.isnan(v):
                    continue
                key = (m, r.get("split"))
                if key not in best or (v < best[key] if lower_is_better(m) else v > best[key]):
                    best[key] = float(v)
        # A column whose values are all equal (e.g. all 0) has no best: bold nothing.
        for m in mets:
            for split in {r.get("split") for r in rows}:
                vals = {r.get(m) for r in rows if r.get("split") == split}
                if len(vals) == 1:
                    best.pop((m, split), None)
    header = "| " + " | ".join(ids + mets) + " |"
    sep = "|" + "|".join(["---"] * len(ids) + ["---:"] * len(mets)) + "|"
    lines = [header, sep]
    for r in rows:
        cells = [_fmt(r.get(c)) for c in ids]
        for m in mets:
            text = _fmt(r.get(m))
            v = r.get(m)
            if bold_best and isinstance(v, (int, float)) and best.get((m, r.get("split"))) == v:
                text = f"**{text}**"
            cells.append(text)
        lines.append("| " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    if path is not None:
        atomic_write_text(Path(path), text)
    return text
