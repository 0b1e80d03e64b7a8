"""Evaluating spatial reasoning: a VG-LLM model, or VSI-Bench's baselines, on VSI-style questions.

`evaluate(questions, out, model)` answers every question of a `QuestionSet` and writes into
``out``:

- ``predictions.jsonl``: one line per question, in the question order: the question's record
  (``id``, ``dataset``, ``scene_name``, ``question_type``, ``question``, ``options``,
  ``ground_truth``, ...) plus ``prediction`` (the raw generated text, special tokens removed, not
  post-processed) and ``score`` (its official score, `vfm3d.metrics.vsi.score_answer`). Written
  atomically after every scene, so an interrupted run leaves a consistent file; a rerun with the
  same settings (``eval.json``) skips the ids already there (resumable) and a rerun with other
  settings is refused unless ``overwrite``.
- ``scores.json``: the official aggregate (`vfm3d.metrics.vsi.vsi_accuracy`'s: mean per
  ``question_type``, relative direction = mean of its three levels with a missing level counting
  0, ``overall`` = mean of the tasks present; fractions in [0, 1]), the question counts, and a
  bootstrap 95% interval of every entry (`bootstrap_intervals`: questions resampled with
  replacement, ``bootstrap`` times from ``seed``, within each ``question_type`` by default, and
  the official aggregate recomputed on each resample; the interval is the 2.5 / 97.5 percentile).
- ``summary.md``: the table (x100, as the paper prints it) and the settings.

Models (``model``):

- a VG-LLM folder (``zoo/vgllm-mini``, a `vfm3d.spatial.train.train_vgllm` folder, VG-LLM's
  release; `vfm3d.spatial.model.load_vgllm`): each question gets its scene's ``num_frames`` frames
  (world clips: `VGLLMProcessor.sample`, lmms-eval's uniform indices; VSI-Bench videos:
  `vfm3d.spatial.vsibench.load_video_frames`), the official prompt
  (`vfm3d.spatial.prompts.build_prompt`), greedy decoding of at most ``max_new_tokens`` (16, VSI's)
  (`vfm3d.spatial.model.generate_answers`). ``blind=True`` is the text-only protocol: the same
  prompt with **no frames** (no image tokens, no geometry; VSI-Bench's "vision disabled").
- ``"chance"`` (VSI-Bench's "Chance Level (Random)"): a multiple-choice question scores its
  expectation ``1 / len(options)`` (``prediction`` is null); a numeric one answers the mean ground
  truth of its ``question_type`` over the ``train`` questions and scores that answer's MRA.
- ``"frequency"`` (VSI-Bench's "Chance Level (Frequency)"): the most frequent answer of each
  ``question_type`` over the ``train`` questions. Numeric: the modal ground-truth value (ties:
  the smallest). Multiple choice: the most frequent answer *text* (the option the ground-truth
  letter names, ``"A. left"`` -> ``"left"``; ties: alphabetical), answered with its letter where
  the question offers it, else the type's most frequent ground-truth letter (world options are
  shuffled, so letters alone carry no signal; texts such as "left" or "Turn Back" do).

Train questions of the baselines (`question_set`): ``train_questions`` (a records file), else
``train_data`` (every question generated from that world folder), else the ``train`` part of the
split by scene (of the questions file, or generated from ``data``); with ``split="all"`` that part
overlaps the evaluated questions, so an explicit train source is then required. VSI-Bench has no
train split: its baselines use the benchmark's own records (as the paper's frequency baseline).
For ``chance`` and ``frequency``, ``scores.json`` equals `vsi_accuracy` of the predictions
except for chance's choice questions (expectations, not a drawn letter); for models it equals
`vsi_accuracy(predictions)` exactly (tested).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vfm3d.metrics.vsi import (
    CHOICE_TASKS,
    DIRECTION_LEVELS,
    NUMERIC_ANSWER_MODES,
    NUMERIC_TASKS,
    QUESTION_TYPES,
    TASKS,
    parse_float,
    score_answer,
)

BASELINES = ("chance", "frequency")
PREDICTIONS_FILE = "predictions.jsonl"
SCORES_FILE = "scores.json"
SUMMARY_FILE = "summary.md"
SETTINGS_FILE = "eval.json"
#: Resamples of the bootstrap intervals (default).
BOOTSTRAP_SAMPLES = 1000
#: Order of the score table: each task, the three direction levels after their task, overall.
TABLE_ORDER = (
    *TASKS[:5],
    "object_rel_direction",
    *DIRECTION_LEVELS,
    *TASKS[6:],
    "overall",
)

__all__ = [
    "BASELINES",
    "QuestionSet",
    "aggregate_scores",
    "bootstrap_intervals",
    "chance_predictions",
    "evaluate",
    "frequency_answers",
    "frequency_predictions",
    "question_set",
]


# --------------------------------------------------------------------------- questions
class WorldFrames:
    """Frames of world clips: ``record["scene_name"]`` is a clip id of the folder ``data``."""

    def __init__(self, data: str | os.PathLike[str]) -> None:
        from vfm3d.clip import ClipFolder

        self.root = Path(data)
        self.folder = ClipFolder(self.root)

    def check(self, records: Iterable[Mapping[str, Any]]) -> None:
        missing = sorted({str(r["scene_name"]) for r in records} - set(self.folder.ids))
        if missing:
            raise ValueError(f"{self.root}: questions name scenes it lacks: {missing[:3]}")

    def frames(self, record: Mapping[str, Any], num_frames: int, processor: Any) -> Any:
        """``[S, 3, H, W]`` in [0, 1]: ``num_frames`` uniformly sampled, at the processor's size."""
        clip = self.folder.load(str(record["scene_name"]))
        frames, _ = processor.sample(clip.frames, num_frames)
        return frames


class BenchFrames:
    """Frames of VSI-Bench videos (`vfm3d.spatial.vsibench.VSIBench`)."""

    def __init__(self, bench: Any) -> None:
        self.bench = bench

    def check(self, records: Iterable[Mapping[str, Any]]) -> None:
        for record in records:
            path = self.bench.video_path(str(record["dataset"]), str(record["scene_name"]))
            if not path.is_file():
                raise FileNotFoundError(f"VSI-Bench video not found: {path}")

    def frames(self, record: Mapping[str, Any], num_frames: int, processor: Any) -> Any:
        self.bench.num_frames = int(num_frames)
        clip = self.bench.load(record)
        return processor.prepare_frames(clip.frames)


@dataclass
class QuestionSet:
    """What an evaluation asks: ``records`` (evaluated), ``train`` (the baselines' statistics;
    None when unknown), ``frames`` (where each record's frames come from; None: none available)
    and ``source`` (a JSON description, recorded in ``eval.json`` and ``scores.json``)."""

    records: list[dict[str, Any]]
    train: list[dict[str, Any]] | None = None
    frames: WorldFrames | BenchFrames | None = None
    source: dict[str, Any] = field(default_factory=dict)


def _keep_types(records: list[dict[str, Any]], types: Sequence[str] | None) -> list[dict[str, Any]]:
    if types is None:
        return records
    unknown = [t for t in types if t not in QUESTION_TYPES]
    if unknown:
        raise ValueError(f"unknown question types {unknown}; VSI-Bench has {QUESTION_TYPES}")
    return [r for r in records if r["question_type"] in set(types)]


def _generated(
    data: str | os.PathLike[str],
    seed: int,
    per_scene: int,
    test_fraction: float,
    types: Sequence[str] | None,
) -> list[dict[str, Any]]:
    from vfm3d.spatial.questions import QuestionConfig, generate_questions

    records, _ = generate_questions(
        data,
        seed=seed,
        config=QuestionConfig(per_scene=per_scene),
        split="all",
        test_fraction=test_fraction,
        question_types=types,
    )
    return records


def question_set(
    data: str | os.PathLike[str] | None = None,
    bench: str | os.PathLike[str] | None = None,
    questions: str | os.PathLike[str] | None = None,
    split: str = "test",
    test_fraction: float = 0.2,
    seed: int = 0,
    per_scene: int = 8,
    question_types: Sequence[str] | None = None,
    train_data: str | os.PathLike[str] | None = None,
    train_questions: str | os.PathLike[str] | None = None,
) -> QuestionSet:
    """The questions of an evaluation (module docstring).

    World (``data`` and/or ``questions``): records from ``questions`` (a VSI-Bench records file;
    when its records carry ``split``, those of ``split``), else generated from ``data``'s room
    clips (`vfm3d.spatial.generate_questions` with ``seed``, ``per_scene``, ``test_fraction``; the
    scenes of ``split``: ``"test"``, ``"train"`` or ``"all"``); frames from ``data`` (none without
    it). VSI-Bench (``bench``, a local folder; ``questions`` its records file if not the default).

    Raises:
        ValueError: no questions; neither ``data``, ``bench`` nor ``questions``; both ``data`` and
            ``bench``; both train sources.
    """
    from vfm3d.spatial.vsibench import read_records

    if split not in ("test", "train", "all"):
        raise ValueError(f"split must be 'test', 'train' or 'all', got {split!r}")
    if data is not None and bench is not None:
        raise ValueError("pass the world data or a benchmark, not both")
    if train_data is not None and train_questions is not None:
        raise ValueError("pass one train source: train_data or train_questions")
    source: dict[str, Any] = {}
    train: list[dict[str, Any]] | None = None
    frames: WorldFrames | BenchFrames | None = None
    if bench is not None:
        from vfm3d.spatial.vsibench import VSIBench

        vsi = VSIBench(bench, questions, question_types=question_types)
        records = list(vsi.records)
        frames = BenchFrames(vsi)
        train = records
        source = {"bench": "vsi", "root": str(bench), "questions": str(vsi.questions_path)}
        source["train"] = "the benchmark's own records (VSI-Bench has no train split)"
    elif questions is not None or data is not None:
        if questions is not None:
            everything = _keep_types(read_records(questions), question_types)
            source = {"questions": str(questions)}
        else:
            assert data is not None
            everything = _generated(data, seed, per_scene, test_fraction, question_types)
            source = {
                "generated_from": str(data),
                "seed": int(seed),
                "per_scene": int(per_scene),
                "test_fraction": float(test_fraction),
            }
        if data is not None:
            frames = WorldFrames(data)
            source["data"] = str(data)
        has_split = any("split" in r for r in everything)
        if has_split and split != "all":
            records = [r for r in everything if r.get("split") == split]
        else:
            records = everything
        source["split"] = split if has_split else "all (records carry no split)"
        parts = [r for r in everything if r.get("split") == "train"]
        if split == "test" and parts:
            train = parts
            source["train"] = "the train part of the split by scene"
    else:
        raise ValueError("pass world data (and/or a questions file) or a benchmark folder")
    if question_types is not None:
        source["types"] = list(question_types)
    if train_questions is not None:
        train = [
            r
            for r in _keep_types(read_records(train_questions), question_types)
            if r.get("split", "train") == "train"
        ]
        source["train"] = f"{train_questions} (its train records)"
    elif train_data is not None:
        train = _generated(train_data, seed, per_scene, test_fraction, question_types)
        source["train"] = f"every question generated from {train_data}"
    if not records:
        raise ValueError(f"no questions to evaluate ({json.dumps(source)})")
    return QuestionSet(records=records, train=train, frames=frames, source=source)


# --------------------------------------------------------------------------- baselines
def _need_train(train: Sequence[Mapping[str, Any]] | None, model: str) -> list[Mapping[str, Any]]:
    if not train:
        raise ValueError(
            f"the {model} baseline needs train questions: evaluate the test split of the data, "
            "or pass train_data / train_questions (--train-data / --train-questions)"
        )
    return list(train)


_OPTION = re.compile(r"^\s*([A-Za-z])\s*[.)]\s*(.*)$", re.DOTALL)


def option_text(option: str) -> tuple[str, str]:
    """``"A. left"`` -> ``("A", "left")`` (an option without a letter: ``("", option)``)."""
    match = _OPTION.match(str(option))
    if match is None:
        return "", str(option).strip()
    return match.group(1).upper(), match.group(2).strip()


def answer_text(record: Mapping[str, Any]) -> str | None:
    """The text of the option a choice record's ground-truth letter names (None if absent)."""
    letter = str(record["ground_truth"]).strip().upper()
    for option in record.get("options") or ():
        key, text = option_text(option)
        if key == letter:
            return text
    return None


def _mode(values: Iterable[Any]) -> Any:
    """The most frequent value; ties: the smallest."""
    counts = Counter(values)
    top = max(counts.values())
    return min(v for v, c in counts.items() if c == top)


def numeric_means(train: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """Mean ground truth of each numeric ``question_type`` (unparseable ones skipped)."""
    values: dict[str, list[float]] = {}
    for record in train:
        kind = str(record["question_type"])
        value = parse_float(record["ground_truth"])
        if kind in NUMERIC_TASKS and value is not None and np.isfinite(value):
            values.setdefault(kind, []).append(float(value))
    return {kind: float(np.mean(v)) for kind, v in values.items()}


def frequency_answers(train: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """The frequency baseline's answers per ``question_type``: numeric ``{"value": str}`` (the
    modal ground truth as written), choice ``{"text": str | None, "letter": str}``."""
    numeric: dict[str, list[float]] = {}
    written: dict[tuple[str, float], str] = {}
    texts: dict[str, list[str]] = {}
    letters: dict[str, list[str]] = {}
    for record in train:
        kind = str(record["question_type"])
        truth = str(record["ground_truth"])
        if kind in NUMERIC_TASKS:
            value = parse_float(truth)
            if value is not None and np.isfinite(value):
                numeric.setdefault(kind, []).append(float(value))
                written.setdefault((kind, float(value)), truth)
        elif kind in CHOICE_TASKS:
            letters.setdefault(kind, []).append(truth.strip().upper())
            text = answer_text(record)
            if text is not None:
                texts.setdefault(kind, []).append(text)
    out: dict[str, dict[str, Any]] = {}
    for kind, values in numeric.items():
        out[kind] = {"value": written[(kind, _mode(values))]}
    for kind, seen in letters.items():
        out[kind] = {"text": _mode(texts[kind]) if texts.get(kind) else None, "letter": _mode(seen)}
    return out


def chance_predictions(
    records: Sequence[Mapping[str, Any]],
    train: Sequence[Mapping[str, Any]] | None,
    numeric_answer: str = "first_token",
) -> list[dict[str, Any]]:
    """The chance baseline's prediction records (module docstring). Choice questions: prediction
    None, score ``1 / len(options)``; numeric: the train mean of the type, scored officially."""
    means: dict[str, float] = {}
    if any(str(r["question_type"]) in NUMERIC_TASKS for r in records):
        means = numeric_means(_need_train(train, "chance"))
    out = []
    for record in records:
        kind = str(record["question_type"])
        if kind in CHOICE_TASKS:
            options = record.get("options") or []
            if not options:
                raise ValueError(f"question {record['id']}: a {kind} question without options")
            out.append({**record, "prediction": None, "score": 1.0 / len(options)})
            continue
        if kind not in means:
            raise ValueError(f"the chance baseline has no train questions of type {kind!r}")
        prediction = repr(means[kind])
        score = score_answer(kind, prediction, record["ground_truth"], numeric_answer)
        out.append({**record, "prediction": prediction, "score": score})
    return out


def frequency_predictions(
    records: Sequence[Mapping[str, Any]],
    train: Sequence[Mapping[str, Any]] | None,
    numeric_answer: str = "first_token",
) -> list[dict[str, Any]]:
    """The frequency baseline's prediction records (module docstring), scored officially."""
    answers = frequency_answers(_need_train(train, "frequency"))
    out = []
    for record in records:
        kind = str(record["question_type"])
        if kind not in answers:
            raise ValueError(f"the frequency baseline has no train questions of type {kind!r}")
        chosen = answers[kind]
        if kind in NUMERIC_TASKS:
            prediction = str(chosen["value"])
        else:
            prediction = str(chosen["letter"])
            for option in record.get("options") or ():
                key, text = option_text(option)
                if chosen["text"] is not None and key and text == chosen["text"]:
                    prediction = key
                    break
        score = score_answer(kind, prediction, record["ground_truth"], numeric_answer)
        out.append({**record, "prediction": prediction, "score": score})
    return out


# --------------------------------------------------------------------------- aggregation
def aggregate_scores(types: Sequence[str], scores: Sequence[float]) -> dict[str, float]:
    """`vfm3d.metrics.vsi.vsi_accuracy`'s aggregation of per-question scores (same arithmetic,
    so the result is bit-identical for the same scores): mean per ``question_type``, merged
    ``object_rel_direction`` (missing level = 0), ``overall`` over the tasks present."""
    if len(types) != len(scores):
        raise ValueError(f"{len(types)} types for {len(scores)} scores")
    per_type: dict[str, list[float]] = {}
    for kind, score in zip(types, scores, strict=True):
        per_type.setdefault(str(kind), []).append(float(score))
    out = {kind: float(np.mean(values)) for kind, values in per_type.items()}
    if any(level in out for level in DIRECTION_LEVELS):
        out["object_rel_direction"] = sum(out.get(level, 0.0) for level in DIRECTION_LEVELS) / 3.0
    present = [out[kind] for kind in sorted(per_type) if kind not in DIRECTION_LEVELS]
    if "object_rel_direction" in out:
        present.append(out["object_rel_direction"])
    if present:
        out["overall"] = sum(present) / len(present)
    return out


def bootstrap_intervals(
    types: Sequence[str],
    scores: Sequence[float],
    samples: int = BOOTSTRAP_SAMPLES,
    seed: int = 0,
    level: float = 0.95,
    stratified: bool = True,
) -> dict[str, list[float]]:
    """Percentile bootstrap intervals of every `aggregate_scores` entry -> ``{key: [lo, hi]}``.

    Each of ``samples`` resamples draws questions with replacement (``np.random.default_rng(
    seed)``): within each ``question_type`` (``stratified``, the default: the benchmark's type
    composition is fixed by design, and a resample can never drop a type) or from all questions
    at once (then a type absent from a resample is absent from its aggregate, and a missing
    direction level counts 0, as the official aggregate does). The official aggregate is
    recomputed on each resample; the interval is its ``(1 - level) / 2`` and ``(1 + level) / 2``
    quantiles.
    """
    if int(samples) < 1:
        raise ValueError(f"bootstrap samples must be >= 1, got {samples}")
    kinds = np.asarray([str(t) for t in types])
    values = np.asarray(scores, dtype=np.float64)
    if kinds.shape != values.shape or values.size == 0:
        raise ValueError("need equal-length, non-empty types and scores")
    rng = np.random.default_rng(int(seed))
    b = int(samples)
    names = sorted(set(kinds.tolist()))
    means: dict[str, np.ndarray] = {}
    if stratified:
        for name in names:
            own = values[kinds == name]
            draw = rng.integers(0, own.size, size=(b, own.size))
            means[name] = own[draw].mean(axis=1)
    else:
        draw = rng.integers(0, values.size, size=(b, values.size))
        picked, picked_kinds = values[draw], kinds[draw]
        for name in names:
            mask = picked_kinds == name
            count = mask.sum(axis=1)
            total = np.where(mask, picked, 0.0).sum(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                means[name] = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    tasks: dict[str, np.ndarray] = {n: m for n, m in means.items() if n not in DIRECTION_LEVELS}
    if any(level in means for level in DIRECTION_LEVELS):
        levels = [np.nan_to_num(means.get(lv, np.zeros(b)), nan=0.0) for lv in DIRECTION_LEVELS]
        present = np.stack([~np.isnan(means[lv]) for lv in DIRECTION_LEVELS if lv in means])
        tasks["object_rel_direction"] = np.where(present.any(axis=0), sum(levels) / 3.0, np.nan)
    table = np.stack(list(tasks.values()))
    with np.errstate(invalid="ignore"):
        overall = np.nanmean(table, axis=0)
    result = {**means, **tasks, "overall": overall}
    lo, hi = (1.0 - level) / 2.0 * 100.0, (1.0 + level) / 2.0 * 100.0
    out = {}
    for key, draws in result.items():
        finite = draws[np.isfinite(draws)]
        if finite.size:
            out[key] = [float(np.percentile(finite, lo)), float(np.percentile(finite, hi))]
    return out


# --------------------------------------------------------------------------- running
def _read_predictions(path: Path) -> list[dict[str, Any]]:
    from vfm3d.utils.training import read_jsonl

    return read_jsonl(path)


def _write_predictions(path: Path, rows: Iterable[Mapping[str, Any]]) -> None:
    from vfm3d.spatial.questions import write_jsonl

    write_jsonl((dict(r) for r in rows), path)


def _settings(
    questions: QuestionSet,
    model: str,
    num_frames: int | None,
    blind: bool,
    max_new_tokens: int,
    numeric_answer: str,
) -> dict[str, Any]:
    return {
        "model": str(model),
        "protocol": "baseline"
        if model in BASELINES
        else "blind (no frames)"
        if blind
        else "frames",
        "num_frames": None if blind or model in BASELINES else num_frames,
        "max_new_tokens": None if model in BASELINES else int(max_new_tokens),
        "numeric_answer": numeric_answer,
        "source": questions.source,
        "questions": len(questions.records),
    }


def _scene_groups(records: Sequence[Mapping[str, Any]]) -> list[list[Mapping[str, Any]]]:
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for record in records:
        key = (str(record.get("dataset", "")), str(record["scene_name"]))
        groups.setdefault(key, []).append(record)
    return list(groups.values())


def _model_predictions(
    questions: QuestionSet,
    model_path: str,
    out_file: Path,
    done: dict[str, dict[str, Any]],
    num_frames: int | None,
    blind: bool,
    batch: int,
    max_new_tokens: int,
    numeric_answer: str,
    device: str,
    progress: bool,
    started: Callable[[], None],
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Answer every question not in ``done`` (scene by scene; ``started()`` once the model is
    loaded, before the first write); returns (done, facts)."""
    import torch
    from tqdm import tqdm
    from transformers.utils import logging as hf_logging

    from vfm3d.spatial import model as vgllm
    from vfm3d.spatial.prompts import build_prompt

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    todo = [r for r in questions.records if str(r["id"]) not in done]
    facts: dict[str, Any] = {}
    if not todo:
        started()
        return done, facts
    if not blind:
        if questions.frames is None:
            raise ValueError(
                "a model needs the questions' frames: pass the world data (--data) or the "
                "benchmark (--bench), or evaluate --blind"
            )
        questions.frames.check(todo)
    model, processor = vgllm.load_vgllm(model_path, device=device)
    if processor.extra.get("text_only") and not blind:
        raise ValueError(
            f"{model_path} was trained text-only (vfm3d zoo train vgllm-mini --blind): "
            "evaluate it with --blind"
        )
    started()
    frames_n = int(num_frames or processor.extra.get("num_frames", 16))
    facts = {"num_frames": None if blind else frames_n, "size_hw": processor.size}
    order = [str(r["id"]) for r in questions.records]
    bar = tqdm(
        total=len(questions.records), initial=len(done), desc="questions", disable=not progress
    )
    t0 = time.perf_counter()
    for group in _scene_groups(todo):
        if blind:
            video = torch.zeros((0, 3, 1, 1))
        else:
            assert questions.frames is not None  # checked above
            video = questions.frames.frames(group[0], frames_n, processor)
        for start in range(0, len(group), batch):
            chunk = group[start : start + batch]
            prompts = [build_prompt(r) for r in chunk]
            answers = vgllm.generate_answers(
                model, processor, [video] * len(chunk), prompts, max_new_tokens
            )
            for record, answer in zip(chunk, answers, strict=True):
                score = score_answer(
                    str(record["question_type"]), answer, record["ground_truth"], numeric_answer
                )
                done[str(record["id"])] = {**record, "prediction": answer, "score": score}
            bar.update(len(chunk))
        _write_predictions(out_file, (done[i] for i in order if i in done))
    bar.close()
    facts["seconds"] = round(time.perf_counter() - t0, 1)
    return done, facts


def evaluate(
    questions: QuestionSet,
    out: str | os.PathLike[str],
    model: str = "zoo/vgllm-mini",
    num_frames: int | None = None,
    blind: bool = False,
    batch: int = 8,
    max_new_tokens: int = 16,
    bootstrap: int = BOOTSTRAP_SAMPLES,
    seed: int = 0,
    numeric_answer: str = "first_token",
    device: str = "cpu",
    progress: bool = True,
    overwrite: bool = False,
    stratified: bool = True,
) -> dict[str, Any]:
    """Answer ``questions`` with ``model`` (a VG-LLM folder, ``"chance"`` or ``"frequency"``) and
    write ``predictions.jsonl``, ``scores.json``, ``summary.md`` and ``eval.json`` into ``out``
    (module docstring); returns the ``scores.json`` record. ``num_frames``: frames per question
    (default: the model's training count, else 16); ``batch``: questions per generation call (of
    one scene); ``seed`` / ``bootstrap`` / ``stratified``: the bootstrap (`bootstrap_intervals`).

    Raises:
        ValueError: bad settings; ``out`` holds an evaluation with other settings (and not
            ``overwrite``); a baseline without train questions; a model without frames (not
            blind); duplicate question ids.
    """
    from vfm3d.utils.atomic import atomic_write_json, atomic_write_text

    if numeric_answer not in NUMERIC_ANSWER_MODES:
        raise ValueError(f"numeric_answer must be one of {NUMERIC_ANSWER_MODES}")
    if int(batch) < 1 or int(max_new_tokens) < 1:
        raise ValueError(f"batch and max_new_tokens must be >= 1, got {batch}, {max_new_tokens}")
    if num_frames is not None and int(num_frames) < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if blind and model in BASELINES:
        raise ValueError(f"--blind applies to models, not the {model} baseline")
    ids = [str(r["id"]) for r in questions.records]
    if len(set(ids)) != len(ids):
        dup = next(i for i, n in Counter(ids).items() if n > 1)
        raise ValueError(f"duplicate question id {dup!r}: ids must be unique")
    target = Path(out)
    target.mkdir(parents=True, exist_ok=True)
    pred_file = target / PREDICTIONS_FILE
    settings = _settings(questions, model, num_frames, blind, max_new_tokens, numeric_answer)
    settings_file = target / SETTINGS_FILE
    if settings_file.is_file() and not overwrite:
        previous = json.loads(settings_file.read_text())
        if previous != json.loads(json.dumps(settings)):
            changed = sorted(k for k in settings if previous.get(k) != settings[k])
            raise ValueError(
                f"{target} holds an evaluation with other settings ({', '.join(changed)}); "
                "use another output folder or overwrite"
            )
    elif pred_file.is_file():
        if not overwrite:
            raise ValueError(
                f"{pred_file} exists without {SETTINGS_FILE} (not this command's output); "
                "use another output folder or overwrite"
            )
        pred_file.unlink()

    def started() -> None:  # settings are written once the run is known to start
        atomic_write_json(settings_file, settings)

    facts: dict[str, Any] = {}
    if model == "chance":
        rows = chance_predictions(questions.records, questions.train, numeric_answer)
        facts["train_means"] = numeric_means(questions.train or [])
        facts["choice_scores"] = "expected, 1 / len(options)"
        started()
    elif model == "frequency":
        rows = frequency_predictions(questions.records, questions.train, numeric_answer)
        facts["answers"] = frequency_answers(questions.train or [])
        started()
    else:
        wanted = set(ids)
        done = {str(r["id"]): r for r in _read_predictions(pred_file) if str(r.get("id")) in wanted}
        done, facts = _model_predictions(
            questions,
            model,
            pred_file,
            done,
            num_frames,
            blind,
            int(batch),
            int(max_new_tokens),
            numeric_answer,
            device,
            progress,
            started,
        )
        rows = [done[i] for i in ids]
    _write_predictions(pred_file, rows)

    types = [str(r["question_type"]) for r in rows]
    values = [float(r["score"]) for r in rows]
    result: dict[str, Any] = {
        **settings,
        "scores": aggregate_scores(types, values),
        "ci95": bootstrap_intervals(types, values, bootstrap, seed, 0.95, stratified),
        "counts": dict(sorted(Counter(types).items())),
        "bootstrap": {
            "samples": int(bootstrap),
            "seed": int(seed),
            "resampling": "questions within each question_type" if stratified else "all questions",
            "interval": "percentile, 95%",
        },
        "scale": "fractions in [0, 1] (the paper prints x100)",
        "details": facts,
    }
    atomic_write_json(target / SCORES_FILE, result)
    atomic_write_text(target / SUMMARY_FILE, summary_markdown(result))
    return result


def summary_markdown(result: Mapping[str, Any]) -> str:
    """``summary.md``: the score table (x100) with 95% intervals and the settings."""
    scores, ci, counts = result["scores"], result["ci95"], result["counts"]
    lines = [
        f"# VSI evaluation: {result['model']}",
        "",
        f"- protocol: {result['protocol']}"
        + (f", {result['num_frames']} frames" if result.get("num_frames") else ""),
        f"- questions: {result['questions']} ({json.dumps(result['source'])})",
        f"- bootstrap: {result['bootstrap']['samples']} resamples of "
        f"{result['bootstrap']['resampling']}, seed {result['bootstrap']['seed']}",
        "",
        "| task | questions | score | 95% interval |",
        "|---|---:|---:|---|",
    ]
    for key in TABLE_ORDER:
        if key not in scores:
            continue
        if key == "overall":
            n = sum(counts.values())
        elif key == "object_rel_direction":
            n = sum(counts.get(level, 0) for level in DIRECTION_LEVELS)
        else:
            n = counts.get(key, 0)
        name = f"  {key}" if key in DIRECTION_LEVELS else key
        low, high = ci.get(key, [float("nan")] * 2)
        lines.append(
            f"| {name} | {n} | {100 * scores[key]:.1f} | {100 * low:.1f} - {100 * high:.1f} |"
        )
    return "\n".join(lines) + "\n"


def print_table(result: Mapping[str, Any], write: Callable[[str], Any] = print) -> None:
    """Print the summary table (the CLI's output)."""
    write(summary_markdown(result).rstrip("\n"))
