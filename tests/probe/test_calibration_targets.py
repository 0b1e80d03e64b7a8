"""`check_targets` (the issue-11 calibration targets) and the demo's calibration note."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vfm3d.probe.calibrate import TARGETS, check_targets


def _rows(oracle_auc: float, world_auc: float, oracle_point: float) -> list[dict]:
    rows = []
    for split in ("object", "scene"):
        rows += [
            {"backbone": "constant", "layer": 0, "split": split, "auc@30": 0.02,
             "point_err": 0.5, "depth_err": 0.25},
            {"backbone": "oracle", "layer": 0, "split": split, "auc@30": oracle_auc,
             "point_err": oracle_point, "depth_err": 0.08},
            {"backbone": "oracle-world", "layer": 1, "split": split, "auc@30": world_auc,
             "point_err": 0.15, "depth_err": 0.12},
            {"backbone": "wan-mini", "layer": 2, "split": split, "auc@30": 0.9,
             "point_err": 0.1, "depth_err": 0.1},
        ]  # fmt: skip
    return rows


def test_every_target_is_checked_per_split_with_ratios_to_the_floor() -> None:
    checks = check_targets(_rows(oracle_auc=0.1, world_auc=0.85, oracle_point=0.2))
    assert len(checks) == 2 * len(TARGETS)
    got = {(c["backbone"], c["metric"], c["split"]): c for c in checks}
    assert got[("oracle", "point_err", "object")]["value"] == pytest.approx(0.4)  # 0.2 / 0.5
    assert got[("oracle", "point_err", "object")]["met"]
    assert got[("oracle", "depth_err", "scene")]["value"] == pytest.approx(0.32)
    assert not got[("oracle", "auc@30", "object")]["met"]
    assert got[("oracle-world", "auc@30", "scene")]["met"]
    assert got[("constant", "auc@30", "scene")]["met"]
    assert {c["backbone"] for c in checks} == {"constant", "oracle", "oracle-world"}
    misses = check_targets(_rows(oracle_auc=0.6, world_auc=0.79, oracle_point=0.26))
    bad = {(c["backbone"], c["metric"]) for c in misses if not c["met"]}
    assert bad == {("oracle-world", "auc@30"), ("oracle", "point_err")}


def test_demo_calibration_step_writes_the_checks(tmp_path: Path) -> None:
    from vfm3d.demo import calibration_step, demo_spec

    step = calibration_step(_rows(0.1, 0.85, 0.2), tmp_path)
    saved = json.loads((tmp_path / "calibration.json").read_text())
    assert saved == step.result["calibration"] and len(saved) == 2 * len(TARGETS)
    assert "oracle-world auc@30 (object) 0.850 meets >= 0.8" in step.notes[0]
    assert "oracle auc@30 (object) 0.100 misses >= 0.5" in step.notes[0]
    spec = demo_spec()
    assert spec["world"]["frames"] == 81 and spec["probe"]["first_n"] == 76
    assert spec["probe"]["min_gap"] == 5
    names = {b["name"] for b in spec["backbones"]}
    assert {"constant", "oracle", "oracle-world"} <= names
