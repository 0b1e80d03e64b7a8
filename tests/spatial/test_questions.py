"""VSI-Bench questions from world rooms: record format, answers recomputed independently from
the clips' ground truth, seen objects only, ambiguity filters, seeded shuffling, split, CLI."""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from vfm3d.cli import main as vfm3d_main
from vfm3d.clip import ClipFolder
from vfm3d.metrics.vsi import CHOICE_TASKS, NUMERIC_TASKS, QUESTION_TYPES
from vfm3d.spatial.questions import (
    RECORD_KEYS,
    QuestionConfig,
    direction_answer,
    generate_questions,
    read_scene_facts,
    scene_questions,
    scene_split,
    turn_name,
)
from vfm3d.spatial.scene import SceneFacts
from vfm3d.world import generate_dataset

FRAMES, H, W = 40, 48, 64
THRESHOLD = max(16, math.ceil(0.005 * H * W))  # the default "seen" rule, restated


@pytest.fixture(scope="module")
def rooms(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("rooms")
    generate_dataset(root, "room", 4, FRAMES, H, W, seed=0, progress=False)
    return root


@pytest.fixture(scope="module")
def records(rooms: Path) -> list[dict]:
    out, stats = generate_questions(rooms, seed=0, config=QuestionConfig(per_scene=3))
    assert stats.scenes == 4 and not stats.skipped
    return out


@pytest.fixture(scope="module")
def metas(rooms: Path) -> dict[str, dict]:
    folder = ClipFolder(rooms)
    return {cid: folder.load(cid).meta for cid in folder.ids}


# ---------------------------------------------------------------------- independent ground truth
def _instances(meta: dict, name: str) -> list[dict]:
    return [o for o in meta["objects"] if o["class"] == name]


def _seen(obj: dict) -> bool:
    return max(obj["pixels"]) >= THRESHOLD


def _corners(obj: dict, n: int = 9) -> np.ndarray:
    """A grid of points filling the object's box (n per side), world coordinates."""
    half = np.asarray(obj["size"]) / 2
    axes = [np.linspace(-h, h, n) for h in half]
    local = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    c, s = math.cos(obj["yaw"]), math.sin(obj["yaw"])
    rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])
    return np.asarray(obj["center"]) + local @ rot.T


def _sampled_distance(a: dict, b: dict) -> float:
    """Closest-point distance of two boxes from point grids (an upper bound, close to exact)."""
    pa, pb = _corners(a), _corners(b)
    return float(np.sqrt(((pa[:, None, :] - pb[None, :, :]) ** 2).sum(-1)).min())


def _grid_step(a: dict, b: dict, n: int = 9) -> float:
    return float(np.linalg.norm(np.asarray(a["size"])) + np.linalg.norm(np.asarray(b["size"]))) / (
        n - 1
    )


def _angle(origin, towards, target) -> float:
    """Signed angle (deg) from origin->towards to origin->target, left (counter-clockwise) > 0."""
    f = np.append(np.asarray(towards)[:2] - np.asarray(origin)[:2], 0.0)
    q = np.append(np.asarray(target)[:2] - np.asarray(origin)[:2], 0.0)
    cos = f @ q / (np.linalg.norm(f) * np.linalg.norm(q))
    return float(np.degrees(np.arccos(np.clip(cos, -1, 1))) * np.sign(np.cross(f, q)[2]))


def _option(record: dict) -> str:
    """The answer text behind the ground-truth letter."""
    for option in record["options"]:
        letter, text = option.split(". ", 1)
        if letter == record["ground_truth"]:
            return text
    raise AssertionError(f"no option {record['ground_truth']} in {record['options']}")


def _names(record: dict) -> list[str]:
    """The object categories a question names (parsed from its text)."""
    q = record["question"]
    kind = record["question_type"]
    patterns = {
        "object_counting": r"How many (.+)\(s\) are",
        "object_abs_distance": r"between the (.+) and the (.+) \(in meters\)",
        "object_size_estimation": r"height\) of the (.+), measured",
        "object_rel_distance": r"objects \((.+)\) is the closest to the (.+)\?",
        "route_planning": r"beginning at the (.+) facing the (.+)\. You want to navigate to the (.+?)\.",
        "obj_appearance_order": r"in the video: (.+)\?",
    }
    if kind.startswith("object_rel_direction"):
        m = re.search(r"standing by the (.+) and facing the (.+), is the (.+?) to ", q)
        return list(m.groups())
    if kind == "room_size_estimation":
        return []
    m = re.search(patterns[kind], q)
    assert m, q
    names = [n for g in m.groups() for n in g.split(", ")]
    if kind == "route_planning":
        names += re.findall(r"Go forward until the (\w+)", q)
    return names


def test_records_have_the_vsibench_format(records: list[dict]) -> None:
    assert records, "rooms give questions"
    assert [r["id"] for r in records] == list(range(len(records)))
    types = Counter(r["question_type"] for r in records)
    assert set(types) == set(QUESTION_TYPES), types  # all 10 types (8 tasks) occur
    for r in records:
        assert list(r)[: len(RECORD_KEYS)] == list(RECORD_KEYS) and r["split"] in ("train", "test")
        assert r["dataset"] == "world" and isinstance(r["ground_truth"], str)
        if r["question_type"] in NUMERIC_TASKS:
            assert r["options"] is None
            float(r["ground_truth"])
        else:
            assert r["question_type"] in CHOICE_TASKS
            letters = [o.split(". ", 1)[0] for o in r["options"]]
            assert letters == list("ABCD"[: len(letters)]) and r["ground_truth"] in letters
            assert len(set(r["options"])) == len(r["options"])
        json.dumps(r)


def test_only_seen_static_objects_are_named(records: list[dict], metas: dict) -> None:
    for r in records:
        meta = metas[r["scene_name"]]
        for name in _names(r):
            objs = _instances(meta, name)
            assert objs, (name, r["question"])
            assert all(_seen(o) and not o["dynamic"] for o in objs), (name, r["question"])


def test_numeric_answers_recomputed(records: list[dict], metas: dict) -> None:
    for r in (r for r in records if r["options"] is None):
        meta, kind, gt = metas[r["scene_name"]], r["question_type"], float(r["ground_truth"])
        names = _names(r)
        if kind == "object_counting":
            assert gt == len(_instances(meta, names[0])) >= 2
        elif kind == "object_size_estimation":
            (obj,) = _instances(meta, names[0])
            assert abs(gt - 100 * max(obj["size"])) <= 0.5 + 1e-6
        elif kind == "object_abs_distance":
            (a,), (b,) = _instances(meta, names[0]), _instances(meta, names[1])
            d = _sampled_distance(a, b)  # closest points of the boxes, not the centres
            assert gt - 0.05 - 1e-6 <= d <= gt + 0.05 + _grid_step(a, b)
            centres = float(np.linalg.norm(np.subtract(a["center"], b["center"])))
            assert d < centres
        elif kind == "room_size_estimation":
            walls = [o for o in meta["objects"] if o["class"] == "wall"]
            xs = sorted(o["center"][0] for o in walls if o["size"][0] < o["size"][1])
            ys = sorted(o["center"][1] for o in walls if o["size"][1] < o["size"][0])
            thick = min(min(o["size"][:2]) for o in walls)
            area = (xs[1] - xs[0] - thick) * (ys[1] - ys[0] - thick)
            assert abs(gt - area) <= 0.05 + 1e-6


def test_choice_answers_recomputed(records: list[dict], metas: dict) -> None:
    margin = QuestionConfig().direction_margin_deg
    for r in (r for r in records if r["options"] is not None):
        meta, kind, names = metas[r["scene_name"]], r["question_type"], _names(r)
        answer = _option(r)
        if kind == "object_rel_distance":
            *options, anchor = names
            (a,) = _instances(meta, anchor)
            dist = {n: min(_sampled_distance(a, o) for o in _instances(meta, n)) for n in options}
            ranked = sorted(options, key=dist.get)
            assert answer == ranked[0], (r["question"], dist)
            assert dist[ranked[1]] - dist[ranked[0]] >= 0.3 - 0.2  # the gap, minus grid slack
            assert [o.split(". ", 1)[1] for o in r["options"]] == options  # listed in option order
        elif kind.startswith("object_rel_direction"):
            (p,), (f,), (q,) = (_instances(meta, n) for n in names)
            angle = _angle(p["center"], f["center"], q["center"])
            side = "left" if angle > 0 else "right"
            assert margin <= abs(angle) <= 180 - margin or kind != "object_rel_direction_easy"
            if kind == "object_rel_direction_easy":
                assert answer == side
            elif kind == "object_rel_direction_medium":
                assert answer == ("back" if abs(angle) >= 135 else side)
                assert abs(abs(angle) - 135) >= margin and abs(angle) >= margin
            else:
                assert answer == ("front-" if abs(angle) < 90 else "back-") + side
                assert min(abs(angle), abs(abs(angle) - 90), 180 - abs(angle)) >= margin
        elif kind == "route_planning":
            assert answer == ", ".join(_walk_route(r, meta))
        elif kind == "obj_appearance_order":
            first = {
                n: min(
                    int(np.flatnonzero(np.asarray(o["pixels"]) >= THRESHOLD)[0])
                    for o in _instances(meta, n)
                )
                for n in names
            }
            order = sorted(names, key=first.get)
            assert answer == ", ".join(order)
            gaps = np.diff(sorted(first.values()))
            assert gaps.min() >= max(1, math.ceil(0.05 * FRAMES))


def _walk_route(record: dict, meta: dict) -> list[str]:
    """Walk the route of a route-planning question from its text; the turns it needs."""
    start, facing = _names(record)[:2]
    centre = {n: np.asarray(_instances(meta, n)[0]["center"][:2]) for n in _names(record)}
    steps = re.findall(r"\d+\. (\[please fill in\]|Go forward until the \w+)", record["question"])
    at, heading, turns = centre[start], centre[facing] - centre[start], []
    pending = False
    for step in steps:
        if step == "[please fill in]":
            pending = True
            continue
        goal = centre[step.rsplit(" ", 1)[1]]
        leg = goal - at
        assert np.linalg.norm(leg) >= 1.0
        angle = _angle(at, at + heading, goal)
        if pending:
            turns.append(
                "Turn Left" if 60 <= angle <= 120 else "Turn Right" if -120 <= angle <= -60
                else "Turn Back" if abs(angle) >= 150 else "ambiguous"
            )  # fmt: skip
        else:
            assert abs(angle) < 1e-6  # a step without a turn goes straight on
        pending = False
        at, heading = goal, leg
    return turns


# ---------------------------------------------------------------------- shuffling, splits, files
def test_same_seed_same_file_other_seed_other_letters(rooms: Path, records: list[dict]) -> None:
    again, _ = generate_questions(rooms, seed=0, config=QuestionConfig(per_scene=3))
    assert again == records
    other, _ = generate_questions(rooms, seed=1, config=QuestionConfig(per_scene=3))
    by_text = {(r["scene_name"], r["question"]): r for r in records if r["options"]}
    shared = [
        (by_text[(r["scene_name"], r["question"])], r)
        for r in other
        if (r["scene_name"], r["question"]) in by_text
    ]
    assert shared
    for a, b in shared:
        assert _option(a) == _option(b)  # the same answer ...
        assert {o[3:] for o in a["options"]} == {o[3:] for o in b["options"]}
    assert any(a["options"] != b["options"] for a, b in shared)  # ... under other letters
    letters = Counter(r["ground_truth"] for r in records if r["options"] and len(r["options"]) == 4)
    assert set(letters) == set("ABCD"), letters


def test_split_by_scene(rooms: Path, records: list[dict]) -> None:
    for r in records:
        assert r["split"] == scene_split(r["scene_name"], 0.2, 0)
    test, _ = generate_questions(rooms, seed=0, split="test", test_fraction=0.5)
    train, _ = generate_questions(rooms, seed=0, split="train", test_fraction=0.5)
    assert {r["split"] for r in test} <= {"test"} and {r["split"] for r in train} <= {"train"}
    assert not {r["scene_name"] for r in test} & {r["scene_name"] for r in train}
    names = [f"scene-{i}" for i in range(2000)]
    share = np.mean([scene_split(n, 0.25, 7) == "test" for n in names])
    assert 0.2 < share < 0.3
    assert scene_split("a", 0.0) == "train" and scene_split("a", 1.0) == "test"


def test_non_rooms_are_skipped(tmp_path: Path) -> None:
    generate_dataset(tmp_path / "objects", "object", 2, 4, 24, 32, seed=0, progress=False)
    out, stats = generate_questions(tmp_path / "objects")
    assert out == [] and len(stats.skipped) == 2


def test_cli_writes_jsonl(rooms: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "q" / "questions.jsonl"
    assert vfm3d_main(["spatial", "questions", "--data", str(rooms), "--out", str(out),
                       "--seed", "0", "--per-scene", "3"]) == 0  # fmt: skip
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    written, _ = generate_questions(rooms, seed=0, config=QuestionConfig(per_scene=3))
    assert lines == written
    assert "questions about 4 scenes" in capsys.readouterr().out
    assert vfm3d_main(["spatial", "questions", "--data", str(rooms), "--out", str(out),
                       "--types", "object_counting"]) == 0  # fmt: skip
    assert {json.loads(x)["question_type"] for x in out.read_text().splitlines()} == {
        "object_counting"
    }
    assert vfm3d_main(["spatial", "questions", "--data", str(rooms), "--out", str(out),
                       "--per-scene", "0"]) == 2  # fmt: skip
    with pytest.raises(SystemExit):
        vfm3d_main(["spatial"])


# ---------------------------------------------------------------------- filters on made-up scenes
def _obj(
    cls: str, center, size=(0.5, 0.5, 0.8), first: int = 0, frames: int = 40, pixels: int = 100
) -> dict:
    seen = [0] * first + [pixels] * (frames - first)
    return {"class": cls, "center": [*center[:2], size[2] / 2], "size": list(size), "yaw": 0.0,
            "pixels": seen, "dynamic": False}  # fmt: skip


def _facts(objects: list[dict], frames: int = 40) -> SceneFacts:
    meta = {
        "id": "made-up",
        "layout": "room",
        "frame_indices": list(range(frames)),
        "objects": objects,
    }
    return SceneFacts.from_meta(meta, (48, 64))


def test_unseen_instances_exclude_their_category() -> None:
    objects = [
        _obj("chair", (0, 0)),
        _obj("chair", (2, 0), pixels=0),  # never seen: chairs cannot be counted or named
        _obj("lamp", (3, 3)),
        _obj("lamp", (3, -3)),
        _obj("table", (-3, 0)),
        _obj("sofa", (0, 3)),
        _obj("tv", (0, -3)),
    ]
    questions = scene_questions(_facts(objects), seed=0)
    assert questions
    for q in questions:
        assert "chair" not in q.question
    counts = [q for q in questions if q.question_type == "object_counting"]
    assert [q.question for q in counts] == ["How many lamp(s) are in this room?"]
    assert counts[0].ground_truth == "2"


def test_near_ties_are_filtered() -> None:
    # anchor at the origin; tv and sofa both 2.0 m away (a tie): never a closest-object question
    # whose two nearest options are the tie
    objects = [
        _obj("table", (0, 0)),
        _obj("tv", (2.5, 0)),
        _obj("sofa", (0, 2.5)),
        _obj("bed", (0, -6)),
        _obj("lamp", (-6, 0)),
        _obj("box", (6, 6)),
    ]
    facts = _facts(objects)
    questions = scene_questions(facts, seed=0, question_types=["object_rel_distance"],
                                config=QuestionConfig(per_scene=50))  # fmt: skip
    about_table = [q for q in questions if "closest to the table" in q.question]
    assert about_table
    for q in about_table:
        named = re.search(r"\((.+)\)", q.question).group(1).split(", ")
        assert not {"tv", "sofa"} <= set(named)
    # all objects appear at frame 0: appearance order is never asked
    assert not scene_questions(facts, seed=0, question_types=["obj_appearance_order"])
    staggered = [_obj(o["class"], o["center"], first=3 * i) for i, o in enumerate(objects)]
    asked = scene_questions(_facts(staggered), seed=0, question_types=["obj_appearance_order"])
    assert asked and all(q.ground_truth in "ABCD" for q in asked)
    nearly = [
        _obj(o["class"], o["center"], first=i) for i, o in enumerate(objects)
    ]  # 1 frame apart
    assert not scene_questions(_facts(nearly), seed=0, question_types=["obj_appearance_order"])


def test_direction_and_turn_boundaries() -> None:
    easy, medium, hard = (f"object_rel_direction_{x}" for x in ("easy", "medium", "hard"))
    assert direction_answer(easy, 30, 15) == "left" and direction_answer(easy, -30, 15) == "right"
    assert direction_answer(easy, 10, 15) is None and direction_answer(easy, 170, 15) is None
    assert (
        direction_answer(medium, 140, 1) == "back" and direction_answer(medium, -100, 15) == "right"
    )
    assert direction_answer(medium, 130, 15) is None
    assert (
        direction_answer(hard, 45, 15) == "front-left"
        and direction_answer(hard, -135, 15) == "back-right"
    )
    assert direction_answer(hard, 85, 15) is None and direction_answer(hard, 5, 15) is None
    assert turn_name(90, 30) == "Turn Left" and turn_name(-70, 30) == "Turn Right"
    assert turn_name(175, 30) == "Turn Back" and turn_name(-155, 30) == "Turn Back"
    assert turn_name(40, 30) is None and turn_name(135, 30) is None


def test_scene_facts_from_a_file_header(rooms: Path, metas: dict) -> None:
    folder = ClipFolder(rooms)
    cid = folder.ids[0]
    facts = read_scene_facts(folder.path_of(cid))
    assert facts.min_pixels == THRESHOLD and facts.num_frames == FRAMES
    assert facts.layout == "room" and facts.room_area is not None
    assert sorted(facts.by_category) == sorted(
        {o["class"] for o in metas[cid]["objects"]} - {"wall"}
    )


def test_every_room_has_repeats(metas: dict) -> None:
    """The room kind is furnished for counting: chairs around a table and repeated classes."""
    for meta in metas.values():
        counts = Counter(o["class"] for o in meta["objects"] if o["class"] != "wall")
        assert sum(1 for n in counts.values() if n >= 2) >= 2, counts
        assert meta["kind"] == "room" and meta["layout"] == "room" and meta["base_kind"] == "scene"


def test_question_types_argument() -> None:
    facts = _facts([_obj("lamp", (3, 3)), _obj("lamp", (-3, 3))])
    with pytest.raises(ValueError, match="unknown question types"):
        scene_questions(facts, question_types=["object_count"])
    got = scene_questions(facts, question_types=["object_counting"])
    assert got and all(q.question_type == "object_counting" for q in got)
