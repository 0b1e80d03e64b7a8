"""`vfm3d extract` / `vfm3d backbones`; SIGKILL mid-run then rerun; torchrun with 2 ranks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.features.helpers import make_folder
from vfm3d.cli import main as vfm3d_main
from vfm3d.features import FeatureStore

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent

# Runs `vfm3d` but SIGKILLs itself while writing the 4th shard (a half-written temp file).
_KILLER = """
import os, signal, sys
import safetensors.torch as st

real, calls = st.save_file, [0]

def save_file(tensors, path, metadata=None):
    calls[0] += 1
    if calls[0] == 4:
        with open(path, "wb") as handle:
            handle.write(b"half a shard")
        os.kill(os.getpid(), signal.SIGKILL)
    real(tensors, path, metadata=metadata)

st.save_file = save_file
from vfm3d.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    env.pop("RANK", None)
    env.pop("WORLD_SIZE", None)
    return env


def _args(data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "extract", "--data", str(data), "--backbone", "random", "--tiny",
        "--layers", "0,1,3", "--out", str(out), "--no-progress", *extra,
    ]  # fmt: skip


def _content(root: Path) -> dict[str, torch.Tensor]:
    """digest -> tokens of every entry (the cache's content, independent of file layout)."""
    store = FeatureStore(root)
    return {key.digest: store.get(key).tokens for key in store.keys()}


def _assert_same_content(a: Path, b: Path) -> None:
    left, right = _content(a), _content(b)
    assert sorted(left) == sorted(right)
    for digest, tokens in left.items():
        assert torch.equal(tokens, right[digest]), digest


def test_cli_extract_rerun_skips_and_reports(tmp_path: Path, capsys) -> None:
    data = tmp_path / "data"
    make_folder(data, num_clips=2, frames=3)
    assert vfm3d_main(_args(data, tmp_path / "cache")) == 0
    out = capsys.readouterr().out
    assert "2 clips: 6 entries computed, 0 skipped" in out
    assert vfm3d_main(_args(data, tmp_path / "cache")) == 0
    assert "0 entries computed, 6 skipped" in capsys.readouterr().out
    assert (tmp_path / "cache" / "manifest.json").is_file()
    assert not list((tmp_path / "cache").glob("manifest.part-*"))
    shard = next((tmp_path / "cache" / "shards").glob("*/*.safetensors"))
    shard.write_bytes(shard.read_bytes()[:-3] + b"bad")
    assert vfm3d_main([*_args(data, tmp_path / "cache"), "--verify"]) == 0
    out = capsys.readouterr().out
    assert "verify: 1 corrupt shards dropped" in out and "3 entries computed, 3 skipped" in out


def test_cli_clear_errors(tmp_path: Path, capsys) -> None:
    data = tmp_path / "data"
    make_folder(data, num_clips=1, frames=3)
    args = _args(data, tmp_path / "cache")
    args[args.index("0,1,3")] = "0,4"
    assert vfm3d_main(args) == 2
    assert "valid layers are 0..3" in capsys.readouterr().err
    assert vfm3d_main([*_args(data, tmp_path / "c2"), "--timesteps", "500"]) == 2
    assert "not a diffusion model" in capsys.readouterr().err
    assert vfm3d_main([*_args(data, tmp_path / "c3"), "--num-frames", "9"]) == 2
    assert "the clip has 3" in capsys.readouterr().err


def test_cli_shards_then_merge(tmp_path: Path) -> None:
    data = tmp_path / "data"
    make_folder(data, num_clips=3, frames=3)
    for i in (0, 1):
        assert vfm3d_main([*_args(data, tmp_path / "sharded"), "--shard", f"{i}/2"]) == 0
    assert len(list((tmp_path / "sharded").glob("manifest.part-*"))) == 2
    assert (
        vfm3d_main(["extract", "--data", str(data), "--out", str(tmp_path / "sharded"), "--merge"])
        == 0
    )
    assert vfm3d_main(_args(data, tmp_path / "single")) == 0
    _assert_same_content(tmp_path / "sharded", tmp_path / "single")


def test_backbones_command_lists_rules(capsys) -> None:
    assert vfm3d_main(["backbones", "--json", "random", "oracle"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["random", "oracle"]
    assert rows[0]["rules"] == "any T, H, W multiples of 8" and rows[0]["layers"] == 4
    assert rows[1]["needs_geometry"] is True
    assert vfm3d_main(["backbones", "pixels", "constant"]) == 0
    table = capsys.readouterr().out
    assert "pixels" in table and "constant" in table and "multiples of 8" in table


def test_sigkill_mid_run_then_rerun_completes_without_recomputing(tmp_path: Path, capsys) -> None:
    data, cache = tmp_path / "data", tmp_path / "cache"
    make_folder(data, num_clips=6, frames=3)
    killed = subprocess.run(
        [sys.executable, "-c", _KILLER, *_args(data, cache)],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    shards = sorted((cache / "shards").glob("*/*.safetensors"))
    assert len(shards) == 3  # one shard per clip: 3 finished before the kill
    assert list((cache / "shards").glob("*/.*.tmp")), "the half-written temp shard is left"
    assert len(FeatureStore(cache)) == 9
    before = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in shards}

    assert vfm3d_main(_args(data, cache)) == 0
    assert "6 clips: 9 entries computed, 9 skipped" in capsys.readouterr().out
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in shards} == before
    assert not list((cache / "shards").glob("*/.*.tmp"))
    assert vfm3d_main(_args(data, tmp_path / "uninterrupted")) == 0
    _assert_same_content(cache, tmp_path / "uninterrupted")


@pytest.mark.distributed
def test_torchrun_two_ranks_equal_one_process(tmp_path: Path) -> None:
    data = tmp_path / "data"
    make_folder(data, num_clips=5, frames=3)
    run = subprocess.run(
        [str(VENV_BIN / "torchrun"), "--standalone", "--nproc_per_node", "2", "-m", "vfm3d.cli",
         *_args(data, tmp_path / "ddp")],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert "[rank 0/2] 3 clips" in run.stdout and "[rank 1/2] 2 clips" in run.stdout
    assert not list((tmp_path / "ddp").glob("manifest.part-*")), "rank 0 merges the parts"
    assert vfm3d_main(_args(data, tmp_path / "single")) == 0
    _assert_same_content(tmp_path / "ddp", tmp_path / "single")
