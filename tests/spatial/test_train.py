"""`train_vgllm` on tiny random configs: the loss falls, a stopped run resumes to the same
weights, the result folder answers questions, the twin has no geometry branch, DDP runs."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from vfm3d.models.vggt import VGGTConfig
from vfm3d.spatial.model import generate_answers, load_vgllm, record_prompt
from vfm3d.spatial.train import VGLLMTrainConfig, build_model, train_vgllm, training_records
from vfm3d.world import generate_dataset

GEOMETRY = VGGTConfig.tiny(patch_size=8, img_size=32, init_values=1.0)
SIZES = dict(
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
CONFIG = VGLLMTrainConfig(
    steps=30,
    batch=4,
    lr=3e-3,
    warmup=3,
    frames=4,
    size=(32, 48),
    vocab_size=300,
    per_scene=4,
    test_fraction=0.0,
    log_every=1,
    checkpoint_every=10,
    model_sizes=SIZES,
)


@pytest.fixture(scope="module")
def rooms(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("rooms")
    generate_dataset(root, "room", 4, 24, 32, 48, seed=0, progress=False)
    return root


@pytest.fixture(scope="module")
def trained(rooms: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("vgllm")
    return out, train_vgllm(rooms, out, CONFIG, geometry=GEOMETRY, progress=False)


def _losses(out: Path) -> list[float]:
    return [
        json.loads(line)["loss"] for line in (out / "train_vgllm.jsonl").read_text().splitlines()
    ]


def test_short_run_lowers_the_loss(trained) -> None:
    out, summary = trained
    losses = _losses(out)
    assert len(losses) == 30
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5
    assert summary["steps_done"] == 30 and summary["use_geometry"] is True
    assert summary["trained"] == ["language_model", "lm_head", "merger", "visual"]
    assert summary["frozen"] == ["vggt"]
    assert json.loads((out / "train_summary.json").read_text())["records"] == summary["records"]


def test_result_folder_answers_and_keeps_the_encoder_frozen(trained, rooms: Path) -> None:
    out, _ = trained
    model, processor = load_vgllm(out)
    assert processor.size == (32, 48) and processor.extra["num_frames"] == 4
    record = training_records(rooms, None, CONFIG)[0]
    from vfm3d.clip import ClipFolder

    frames, _ = processor.sample(ClipFolder(rooms).load(record["scene_name"]).frames, 4)
    answer = generate_answers(model, processor, [frames], [record_prompt(record)])
    assert isinstance(answer[0], str)
    # the encoder is the initial random one, untouched by training
    fresh = build_model(processor.tokenizer, GEOMETRY, True, SIZES, CONFIG.seed)
    a, b = fresh.vggt.state_dict(), model.vggt.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_stopped_run_resumes_to_the_same_weights(trained, rooms: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    out, _ = trained
    stopped = train_vgllm(rooms, tmp_path, CONFIG, geometry=GEOMETRY, progress=False, time_limit=0)
    assert stopped["steps_done"] < 30
    train_vgllm(rooms, tmp_path, CONFIG, geometry=GEOMETRY, progress=False)
    a = load_file(str(out / "model.safetensors"))
    b = load_file(str(tmp_path / "model.safetensors"))
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert _losses(tmp_path) == _losses(out)


def test_twin_without_geometry_and_ddp(rooms: Path, tmp_path: Path) -> None:
    import torch.distributed as dist

    short = replace(CONFIG, steps=3, checkpoint_every=3)
    dist.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1
    )
    try:
        summary = train_vgllm(
            rooms, tmp_path / "twin", short, geometry=GEOMETRY, use_geometry=False, progress=False
        )
    finally:
        dist.destroy_process_group()
    assert summary["world_size"] == 1 and summary["use_geometry"] is False
    assert "merger" not in summary["trained"]
    model, _ = load_vgllm(tmp_path / "twin")
    assert model.vggt is None and model.merger is None and not model.config.use_vggt_feature


def test_geometry_cache_changes_nothing(rooms: Path, tmp_path: Path) -> None:
    short = replace(CONFIG, steps=3, checkpoint_every=3)
    train_vgllm(rooms, tmp_path / "a", short, geometry=GEOMETRY, progress=False)
    plain = replace(short, cache_geometry=False)
    train_vgllm(rooms, tmp_path / "b", plain, geometry=GEOMETRY, progress=False)
    assert _losses(tmp_path / "a") == pytest.approx(_losses(tmp_path / "b"), rel=1e-5)


def test_blind_twin_trains_text_only_under_ddp(rooms: Path, tmp_path: Path) -> None:
    import torch.distributed as dist

    from vfm3d.spatial.evaluate import evaluate, question_set

    short = replace(CONFIG, steps=3, checkpoint_every=3)
    with pytest.raises(ValueError, match="use_geometry=False"):
        train_vgllm(rooms, tmp_path / "x", short, geometry=GEOMETRY, blind=True, progress=False)
    dist.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1
    )
    try:
        summary = train_vgllm(
            rooms,
            tmp_path / "blind",
            short,
            geometry=GEOMETRY,
            use_geometry=False,
            blind=True,
            progress=False,
        )
    finally:
        dist.destroy_process_group()
    assert summary["blind"] is True and summary["model"] == "vgllm-blind"
    assert "visual" not in summary["trained"] and "merger" not in summary["trained"]
    model, processor = load_vgllm(tmp_path / "blind")
    assert processor.extra["text_only"] is True
    # the vision tower is the untouched initial one: nothing reached it
    fresh = build_model(processor.tokenizer, GEOMETRY, False, SIZES, CONFIG.seed)
    a, b = fresh.model.visual.state_dict(), model.model.visual.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    # a text-only model refuses frames and answers blind
    with pytest.raises(ValueError, match="--blind"):
        evaluate(
            question_set(rooms, split="all", per_scene=1),
            tmp_path / "ev",
            model=str(tmp_path / "blind"),
            progress=False,
        )
    result = evaluate(
        question_set(rooms, split="all", per_scene=1),
        tmp_path / "ev",
        model=str(tmp_path / "blind"),
        blind=True,
        progress=False,
    )
    assert 0.0 <= result["scores"]["overall"] <= 1.0
