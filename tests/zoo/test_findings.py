"""`vfm3d.zoo.findings`: intervals over clips and the verdict rule, on synthetic experiment folders
whose per-clip values are known."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vfm3d.zoo.findings import Experiment, clip_values, findings, table, write_findings

CLIPS = [f"c{i}" for i in range(12)]


def _write_run(folder: Path, run: str, split: str, per_clip: dict[str, float]) -> dict:
    """A probe run with two samples per clip (v - 0.01, v + 0.01) for every metric."""
    path = folder / run
    path.mkdir(parents=True, exist_ok=True)
    samples = []
    for clip, v in per_clip.items():
        for d in (-0.01, 0.01):
            samples.append({"clip_id": clip, "point_err": v + d, "depth_err": v + d,
                            "auc@30": 1 - v - d})  # fmt: skip
    mean = float(np.mean(list(per_clip.values())))
    (path / f"metrics_{split}.json").write_text(json.dumps({"samples": samples}))
    return {"point_err": mean, "depth_err": mean, "auc@30": 1 - mean}


def _experiment(root: Path, seed: int, dino_shift: float) -> Path:
    """wan-mini beats its twin by 0.1 on every clip; dinov2-mini = best video + ``dino_shift``
    (+ alternating noise); wan-mini's middle layer is best, timestep 749 is best."""
    rng = np.random.default_rng(seed)
    difficulty = {c: 0.3 + 0.2 * rng.random() for c in CLIPS}
    folder = root / f"exp{seed}"
    (folder / "sweeps" / "baselines").mkdir(parents=True)
    (folder / "sweeps" / "baselines" / "spec.json").write_text(json.dumps({"seed": seed}))
    rows = []

    def add(backbone, layer, t, offset):
        run = f"sweeps/{backbone}/L{layer}_t{t}"
        vals = {c: difficulty[c] + offset(i) for i, c in enumerate(CLIPS)}
        means = _write_run(folder, run, "object", vals)
        rows.append({"backbone": backbone, "layer": layer, "timestep": t, "split": "object",
                     "run": run, **means})  # fmt: skip

    for layer in range(3):
        for t in (999, 749, 250):
            bump = 0.02 * (layer != 1) + 0.02 * (t != 749)
            add("wan-mini", layer, t, lambda i, b=bump: b)
    add("wan-mini-random", 0, 749, lambda i: 0.1)
    add("dinov2-mini", 0, None, lambda i: dino_shift + (0.05 if i % 2 else -0.05))
    (folder / "results.json").write_text(json.dumps(rows))
    return folder


def test_clip_values_average_each_clips_samples(tmp_path: Path) -> None:
    folder = _experiment(tmp_path, 0, 0.0)
    values = clip_values(folder / "sweeps/wan-mini/L1_t749", "object", "point_err")
    assert set(values) == set(CLIPS)
    rows = json.loads((folder / "results.json").read_text())
    row = next(r for r in rows if r["run"] == "sweeps/wan-mini/L1_t749")
    assert np.mean(list(values.values())) == pytest.approx(row["point_err"])


def test_table_reports_best_layer_with_an_interval(tmp_path: Path) -> None:
    exp = Experiment(_experiment(tmp_path, 0, 0.0))
    cells = {(c["backbone"], c["metric"]): c for c in table([exp])}
    wan = cells[("wan-mini", "point_err")]
    assert (wan["layer"], wan["timestep"]) == (1, 749)
    assert wan["lo"] < wan["mean"] < wan["hi"] and wan["n"] == len(CLIPS)
    assert cells[("wan-mini", "auc@30")]["layer"] == 1  # higher is better for AUC


def test_verdicts_follow_the_paired_intervals_in_every_seed(tmp_path: Path) -> None:
    exps = [Experiment(_experiment(tmp_path, s, shift)) for s, shift in ((0, 0.0), (1, 0.0))]
    got = {(f["finding"][:2], f["metric"]): f for f in findings(exps)}
    one = got[("1.", "point_err")]
    assert one["verdict"] == "holds" and [d["seed"] for d in one["seeds"]] == [0, 1]
    assert one["seeds"][0]["mean"] == pytest.approx(-0.1)
    assert got[("1.", "auc@30")]["verdict"] == "holds"  # direction flips for AUC
    assert got[("2.", "point_err")]["verdict"] == "not established"  # +-0.05 noise, no shift
    assert got[("3a", "point_err")]["verdict"] == "holds"
    assert got[("3b", "depth_err")]["verdict"] == "holds"
    worse = [Experiment(_experiment(tmp_path / "w", s, -0.2)) for s in (0, 1)]
    assert {f["verdict"] for f in findings(worse) if f["finding"].startswith("2.")} == {
        "contradicted"
    }
    mixed = [exps[0], worse[1]]
    assert {f["verdict"] for f in findings(mixed) if f["finding"].startswith("2.")} == {
        "not established"
    }


def test_write_findings_and_missing_records(tmp_path: Path) -> None:
    folder = _experiment(tmp_path, 0, 0.0)
    result = write_findings([folder], tmp_path / "out" / "findings")
    assert (tmp_path / "out" / "findings.md").read_text().count("| holds |") >= 2
    assert json.loads((tmp_path / "out" / "findings.json").read_text())["seeds"] == [0]
    assert result["findings"]
    (folder / "sweeps/wan-mini/L1_t749/metrics_object.json").write_text("{}")
    with pytest.raises(ValueError, match="per-sample records"):
        table([Experiment(folder)])
    with pytest.raises(FileNotFoundError, match="not a finished"):
        Experiment(tmp_path / "nothing")
