"""The zoo experiment's table and findings with bootstrap intervals over evaluation clips.

Input: finished experiment folders (`vfm3d.zoo.experiment.run_experiment`, one per seed), whose
probe runs hold ``metrics_<split>.json`` with per-sample records (`MetricAccumulator.per_sample`).
A clip's value is the mean over its evaluation samples; a number in the table is the mean over a
split's clips with a percentile bootstrap 95% interval over clips (`bootstrap_mean`), at the
backbone's best layer(/timestep) for that metric (lowest error, highest AUC; chosen on the same
clips, as the paper does, so the best-of-layers value is optimistically biased for every backbone
alike).

The paper's three findings are decided per seed by paired differences over the same clips
(`paired_difference`; clip difficulty cancels): a finding **holds** when its predicted direction
is outside the 95% interval in every seed, is **contradicted** when the opposite direction is in
every seed, and is **not established** otherwise.

1. video generators encode 3D: best wan-mini vs its random-init twin;
2. video beats per-frame image models: the better of wan-mini / videomae-mini vs dinov2-mini;
3. mid layers and early-but-not-first timesteps: wan-mini's best middle layer vs its first and
   last layer (each layer averaged over timesteps), and the best of the intermediate timesteps
   vs the cleanest and the noisiest (each averaged over layers).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vfm3d.report.comparison import Estimate, bootstrap_mean, paired_difference

#: Metrics of the table: (key, lower is better).
METRICS: tuple[tuple[str, bool], ...] = (
    ("point_err", True),
    ("depth_err", True),
    ("auc@30", False),
)
VIDEO_MODELS = ("wan-mini", "videomae-mini")
IMAGE_MODEL = "dinov2-mini"


def clip_values(run: Path, split: str, metric: str) -> dict[str, float]:
    """``{clip id: mean of metric over the clip's evaluation samples}`` of one probe run."""
    path = run / f"metrics_{split}.json"
    data = json.loads(path.read_text())
    if "samples" not in data:
        raise ValueError(f"{path}: no per-sample records (re-evaluate with this version)")
    per: dict[str, list[float]] = {}
    for record in data["samples"]:
        per.setdefault(str(record["clip_id"]), []).append(float(record[metric]))
    return {k: float(np.mean(v)) for k, v in per.items()}


class Experiment:
    """One finished experiment folder: its result rows and per-clip values (cached)."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        path = self.folder / "results.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: not a finished zoo experiment")
        self.rows: list[dict[str, Any]] = json.loads(path.read_text())
        self.seed = _seed_of(self.folder)
        self._cache: dict[tuple[str, str, str], dict[str, float]] = {}

    @property
    def backbones(self) -> list[str]:
        return sorted({r["backbone"] for r in self.rows})

    @property
    def splits(self) -> list[str]:
        return sorted({r["split"] for r in self.rows})

    def runs(self, backbone: str, split: str) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["backbone"] == backbone and r["split"] == split]

    def values(self, row: dict[str, Any], metric: str) -> dict[str, float]:
        key = (row["run"], row["split"], metric)
        if key not in self._cache:
            self._cache[key] = clip_values(self.folder / row["run"], row["split"], metric)
        return self._cache[key]

    def best(self, backbone: str, split: str, metric: str, lower: bool) -> dict[str, Any] | None:
        """The row of ``backbone`` on ``split`` with the best mean ``metric``."""
        rows = [r for r in self.runs(backbone, split) if _finite(r.get(metric))]
        if not rows:
            return None
        return (min if lower else max)(rows, key=lambda r: float(r[metric]))

    def averaged(
        self, backbone: str, split: str, metric: str, key: str, value: Any
    ) -> dict[str, float]:
        """Per-clip ``metric`` averaged over the runs whose ``key`` (layer / timestep) is
        ``value``."""
        rows = [r for r in self.runs(backbone, split) if r.get(key) == value]
        per = [self.values(r, metric) for r in rows]
        common = set.intersection(*(set(p) for p in per)) if per else set()
        return {c: float(np.mean([p[c] for p in per])) for c in sorted(common)}


def _seed_of(folder: Path) -> int | None:
    spec = folder / "sweeps" / "baselines" / "spec.json"
    if spec.is_file():
        return int(json.loads(spec.read_text()).get("seed", 0))
    return None


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and value == value


def table(experiments: Sequence[Experiment]) -> list[dict[str, Any]]:
    """One entry per (backbone, split, metric, seed): best layer(/timestep) and its estimate."""
    out = []
    for exp in experiments:
        for backbone in exp.backbones:
            for split in exp.splits:
                for metric, lower in METRICS:
                    row = exp.best(backbone, split, metric, lower)
                    if row is None:
                        continue
                    est = bootstrap_mean(list(exp.values(row, metric).values()))
                    out.append(
                        {
                            "backbone": backbone,
                            "split": split,
                            "metric": metric,
                            "seed": exp.seed,
                            "layer": row["layer"],
                            "timestep": row.get("timestep"),
                            **est.to_json(),
                        }
                    )
    return out


def _verdict(diffs: Sequence[Estimate], lower: bool) -> str:
    """``a - b`` intervals per seed, ``a`` predicted better: holds / contradicted / not
    established (see the module docstring)."""
    if not diffs:
        return "not measured"
    better = [(d.hi < 0) if lower else (d.lo > 0) for d in diffs]
    worse = [(d.lo > 0) if lower else (d.hi < 0) for d in diffs]
    if all(better):
        return "holds"
    if all(worse):
        return "contradicted"
    return "not established"


def findings(experiments: Sequence[Experiment]) -> list[dict[str, Any]]:
    """The three findings per split and metric: per-seed paired differences and the verdict."""
    out: list[dict[str, Any]] = []
    splits = sorted({s for e in experiments for s in e.splits})
    for split in splits:
        for metric, lower in METRICS:
            tests: dict[str, list[dict[str, Any]]] = {}
            for exp in experiments:
                for name, a_desc, a, b_desc, b in _comparisons(exp, split, metric, lower):
                    diff = paired_difference(a, b)
                    tests.setdefault(name, []).append(
                        {"seed": exp.seed, "a": a_desc, "b": b_desc, **diff.to_json()}
                    )
            for name, per_seed in tests.items():
                diffs = [Estimate(d["mean"], d["lo"], d["hi"], d["n"]) for d in per_seed]
                out.append(
                    {
                        "finding": name,
                        "split": split,
                        "metric": metric,
                        "lower_is_better": lower,
                        "seeds": per_seed,
                        "verdict": _verdict(diffs, lower) if len(diffs) == len(experiments) else
                        "not measured in every seed",
                    }
                )  # fmt: skip
    return out


def _comparisons(exp: Experiment, split: str, metric: str, lower: bool):
    """``(finding, a label, a per-clip, b label, b per-clip)`` with ``a`` predicted better."""

    def best_values(backbone: str) -> tuple[str, dict[str, float]] | None:
        row = exp.best(backbone, split, metric, lower)
        if row is None:
            return None
        t = "" if row.get("timestep") is None else f" t={row['timestep']}"
        return f"{backbone} L{row['layer']}{t}", exp.values(row, metric)

    wan, twin = best_values("wan-mini"), best_values("wan-mini-random")
    if wan and twin:
        yield "1. generator encodes 3D (wan-mini vs random twin)", *wan, *twin
    videos = [v for v in (best_values(m) for m in VIDEO_MODELS) if v is not None]
    image = best_values(IMAGE_MODEL)
    if videos and image:
        sign = 1.0 if lower else -1.0
        video = min(videos, key=lambda v: sign * float(np.mean(list(v[1].values()))))
        yield "2. video beats per-frame image (best video model vs dinov2-mini)", *video, *image
    layers = sorted({r["layer"] for r in exp.runs("wan-mini", split)})
    if len(layers) >= 3:
        per_layer = {v: exp.averaged("wan-mini", split, metric, "layer", v) for v in layers}
        mid = _pick(per_layer, layers[1:-1], lower)
        for end in (layers[0], layers[-1]):
            yield (
                f"3a. mid layer beats L{end} (wan-mini, mean over timesteps)",
                f"L{mid}",
                per_layer[mid],
                f"L{end}",
                per_layer[end],
            )
    steps = sorted({r["timestep"] for r in exp.runs("wan-mini", split)}, reverse=True)
    if len(steps) >= 3:  # timestep indices: 999 = cleanest (sigma ~ 0) ... 250 = noisiest
        per_t = {v: exp.averaged("wan-mini", split, metric, "timestep", v) for v in steps}
        mid = _pick(per_t, steps[1:-1], lower)
        for end, what in ((steps[0], "cleanest"), (steps[-1], "noisiest")):
            yield (
                f"3b. an intermediate timestep beats the {what} (wan-mini, mean over layers)",
                f"t={mid}",
                per_t[mid],
                f"t={end}",
                per_t[end],
            )


def _pick(per: dict[Any, dict[str, float]], candidates: Sequence[Any], lower: bool) -> Any:
    sign = 1.0 if lower else -1.0
    return min(candidates, key=lambda v: sign * float(np.mean(list(per[v].values()))))


def _cell(entries: list[dict[str, Any]]) -> str:
    return " / ".join(f"{e['mean']:.3f} [{e['lo']:.3f}, {e['hi']:.3f}]" for e in entries) or "-"


def to_markdown(experiments: Sequence[Experiment]) -> str:
    """The table (backbone x split x metric, ``seed0 / seed1`` with intervals) and the findings."""
    rows = table(experiments)
    seeds = [e.seed for e in experiments]
    splits = sorted({r["split"] for r in rows})
    metrics = [m for m, _ in METRICS]
    lines = [
        f"Best layer(/timestep) per backbone and metric; mean over clips [bootstrap 95% over "
        f"clips], seeds {' / '.join(map(str, seeds))}.",
        "",
    ]
    for split in splits:
        lines += [
            f"**{split}**",
            "",
            "| backbone | " + " | ".join(metrics) + " |",
            "|---|" + "---|" * len(metrics),
        ]
        for backbone in sorted({r["backbone"] for r in rows}):
            cells = []
            for metric in metrics:
                entries = [
                    r
                    for seed in seeds
                    for r in rows
                    if (r["backbone"], r["split"], r["metric"], r["seed"])
                    == (backbone, split, metric, seed)
                ]
                cells.append(_cell(entries))
            lines.append(f"| {backbone} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["| finding | split | metric | difference a - b per seed [95%] | verdict |"]
    lines += ["|---|---|---|---|---|"]
    for f in findings(experiments):
        diffs = "; ".join(
            f"s{d['seed']}: {d['a']} - {d['b']} = {d['mean']:+.3f} [{d['lo']:+.3f}, {d['hi']:+.3f}]"
            for d in f["seeds"]
        )
        lines.append(
            f"| {f['finding']} | {f['split']} | {f['metric']} | {diffs} | {f['verdict']} |"
        )
    return "\n".join(lines) + "\n"


def write_findings(
    folders: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str]
) -> dict[str, Any]:
    """Write ``out.md`` and ``out.json`` (table + findings) for the given experiment folders."""
    from vfm3d.utils.atomic import atomic_write_json, atomic_write_text

    experiments = [Experiment(f) for f in folders]
    result = {
        "experiments": [str(e.folder) for e in experiments],
        "seeds": [e.seed for e in experiments],
        "table": table(experiments),
        "findings": findings(experiments),
    }
    base = Path(out)
    base.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(base.with_suffix(".json"), result)
    atomic_write_text(base.with_suffix(".md"), to_markdown(experiments))
    return result
