"""VSI-Bench's 8 task types generated from world clips, in VSI-Bench's record format.

Every record is a VSI-Bench test record: ``id`` (int, running over the file), ``dataset``
(``"world"``), ``scene_name`` (the clip id), ``question_type`` (an official name), ``question``
(VSI-Bench's phrasing, `vfm3d.spatial.prompts.TEMPLATES`), ``options`` (``["A. ...", ...]``, or
None for numeric types) and ``ground_truth`` (the option letter, or the number as a string),
plus ``split`` (``"train"`` / ``"test"``, by scene; readers of VSI-Bench ignore it).

What is asked (facts of `vfm3d.spatial.scene.SceneFacts`: only categories whose every instance
is seen in the video and static; "unique" = one instance in the scene):

=============================  ==============================================================
question_type                   answer, and what is filtered out as ambiguous
=============================  ==============================================================
object_counting                 instances of a usable category with 2 or more
object_abs_distance             closest-point distance of two unique objects' boxes, metres,
                                1 decimal; pairs closer than ``min_abs_distance_m`` are skipped
object_size_estimation          longest box side of a unique object, whole centimetres
room_size_estimation            floor area inside the walls, m², 1 decimal (rooms only)
object_rel_distance             which of 4 usable categories is closest (closest points, to the
                                closest instance) to a unique anchor; the runner-up must be
                                ``rel_distance_gap_m`` and ``rel_distance_gap_rel`` farther
object_rel_direction_easy       left / right of the facing object, standing at the centre of
                                one unique object and facing another's centre (angles between
                                box centres on the floor); skipped within
                                ``direction_margin_deg`` of straight ahead or behind
object_rel_direction_medium     left / right / back (back: a turn of 135 degrees or more);
                                skipped within the margin of ahead or of 135 degrees
object_rel_direction_hard       front-left / front-right / back-left / back-right; skipped
                                within the margin of a quadrant boundary
route_planning                  the 1-2 turns of a route through unique objects (left / right
                                within ``turn_margin_deg`` of 90 degrees, back within it of
                                180; any other turn rejects the route; legs of at least
                                ``route_min_leg_m``); distractors are other turn sequences
obj_appearance_order            order of the first frames where 4 usable categories are seen;
                                first frames closer than ``appearance_gap`` of the clip are ties
=============================  ==============================================================

Distances are between **closest points** of the objects' boxes (VSI-Bench: "measuring from the
closest point of each object"); directions are between **box centres**. Choice options are
shuffled with a generator seeded by (seed, scene name, question type), so the same seed gives
the same file and one scene's questions do not depend on the others. Obstacles between route
waypoints are not considered (VSI-Bench's routes were drawn by people).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vfm3d.metrics.vsi import QUESTION_TYPES
from vfm3d.spatial.prompts import (
    DIRECTION_CHOICES,
    OPTION_LETTERS,
    ROUTE_TURNS,
    TEMPLATES,
    format_options,
)
from vfm3d.spatial.scene import (
    SEEN_FRACTION,
    ObjectBox,
    SceneFacts,
    box_distance,
    category_distance,
    ground_distance,
    signed_angle_deg,
)

RECORD_KEYS = (
    "id",
    "dataset",
    "scene_name",
    "question_type",
    "question",
    "options",
    "ground_truth",
)
"""The fields of a VSI-Bench test record, in order."""
SPLITS = ("train", "test")


@dataclass(frozen=True)
class QuestionConfig:
    """Limits and ambiguity filters of question generation (see the module table)."""

    per_scene: int = 4
    """Most questions of each question type per scene (relative-direction levels count apart)."""
    seen_fraction: float = SEEN_FRACTION
    min_abs_distance_m: float = 0.5
    rel_distance_gap_m: float = 0.3
    rel_distance_gap_rel: float = 0.15
    direction_min_m: float = 0.5
    """Least floor distance from the standing object to the facing and the queried object."""
    direction_margin_deg: float = 15.0
    turn_margin_deg: float = 30.0
    route_min_leg_m: float = 1.0
    appearance_gap: float = 0.05
    """Least gap between first appearances, as a fraction of the clip's frames (at least 1)."""
    tries: int = 200
    """Random draws per scene and type for the sampled types (relative distance, routes,
    appearance order)."""

    def __post_init__(self) -> None:
        if int(self.per_scene) < 1:
            raise ValueError(f"per_scene must be >= 1, got {self.per_scene}")
        if not 0.0 < float(self.seen_fraction) < 1.0:
            raise ValueError(f"seen_fraction must lie in (0, 1), got {self.seen_fraction}")


@dataclass(frozen=True)
class Question:
    """One generated question; `record` gives its VSI-Bench record.

    ``objects``: indices into the clip's ``meta["objects"]`` of the instances it is about (in
    the order the question names them); ``value``: the exact answer before rounding or
    lettering (a number, or the answer text of a choice question).
    """

    question_type: str
    question: str
    ground_truth: str
    options: tuple[str, ...] | None = None
    objects: tuple[int, ...] = ()
    value: float | str | None = None

    def record(self, record_id: int, dataset: str, scene_name: str) -> dict[str, Any]:
        """The VSI-Bench record (`RECORD_KEYS`)."""
        return {
            "id": int(record_id),
            "dataset": dataset,
            "scene_name": scene_name,
            "question_type": self.question_type,
            "question": self.question,
            "options": None if self.options is None else list(self.options),
            "ground_truth": self.ground_truth,
        }


@dataclass
class GenerationStats:
    """What `generate_questions` read and wrote."""

    scenes: int = 0
    skipped: dict[str, str] = field(default_factory=dict)
    """clip id -> reason, for clips that are not rooms."""
    per_type: dict[str, int] = field(default_factory=dict)
    per_split: dict[str, int] = field(default_factory=dict)


# ---------------------------------------------------------------------- randomness
def _scene_words(scene_name: str) -> list[int]:
    digest = hashlib.sha256(scene_name.encode("utf-8")).digest()
    return [int.from_bytes(digest[i : i + 4], "little") for i in (0, 4)]


def scene_rng(seed: int, scene_name: str, question_type: str) -> np.random.Generator:
    """The generator of one scene's questions of one type (independent of other scenes)."""
    kind = QUESTION_TYPES.index(question_type) if question_type in QUESTION_TYPES else 99
    return np.random.default_rng([int(seed), *_scene_words(scene_name), kind])


def scene_split(scene_name: str, test_fraction: float, seed: int = 0) -> str:
    """``"test"`` for about ``test_fraction`` of scenes, else ``"train"``: a stable function of
    (seed, scene name), so a scene's split never depends on the other scenes."""
    if not 0.0 <= float(test_fraction) <= 1.0:
        raise ValueError(f"test_fraction must lie in [0, 1], got {test_fraction}")
    digest = hashlib.sha256(f"split:{int(seed)}:{scene_name}".encode()).digest()
    u = int.from_bytes(digest[:8], "little") / 2.0**64
    return "test" if u < float(test_fraction) else "train"


def _shuffled(rng: np.random.Generator, items: Sequence[Any]) -> list[Any]:
    return [items[i] for i in rng.permutation(len(items))]


def _lettered(
    rng: np.random.Generator, choices: Sequence[str], answer: str
) -> tuple[tuple[str, ...], str, list[str]]:
    """Shuffle ``choices`` -> (option strings, letter of ``answer``, choices in option order)."""
    ordered = _shuffled(rng, list(choices))
    return tuple(format_options(ordered)), OPTION_LETTERS[ordered.index(answer)], ordered


# ---------------------------------------------------------------------- numeric types
def object_counting(
    facts: SceneFacts, rng: np.random.Generator, cfg: QuestionConfig
) -> list[Question]:
    """How many instances of a usable category with at least two."""
    usable = facts.usable
    names = [n for n, objs in usable.items() if len(objs) >= 2]
    out = []
    for name in _shuffled(rng, names)[: cfg.per_scene]:
        objs = usable[name]
        text = TEMPLATES["object_counting"].format(category=name)
        ids = tuple(o.index for o in objs)
        out.append(Question("object_counting", text, str(len(objs)), None, ids, float(len(objs))))
    return out


def object_abs_distance(
    facts: SceneFacts, rng: np.random.Generator, cfg: QuestionConfig
) -> list[Question]:
    """Closest-point distance (m, 1 decimal) between two unique objects."""
    unique = facts.unique
    out = []
    for a, b in _shuffled(rng, list(itertools.combinations(sorted(unique), 2))):
        if len(out) >= cfg.per_scene:
            break
        d = box_distance(unique[a], unique[b])
        if d < cfg.min_abs_distance_m:
            continue
        first, second = (a, b) if rng.uniform() < 0.5 else (b, a)
        text = TEMPLATES["object_abs_distance"].format(object_1=first, object_2=second)
        ids = (unique[first].index, unique[second].index)
        out.append(Question("object_abs_distance", text, f"{d:.1f}", None, ids, d))
    return out


def object_size_estimation(
    facts: SceneFacts, rng: np.random.Generator, cfg: QuestionConfig
) -> list[Question]:
    """Longest box side of a unique object, whole centimetres."""
    unique = facts.unique
    out = []
    for name in _shuffled(rng, sorted(unique))[: cfg.per_scene]:
        obj = unique[name]
        cm = obj.longest_side * 100.0
        text = TEMPLATES["object_size_estimation"].format(category=name)
        out.append(Question("object_size_estimation", text, str(round(cm)), None, (obj.index,), cm))
    return out


def room_size_estimation(
    facts: SceneFacts, rng: np.random.Generator, cfg: QuestionConfig
) -> list[Question]:
    """The room's floor area inside its walls (m², 1 decimal); one question per room."""
    del rng, cfg
    area = facts.room_area
    if area is None:
        return []
    text = TEMPLATES["room_size_estimation"]
    return [Question("room_size_estimation", text, f"{area:.1f}", None, (), area)]


# ---------------------------------------------------------------------- choice types
def object_rel_distance(
    facts: SceneFacts, rng: np.random.Generator, cfg: QuestionConfig
) -> list[Question]:
    """Which of 4 usable categories is closest to a unique anchor (clear runner-up gap)."""
    unique, usable = facts.unique, facts.usable
    out = []
    for anchor in _shuffled(rng, sorted(unique)):
        if len(out) >= cfg.per_scene:
            break
        names = [n for n in usable if n != anchor]
        if len(names) < 4:
            continue
        dist = {n: category_distance(unique[anchor], usable[n]) for n in names}
        for _ in range(max(1, cfg.tries // 10)):
            pick = [names[i] for i in rng.choice(len(names), size=4, replace=False)]
            ranked = sorted(pick, key=lambda n: dist[n])
            d1, d2 = dist[ranked[0]], dist[ranked[1]]
            if d2 - d1 >= cfg.rel_distance_gap_m and d2 >= (1.0 + cfg.rel_distance_gap_rel) * d1:
                break
        else:
            continue
        options, letter, ordered = _lettered(rng, pick, ranked[0])
        text = TEMPLATES["object_rel_distance"].format(choices=", ".join(ordered), category=anchor)
        ids = (unique[anchor].index, *(o.index for n in ordered for o in usable[n]))
        out.append(Question("object_rel_distance", text, letter, options, ids, ranked[0]))
    return out


def direction_answer(level: str, angle_deg: float, margin_deg: float) -> str | None:
    """The answer of a relative-direction question of ``level`` for the signed angle
    (`vfm3d.spatial.scene.signed_angle_deg`, left positive), or None when it is within
    ``margin_deg`` of a boundary (ambiguous)."""
    a = abs(angle_deg)
    side = "left" if angle_deg > 0 else "right"
    if level == "object_rel_direction_easy":
        return side if margin_deg <= a <= 180.0 - margin_deg else None
    if level == "object_rel_direction_medium":
        if a < margin_deg or abs(a - 135.0) < margin_deg:
            return None
        return "back" if a >= 135.0 else side
    if level == "object_rel_direction_hard":
        if min(a, abs(a - 90.0), 180.0 - a) < margin_deg:
            return None
        return ("front-" if a < 90.0 else "back-") + side
    raise ValueError(f"not a relative-direction level: {level!r}")


def _rel_direction(level: str):
    def generate(
        facts: SceneFacts, rng: np.random.Generator, cfg: QuestionConfig
    ) -> list[Question]:
        unique = facts.unique
        triples = list(itertools.permutations(sorted(unique), 3))
        out = []
        for p, f, q in _shuffled(rng, triples):
            if len(out) >= cfg.per_scene:
                break
            pc, fc, qc = unique[p].center, unique[f].center, unique[q].center
            if min(ground_distance(pc, fc), ground_distance(pc, qc)) < cfg.direction_min_m:
                continue
            answer = direction_answer(level, signed_angle_deg(pc, fc, qc), cfg.direction_margin_deg)
            if answer is None:
                continue
            options, letter, _ = _lettered(rng, DIRECTION_CHOICES[level], answer)
            text = TEMPLATES[level].format(positioning=p, orienting=f, querying=q)
            ids = (unique[p].index, unique[f].index, unique[q].index)
            out.append(Question(level, text, letter, options, ids, answer))
        return out

    generate.__name__ = level
    generate.__doc__ = f"{level}: standing at one unique object, facing a second, the third's side."
    return generate


def turn_name(angle_deg: float, margin_deg: float) -> str | None:
    """``"Turn Left"`` / ``"Turn Right"`` / ``"Turn Back"`` for a signed turn angle (left
    positive) within ``margin_deg`` of 90 / -90 / 180 degrees, else None (ambiguous)."""
    if abs(angle_deg - 90.0) <= margin_deg:
        return "Turn Left"
    if abs(angle_deg + 90.0) <= margin_deg:
        return "Turn Right"
    if abs(angle_deg) >= 180.0 - margin_deg:
        return "Turn Back"
    return None


def route_planning(
    facts: SceneFacts, rng: np.random.Generator, cfg: QuestionConfig
) -> list[Question]:
    """Fill the 1-2 turns of a route through unique objects (see the module table)."""
    unique = facts.unique
    names = sorted(unique)
    out: list[Question] = []
    seen_routes: set[tuple[Any, ...]] = set()
    for _ in range(cfg.tries):
        if len(out) >= cfg.per_scene:
            break
        blanks = int(rng.integers(1, 3))
        forward_first = bool(rng.uniform() < 0.5)
        if len(names) < blanks + 2:
            continue
        route = [names[i] for i in rng.choice(len(names), size=blanks + 2, replace=False)]
        key = (forward_first, *route)
        if key in seen_routes:
            continue
        seen_routes.add(key)
        built = _route(unique, route, forward_first, cfg)
        if built is None:
            continue
        steps, turns = built
        correct = ", ".join(turns)
        others = [", ".join(t) for t in itertools.product(ROUTE_TURNS, repeat=len(turns))]
        others = [o for o in others if o != correct]
        distract = [
            others[i] for i in rng.choice(len(others), size=min(3, len(others)), replace=False)
        ]
        options, letter, _ = _lettered(rng, [correct, *distract], correct)
        text = TEMPLATES["route_planning"].format(
            start=route[0], facing=route[1], goal=route[-1], steps=steps
        )
        ids = tuple(unique[n].index for n in route)
        out.append(Question("route_planning", text, letter, options, ids, correct))
    return out


def _route(
    unique: dict[str, ObjectBox], route: Sequence[str], forward_first: bool, cfg: QuestionConfig
) -> tuple[str, list[str]] | None:
    """The numbered steps and the turns of ``route`` = [start, facing, targets...]; with
    ``forward_first`` the robot first walks to the facing object (then the targets follow it),
    else it turns at the start. None when a turn is ambiguous or a leg too short."""
    at = unique[route[0]].center[:2]
    ahead = unique[route[1]].center[:2]
    if ground_distance(at, ahead) < cfg.direction_min_m:
        return None
    steps, turns = [], []
    targets = list(route[1:]) if forward_first else list(route[2:])
    for k, name in enumerate(targets):
        goal = unique[name].center[:2]
        if ground_distance(at, goal) < cfg.route_min_leg_m:
            return None
        if not (forward_first and k == 0):
            turn = turn_name(signed_angle_deg(at, ahead, goal), cfg.turn_margin_deg)
            if turn is None:
                return None
            turns.append(turn)
            steps.append("[please fill in]")
        steps.append(f"Go forward until the {name}")
        ahead = goal + (goal - at)  # keep facing the way just walked
        at = goal
    numbered = " ".join(f"{i + 1}. {step}" for i, step in enumerate(steps)) + "."
    return numbered, turns


def obj_appearance_order(
    facts: SceneFacts, rng: np.random.Generator, cfg: QuestionConfig
) -> list[Question]:
    """Order of first appearance of 4 usable categories (no near-ties)."""
    usable = facts.usable
    first = {n: facts.category_first_seen(n) for n in usable}
    names = [n for n in usable if first[n] is not None]
    gap = max(1, math.ceil(cfg.appearance_gap * facts.num_frames))
    out: list[Question] = []
    used: set[frozenset[str]] = set()
    if len(names) < 4:
        return out
    for _ in range(cfg.tries):
        if len(out) >= cfg.per_scene:
            break
        pick = [names[i] for i in rng.choice(len(names), size=4, replace=False)]
        if frozenset(pick) in used:
            continue
        used.add(frozenset(pick))
        order = sorted(pick, key=lambda n: first[n])  # type: ignore[arg-type, return-value]
        frames = [first[n] for n in order]
        if min(b - a for a, b in itertools.pairwise(frames)) < gap:  # type: ignore[operator]
            continue
        correct = ", ".join(order)
        perms = [", ".join(p) for p in itertools.permutations(order)]
        perms = [p for p in perms if p != correct]
        distract = [perms[i] for i in rng.choice(len(perms), size=3, replace=False)]
        options, letter, _ = _lettered(rng, [correct, *distract], correct)
        asked = _shuffled(rng, pick)
        text = TEMPLATES["obj_appearance_order"].format(choices=", ".join(asked))
        ids = tuple(o.index for n in asked for o in usable[n])
        out.append(Question("obj_appearance_order", text, letter, options, ids, correct))
    return out


Generator = Callable[[SceneFacts, np.random.Generator, QuestionConfig], list[Question]]
GENERATORS: dict[str, Generator] = {
    "object_counting": object_counting,
    "object_abs_distance": object_abs_distance,
    "object_size_estimation": object_size_estimation,
    "room_size_estimation": room_size_estimation,
    "object_rel_distance": object_rel_distance,
    "object_rel_direction_easy": _rel_direction("object_rel_direction_easy"),
    "object_rel_direction_medium": _rel_direction("object_rel_direction_medium"),
    "object_rel_direction_hard": _rel_direction("object_rel_direction_hard"),
    "route_planning": route_planning,
    "obj_appearance_order": obj_appearance_order,
}
"""One generator per VSI-Bench ``question_type``, in the official order of `QUESTION_TYPES`."""


def scene_questions(
    facts: SceneFacts,
    seed: int = 0,
    config: QuestionConfig | None = None,
    question_types: Iterable[str] | None = None,
) -> list[Question]:
    """All questions of one scene, type by type (`GENERATORS` order)."""
    cfg = QuestionConfig() if config is None else config
    wanted = list(GENERATORS) if question_types is None else list(question_types)
    unknown = [t for t in wanted if t not in GENERATORS]
    if unknown:
        raise ValueError(f"unknown question types {unknown}; VSI-Bench has {list(GENERATORS)}")
    out: list[Question] = []
    for kind in GENERATORS:
        if kind in wanted:
            out += GENERATORS[kind](facts, scene_rng(seed, facts.scene_name, kind), cfg)
    return out


# ---------------------------------------------------------------------- folders and files
def read_scene_facts(
    path: str | os.PathLike[str], seen_fraction: float = SEEN_FRACTION
) -> SceneFacts:
    """`SceneFacts` of one ``.safetensors`` world clip, reading only its header (meta and the
    frame size), not its tensors."""
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as handle:
        metadata = handle.metadata() or {}
        shape = handle.get_slice("frames").get_shape()
    meta = json.loads(metadata.get("meta", "{}"))
    return SceneFacts.from_meta(meta, (int(shape[1]), int(shape[2])), seen_fraction)


def generate_questions(
    data: str | os.PathLike[str],
    seed: int = 0,
    config: QuestionConfig | None = None,
    split: str = "all",
    test_fraction: float = 0.2,
    dataset: str = "world",
    question_types: Iterable[str] | None = None,
) -> tuple[list[dict[str, Any]], GenerationStats]:
    """VSI-Bench records for the room clips of the world folder ``data`` (`vfm3d.clip.ClipFolder`).

    Scenes are taken in the folder's order; ``split`` (``"all"``, ``"train"``, ``"test"``) keeps
    the scenes of that part of `scene_split` (``test_fraction``, ``seed``); every record carries
    its ``split``. Clips whose layout is not a room (objects, streets) are skipped and counted
    in the stats.
    """
    from vfm3d.clip import ClipFolder

    if split not in ("all", *SPLITS):
        raise ValueError(f"split must be 'all', 'train' or 'test', got {split!r}")
    cfg = QuestionConfig() if config is None else config
    types = None if question_types is None else list(question_types)
    folder = ClipFolder(data)
    records: list[dict[str, Any]] = []
    stats = GenerationStats()
    for clip_id in folder.ids:
        facts = read_scene_facts(folder.path_of(clip_id), cfg.seen_fraction)
        facts.scene_name = clip_id
        if facts.layout != "room":
            stats.skipped[clip_id] = f"layout {facts.layout!r} is not a room"
            continue
        part = scene_split(clip_id, test_fraction, seed)
        if split != "all" and part != split:
            continue
        stats.scenes += 1
        for question in scene_questions(facts, seed, cfg, types):
            record = question.record(len(records), dataset, clip_id)
            record["split"] = part
            records.append(record)
            stats.per_type[question.question_type] = (
                stats.per_type.get(question.question_type, 0) + 1
            )
            stats.per_split[part] = stats.per_split.get(part, 0) + 1
    return records, stats


def write_jsonl(records: Iterable[dict[str, Any]], path: str | os.PathLike[str]) -> Path:
    """Write ``records`` one JSON object per line (atomically: a crash leaves no half file)."""
    from vfm3d.utils.atomic import atomic_write_text

    out = Path(path)
    if out.parent and not out.parent.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    return out
