"""`vfm3d spatial`: spatial questions (VSI-Bench tasks) from world clips.

Examples (furnished rooms: ``vfm3d.world.generate_dataset("data/rooms", "room", 40, 81, 224,
224, seed=0)``; ``vfm3d world --kind room`` once the world command lists that kind; the room
clips of a ``--kind scene`` folder work too)::

    vfm3d spatial questions --data data/rooms --out questions.jsonl --seed 0 --per-scene 4
    vfm3d spatial questions --data data/rooms --out test.jsonl --split test

Writes one VSI-Bench record per line (``id, dataset, scene_name, question_type, question,
options, ground_truth`` + ``split``; see docs/spatial.md) and prints the count per type.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    questions = actions.add_parser(
        "questions",
        help="generate VSI-Bench's 8 task types from the room clips of a world folder",
        description="Generate VSI-Bench questions (official types, phrasing and record format) "
        "from the room clips of a world dataset folder; other layouts are skipped.",
    )
    questions.add_argument("--data", required=True, help="world dataset folder (index.json)")
    questions.add_argument("--out", required=True, help="output .jsonl file")
    questions.add_argument(
        "--seed", type=int, default=0, help="seed of option shuffling, sampling and the split"
    )
    questions.add_argument(
        "--per-scene",
        type=int,
        default=4,
        help="at most N questions of each question type per scene (default 4)",
    )
    questions.add_argument(
        "--split",
        choices=["all", "train", "test"],
        default="all",
        help="write the scenes of one part of the split by scene (default all; every record "
        "names its part)",
    )
    questions.add_argument(
        "--test-fraction",
        type=float,
        default=0.2,
        help="fraction of scenes in the test part (default 0.2)",
    )
    questions.add_argument(
        "--seen-fraction",
        type=float,
        default=0.005,
        help="an object is seen when it covers this fraction of a frame in some frame "
        "(default 0.005)",
    )
    questions.add_argument(
        "--types", nargs="+", default=None, metavar="TYPE", help="only these question types"
    )


def main(args: argparse.Namespace) -> int:
    if args.action == "questions":
        return _questions(args)
    raise ValueError(f"unknown action {args.action!r}")  # pragma: no cover - argparse checks


def _questions(args: argparse.Namespace) -> int:
    from vfm3d.spatial.questions import QuestionConfig, generate_questions, write_jsonl

    if args.per_scene < 1:
        raise ValueError(f"--per-scene must be >= 1, got {args.per_scene}")
    if not 0.0 <= args.test_fraction <= 1.0:
        raise ValueError(f"--test-fraction must lie in [0, 1], got {args.test_fraction}")
    config = QuestionConfig(per_scene=args.per_scene, seen_fraction=args.seen_fraction)
    records, stats = generate_questions(
        args.data,
        seed=args.seed,
        config=config,
        split=args.split,
        test_fraction=args.test_fraction,
        question_types=args.types,
    )
    path = write_jsonl(records, args.out)
    print(f"wrote {len(records)} questions about {stats.scenes} scenes to {path}")
    for kind, count in stats.per_type.items():
        print(f"  {kind}: {count}")
    if stats.per_split:
        print("  split: " + ", ".join(f"{k} {v}" for k, v in sorted(stats.per_split.items())))
    if stats.skipped:
        print(f"skipped {len(stats.skipped)} clips that are not rooms")
    if not records:
        print("no questions: the folder holds no room clips with enough seen objects")
    return 0
