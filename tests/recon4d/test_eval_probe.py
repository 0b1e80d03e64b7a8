"""`vfm3d recon4d eval --model probe:RUN --features CACHE`: a trained probe's point maps of every
frame through the VGGT row's recovery, and clear errors for missing or partial features."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vfm3d.cli import main as vfm3d_main
from vfm3d.clip import ClipFolderWriter
from vfm3d.probe import ProbeConfig
from vfm3d.probe.data import ProbeDataError
from vfm3d.recon4d.probe_runner import ProbePointMaps
from vfm3d.world import render_clip

EXTRACT = ["--backbone", "random", "--layers", "0", "--no-progress"]


def _clips(root: Path, seeds: tuple[int, ...], prefix: str) -> Path:
    writer = ClipFolderWriter(root)
    for i, seed in enumerate(seeds):
        clip_id = f"{prefix}{i}"
        writer.add(
            render_clip("dynamic", seed=seed, frames=9, height=32, width=32, clip_id=clip_id)
        )
    return root


def _extract(data: Path, out: Path, *extra: str) -> Path:
    assert vfm3d_main(["extract", "--data", str(data), "--out", str(out), *EXTRACT, *extra]) == 0
    return out


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A probe trained 2 steps on a random backbone's layer 0, and 2 held-out clips with their
    features."""
    root = tmp_path_factory.mktemp("probe-eval")
    train = _clips(root / "train", (31, 32), "train")
    heldout = _clips(root / "heldout", (41, 42), "held")
    _extract(train, root / "train-cache")
    # the probe trains on 3 frames at 16 x 16; eval runs it on all 9 and resizes back to 32 x 32
    cfg = ProbeConfig.cpu_small(first_n=9, min_gap=1, num_frames=3, output_size=(16, 16))
    (root / "probe.json").write_text(json.dumps(cfg.to_dict()))
    args = ["probe", "train", "--data", str(train), "--features", str(root / "train-cache")]
    args += ["--backbone", "random", "--layer", "0", "--out", str(root / "run"), "--quiet"]
    args += ["--steps", "2", "--preset", "cpu-small", "--config", str(root / "probe.json")]
    assert vfm3d_main([*args, "--threads", "1", "--device", "cpu"]) == 0
    return {
        "run": root / "run",
        "heldout": heldout,
        "cache": _extract(heldout, root / "heldout-cache"),
        "train_cache": root / "train-cache",
        "partial": _extract(heldout, root / "partial-cache", "--num-frames", "5"),
        "root": root,
    }


def _eval(setup: dict[str, Path], out: Path, *extra: str) -> int:
    argv = ["recon4d", "eval", "--data", str(setup["heldout"]), "--out", str(out), "--quiet"]
    return vfm3d_main([*argv, "--threads", "1", *extra])


def test_probe_row_scores_point_maps_of_every_frame(setup: dict[str, Path]) -> None:
    out = setup["root"] / "eval"
    model = f"probe:{setup['run']}"
    assert _eval(setup, out, "--model", model, "--features", str(setup["cache"])) == 0
    record = json.loads((out / "metrics.json").read_text())
    assert {p.name for p in out.iterdir()} >= {"metrics.json", "per_sequence.csv", "summary.md"}
    assert [r["id"] for r in record["sequences"]] == ["held0", "held1"]
    for key in ("ate", "rpe_trans", "rpe_rot_deg", "abs_rel_median", "delta1_median"):
        assert np.isfinite(record["mean"][key]) and record["count"][key] == 2, key
    assert all(r["frames"] == 9 and r["align"] == "sim3" for r in record["sequences"])
    probe = record["probe"]
    assert probe["layer"] == 0 and probe["evaluated_step"] == 2
    assert probe["backbone"] == "random" and Path(probe["features"]) == setup["cache"].resolve()
    assert f"| {model} | 2 |" in (out / "summary.md").read_text()


def test_probe_point_maps_cover_all_frames(setup: dict[str, Path]) -> None:
    maps = ProbePointMaps(setup["run"], setup["cache"], data=setup["heldout"])
    clip = render_clip("dynamic", seed=41, frames=9, height=32, width=32, clip_id="held0")
    points, conf, meta = maps(clip)
    assert points.shape == (9, 16, 16, 3) and conf.shape == (9, 16, 16)
    assert meta["frames"] == 9 and bool((conf > 0).all())


def test_bad_features_are_clear_errors(setup: dict[str, Path], capsys) -> None:
    model = ["--model", f"probe:{setup['run']}"]
    out = setup["root"] / "bad"
    assert _eval(setup, out, *model) == 2  # no --features
    err = capsys.readouterr().err
    assert "needs --features" in err and "vfm3d extract" in err and "--layers 0" in err
    assert _eval(setup, out, *model, "--features", str(setup["root"] / "nope")) == 2
    assert "not a feature cache" in capsys.readouterr().err
    # a cache of other clips: no features for the clip, named with the command to run
    assert _eval(setup, out, *model, "--features", str(setup["train_cache"])) == 2
    err = capsys.readouterr().err
    assert "clip 'held0': no features" in err and "vfm3d extract" in err
    # features of 5 of the 9 frames: the rule and the frames
    assert _eval(setup, out, *model, "--features", str(setup["partial"])) == 2
    err = capsys.readouterr().err
    assert "clip 'held0': frames [5, 6, 7, 8] of its 9 have no features" in err
    assert "every frame needs features" in err
    clip = render_clip("dynamic", seed=41, frames=9, height=32, width=32, clip_id="held0")
    with pytest.raises(ProbeDataError, match="every frame needs features"):
        ProbePointMaps(setup["run"], setup["partial"])(clip)
    # a bare run folder is not guessed to be a VGGT folder; --features only with a probe
    assert _eval(setup, out, "--model", str(setup["run"])) == 2
    assert f"--model probe:{setup['run']}" in capsys.readouterr().err
    assert _eval(setup, out, "--model", "gt", "--features", str(setup["cache"])) == 2
    assert "--features is for --model probe:" in capsys.readouterr().err
    assert not out.exists()
