"""The sweep: spec parsing errors, and a tiny end-to-end sweep that resumes without redoing work."""

from __future__ import annotations

import json

import pytest

from vfm3d.probe.sweep import load_spec, parse_spec, run_sweep

TINY_SPEC = """
seed = 0

[world]
kind = "mixed"
train_clips = 3
eval_kinds = ["object", "scene"]
eval_clips = 1
frames = 9
height = 32
width = 32

[extract]
num_frames = 9

[probe]
preset = "cpu_small"
steps = 4
first_n = 9
min_gap = 2
num_frames = 3

[[backbones]]
name = "constant"
layers = [0]
resize = [16, 16]
num_frames = 5

[[backbones]]
name = "wan2.1"
tiny = true
layers = [0, 1]
timesteps = [250, 749]
"""


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"backbones": []}, "at least one"),
        ({"backbones": [{"name": "pixels"}]}, "exactly one of"),
        ({"world": {}, "backbones": [{"name": "pixels", "bogus": 1}]}, "unknown keys"),
        ({"world": {}, "backbones": [{"layers": [0]}]}, "needs a name"),
        ({"world": {}, "wat": 1, "backbones": [{"name": "pixels"}]}, "unknown keys"),
        ({"world": {}, "backbones": [{"name": "pixels"}, {"name": "pixels"}]}, "unique"),
        ({"data": {"train": "x"}, "backbones": [{"name": "pixels"}]}, "train and eval"),
        ({"world": {}, "backbones": [{"name": "pixels", "resize": [0, 8]}]}, "resize must be"),
        ({"world": {}, "backbones": [{"name": "pixels", "dtype": "int8"}]}, "dtype must be"),
    ],
)
def test_bad_specs_are_refused(data, match) -> None:
    with pytest.raises(ValueError, match=match):
        parse_spec(data)


def test_unreadable_spec(tmp_path) -> None:
    with pytest.raises(FileNotFoundError):
        load_spec(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[world\n")
    with pytest.raises(ValueError, match="TOML"):
        load_spec(bad)


def test_tiny_sweep_end_to_end_and_resume(tmp_path) -> None:
    spec_file = tmp_path / "spec.toml"
    spec_file.write_text(TINY_SPEC)
    out = tmp_path / "out"
    rows = run_sweep(load_spec(spec_file), out, progress=False, log=lambda *_: None)
    # constant: 1 layer x 2 splits; wan2.1 tiny: 2 layers x 2 timesteps x 2 splits
    assert len(rows) == 2 + 8
    assert {r["split"] for r in rows} == {"object", "scene"}
    assert all(r["point_err"] >= 0 for r in rows)
    wan = [r for r in rows if r["backbone"] == "wan2.1-tiny"]
    assert {(r["layer"], r["timestep"]) for r in wan} == {(0, 250), (1, 250), (0, 749), (1, 749)}
    for name in ("results.csv", "results.md", "report.html", "example_pred.ply"):
        assert (out / name).is_file(), name
    assert (out / "figures" / "heatmap_wan2.1-tiny.png").is_file()
    from vfm3d.features import FeatureStore

    sizes = {
        (k.backbone.split("-")[0], k.input_size) for k in FeatureStore(out / "features").keys()
    }
    assert ("constant", (5, 16, 16)) in sizes and ("wan2.1", (9, 32, 32)) in sizes
    html = (out / "report.html").read_text()
    assert "wan2.1-tiny" in html and "data:image/png" in html

    # Resume: nothing is recomputed; the same numbers come back.
    weights = sorted((out / "runs").rglob("model.safetensors"))
    stamps = {p: p.stat().st_mtime_ns for p in weights}
    manifest = (out / "features" / "manifest.json").stat().st_mtime_ns
    again = run_sweep(load_spec(spec_file), out, progress=False, log=lambda *_: None)
    assert [r["point_err"] for r in again] == [r["point_err"] for r in rows]
    assert {p: p.stat().st_mtime_ns for p in weights} == stamps
    assert (out / "features" / "manifest.json").stat().st_mtime_ns >= manifest
    saved = json.loads((out / "results.json").read_text())
    assert len(saved) == len(rows)
