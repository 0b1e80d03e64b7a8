"""report/ draws and exports; it runs nothing: no import of model, feature, probe or system code."""

from __future__ import annotations

import ast
from pathlib import Path

import vfm3d

REPORT = Path(vfm3d.__file__).parent / "report"
# Packages that sit above report/ in the data flow (DESIGN.md) or that run models.
FORBIDDEN = (
    "vfm3d.backbones",
    "vfm3d.features",
    "vfm3d.probe",
    "vfm3d.world",
    "vfm3d.models",
    "vfm3d.data",
    "vfm3d.zoo",
    "vfm3d.recon4d",
    "vfm3d.jointgen",
    "vfm3d.spatial",
    "vfm3d.demo",
)


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def test_report_imports_no_model_feature_or_probe_code():
    files = sorted(REPORT.rglob("*.py"))
    assert files, REPORT
    bad = [
        f"{f.relative_to(REPORT.parent)}: imports {name}"
        for f in files
        for name in _imports(f)
        if any(name == p or name.startswith(p + ".") for p in FORBIDDEN)
    ]
    assert not bad, "\n".join(bad)


def test_the_check_sees_a_forbidden_import(tmp_path):
    probe = tmp_path / "x.py"
    probe.write_text("from vfm3d.probe.evaluate import predict\nimport vfm3d.features.store\n")
    assert _imports(probe) == ["vfm3d.probe.evaluate", "vfm3d.features.store"]
