"""Nothing imports upward: the systems and the shared layers never import the zoo (which calls the
systems' trainers), and geometry/metrics import no model, probe or system code.

Every ``import`` / ``from ... import`` anywhere in a module counts, function-level ones included;
relative imports are resolved against the module's package. Narrower rules live beside their
packages (``tests/report/test_layering.py``, ``tests/jointgen/test_layering.py``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import vfm3d

ROOT = Path(vfm3d.__file__).parent

#: Packages below the zoo: none of them may import ``vfm3d.zoo``.
BELOW_ZOO = (
    "geometry",
    "metrics",
    "probe",
    "report",
    "models",
    "backbones",
    "features",
    "data",
    "world",
    "utils",
    "recon4d",
    "jointgen",
    "spatial",
)
#: The lowest layers and what they may not import.
PURE = ("geometry", "metrics")
ABOVE_PURE = ("models", "backbones", "probe", "recon4d", "jointgen", "spatial", "zoo")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path, source: str | None = None) -> list[str]:
    """Absolute names of every module ``path`` (or ``source`` read as though it lived there)
    imports; ``from a import b`` gives ``a`` and ``a.b`` (``b`` may be a submodule)."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    text = path.read_text() if source is None else source
    names: list[str] = []
    for node in ast.walk(ast.parse(text, filename=str(path))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                head = ".".join([*base, node.module] if node.module else base)
            else:
                head = node.module or ""
            names.append(head)
            names += [f"{head}.{a.name}" for a in node.names if a.name != "*"]
    return names


def _hits(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == f"vfm3d.{p}" or name.startswith(f"vfm3d.{p}.") for p in packages)


def _violations(packages: tuple[str, ...], forbidden: tuple[str, ...]) -> list[str]:
    bad = []
    for package in packages:
        files = sorted((ROOT / package).rglob("*.py"))
        assert files, ROOT / package
        for path in files:
            found = sorted({n for n in imports(path) if _hits(n, forbidden)})
            bad += [f"{path.relative_to(ROOT.parent)}: imports {n}" for n in found]
    return bad


def test_nothing_below_the_zoo_imports_the_zoo() -> None:
    bad = _violations(BELOW_ZOO, ("zoo",))
    assert not bad, "\n".join(bad)


def test_geometry_and_metrics_import_no_model_probe_or_system_code() -> None:
    bad = _violations(PURE, ABOVE_PURE)
    assert not bad, "\n".join(bad)


def test_the_check_sees_function_level_relative_and_from_package_imports() -> None:
    source = (
        "import vfm3d.geometry\n"
        "def f():\n"
        "    from vfm3d.zoo.common import Trainer\n"
        "    from ..zoo import wan_mini\n"
        "    from vfm3d import zoo\n"
    )
    names = imports(ROOT / "recon4d" / "x.py", source)
    assert {"vfm3d.geometry", "vfm3d.zoo.common", "vfm3d.zoo.wan_mini", "vfm3d.zoo"} <= set(names)
    assert not _hits("vfm3d.geometry", ("zoo",))
    assert not _hits("vfm3d.zoology", ("zoo",))
