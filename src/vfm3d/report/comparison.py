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
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
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


def to_markdown(table: Mapping[str, Any], digits: int = 3) -> str:
    """One row per model: ``mean [lo, hi]`` per metric (seed values after it when there are
    several), then a row of paired differences against the reference per model."""
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
    return "\n".join(lines) + "\n"


__all__ = [
    "BOOTSTRAP_SAMPLES",
    "Estimate",
    "bootstrap_mean",
    "comparison_table",
    "paired_difference",
    "seed_averaged",
    "to_markdown",
]
