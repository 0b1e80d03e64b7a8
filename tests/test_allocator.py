"""`tune_allocator`: applies on glibc Linux, can be turned off, and is never applied on import."""

from __future__ import annotations

import subprocess
import sys

from vfm3d.utils.allocator import tune_allocator


def test_turned_off_by_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("VFM3D_TUNE_MALLOC", "0")
    assert tune_allocator() is False


def test_applies_on_glibc_and_large_buffers_still_work() -> None:
    code = (
        "import torch; from vfm3d.utils.allocator import tune_allocator; "
        "ok = tune_allocator(); x = torch.ones(8 << 20); y = (x * 2).sum(); "
        "print(ok, float(y))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    applied, total = out.stdout.split()
    if sys.platform.startswith("linux"):
        assert applied == "True"
    assert float(total) == 2.0 * (8 << 20)


def test_library_import_does_not_tune() -> None:
    """Only the `vfm3d` command tunes its own process; importing the package changes nothing."""
    import ast
    from pathlib import Path

    import vfm3d

    root = Path(vfm3d.__file__).parent
    callers = [
        p.relative_to(root).as_posix()
        for p in root.rglob("*.py")
        if "tune_allocator()" in p.read_text() and p.name != "allocator.py"
    ]
    assert callers == ["cli.py"]
    tree = ast.parse((root / "cli.py").read_text())
    top_level_calls = [n for n in tree.body if isinstance(n, ast.Expr)]
    assert not any("tune_allocator" in ast.unparse(n) for n in top_level_calls)
