"""The score's pure parts (the splat, the pair metric) import no model: tensors in, numbers out."""

from __future__ import annotations

import ast
from pathlib import Path

import vfm3d

ROOT = Path(vfm3d.__file__).parent
PURE = ("geometry/splat.py", "metrics/consistency.py")
ALLOWED = ("vfm3d.geometry", "vfm3d.metrics")


def _vfm3d_imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return [n for n in names if n == "vfm3d" or n.startswith("vfm3d.")]


def test_splat_and_metric_import_only_geometry_and_metrics() -> None:
    bad = [
        f"{name}: imports {module}"
        for name in PURE
        for module in _vfm3d_imports(ROOT / name)
        if not module.startswith(ALLOWED)
    ]
    assert not bad, "\n".join(bad)
    assert "vfm3d.geometry.splat" in _vfm3d_imports(ROOT / "metrics/consistency.py")
