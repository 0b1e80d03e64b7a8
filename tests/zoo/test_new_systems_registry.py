"""The zoo's two new systems: ``vgllm-mini`` and ``jog3r-mini`` are registered (not backbones),
``vfm3d zoo train`` trains each for 2 steps on tiny data into a loadable folder, their options
are refused for other models, and ``zoo/<name>`` resolves to the package's weights folder."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from vfm3d.cli import main as vfm3d_main
from vfm3d.zoo import MODELS, weights_dir
from vfm3d.zoo.cli import EXPERIMENT_NAMES, MODEL_NAMES, install_target

NEW = ("vgllm-mini", "jog3r-mini")


def _train(name: str, out: Path, *extra: str) -> int:
    args = ["zoo", "train", name, "--out", str(out), "--steps", "2", "--seed", "3"]
    args += ["--train-clips", "2", "--heldout-clips", "1", "--shards", "1", "--batch", "2"]
    return vfm3d_main([*args, *extra, "--no-progress"])


def test_registered_as_non_backbones() -> None:
    for name in NEW:
        assert MODELS[name][1] is None and name in MODEL_NAMES and name not in EXPERIMENT_NAMES
    assert install_target("vgllm-mini", {}) == "vgllm-mini"
    assert install_target("vgllm-mini", {"no_geometry": True}) == "vgllm-mini-no-geometry"
    assert install_target("jog3r-mini", {"lambda_rec": 1.0}) == "jog3r-mini"
    assert install_target("jog3r-mini", {"lambda_rec": 0.0}) == "jog3r-mini-lambda0"
    assert install_target("wan-mini", {}) == "wan-mini"


def test_vgllm_mini_trains_into_a_loadable_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vfm3d.spatial.model import generate_answers, load_vgllm, question_prompt
    from vfm3d.zoo import vgllm_mini

    tiny = dict(
        hidden_size=32,
        num_layers=2,
        num_heads=2,
        num_kv_heads=1,
        intermediate_size=64,
        vision_hidden_size=32,
        vision_depth=2,
        vision_heads=2,
        vision_intermediate_size=64,
        window_merged=2,
        merger_hidden_dim=64,
    )
    small = dataclasses.replace(
        vgllm_mini.CONFIG,
        frames=4,
        size=(32, 48),
        vocab_size=300,
        per_scene=2,
        model_sizes=tiny,
        log_every=1,
    )
    monkeypatch.setattr(vgllm_mini, "CONFIG", small)
    out = tmp_path / "vgllm"
    assert _train("vgllm-mini", out, "--frames", "24", "--size", "32x48") == 0
    record = json.loads((out / "provenance.json").read_text())
    assert record["name"] == "vgllm-mini" and record["adapter"] is None
    assert record["steps_done"] == {"vgllm": 2}
    assert record["datasets"]["rooms"]["kind"] == "room"
    assert "--size 32x48" in record["command"] and "--frames 24" in record["command"]
    assert (out / "data" / "rooms" / "heldout" / "index.json").is_file()
    assert (out / "model" / "provenance.json").is_file()
    assert (out / "training_curve.png").is_file()
    model, processor = load_vgllm(out / "model")
    assert model.vggt is not None and model.dtype == torch.float32
    assert processor.size == (32, 48) and processor.extra["num_frames"] == 4
    frames = torch.rand(4, 3, 32, 48)
    prompt = question_prompt("How many chair(s) are in this room?")
    assert isinstance(generate_answers(model, processor, [frames], [prompt])[0], str)
    # the twin: same command with --no-geometry, reusing the rendered data
    twin = tmp_path / "twin"
    data = str(out / "data")
    assert (
        _train(
            "vgllm-mini", twin, "--frames", "24", "--size", "32x48", "--data", data, "--no-geometry"
        )
        == 0
    )
    model, _ = load_vgllm(twin / "model")
    assert model.vggt is None and model.merger is None
    assert "--no-geometry" in json.loads((twin / "provenance.json").read_text())["command"]


def test_jog3r_mini_trains_from_wan_mini_into_a_loadable_folder(tmp_path: Path) -> None:
    from vfm3d.jointgen.model import JointGenerator

    out = tmp_path / "jog3r"
    assert _train("jog3r-mini", out, "--lambda-rec", "0.5") == 0
    record = json.loads((out / "provenance.json").read_text())
    assert record["name"] == "jog3r-mini" and record["steps_done"] == {"joint": 2}
    assert record["data"]["frames"] == 9 and record["data"]["height"] == 32
    assert record["summary"]["lambda_rec"] == 0.5 and record["summary"]["init"] == "zoo/wan-mini"
    assert (out / "heldout_metrics.json").is_file()
    generator = JointGenerator.from_pretrained(out / "model")
    assert generator.head is not None and generator.text is not None
    assert generator.meta["lambda_rec"] == 0.5 and generator.meta["info"]["init"] == "zoo/wan-mini"


def test_options_are_refused_for_other_models(tmp_path: Path, capsys) -> None:
    code = vfm3d_main(["zoo", "train", "wan-mini", "--out", str(tmp_path), "--no-geometry"])
    assert code == 2 and "--no-geometry: not an option of zoo model 'wan-mini'" in (
        capsys.readouterr().err
    )
    code = vfm3d_main(["zoo", "train", "vgllm-mini", "--out", str(tmp_path), "--lambda-rec", "0"])
    assert code == 2 and "--lambda-rec: not an option of zoo model 'vgllm-mini'" in (
        capsys.readouterr().err
    )
    code = vfm3d_main(["zoo", "train", "sora3r-mini", "--out", str(tmp_path), "--lambda-rec", "1"])
    assert code == 2 and "--lambda-rec" in capsys.readouterr().err
    code = vfm3d_main(["zoo", "train", "jog3r-mini", "--out", str(tmp_path), "--random-init"])
    assert code == 2 and "--random-init" in capsys.readouterr().err
    assert not (tmp_path / "data").exists()  # refused before any data is rendered


@pytest.mark.parametrize("name", NEW)
def test_zoo_names_resolve_to_the_weights_folder(name: str) -> None:
    from vfm3d.jointgen.model import resolve_model_path
    from vfm3d.spatial.model import resolve_zoo

    folder = weights_dir(name)
    assert (
        folder == Path(__file__).resolve().parents[2] / "src" / "vfm3d" / "zoo" / "weights" / name
    )
    for resolve in (resolve_zoo, resolve_model_path):
        if folder.is_dir():
            assert resolve(f"zoo/{name}") == folder
        else:
            with pytest.raises(FileNotFoundError, match=str(folder)):
                resolve(f"zoo/{name}")
