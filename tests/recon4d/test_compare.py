"""`vfm3d recon4d compare`: eval folders -> one table with seeds pooled and paired differences."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vfm3d.cli import main as vfm3d_main


def _eval_folder(root: Path, name: str, ate: list[float]) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    rows = [
        {"id": f"clip{i}", "frames": 9, "ate": v, "abs_rel_median": 2 * v}
        for i, v in enumerate(ate)
    ]
    (folder / "metrics.json").write_text(json.dumps({"sequences": rows}))
    return folder


def test_compare_writes_table_with_seeds_and_differences(tmp_path: Path, capsys) -> None:
    s0 = _eval_folder(tmp_path, "s0", [1.0, 2.0, 3.0])
    s1 = _eval_folder(tmp_path, "s1", [2.0, 3.0, 4.0])
    twin = _eval_folder(tmp_path, "twin", [3.0, 4.0, 5.0])
    out = tmp_path / "table"
    code = vfm3d_main(
        ["recon4d", "compare", "--out", str(out), "--reference", "twin", "--metrics",
         "ate,abs_rel_median", "--row", f"model={s0},{s1}", "--row", f"twin={twin}"]
    )  # fmt: skip
    assert code == 0
    table = json.loads((out / "comparison.json").read_text())
    cell = table["models"]["model"]["ate"]
    assert cell["seeds"] == [2.0, 3.0] and cell["mean"] == pytest.approx(2.5)
    assert cell["diff"]["mean"] == pytest.approx(-1.5) and cell["diff"]["ci95"] == [-1.5, -1.5]
    assert table["models"]["model"]["abs_rel_median"]["mean"] == pytest.approx(5.0)
    assert "| model | 2 |" in (out / "comparison.md").read_text()
    assert "Paired differences" in capsys.readouterr().out


def test_compare_rejects_mismatched_sequences_and_bad_rows(tmp_path: Path, capsys) -> None:
    a = _eval_folder(tmp_path, "a", [1.0, 2.0])
    b = _eval_folder(tmp_path, "b", [1.0, 2.0, 3.0])
    args = ["recon4d", "compare", "--out", str(tmp_path / "t")]
    assert vfm3d_main([*args, "--row", f"a={a}", "--row", f"b={b}"]) == 2
    assert "not the same ones" in capsys.readouterr().err
    assert vfm3d_main([*args, "--row", "nonsense"]) == 2
    assert "NAME=DIR" in capsys.readouterr().err
    assert vfm3d_main([*args, "--row", f"a={tmp_path / 'missing'}"]) == 2
    assert "recon4d eval" in capsys.readouterr().err
