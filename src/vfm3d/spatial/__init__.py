"""Spatial reasoning from video (VG-LLM): VSI-Bench questions, the benchmark, its prompts.

- `vfm3d.spatial.questions`: VSI-Bench's 8 task types generated from world clips
  (`generate_questions`, `scene_questions`), in VSI-Bench's record format;
- `vfm3d.spatial.scene`: what a clip's meta says about its objects (seen, unique, boxes) and
  the geometry of the answers (closest-point box distances, directions);
- `vfm3d.spatial.vsibench`: VSI-Bench in a local folder (records + videos, N frames uniformly);
- `vfm3d.spatial.prompts`: the official pre/post prompts and question templates.

Scoring is `vfm3d.metrics.vsi` (the official lmms-eval rules). See docs/spatial.md.
"""

from vfm3d.spatial.prompts import (
    CHOICE_POST_PROMPT,
    GENERATION,
    NUMERIC_POST_PROMPT,
    POST_PROMPTS,
    PRE_PROMPT,
    TEMPLATES,
    build_prompt,
)
from vfm3d.spatial.questions import (
    GENERATORS,
    Question,
    QuestionConfig,
    generate_questions,
    scene_questions,
    scene_split,
    write_jsonl,
)
from vfm3d.spatial.scene import SceneFacts, box_distance, signed_angle_deg
from vfm3d.spatial.vsibench import VSIBench, load_video_frames, read_records

__all__ = [
    "CHOICE_POST_PROMPT",
    "GENERATION",
    "GENERATORS",
    "NUMERIC_POST_PROMPT",
    "POST_PROMPTS",
    "PRE_PROMPT",
    "TEMPLATES",
    "Question",
    "QuestionConfig",
    "SceneFacts",
    "VSIBench",
    "box_distance",
    "build_prompt",
    "generate_questions",
    "load_video_frames",
    "read_records",
    "scene_questions",
    "scene_split",
    "signed_angle_deg",
    "write_jsonl",
]
