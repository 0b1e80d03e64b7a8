"""Atomic writes: the file appears whole or not at all, with the permissions open() would give."""

from __future__ import annotations

import os
import stat

import pytest

from vfm3d.utils.atomic import atomic_path, atomic_write_text


def test_written_file_has_umask_permissions_not_mkstemps_0600(tmp_path) -> None:
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o644


def test_a_failed_write_leaves_the_old_content_and_no_temporary(tmp_path) -> None:
    target = tmp_path / "b.txt"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["b.txt"]
