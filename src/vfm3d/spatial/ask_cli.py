"""`vfm3d ask`: ask a VG-LLM model a spatial question about a video, image folder or clip.

Examples::

    vfm3d ask room.mp4 "How many chairs are in this room?" --model zoo/vgllm-mini
    vfm3d ask frames/ "What is the size of this room (in square meters)?" --frames 16
    vfm3d ask data/rooms "Which is closer to the sofa?" --clip room-s0-000003 \\
        --options "A. table" "B. lamp" --json

INPUT is opened by `vfm3d.data.inputs.open_clips` (videos are sampled as VSI-Bench: N frames,
uniform, first and last included). The prompt is VSI-Bench's official one
(`vfm3d.spatial.prompts`): the numeric post prompt, or with ``--options`` the choice one.
Decoding is greedy, at most 16 new tokens (VSI-Bench's setting). Prints the raw answer, or with
``--json`` one object: ``answer``, ``prompt``, ``question``, ``options``, ``model``, ``input``,
``clip_id``, ``frame_indices``, ``num_frames``, ``size_hw``.
"""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", metavar="INPUT", help="a video, a folder of images or a clip")
    parser.add_argument("question", metavar="QUESTION", help="the question (VSI-Bench phrasing)")
    parser.add_argument(
        "--model",
        default="zoo/vgllm-mini",
        help="zoo/vgllm-mini or a model folder (vfm3d's or VG-LLM's; default zoo/vgllm-mini)",
    )
    parser.add_argument(
        "--frames",
        type=int,
        default=None,
        help="frames sampled uniformly (default: the model's training count, else 16)",
    )
    parser.add_argument(
        "--options",
        nargs="+",
        default=None,
        metavar="OPTION",
        help='multiple choice: the options as VSI-Bench writes them ("A. sofa" "B. table")',
    )
    parser.add_argument("--clip", default=None, help="the clip of a clip folder (default: first)")
    parser.add_argument(
        "--geometry-encoder",
        default=None,
        help="VGGT weights folder to load the geometry encoder from (VG-LLM's vggt_model_path)",
    )
    parser.add_argument(
        "--max-new-tokens", type=int, default=16, help="generation budget (default 16, VSI's)"
    )
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def main(args: argparse.Namespace) -> int:
    from transformers.utils import logging as hf_logging

    from vfm3d.spatial.model import generate_answers, input_frames, load_vgllm, question_prompt

    if args.frames is not None and args.frames < 1:
        raise ValueError(f"--frames must be >= 1, got {args.frames}")
    if args.max_new_tokens < 1:
        raise ValueError(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    model, processor = load_vgllm(
        args.model, device=args.device, geometry_encoder=args.geometry_encoder
    )
    if processor.extra.get("text_only"):
        raise ValueError(
            f"{args.model} was trained text-only (vgllm-mini --blind) and takes no video; "
            "evaluate it with `vfm3d spatial eval --blind`"
        )
    num_frames = args.frames or int(processor.extra.get("num_frames", 16))
    frames, facts = input_frames(args.input, num_frames, processor, clip_id=args.clip)
    prompt = question_prompt(args.question, args.options)
    answer = generate_answers(model, processor, [frames], [prompt], args.max_new_tokens)[0]
    if args.json:
        result = {
            "answer": answer,
            "question": args.question,
            "options": args.options,
            "prompt": prompt,
            "model": args.model,
            "input": facts["source"],
            "clip_id": facts["clip_id"],
            "frame_indices": facts["frame_indices"],
            "num_frames": int(frames.shape[0]),
            "size_hw": [int(frames.shape[-2]), int(frames.shape[-1])],
        }
        print(json.dumps(result))
    else:
        print(answer)
    return 0
