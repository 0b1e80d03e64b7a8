"""`vfm3d zoo experiment`: the findings arithmetic on known rows, and a tiny end-to-end run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vfm3d.zoo.experiment import best, findings, run_experiment, summarize


def _rows() -> list[dict]:
    rows = []
    for layer in range(2):
        for t, err in ((999, 0.5), (749, 0.4)):
            rows.append(
                dict(
                    backbone="wan-mini",
                    layer=layer,
                    timestep=t,
                    split="object",
                    point_err=err - 0.1 * layer,
                    depth_err=0.2,
                    **{"auc@30": 0.1},
                )
            )
    rows.append(
        dict(
            backbone="wan-mini-random",
            layer=0,
            timestep=749,
            split="object",
            point_err=0.6,
            depth_err=0.3,
        )
    )
    rows.append(
        dict(
            backbone="dinov2-mini",
            layer=0,
            timestep=None,
            split="object",
            point_err=0.45,
            depth_err=0.3,
        )
    )
    return rows


def test_findings_numbers() -> None:
    rows = _rows()
    assert best(rows, "wan-mini", "object")["point_err"] == pytest.approx(0.3)
    lines = findings(rows, ["object"])
    assert "wan-mini best point_err 0.300 vs random twin 0.600 (+50.0%" in lines[0]
    assert "best video model 0.300 vs dinov2-mini 0.450 (holds)" in lines[1]
    assert "L0: 0.450, L1: 0.350" in lines[2]
    assert "t=749: 0.350, t=999: 0.450" in lines[3]
    table = summarize(rows)
    assert "| wan-mini | object | 1 | 749 | 0.300 |" in table
    assert "wan-mini mean depth_err by layer: L0: 0.200, L1: 0.200" in table


def test_experiment_end_to_end(tmp_path: Path) -> None:
    overrides = dict(train_clips=2, eval_clips=1, steps=2, frames=27, first_n=27)
    summary = run_experiment(tmp_path, names=["dinov2-mini"], overrides=overrides, progress=False)
    rows = json.loads((tmp_path / "results.json").read_text())
    assert {r["backbone"] for r in rows} == {
        "dinov2-mini",
        "dinov2-mini-random",
        "constant",
        "pixels",
        "oracle",
        "oracle-world",
    }
    spec = json.loads((tmp_path / "sweeps" / "dinov2-mini" / "spec.json").read_text())
    assert {b["window"] for b in spec["backbones"]} == {9}  # the zoo's clip length
    assert spec["probe"]["min_gap"] == 5
    findings = json.loads((tmp_path / "findings.json").read_text())
    assert {c["backbone"] for c in findings["table"]} >= {"oracle-world", "dinov2-mini"}
    assert {r["split"] for r in rows} == {"object", "scene"}
    assert sorted({r["layer"] for r in rows if r["backbone"] == "dinov2-mini"}) == [0, 1, 2, 3]
    assert (tmp_path / "results.md").is_file() and (tmp_path / "report.html").is_file()
    assert "dinov2-mini-random" in summary
    ids = json.loads((tmp_path / "world" / "train" / "index.json").read_text())["clips"]
    assert all(c["id"].startswith("train-") for c in ids)
