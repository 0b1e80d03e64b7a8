"""A handful of VSI-Bench questions about held-out world rooms asked to a VG-LLM model, with the
answers scored against the exact ground truth: the demo's spatial-reasoning step (`vfm3d demo`
calls `ask_example` when ``zoo/vgllm-mini`` is shipped).

The rooms are clips ``0 .. scenes - 1`` of ``vfm3d world --kind room --seed 1000000 --frames 81
--height 64 --width 96``: vgllm-mini's held-out folder (`vfm3d.zoo.vgllm_mini`; its training
rooms are drawn from seed 0), rendered in memory. Questions: `vfm3d.spatial.scene_questions` of
each room (seed 0), the first question of each task (at most ``per_scene``); each is asked with
the official prompt and the room's frames, sampled as at training, greedy (`generate_answers`).

Files written into ``OUT``: ``questions.jsonl`` (each question's VSI-Bench record +
``prediction`` + official ``score``), ``frames_<scene>.png`` (the frames the model saw),
``summary.json`` and ``report.html``.
"""

from __future__ import annotations

import html
import time
from pathlib import Path
from typing import Any

#: vgllm-mini's held-out room seed (`vfm3d.zoo.common.DataSpec(seed=0).heldout_seed`).
EXAMPLE_SEED = 1_000_000
EXAMPLE_SIZE = (81, 64, 96)
#: Task order of the picked questions (numeric and choice tasks alternate).
ORDER = (
    "object_counting",
    "object_rel_direction",
    "object_abs_distance",
    "obj_appearance_order",
    "object_size_estimation",
    "object_rel_distance",
    "room_size_estimation",
    "route_planning",
)


def shipped_vgllm(name: str = "vgllm-mini") -> bool:
    """True when ``zoo/<name>`` is installed (a model folder with its config)."""
    from vfm3d.spatial.model import resolve_zoo

    try:
        root = resolve_zoo(f"zoo/{name}")
    except (FileNotFoundError, ValueError):
        return False
    return (root / "config.json").is_file() and (root / "model.safetensors").is_file()


def heldout_rooms(count: int, seed: int = EXAMPLE_SEED) -> list[Any]:
    """Room clips ``0 .. count - 1`` of the room dataset of ``seed`` (the ids and pixels
    ``vfm3d world --kind room --seed SEED`` writes) at `EXAMPLE_SIZE`."""
    from vfm3d.world import clip_seed, dataset_clip_id, render_clip

    frames, height, width = EXAMPLE_SIZE
    return [
        render_clip(
            "room",
            clip_seed(seed, i),
            frames,
            height,
            width,
            clip_id=dataset_clip_id("room", seed, i),
        )
        for i in range(int(count))
    ]


def pick_questions(clip: Any, per_scene: int, seed: int = 0) -> list[dict[str, Any]]:
    """The first question of each task type of ``clip`` (relative direction: of its first
    level present), in `ORDER`, at most ``per_scene``, as VSI-Bench records (ids from 0)."""
    from vfm3d.spatial import SceneFacts, scene_questions
    from vfm3d.spatial.questions import QuestionConfig

    chosen: dict[str, Any] = {}
    for q in scene_questions(SceneFacts.from_clip(clip), seed, QuestionConfig(per_scene=1)):
        task = "object_rel_direction" if q.question_type.startswith("object_rel_dir") else None
        key = task or q.question_type
        if key not in chosen:
            chosen[key] = q
    order = [k for k in ORDER if k in chosen] + [k for k in chosen if k not in ORDER]
    picked = [chosen[k] for k in order][: int(per_scene)]
    return [q.record(i, "world", clip.id) for i, q in enumerate(picked)]


def ask_example(
    out: str | Path, model: str = "zoo/vgllm-mini", scenes: int = 2, per_scene: int = 5
) -> dict[str, Any]:
    """Ask ``model`` ``per_scene`` questions about each of ``scenes`` held-out rooms; write the
    module docstring's files into ``out`` and return the summary."""
    import numpy as np
    import torch
    from transformers.utils import logging as hf_logging

    from vfm3d.metrics.vsi import score_answer
    from vfm3d.spatial.model import generate_answers, load_vgllm
    from vfm3d.spatial.prompts import build_prompt
    from vfm3d.utils.atomic import atomic_write_json, atomic_write_text

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    started = time.perf_counter()
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    net, processor = load_vgllm(model)
    loaded = time.perf_counter()
    num_frames = int(processor.extra.get("num_frames", 8))
    rows: list[dict[str, Any]] = []
    strips: dict[str, str] = {}
    for clip in heldout_rooms(scenes):
        records = pick_questions(clip, per_scene)
        frames, index = processor.sample(clip.frames, num_frames)
        with torch.inference_mode():
            answers = generate_answers(
                net, processor, [frames] * len(records), [build_prompt(r) for r in records]
            )
        for record, answer in zip(records, answers, strict=True):
            score = score_answer(str(record["question_type"]), answer, record["ground_truth"])
            rows.append({**record, "id": len(rows), "prediction": answer, "score": score})
        strip = np.concatenate([np.asarray(clip.frames)[i] for i in index], axis=1)
        name = f"frames_{clip.id}.png"
        _save_png(folder / name, strip)
        strips[clip.id] = name
    from vfm3d.spatial.questions import write_jsonl

    write_jsonl(rows, folder / "questions.jsonl")
    summary = {
        "model": str(model),
        "scenes": sorted(strips),
        "questions": len(rows),
        "mean_score": float(np.mean([r["score"] for r in rows])) if rows else None,
        "num_frames": num_frames,
        "seconds": {
            "load": round(loaded - started, 2),
            "total": round(time.perf_counter() - started, 2),
        },
        "rooms": f"vfm3d world --kind room --seed {EXAMPLE_SEED} (held-out), clips 0-{scenes - 1}",
    }
    atomic_write_json(folder / "summary.json", summary)
    atomic_write_text(folder / "report.html", _page(rows, strips, summary))
    return {**summary, "rows": rows}


def _save_png(path: Path, image: Any) -> None:
    from PIL import Image

    tmp = path.with_suffix(".tmp.png")
    Image.fromarray(image).save(tmp)
    tmp.replace(path)


def _page(rows: list[dict[str, Any]], strips: dict[str, str], summary: dict[str, Any]) -> str:
    parts = [
        "<!doctype html><meta charset='utf-8'><title>vfm3d: spatial questions</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
        "td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:top}"
        "table{border-collapse:collapse}img{image-rendering:pixelated;width:100%}</style>",
        f"<h1>Spatial questions ({html.escape(summary['model'])})</h1>",
        f"<p>{summary['questions']} VSI-Bench questions about {len(strips)} held-out rooms "
        f"({html.escape(summary['rooms'])}), {summary['num_frames']} frames each; score: the "
        "official VSI-Bench score (MRA for numbers, exact letter for choices).</p>",
    ]
    for scene, image in strips.items():
        parts.append(f"<h2>{html.escape(scene)}</h2><img src='{html.escape(image)}' alt='frames'>")
        parts.append(
            "<table><tr><th>type</th><th>question</th><th>answer</th><th>truth</th>"
            "<th>score</th></tr>"
        )
        for r in rows:
            if r["scene_name"] != scene:
                continue
            question = html.escape(str(r["question"]))
            if r.get("options"):
                question += "<br>" + "<br>".join(html.escape(o) for o in r["options"])
            parts.append(
                f"<tr><td>{html.escape(r['question_type'])}</td><td>{question}</td>"
                f"<td>{html.escape(str(r['prediction']))}</td>"
                f"<td>{html.escape(str(r['ground_truth']))}</td><td>{r['score']:.2f}</td></tr>"
            )
        parts.append("</table>")
    return "\n".join(parts) + "\n"


__all__ = ["EXAMPLE_SEED", "ask_example", "heldout_rooms", "pick_questions", "shipped_vgllm"]
