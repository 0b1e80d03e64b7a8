"""`vfm3d jointgen eval | compare` (`vfm3d.jointgen.evaluate`) on tiny random models: finite
per-item rows for every kind of row, the Frechet features, clear errors, and the table."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from vfm3d.cli import main as vfm3d_main
from vfm3d.clip import ClipFolder, ClipFolderWriter
from vfm3d.jointgen.captions import clip_caption
from vfm3d.jointgen.evaluate import (
    FEATURES_FILE,
    V2C_METRICS,
    EvalConfig,
    compare,
    evaluate_model,
    load_video_embedder,
    model_kind,
    noise_seed,
)
from vfm3d.jointgen.model import JointGenerator
from vfm3d.metrics.frechet import frechet_distance
from vfm3d.probe import ProbeConfig
from vfm3d.world import render_clip

FAST = EvalConfig(steps=2, progress=False, write_videos=False)


def _clips(root: Path, kinds_seeds: list[tuple[str, int]], prefix: str) -> Path:
    writer = ClipFolderWriter(root)
    for i, (kind, seed) in enumerate(kinds_seeds):
        clip_id = f"{prefix}{i}"
        writer.add(render_clip(kind, seed=seed, frames=9, height=32, width=32, clip_id=clip_id))
    return root


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three held-out clips, another real folder, a tiny joint model (lambda 1) and its twin."""
    root = tmp_path_factory.mktemp("jointgen-eval")
    heldout = _clips(root / "heldout", [("object", 11), ("scene", 12), ("object", 13)], "held")
    other = _clips(root / "other", [("scene", 21), ("object", 22), ("scene", 23)], "other")
    corpus = [clip_caption(c) for c in ClipFolder(heldout)]
    train = {"frames": 9, "height": 32, "width": 32}
    for name, lam in (("jog3r", 1.0), ("twin", 0.0)):
        gen = JointGenerator.tiny(seed=0, corpus=corpus)
        gen.save_pretrained(root / name, extra={"lambda_rec": lam, "train": train})
    return {"root": root, "heldout": heldout, "other": other}


@pytest.fixture(scope="module")
def jog3r_eval(setup) -> dict:
    out = setup["root"] / "eval-jog3r"
    return evaluate_model(str(setup["root"] / "jog3r"), setup["heldout"], out, FAST)


def _finite(value) -> bool:
    return isinstance(value, float) and math.isfinite(value)


def test_model_kinds(setup) -> None:
    assert model_kind(str(setup["root"] / "jog3r")) == "jointgen"
    assert model_kind("zoo/wan-mini") == "wan"
    assert model_kind("gt") == "gt" and model_kind("zoo/vggt-mini") == "vggt"
    assert model_kind("probe:x") == "probe" and model_kind("vggt:/models/VGGT-1B") == "vggt"
    with pytest.raises(ValueError, match="not a joint generator folder"):
        model_kind(str(setup["heldout"]))
    assert noise_seed(1, 2) == 10_002


def test_generator_row_has_finite_per_item_rows(jog3r_eval, setup) -> None:
    record = jog3r_eval
    assert record["kind"] == "jointgen" and record["clip_ids"] == ["held0", "held1", "held2"]
    for k, item in enumerate(record["items"]):
        assert item["prompt"] and item["noise_seed"] == k
        assert _finite(item["consistency"]) and item["consistency_pairs"] == 8
        assert all(_finite(item[m]) for m in V2C_METRICS) and item["v2c_frames"] == 9
        assert 0.0 <= item["RRA@15"] <= item["RRA@30"] <= 1.0
    frechet = record["frechet"]
    assert _finite(frechet["value"]) and frechet["value"] >= 0.0
    assert frechet["windows"] == [[0, 8], [1, 9]] and frechet["generated"] == 3
    assert (setup["root"] / "eval-jog3r" / FEATURES_FILE).is_file()
    timings = record["timings"]
    assert all(timings[k] > 0 for k in ("seconds_per_video", "seconds_per_v2c_clip"))
    assert timings["seconds_per_consistency_pair"] > 0
    assert record == json.loads((setup["root"] / "eval-jog3r" / "metrics.json").read_text())


def test_twin_wan_gt_and_vggt_rows(setup) -> None:
    root, data = setup["root"], setup["heldout"]
    config = EvalConfig(steps=1, prompts=2, progress=False, write_videos=False)
    twin = evaluate_model(str(root / "twin"), data, root / "eval-twin", config)
    assert "lambda_rec = 0" in twin["skipped"]["v2c"]
    assert all("RRA@15" not in r and _finite(r["consistency"]) for r in twin["items"])
    wan = evaluate_model("zoo/wan-mini", data, root / "eval-wan", config)
    assert wan["kind"] == "wan" and all(r["prompt"] is None for r in wan["items"])
    assert _finite(wan["frechet"]["value"]) and "v2c" in wan["skipped"]
    gt = evaluate_model("gt", data, root / "eval-gt", config, real=setup["other"])
    assert all(_finite(r["consistency"]) for r in gt["items"]) and _finite(gt["frechet"]["value"])
    vggt = evaluate_model("zoo/vggt-mini", data, root / "eval-vggt", config)
    assert all(all(_finite(r[m]) for m in V2C_METRICS) for r in vggt["items"])
    assert vggt["frechet"] is None and "consistency" not in vggt["items"][0]


def test_probe_row(setup) -> None:
    root, data = setup["root"], setup["heldout"]
    extract = ["--backbone", "random", "--layers", "0", "--no-progress"]
    assert vfm3d_main(["extract", "--data", str(data), "--out", str(root / "cache"), *extract]) == 0
    cfg = ProbeConfig.cpu_small(first_n=9, min_gap=1, num_frames=3, output_size=(16, 16))
    (root / "probe.json").write_text(json.dumps(cfg.to_dict()))
    args = ["probe", "train", "--data", str(data), "--features", str(root / "cache")]
    args += ["--backbone", "random", "--layer", "0", "--out", str(root / "probe"), "--quiet"]
    args += ["--steps", "1", "--preset", "cpu-small", "--config", str(root / "probe.json")]
    assert vfm3d_main([*args, "--threads", "1", "--device", "cpu"]) == 0
    config = EvalConfig(frames=7, progress=False)
    record = evaluate_model(
        f"probe:{root / 'probe'}", data, root / "eval-probe", config, probe_features=root / "cache"
    )
    assert all(all(_finite(r[m]) for m in V2C_METRICS) for r in record["items"])
    assert record["items"][0]["v2c_frames"] == 7 and record["settings"]["probe"]["layer"] == 0
    # features of other clips, of only some frames, or no cache at all: one clear error each
    other = root / "other-cache"
    assert (
        vfm3d_main(["extract", "--data", str(setup["other"]), "--out", str(other), *extract]) == 0
    )
    partial = root / "partial-cache"
    argv = ["extract", "--data", str(data), "--out", str(partial), *extract, "--num-frames", "5"]
    assert vfm3d_main(argv) == 0
    for cache, message in ((other, "no features in"), (partial, "have no features")):
        with pytest.raises(ValueError, match=message):
            evaluate_model(f"probe:{root / 'probe'}", data, root / "e", FAST, probe_features=cache)
    with pytest.raises(FileNotFoundError, match="not a feature cache"):
        evaluate_model(f"probe:{root / 'probe'}", data, root / "e", FAST, probe_features=root)


def test_frechet_of_real_vs_real_is_below_real_vs_noise() -> None:
    embedder = load_video_embedder()
    real_a = [render_clip("scene", seed=s, frames=9, height=32, width=32) for s in range(6)]
    real_b = [render_clip("scene", seed=s, frames=9, height=32, width=32) for s in range(50, 56)]
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (6, 9, 32, 32, 3), dtype=np.uint8)
    a = np.stack([embedder(c.frames) for c in real_a])
    b = np.stack([embedder(c.frames) for c in real_b])
    n = np.stack([embedder(v) for v in noise])
    assert a.shape == (6, 128)
    assert frechet_distance(a, b) < 0.5 * frechet_distance(a, n)
    big = np.stack([embedder(np.repeat(np.repeat(c.frames, 2, 1), 2, 2)) for c in real_a[:2]])
    assert np.allclose(big, a[:2], atol=0.1 * np.abs(a[:2]).max())  # resized to 32 x 32 first
    with pytest.raises(ValueError, match="takes 8 frames per window"):
        embedder(noise[0, :5])


def test_errors_are_one_clear_line(setup, tmp_path, capsys) -> None:
    base = ["jointgen", "eval", "--data", str(setup["heldout"]), "--out", str(tmp_path / "e")]
    cases = [
        (["--model", "probe:/nowhere"], "needs --features CACHE"),
        (["--model", "gt", "--features", str(tmp_path)], "only for --model probe:RUN"),
        (["--model", str(tmp_path)], "not a joint generator folder"),
        (["--model", str(tmp_path / "missing")], "model folder not found"),
        (["--model", "gt", "--prompts", "9"], "--prompts 9 but the folder holds 3 clips"),
    ]
    for extra, message in cases:
        assert vfm3d_main([*base, *extra, "--quiet"]) == 2
        assert message in capsys.readouterr().err
    bad_data = ["jointgen", "eval", "--model", "gt", "--data", str(tmp_path), "--out", "x"]
    assert vfm3d_main(bad_data) == 2
    assert "not a clip folder" in capsys.readouterr().err


def test_compare_builds_one_table(setup, jog3r_eval, tmp_path, capsys) -> None:
    root = setup["root"]
    config = EvalConfig(steps=2, progress=False, write_videos=False, seed=1)
    evaluate_model(str(root / "jog3r"), setup["heldout"], root / "eval-jog3r-s1", config)
    evaluate_model(str(root / "twin"), setup["heldout"], root / "eval-twin-s0", FAST)
    evaluate_model("zoo/vggt-mini", setup["heldout"], root / "eval-vggt3", FAST)
    rows = [
        f"jog3r={root / 'eval-jog3r'},{root / 'eval-jog3r-s1'}",
        f"twin={root / 'eval-twin-s0'}",
        f"vggt-mini={root / 'eval-vggt3'}",
    ]
    argv = ["jointgen", "compare", "--out", str(tmp_path / "t"), "--reference", "twin"]
    argv += ["--samples", "50", *(x for r in rows for x in ("--row", r))]
    assert vfm3d_main(argv) == 0
    text = capsys.readouterr().out
    assert "| jog3r | 2 |" in text and "lower is better: consistency, frechet, ate" in text
    table = json.loads((tmp_path / "t" / "comparison.json").read_text())
    jog3r = table["models"]["jog3r"]
    assert len(jog3r["frechet"]["seeds"]) == 2 and "diff" in jog3r["frechet"]
    assert "diff" in jog3r["consistency"] and jog3r["consistency"]["items"] == 3
    assert "RRA@15" in jog3r and "RRA@15" not in table["models"]["twin"]
    assert "frechet" not in table["models"]["vggt-mini"]
    lo, hi = jog3r["frechet"]["ci95"]
    assert lo <= hi and all(_finite(v) for v in (lo, hi))
    # a row evaluated on other clips is refused
    evaluate_model("gt", setup["other"], root / "eval-other", FAST)
    with pytest.raises(ValueError, match="not the same ones as the first row"):
        compare([("a", [root / "eval-twin-s0"]), ("b", [root / "eval-other"])])
