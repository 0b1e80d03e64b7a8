"""`tune_allocator`: applies on glibc Linux, can be turned off, is applied by the `vfm3d` command
and when a probe model is built, and never on import."""

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
    """Only the `vfm3d` command and building a `ProbeModel` tune the process; importing the
    package changes nothing (no module calls it at top level)."""
    import ast
    from pathlib import Path

    import vfm3d

    root = Path(vfm3d.__file__).parent
    callers = sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*.py")
        if "tune_allocator()" in p.read_text() and p.name != "allocator.py"
    )
    assert callers == ["cli.py", "probe/model.py"]
    for caller in callers:
        tree = ast.parse((root / caller).read_text())
        top_level_calls = [n for n in tree.body if isinstance(n, ast.Expr)]
        assert not any("tune_allocator" in ast.unparse(n) for n in top_level_calls)


def test_building_a_probe_model_tunes_once(monkeypatch) -> None:
    import vfm3d.probe.model as model_module
    from vfm3d.probe import ProbeConfig, ProbeModel

    calls: list[int] = []
    monkeypatch.setattr(model_module, "tune_allocator", lambda: calls.append(1) or True)
    ProbeModel(ProbeConfig.cpu_small(), in_channels=4)
    assert calls == [1]


def test_applying_twice_is_a_no_op() -> None:
    code = (
        "from vfm3d.utils import allocator as a; "
        "first = a.tune_allocator(); calls = []; "
        "a.ctypes.CDLL = lambda *_: calls.append(1); "
        "second = a.tune_allocator(); print(first, second, len(calls))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    if sys.platform.startswith("linux"):
        assert out.stdout.split() == ["True", "True", "0"]
