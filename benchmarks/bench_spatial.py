"""Benchmark of VG-LLM answering (`vfm3d ask`, `vfm3d spatial eval`) at the mini size: seconds
per question vs the number of frames, with and without the geometry encoder, and the parts
(geometry encoder, vision tower, generation).

``zoo/vgllm-mini`` and ``zoo/vgllm-mini-no-geometry`` (or ``--model`` / ``--twin``), one held-out
world room (81 frames, 64x96), one question (a counting question: a short numeric answer),
greedy decoding of at most 16 tokens, one torch thread, best of ``--repeats`` after a warm-up.
A question's cost is set by the ``N`` sampled frames, not by the video's length (VSI-Bench
samples N frames uniformly; decoding a long mp4 is the video reader's cost, in
``bench_video.py``): each frame adds ``h*w/4`` visual tokens (24 at 64x96) to the LM's
sequence and one frame to VGGT's global attention (quadratic in ``N * tokens per frame``).
Batch: questions of one scene share its frames, so ``--batch`` questions per call amortise the
per-call cost. Writes ``benchmarks/results/spatial.json``.

    python benchmarks/bench_spatial.py [--frames 4,8,16,32] [--batch 1,8]
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path
from typing import Any

from timing import best_of


def main() -> None:
    import torch
    from transformers.utils import logging as hf_logging

    from vfm3d.spatial.example import heldout_rooms, pick_questions
    from vfm3d.spatial.model import generate_answers, load_vgllm
    from vfm3d.spatial.prompts import build_prompt
    from vfm3d.utils.atomic import atomic_write_json

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="zoo/vgllm-mini")
    parser.add_argument("--twin", default="zoo/vgllm-mini-no-geometry")
    parser.add_argument("--frames", default="4,8,16,32")
    parser.add_argument("--batch", default="1,8")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "spatial.json"))
    args = parser.parse_args()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    torch.set_num_threads(1)
    clip = heldout_rooms(1)[0]
    record = pick_questions(clip, 1)[0]
    prompt = build_prompt(record)
    rows: list[dict[str, Any]] = []
    for label, path in (("geometry", args.model), ("no-geometry", args.twin)):
        model, processor = load_vgllm(path)
        for frames_n in (int(v) for v in args.frames.split(",")):
            frames, _ = processor.sample(clip.frames, frames_n)
            for batch in (int(v) for v in args.batch.split(",")):

                def answer(frames=frames, batch=batch, model=model, processor=processor) -> None:
                    with torch.inference_mode():
                        generate_answers(model, processor, [frames] * batch, [prompt] * batch)

                seconds = best_of(args.repeats, answer)
                inputs = processor([frames], [prompt])
                visual = int(inputs["image_grid_thw"].prod(-1).sum()) // 4
                row: dict[str, Any] = {
                    "model": label,
                    "frames": frames_n,
                    "batch": batch,
                    "seconds_per_call": round(seconds, 4),
                    "seconds_per_question": round(seconds / batch, 4),
                    "visual_tokens": visual,
                    "sequence_tokens": int(inputs["input_ids"].shape[1]),
                }
                if batch == 1:
                    with torch.inference_mode():
                        row["vision_tower_s"] = round(
                            best_of(
                                args.repeats,
                                lambda inputs=inputs, model=model: model.model.visual(
                                    inputs["pixel_values"], grid_thw=inputs["image_grid_thw"]
                                ),
                            ),
                            4,
                        )
                        if model.vggt is not None:
                            row["geometry_encoder_s"] = round(
                                best_of(
                                    args.repeats,
                                    lambda frames=frames, model=model: model.model.encode_geometry(
                                        frames
                                    ),
                                ),
                                4,
                            )
                rows.append(row)
                print(row, flush=True)
    record_out = {
        "benchmark": "spatial",
        "question": record["question_type"],
        "input": f"held-out room {clip.id} (81 frames, 64x96), N frames sampled uniformly",
        "threads": 1,
        "repeats": args.repeats,
        "machine": platform.processor() or platform.machine(),
        "rows": rows,
    }
    atomic_write_json(Path(args.out), record_out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
