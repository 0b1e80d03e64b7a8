"""`vfm3d spatial`: spatial questions (VSI-Bench tasks) from world clips.

Examples (furnished rooms: ``vfm3d world --kind room``, or ``vfm3d.world.generate_dataset(
"data/rooms", "room", 40, 81, 224, 224, seed=0)``; the room clips of a ``--kind scene`` folder
work too)::

    vfm3d spatial questions --data data/rooms --out questions.jsonl --seed 0 --per-scene 4
    vfm3d spatial questions --data data/rooms --out test.jsonl --split test

Writes one VSI-Bench record per line (``id, dataset, scene_name, question_type, question,
options, ground_truth`` + ``split``; see docs/spatial.md) and prints the count per type.

Evaluation (`vfm3d.spatial.evaluate`)::

    vfm3d spatial eval --model zoo/vgllm-mini --data data/rooms --frames 8 --out eval/vgllm
    vfm3d spatial eval --model zoo/vgllm-mini --data data/rooms --blind --out eval/blind
    vfm3d spatial eval --model frequency --data data/rooms --out eval/frequency
    vfm3d spatial eval --model zoo/vgllm-mini --bench vsi VSI-Bench --frames 16 --out eval/vsi

writes ``predictions.jsonl`` (each question's record + the raw ``prediction`` + its ``score``),
``scores.json`` (official aggregate per task and overall, bootstrap 95% intervals) and
``summary.md``, and prints the table; a rerun resumes.

Comparison (`vfm3d.spatial.compare`: seeds pooled per question, stratified bootstrap, paired
differences)::

    vfm3d spatial compare --out eval/table --reference no-geometry \
        --row vgllm-mini=eval/g0,eval/g1 --row no-geometry=eval/n0,eval/n1 --row chance=eval/c
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
    _add_eval(actions)
    from vfm3d.report.comparison import add_compare_arguments
    from vfm3d.spatial.compare import DEFAULT_METRICS

    add_compare_arguments(
        actions.add_parser(
            "compare",
            help="one VSI table of several eval outputs (seeds pooled, bootstrap, differences)",
            description="One VSI-Bench table (x100) of several `vfm3d spatial eval` outputs on "
            "the same questions: per-question scores averaged over each row's seeds, stratified "
            "bootstrap intervals over questions, paired differences against --reference.",
        ),
        "spatial eval",
        DEFAULT_METRICS,
    )


def _add_eval(actions: argparse._SubParsersAction) -> None:
    ev = actions.add_parser(
        "eval",
        help="answer VSI-style questions with a model (or a baseline) and score them",
        description="Evaluate a VG-LLM model, or VSI-Bench's chance / frequency baseline, on the "
        "questions of world room clips (generated, or a records file) or on VSI-Bench in a local "
        "folder; writes predictions.jsonl, scores.json (official aggregate, bootstrap 95% "
        "intervals) and summary.md. Resumable.",
    )
    ev.add_argument(
        "--model",
        required=True,
        help="zoo/vgllm-mini, a VG-LLM model folder, or a baseline: chance | frequency",
    )
    where = ev.add_mutually_exclusive_group()
    where.add_argument("--data", default=None, help="world dataset folder (room clips)")
    where.add_argument(
        "--bench",
        nargs=2,
        default=None,
        metavar=("NAME", "ROOT"),
        help="a benchmark in a local folder: vsi ROOT (VSI-Bench's records + videos)",
    )
    ev.add_argument(
        "--questions",
        default=None,
        help="question records (.jsonl / .json / .parquet) instead of generating them",
    )
    ev.add_argument("--out", required=True, help="output folder (resumed if it holds a run)")
    ev.add_argument(
        "--frames",
        type=int,
        default=None,
        help="frames per question, sampled uniformly (default: the model's training count)",
    )
    ev.add_argument(
        "--blind", action="store_true", help="text only: the same prompts with no frames"
    )
    ev.add_argument(
        "--split",
        choices=["test", "train", "all"],
        default="test",
        help="world questions of this part of the split by scene (default test)",
    )
    ev.add_argument(
        "--test-fraction", type=float, default=0.2, help="test fraction of the split (0.2)"
    )
    ev.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of question generation, the split and the bootstrap (default 0)",
    )
    ev.add_argument(
        "--per-scene",
        type=int,
        default=8,
        help="generated questions: at most N of each type per scene (default 8, as training)",
    )
    ev.add_argument("--types", nargs="+", default=None, metavar="TYPE", help="only these types")
    train = ev.add_mutually_exclusive_group()
    train.add_argument(
        "--train-data",
        default=None,
        help="baselines: world folder whose every question is the train set",
    )
    train.add_argument("--train-questions", default=None, help="baselines: train question records")
    ev.add_argument("--batch", type=int, default=8, help="questions per generation call (8)")
    ev.add_argument(
        "--max-new-tokens", type=int, default=16, help="generation budget (default 16, VSI's)"
    )
    ev.add_argument(
        "--bootstrap", type=int, default=1000, help="bootstrap resamples (default 1000)"
    )
    ev.add_argument(
        "--numeric-answer",
        choices=["first_token", "first_number"],
        default="first_token",
        help="numeric answer extraction: the paper's first token (default) or lmms-eval's "
        "first number (since 2026-07)",
    )
    ev.add_argument("--device", default="cpu", help="torch device (default cpu)")
    ev.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ev.add_argument(
        "--overwrite", action="store_true", help="discard a previous evaluation in --out"
    )
    ev.add_argument("--no-progress", action="store_true")


def main(args: argparse.Namespace) -> int:
    if args.action == "questions":
        return _questions(args)
    if args.action == "eval":
        return _eval(args)
    if args.action == "compare":
        from vfm3d.spatial.compare import compare_main

        return compare_main(args)
    raise ValueError(f"unknown action {args.action!r}")  # pragma: no cover - argparse checks


def _eval(args: argparse.Namespace) -> int:
    from vfm3d.spatial.evaluate import evaluate, print_table, question_set

    bench = None
    if args.bench is not None:
        name, bench = args.bench
        if name.lower() != "vsi":
            raise ValueError(f"--bench: unknown benchmark {name!r} (supported: vsi)")
    if args.data is None and bench is None and args.questions is None:
        raise ValueError("pass --data DIR (and/or --questions FILE) or --bench vsi ROOT")
    if args.blind and args.model in ("chance", "frequency"):
        raise ValueError(f"--blind applies to models, not the {args.model} baseline")
    if args.per_scene < 1:
        raise ValueError(f"--per-scene must be >= 1, got {args.per_scene}")
    if not 0.0 <= args.test_fraction <= 1.0:
        raise ValueError(f"--test-fraction must lie in [0, 1], got {args.test_fraction}")
    if args.threads is not None:
        import torch

        torch.set_num_threads(max(1, int(args.threads)))
    questions = question_set(
        data=args.data,
        bench=bench,
        questions=args.questions,
        split=args.split,
        test_fraction=args.test_fraction,
        seed=args.seed,
        per_scene=args.per_scene,
        question_types=args.types,
        train_data=args.train_data,
        train_questions=args.train_questions,
    )
    result = evaluate(
        questions,
        args.out,
        model=args.model,
        num_frames=args.frames,
        blind=args.blind,
        batch=args.batch,
        max_new_tokens=args.max_new_tokens,
        bootstrap=args.bootstrap,
        seed=args.seed,
        numeric_answer=args.numeric_answer,
        device=args.device,
        progress=not args.no_progress,
        overwrite=args.overwrite,
    )
    print_table(result)
    print(f"wrote {args.out}/predictions.jsonl, scores.json, summary.md")
    return 0


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
