"""The demo's joint-generation step: T2V+C videos from held-out captions through a tiny JOG3R model,
their files, consistency scores beside the real clips', the report, and the demo's wiring."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tests.jointgen.test_generate_cli import save_tiny_model
from vfm3d.jointgen.captions import clip_caption
from vfm3d.jointgen.example import generate_example, heldout_clips
from vfm3d.report.export import read_trajectory_tum


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("jog3r-example")
    model = save_tiny_model(root / "model")
    out = root / "gen"
    return out, generate_example(out, model=str(model), steps=3)


def _decoded_frames(path: Path) -> list:
    import av

    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def test_writes_videos_trajectories_and_scores(example: tuple[Path, dict]) -> None:
    out, result = example
    clips = heldout_clips(2, 9, 32, 32)
    assert [c.id for c in clips] == ["object-s9000000-000000", "scene-s9000000-000001"]
    assert result["captions"] == [clip_caption(c) for c in clips]
    for i in range(2):
        for name in (f"sample_{i:03d}.mp4", f"real_{i:03d}.mp4"):
            frames = _decoded_frames(out / name)
            assert len(frames) == 9 and frames[0].shape == (32, 32, 3), name
        stamps, poses = read_trajectory_tum(out / f"sample_{i:03d}_trajectory_tum.txt")
        assert poses.shape == (9, 4, 4) and len(stamps) == 9
    for s in result["scores"]:
        assert math.isfinite(s["generated"]) and math.isfinite(s["real"])
    summary = json.loads((out / "summary.json").read_text())
    assert [s["score_generated"] for s in summary["samples"]] == [
        s["generated"] for s in result["scores"]
    ]
    assert summary["heldout"]["clips"] == [c.id for c in clips]
    index = json.loads((out / "cameras.json").read_text())
    assert [s["video"] for s in index["samples"]] == ["sample_000.mp4", "sample_001.mp4"]
    assert result["seconds"]["total"] > 0


def test_report_plays_the_videos_and_shows_the_camera_paths(example: tuple[Path, dict]) -> None:
    out, result = example
    assert result["report"] == out / "report.html"
    html = (out / "report.html").read_text()
    for name in ("sample_000.mp4", "sample_001.mp4", "real_000.mp4", "real_001.mp4"):
        assert f"<video controls loop muted autoplay playsinline src='{name}'>" in html
    assert (out / "camera_paths.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert html.count("data:image/png;base64,") == 1
    assert "object-s9000000-000000" in html and "generated score" in html


def test_demo_step_notes_the_scores(
    example: tuple[Path, dict], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vfm3d import demo
    from vfm3d.jointgen import example as module

    result = example[1]
    monkeypatch.setattr(module, "shipped_jog3r", lambda name="jog3r-mini": True)
    monkeypatch.setattr(module, "generate_example", lambda out_dir: result)
    step = demo.add_generation(tmp_path)
    assert step is not None and step.result is result
    assert step.links == [("Joint generation (JOG3R): videos, cameras", "generation/report.html")]
    assert f"{result['scores'][1]['real']:.3f}" in step.notes[0]


def test_demo_step_skipped_without_the_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vfm3d import demo
    from vfm3d.jointgen import example as module

    monkeypatch.setattr(module, "shipped_jog3r", lambda name="jog3r-mini": False)
    assert demo.add_generation(tmp_path) is None
    assert not (tmp_path / "generation").exists()


def test_shipped_needs_the_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from vfm3d.backbones import registry
    from vfm3d.jointgen.example import shipped_jog3r

    monkeypatch.setattr(registry, "zoo_root", lambda: tmp_path)
    assert not shipped_jog3r()
    (tmp_path / "jog3r-mini").mkdir()
    assert not shipped_jog3r()  # a folder being installed: jog3r.json is written last
    (tmp_path / "jog3r-mini" / "jog3r.json").write_text("{}")
    assert shipped_jog3r()


def test_demo_report_carries_every_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from vfm3d import demo

    recon = demo.DemoStep({}, ["recon note"], [("recon", "reconstruction/report.html")])
    gen = demo.DemoStep({}, ["gen note"], [("gen", "generation/report.html")])
    ask = demo.DemoStep({}, ["ask note"], [("ask", "spatial/report.html")])
    cal = demo.DemoStep({}, ["calibration note"], [])
    monkeypatch.setattr(demo, "calibration_step", lambda rows, out: cal)
    monkeypatch.setattr(demo, "add_reconstruction", lambda out: recon)
    monkeypatch.setattr(demo, "add_generation", lambda out: gen)
    monkeypatch.setattr(demo, "add_questions", lambda out: ask)
    written: list[dict] = []

    def fake_outputs(rows, out, spec=None, extra_notes=(), extra_links=()):
        written.append({"notes": list(extra_notes), "links": list(extra_links)})
        return out / "report.html"

    monkeypatch.setattr("vfm3d.probe.sweep.write_outputs", fake_outputs)
    assert demo.add_steps([{"backbone": "x"}], tmp_path) == [cal, recon, gen, ask]
    assert written == [
        {
            "notes": ["calibration note", "recon note", "gen note", "ask note"],
            "links": [
                ("recon", "reconstruction/report.html"),
                ("gen", "generation/report.html"),
                ("ask", "spatial/report.html"),
            ],
        }
    ]
    monkeypatch.setattr(demo, "add_reconstruction", lambda out: None)
    monkeypatch.setattr(demo, "add_generation", lambda out: None)
    monkeypatch.setattr(demo, "add_questions", lambda out: None)
    monkeypatch.setattr(demo, "calibration_step", lambda rows, out: None)
    assert demo.add_steps([], tmp_path) == [] and len(written) == 1  # nothing rewritten
