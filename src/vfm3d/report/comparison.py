"""A paper-claim comparison table: models x metrics over the same held-out items, several training
seeds per model, bootstrap intervals, and paired differences against a reference row.

Input per model: one mapping per seed, ``{item id: {metric: value}}`` (items are clips, videos or
questions; a model without seeds, e.g. a ceiling or a floor, has one mapping). For each model and
metric:

- ``seeds``: the mean over items of each seed's values;
- ``mean`` and ``ci95``: the mean over items of the seed-averaged per-item value (items scored by
  every seed), with a percentile bootstrap interval over items (`bootstrap_mean`);
- against ``reference`` (e.g. the random-initialisation twin): ``diff`` = model - reference on
  the items both have, with a paired bootstrap interval over items (`paired_difference`).

Resampling items (not seeds) measures how much the conclusion depends on which clips were drawn;
the two seeds' spread is reported beside it, since two seeds cannot give an interval of their own.

A metric of a whole set rather than of one item (a Frechet distance between generated and real
feature sets) has no per-item values to average; `set_statistic_cells` gives it the same cell:
``mean`` = the statistic on the full sets (averaged over seeds), ``ci95`` = percentiles of the
statistic over bootstrap draws that resample the rows of each set with replacement, and ``diff``
= model - reference on the same draws (paired when both sets list the same items in the same
order). `add_columns` puts such cells into a `comparison_table`.

`add_compare_arguments`, `parse_row` and `write_table` are the command-line side shared by the ``compare`` subcommands.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

BOOTSTRAP_SAMPLES = 2000

PerItem = Mapping[str, Mapping[str, float]]


@dataclass(frozen=True)
class Estimate:
    """A mean with its percentile bootstrap interval over ``n`` items."""

    mean: float
    lo: float
    hi: float
    n: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def bootstrap_mean(
    values: Sequence[float], samples: int = BOOTSTRAP_SAMPLES, seed: int = 0, level: float = 0.95
) -> Estimate:
    """Mean of the finite ``values`` and the ``level`` percentile bootstrap interval of it
    (``samples`` resamples with replacement, ``np.random.default_rng(seed)``); the interval is
    the mean itself for one value."""
    x = np.asarray([float(v) for v in values], np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        raise ValueError("bootstrap_mean: no finite values")
    if int(samples) < 1:
        raise ValueError(f"bootstrap samples must be >= 1, got {samples}")
    mean = float(x.mean())
    if x.size == 1:
        return Estimate(mean, mean, mean, 1)
    draws = np.random.default_rng(int(seed)).integers(0, x.size, (int(samples), x.size))
    boot = x[draws].mean(axis=1)
    tail = (1.0 - float(level)) / 2.0
    return Estimate(
        mean, float(np.quantile(boot, tail)), float(np.quantile(boot, 1 - tail)), x.size
    )


def seed_averaged(runs: Sequence[PerItem], metric: str) -> dict[str, float]:
    """``{item: mean over seeds of metric}`` over the items every seed scored (finite values)."""
    if not runs:
        raise ValueError("seed_averaged: no runs")
    common = set.intersection(*(set(run) for run in runs))
    out: dict[str, float] = {}
    for item in sorted(common):
        vals = [run[item].get(metric) for run in runs]
        if all(isinstance(v, (int, float)) and math.isfinite(float(v)) for v in vals):
            out[item] = float(np.mean([float(v) for v in vals]))  # type: ignore[arg-type]
    return out


def paired_difference(
    a: Mapping[str, float],
    b: Mapping[str, float],
    samples: int = BOOTSTRAP_SAMPLES,
    seed: int = 0,
    level: float = 0.95,
) -> Estimate:
    """``a - b`` averaged over the items both have, with a paired bootstrap interval (items
    resampled together, so clip difficulty cancels)."""
    items = sorted(set(a) & set(b))
    if not items:
        raise ValueError("paired_difference: no common items")
    return bootstrap_mean([a[i] - b[i] for i in items], samples, seed, level)


def comparison_table(
    models: Mapping[str, Sequence[PerItem]],
    metrics: Sequence[str],
    reference: str | None = None,
    samples: int = BOOTSTRAP_SAMPLES,
    seed: int = 0,
) -> dict[str, Any]:
    """The module docstring's table as JSON: ``{"metrics", "reference", "models": {name:
    {"seeds": n, metric: {"seeds": [...], "mean", "ci95", "diff"?}}}}``."""
    if reference is not None and reference not in models:
        raise ValueError(f"reference {reference!r} is not one of the models {list(models)}")
    out: dict[str, Any] = {"metrics": list(metrics), "reference": reference, "models": {}}
    for name, runs in models.items():
        entry: dict[str, Any] = {"seeds": len(runs)}
        for metric in metrics:
            per_seed = []
            for run in runs:
                vals = [v.get(metric) for v in run.values()]
                finite = [
                    float(v) for v in vals if isinstance(v, (int, float)) and math.isfinite(v)
                ]
                per_seed.append(float(np.mean(finite)) if finite else float("nan"))
            averaged = seed_averaged(runs, metric)
            if not averaged:
                continue
            est = bootstrap_mean(list(averaged.values()), samples, seed)
            cell: dict[str, Any] = {"seeds": per_seed, "mean": est.mean, "ci95": [est.lo, est.hi]}
            cell["items"] = est.n
            if reference is not None and name != reference:
                ref = seed_averaged(models[reference], metric)
                if set(ref) & set(averaged):
                    diff = paired_difference(averaged, ref, samples, seed)
                    cell["diff"] = {"mean": diff.mean, "ci95": [diff.lo, diff.hi], "items": diff.n}
            entry[metric] = cell
        out["models"][name] = entry
    return out


#: One seed's sets of a set statistic, e.g. ``(generated [N, D], real [M, D])``.
SetRun = Sequence[np.ndarray]


def set_statistic_draws(
    runs: Sequence[SetRun],
    statistic: Callable[..., float],
    samples: int = BOOTSTRAP_SAMPLES,
    seed: int = 0,
) -> tuple[float, np.ndarray]:
    """``(value, draws [samples])``: ``statistic(*sets)`` averaged over the seeds' ``runs`` on
    the full sets, and on ``samples`` bootstrap draws. Draw ``s`` picks, for set ``k``, the
    same row indices in every seed (``np.random.default_rng(seed)``, one index array per set,
    drawn in set order), so two calls with the same set sizes and ``seed`` see the same draws."""
    if not runs:
        raise ValueError("set_statistic_draws: no runs")
    sizes = [len(s) for s in runs[0]]
    for run in runs:
        if [len(s) for s in run] != sizes:
            raise ValueError(
                f"every seed needs sets of the sizes {sizes}, got {[len(s) for s in run]}"
            )
    if int(samples) < 1:
        raise ValueError(f"bootstrap samples must be >= 1, got {samples}")
    value = float(np.mean([statistic(*run) for run in runs]))
    rng = np.random.default_rng(int(seed))
    draws = [rng.integers(0, n, (int(samples), n)) for n in sizes]
    out = np.empty(int(samples), np.float64)
    for s in range(int(samples)):
        out[s] = np.mean([statistic(*(x[d[s]] for x, d in zip(run, draws))) for run in runs])
    return value, out


def _interval(value: float, draws: np.ndarray, n: int, level: float = 0.95) -> Estimate:
    finite = draws[np.isfinite(draws)]
    if finite.size == 0:
        return Estimate(value, value, value, n)
    tail = (1.0 - float(level)) / 2.0
    return Estimate(
        value, float(np.quantile(finite, tail)), float(np.quantile(finite, 1 - tail)), n
    )


def set_statistic_cells(
    models: Mapping[str, Sequence[SetRun]],
    statistic: Callable[..., float],
    reference: str | None = None,
    samples: int = BOOTSTRAP_SAMPLES,
    seed: int = 0,
    pairing: Mapping[str, Any] | None = None,
) -> dict[str, dict[str, Any]]:
    """``{model: cell}`` of a set statistic (module docstring), cells as `comparison_table`'s
    (``seeds``, ``mean``, ``ci95``, ``items`` = rows of the first set, ``diff`` against
    ``reference`` when its sets have the same sizes and, with ``pairing``, the same pairing
    key: e.g. the item ids of both sets, so that a draw picks the same items for both).
    Models with no runs get no cell."""
    results: dict[str, tuple[float, np.ndarray, list[int]]] = {}
    per_seed: dict[str, list[float]] = {}
    for name, runs in models.items():
        if not runs:
            continue
        value, draws = set_statistic_draws(runs, statistic, samples, seed)
        results[name] = (value, draws, [len(s) for s in runs[0]])
        per_seed[name] = [float(statistic(*run)) for run in runs]
    if reference is not None and reference in models and reference not in results:
        reference = None
    cells: dict[str, dict[str, Any]] = {}
    for name, (value, draws, sizes) in results.items():
        est = _interval(value, draws, sizes[0])
        cell: dict[str, Any] = {
            "seeds": per_seed[name],
            "mean": est.mean,
            "ci95": [est.lo, est.hi],
            "items": est.n,
        }
        paired = pairing is None or pairing.get(name) == pairing.get(reference)
        if (
            reference is not None
            and name != reference
            and results[reference][2] == sizes
            and paired
        ):
            ref_value, ref_draws, _ = results[reference]
            diff = _interval(value - ref_value, draws - ref_draws, sizes[0])
            cell["diff"] = {"mean": diff.mean, "ci95": [diff.lo, diff.hi], "items": diff.n}
        cells[name] = cell
    return cells


def add_columns(
    table: dict[str, Any], columns: Mapping[str, Mapping[str, Mapping[str, Any]]]
) -> dict[str, Any]:
    """Add ``{metric: {model: cell}}`` columns (e.g. `set_statistic_cells`) to a
    `comparison_table` result, in place; returns it."""
    for metric, cells in columns.items():
        if metric not in table["metrics"]:
            table["metrics"].append(metric)
        for name, cell in cells.items():
            if name not in table["models"]:
                raise ValueError(f"column {metric!r}: model {name!r} is not a row of the table")
            table["models"][name][metric] = dict(cell)
    return table


def to_markdown(table: Mapping[str, Any], digits: int = 3) -> str:
    """One row per model: ``mean [lo, hi]`` per metric (seed values after it when there are
    several), then a row of paired differences against the reference per model, then the
    table's ``notes`` (lines of text), if any."""
    metrics = list(table["metrics"])
    head = "| model | seeds | " + " | ".join(metrics) + " |"
    lines = [head, "|---|---|" + "---|" * len(metrics)]

    def fmt(v: float) -> str:
        return f"{v:.{digits}f}"

    for name, entry in table["models"].items():
        cells = []
        for metric in metrics:
            cell = entry.get(metric)
            if cell is None:
                cells.append("-")
                continue
            text = f"{fmt(cell['mean'])} [{fmt(cell['ci95'][0])}, {fmt(cell['ci95'][1])}]"
            if len(cell["seeds"]) > 1:
                text += " (" + " / ".join(fmt(v) for v in cell["seeds"]) + ")"
            cells.append(text)
        lines.append(f"| {name} | {entry['seeds']} | " + " | ".join(cells) + " |")
    reference = table.get("reference")
    if reference is not None:
        lines += ["", f"Paired differences (model - {reference}), 95% bootstrap over items:", ""]
        lines += [head, lines[1]]
        for name, entry in table["models"].items():
            if name == reference:
                continue
            cells = []
            for metric in metrics:
                diff = (entry.get(metric) or {}).get("diff")
                cells.append(
                    "-"
                    if diff is None
                    else f"{diff['mean']:+.{digits}f} [{diff['ci95'][0]:+.{digits}f}, "
                    f"{diff['ci95'][1]:+.{digits}f}]"
                )
            lines.append(f"| {name} | {entry['seeds']} | " + " | ".join(cells) + " |")
    notes = list(table.get("notes") or [])
    if notes:
        lines += ["", *notes]
    return "\n".join(lines) + "\n"


def add_compare_arguments(parser: Any, command: str, default_metrics: Sequence[str]) -> None:
    """The options of a ``compare`` subcommand: ``--row NAME=DIR[,DIR...]`` (repeated; one
    ``command`` output folder per seed), ``--reference``, ``--metrics``, ``--samples``,
    ``--out`` (an ``argparse`` parser)."""
    parser.add_argument(
        "--row",
        action="append",
        required=True,
        metavar="NAME=DIR[,DIR...]",
        help=f"a table row: its name and one `{command}` output folder per seed",
    )
    parser.add_argument("--reference", default=None, help="row the others are differenced with")
    parser.add_argument(
        "--metrics", default=",".join(default_metrics), help="comma-separated metric columns"
    )
    parser.add_argument(
        "--samples",
        type=int,
        default=BOOTSTRAP_SAMPLES,
        help=f"bootstrap resamples (default {BOOTSTRAP_SAMPLES})",
    )
    parser.add_argument("--out", required=True, help="output folder")


def parse_row(text: str) -> tuple[str, list[Path]]:
    """A ``--row`` argument: ``"name=dir1,dir2"`` (one folder per seed) -> ``("name", [dir1,
    dir2])``."""
    name, sep, dirs = text.partition("=")
    if not sep or not name or not dirs:
        raise ValueError(f"--row {text!r}: expected NAME=DIR[,DIR...]")
    return name, [Path(d) for d in dirs.split(",") if d]


def write_table(out: str | Path, table: Mapping[str, Any], digits: int = 3) -> str:
    """Write ``OUT/comparison.json`` and ``OUT/comparison.md`` (atomically); returns the
    markdown."""
    from vfm3d.utils.atomic import atomic_write_json, atomic_write_text

    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    text = to_markdown(table, digits)
    atomic_write_json(folder / "comparison.json", table)
    atomic_write_text(folder / "comparison.md", text)
    return text


__all__ = [
    "BOOTSTRAP_SAMPLES",
    "Estimate",
    "SetRun",
    "add_columns",
    "add_compare_arguments",
    "bootstrap_mean",
    "comparison_table",
    "paired_difference",
    "parse_row",
    "seed_averaged",
    "set_statistic_cells",
    "set_statistic_draws",
    "to_markdown",
    "write_table",
]
