"""`vfm3d spatial eval`: raw predictions and official scores on a tiny random model over tiny
rooms, resuming, the blind protocol, VSI-Bench's chance / frequency baselines on hand-made
questions, the aggregate and its bootstrap, a VSI-Bench folder, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from vfm3d.cli import main as vfm3d_main
from vfm3d.metrics.vsi import mean_relative_accuracy, vsi_accuracy
from vfm3d.models.vggt import VGGTConfig
from vfm3d.spatial import evaluate as ev
from vfm3d.spatial import model as vgllm
from vfm3d.spatial.model import (
    VGLLMConfig,
    VGLLMForConditionalGeneration,
    VGLLMProcessor,
    save_vgllm,
    tokenizer_corpus,
    train_tokenizer,
)
from vfm3d.spatial.prompts import build_prompt
from vfm3d.spatial.questions import generate_questions, write_jsonl
from vfm3d.world import generate_dataset

FRAMES = 4
TYPES = [
    "object_abs_distance",
    "object_rel_direction_easy",
    "object_rel_direction_hard",
    "route_planning",
    "room_size_estimation",
]


@pytest.fixture(scope="module")
def rooms(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("rooms")
    generate_dataset(root, "room", 2, 24, 32, 48, seed=0, progress=False)
    return root


@pytest.fixture(scope="module")
def model_dir(rooms: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    records, _ = generate_questions(rooms, seed=0)
    tokenizer = train_tokenizer(tokenizer_corpus(records), vocab_size=300, min_frequency=1)
    geometry = VGGTConfig.tiny(patch_size=8, img_size=32, init_values=1.0)
    config = VGLLMConfig.tiny(tokenizer, geometry, patch_size=8)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = VGLLMForConditionalGeneration(config).eval()
    processor = VGLLMProcessor.for_model(tokenizer, config, (32, 48))
    processor.extra["num_frames"] = FRAMES
    return save_vgllm(model, processor, tmp_path_factory.mktemp("model") / "vgllm")


def _eval(*argv: str) -> int:
    return vfm3d_main(["spatial", "eval", *argv, "--no-progress", "--bootstrap", "200"])


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]


def _world(rooms: Path, model_dir: Path, out: Path, *extra: str) -> list[str]:
    return [
        "--model",
        str(model_dir),
        "--data",
        str(rooms),
        "--out",
        str(out),
        "--split",
        "all",
        "--per-scene",
        "1",
        "--types",
        *TYPES,
        *extra,
    ]


def test_predictions_are_raw_outputs_and_scores_official(
    rooms: Path, model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "ev"
    assert _eval(*_world(rooms, model_dir, out, "--frames", str(FRAMES), "--batch", "2")) == 0
    rows = _rows(out)
    assert len(rows) == 10 and len({r["scene_name"] for r in rows}) == 2
    expected, _ = generate_questions(rooms, seed=0, config=ev_config(1), question_types=TYPES)
    assert [r["id"] for r in rows] == [r["id"] for r in expected]
    for row in rows:
        assert {"question_type", "ground_truth", "prediction", "score"} <= set(row)
        assert isinstance(row["prediction"], str)
    scores = json.loads((out / "scores.json").read_text())
    assert scores["scores"] == vsi_accuracy(rows)  # the official aggregate, to the last bit
    for key, value in scores["scores"].items():
        low, high = scores["ci95"][key]
        assert low <= value + 1e-12 and value <= high + 1e-12
    assert scores["counts"] == {
        t: sum(r["question_type"] == t for r in rows) for t in scores["counts"]
    }
    assert "| overall |" in (out / "summary.md").read_text()

    # the raw generated text: the library's greedy answer on the same frames and batch
    model, processor = vgllm.load_vgllm(model_dir)
    from vfm3d.clip import ClipFolder

    first = [r for r in rows if r["scene_name"] == rows[0]["scene_name"]][:2]
    frames, _ = processor.sample(ClipFolder(rooms).load(first[0]["scene_name"]).frames, FRAMES)
    prompts = [build_prompt(r) for r in first]
    answers = vgllm.generate_answers(model, processor, [frames] * len(first), prompts)
    assert answers == [r["prediction"] for r in first]

    # resuming: nothing is generated again; a torn file regenerates only what is missing
    calls: list[int] = []
    real = vgllm.generate_answers

    def counting(model, processor, videos, prompts, *args):
        calls.append(len(prompts))
        return real(model, processor, videos, prompts, *args)

    monkeypatch.setattr(vgllm, "generate_answers", counting)
    assert _eval(*_world(rooms, model_dir, out, "--frames", str(FRAMES), "--batch", "2")) == 0
    assert calls == [] and _rows(out) == rows
    lines = (out / "predictions.jsonl").read_text().splitlines()
    (out / "predictions.jsonl").write_text("\n".join(lines[:-2]) + "\n")
    assert _eval(*_world(rooms, model_dir, out, "--frames", str(FRAMES), "--batch", "2")) == 0
    assert sum(calls) == 2 and _rows(out) == rows
    # other settings in the same folder are refused
    assert _eval(*_world(rooms, model_dir, out, "--frames", "3")) == 2


def ev_config(per_scene: int):
    from vfm3d.spatial.questions import QuestionConfig

    return QuestionConfig(per_scene=per_scene)


def test_blind_feeds_no_frames(
    rooms: Path, model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[int, ...]] = []
    batches: list[dict] = []
    real = vgllm.generate_answers
    real_call = VGLLMProcessor.__call__

    def spy(model, processor, videos, prompts, *args):
        seen.extend(tuple(v.shape) for v in videos)
        return real(model, processor, videos, prompts, *args)

    def spy_call(self, videos, prompts, answers=None):
        batch = real_call(self, videos, prompts, answers)
        batches.append(batch)
        return batch

    monkeypatch.setattr(vgllm, "generate_answers", spy)
    monkeypatch.setattr(VGLLMProcessor, "__call__", spy_call)
    out = tmp_path / "blind"
    assert _eval(*_world(rooms, model_dir, out, "--blind")) == 0
    assert seen and all(shape[0] == 0 for shape in seen)
    assert batches and all(
        "pixel_values" not in b and "geometry_pixel_values" not in b for b in batches
    )
    for b in batches:  # no image token in the sequence
        assert not bool((b["mm_token_type_ids"] != 0).any())
    scores = json.loads((out / "scores.json").read_text())
    assert scores["protocol"].startswith("blind") and scores["num_frames"] is None
    assert scores["scores"] == vsi_accuracy(_rows(out))
    # blind needs no frames at all: a questions file alone is enough
    file = write_jsonl(_rows(out), tmp_path / "q.jsonl")
    assert (
        _eval(
            "--model",
            str(model_dir),
            "--questions",
            str(file),
            "--blind",
            "--split",
            "all",
            "--out",
            str(tmp_path / "blind2"),
        )
        == 0
    )
    assert [r["prediction"] for r in _rows(tmp_path / "blind2")] == [
        r["prediction"] for r in _rows(out)
    ]


def _record(i: int, kind: str, truth: str, split: str, options=None) -> dict:
    return {
        "id": i,
        "dataset": "world",
        "scene_name": f"s{i}",
        "question_type": kind,
        "question": f"q{i}",
        "options": options,
        "ground_truth": truth,
        "split": split,
    }


HAND_MADE = [
    _record(0, "object_counting", "2", "train"),
    _record(1, "object_counting", "2", "train"),
    _record(2, "object_counting", "5", "train"),
    _record(3, "room_size_estimation", "20.0", "train"),
    _record(4, "room_size_estimation", "10.0", "train"),
    _record(5, "object_rel_direction_easy", "A", "train", ["A. left", "B. right"]),
    _record(6, "object_rel_direction_easy", "B", "train", ["A. right", "B. left"]),
    _record(7, "object_rel_direction_easy", "B", "train", ["A. left", "B. right"]),
    _record(8, "obj_appearance_order", "C", "train", ["A. a, b", "B. b, a", "C. a, c"]),
    _record(9, "obj_appearance_order", "C", "train", ["A. c, a", "B. b, c", "C. b, a"]),
    # test part
    _record(10, "object_counting", "3", "test"),
    _record(11, "room_size_estimation", "12.0", "test"),
    _record(12, "object_rel_direction_easy", "B", "test", ["A. right", "B. left"]),
    _record(13, "object_rel_direction_easy", "A", "test", ["A. right", "B. left"]),
    _record(14, "obj_appearance_order", "A", "test", ["A. x, y", "B. y, x", "C. x, z", "D. z, x"]),
]


def test_chance_and_frequency_baselines(tmp_path: Path) -> None:
    file = write_jsonl(HAND_MADE, tmp_path / "questions.jsonl")
    assert _eval("--model", "chance", "--questions", str(file), "--out", str(tmp_path / "c")) == 0
    chance = {r["id"]: r for r in _rows(tmp_path / "c")}
    assert sorted(chance) == [10, 11, 12, 13, 14]  # the test part only
    # numeric: the train mean of the type (counting 3.0, room size 15.0), scored by MRA
    assert float(chance[10]["prediction"]) == 3.0 and chance[10]["score"] == 1.0
    assert float(chance[11]["prediction"]) == 15.0
    assert (
        chance[11]["score"] == mean_relative_accuracy(15.0, 12.0) == 0.6
    )  # 3/12 <= 1 - theta, theta <= .75
    # choice: the expectation 1 / len(options)
    assert chance[12]["score"] == chance[13]["score"] == 0.5 and chance[14]["score"] == 0.25
    c = json.loads((tmp_path / "c" / "scores.json").read_text())["scores"]
    assert c["object_rel_direction"] == pytest.approx(0.5 / 3)  # missing levels count 0
    assert c["overall"] == pytest.approx((1.0 + 0.6 + 0.5 / 3 + 0.25) / 4)

    assert (
        _eval("--model", "frequency", "--questions", str(file), "--out", str(tmp_path / "f")) == 0
    )
    freq = {r["id"]: r for r in _rows(tmp_path / "f")}
    # numeric: the modal value (counting "2"; room size tie 10.0 / 20.0 -> the smallest)
    assert freq[10]["prediction"] == "2" and freq[10]["score"] == mean_relative_accuracy(2, 3)
    assert freq[10]["score"] == 0.4  # |2 - 3| / 3 = 1/3 <= 1 - theta for theta .50 ... .65
    assert freq[11]["prediction"] == "10.0" and freq[11]["score"] == mean_relative_accuracy(10, 12)
    # choice: the most frequent answer text ("left": 2 of 3) by its letter in each question
    assert freq[12]["prediction"] == "B" and freq[12]["score"] == 1.0
    assert freq[13]["prediction"] == "B" and freq[13]["score"] == 0.0
    # no option has the frequent text: the type's most frequent letter ("C")
    assert freq[14]["prediction"] == "C" and freq[14]["score"] == 0.0
    f = json.loads((tmp_path / "f" / "scores.json").read_text())
    assert f["scores"] == vsi_accuracy(list(freq.values()))
    assert f["details"]["answers"]["object_rel_direction_easy"] == {"text": "left", "letter": "B"}

    # without a train part the baselines say what they need
    test_only = write_jsonl([r for r in HAND_MADE if r["split"] == "test"], tmp_path / "t.jsonl")
    assert (
        _eval("--model", "chance", "--questions", str(test_only), "--out", str(tmp_path / "x")) == 2
    )
    assert (
        _eval(
            "--model",
            "frequency",
            "--questions",
            str(test_only),
            "--train-questions",
            str(file),
            "--out",
            str(tmp_path / "y"),
        )
        == 0
    )
    assert {r["id"]: r["prediction"] for r in _rows(tmp_path / "y")} == {
        i: r["prediction"] for i, r in freq.items()
    }


def test_baselines_on_world_rooms_use_the_train_split(rooms: Path, tmp_path: Path) -> None:
    # with a test fraction of 0.5 the two rooms may fall on either side: use all as train
    out = tmp_path / "freq"
    args = ["--model", "frequency", "--data", str(rooms), "--split", "all", "--out", str(out)]
    assert _eval(*args) == 2  # split all: the train part would overlap the evaluated questions
    assert _eval(*args, "--train-data", str(rooms)) == 0
    rows = _rows(out)
    assert rows and json.loads((out / "scores.json").read_text())["scores"] == vsi_accuracy(rows)


def test_aggregate_equals_vsi_accuracy_and_bootstrap() -> None:
    rng = np.random.default_rng(0)
    kinds = [
        "object_counting",
        "object_rel_direction_easy",
        "object_rel_direction_hard",
        "route_planning",
    ] * 10
    rows = [
        {
            "question_type": k,
            "ground_truth": "B" if "counting" not in k else "3",
            "prediction": str(rng.choice(["A", "B", "3", "4 chairs", ""])),
        }
        for k in kinds
    ]
    from vfm3d.metrics.vsi import score_answer

    scores = [score_answer(r["question_type"], r["prediction"], r["ground_truth"]) for r in rows]
    point = ev.aggregate_scores(kinds, scores)
    assert point == vsi_accuracy(rows)
    a = ev.bootstrap_intervals(kinds, scores, samples=300, seed=1)
    assert a == ev.bootstrap_intervals(kinds, scores, samples=300, seed=1)  # seeded
    assert a != ev.bootstrap_intervals(kinds, scores, samples=300, seed=2)
    assert set(a) == set(point)
    for key, (low, high) in a.items():
        assert low <= point[key] <= high
    plain = ev.bootstrap_intervals(kinds, scores, samples=300, seed=1, stratified=False)
    assert set(plain) == set(point)
    # constant scores: a zero-width interval
    flat = ev.bootstrap_intervals(["route_planning"] * 5, [1.0] * 5, samples=50)
    assert flat["route_planning"] == [1.0, 1.0] and flat["overall"] == [1.0, 1.0]


def test_vsibench_folder(model_dir: Path, rooms: Path, tmp_path: Path) -> None:
    av = pytest.importorskip("av")
    from vfm3d.clip import ClipFolder

    clip = ClipFolder(rooms)[0]
    video = tmp_path / "vsi" / "arkitscenes" / "41069025.mp4"
    video.parent.mkdir(parents=True)
    with av.open(str(video), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.height, stream.width = clip.frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        for image in clip.frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    records = [
        {
            "id": 0,
            "dataset": "arkitscenes",
            "scene_name": "41069025",
            "question_type": "object_counting",
            "question": "How many chair(s) are in this room?",
            "options": None,
            "ground_truth": "4",
        },
        {
            "id": 1,
            "dataset": "arkitscenes",
            "scene_name": "41069025",
            "question_type": "object_rel_direction_easy",
            "question": "Is the chair left or right?",
            "options": ["A. left", "B. right"],
            "ground_truth": "B",
        },
    ]
    write_jsonl(records, tmp_path / "vsi" / "test.jsonl")
    out = tmp_path / "ev"
    assert (
        _eval(
            "--model",
            str(model_dir),
            "--bench",
            "vsi",
            str(tmp_path / "vsi"),
            "--frames",
            "3",
            "--out",
            str(out),
        )
        == 0
    )
    rows = _rows(out)
    assert [r["id"] for r in rows] == [0, 1] and all(isinstance(r["prediction"], str) for r in rows)
    scores = json.loads((out / "scores.json").read_text())
    assert scores["scores"] == vsi_accuracy(rows) and scores["num_frames"] == 3
    assert scores["source"]["bench"] == "vsi"
    # the baselines on VSI-Bench use its own records
    assert (
        _eval(
            "--model",
            "chance",
            "--bench",
            "vsi",
            str(tmp_path / "vsi"),
            "--out",
            str(tmp_path / "c"),
        )
        == 0
    )
    assert [r["score"] for r in _rows(tmp_path / "c")] == [mean_relative_accuracy(4, 4), 0.5]


def test_errors(rooms: Path, model_dir: Path, tmp_path: Path, capsys) -> None:
    out = str(tmp_path / "e")
    assert _eval("--model", "chance", "--bench", "gqa", str(tmp_path), "--out", out) == 2
    assert "unknown benchmark" in capsys.readouterr().err
    assert _eval("--model", "chance", "--out", out) == 2
    assert _eval("--model", "chance", "--data", str(rooms), "--blind", "--out", out) == 2
    assert "--blind applies to models" in capsys.readouterr().err
    file = write_jsonl(HAND_MADE, tmp_path / "q.jsonl")
    assert _eval("--model", str(model_dir), "--questions", str(file), "--out", out) == 2
    assert "needs the questions' frames" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # --data and --bench together
        _eval(
            "--model", "chance", "--data", str(rooms), "--bench", "vsi", str(tmp_path), "--out", out
        )
