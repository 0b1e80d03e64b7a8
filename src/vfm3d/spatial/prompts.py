"""The official VSI-Bench prompts and question templates, as data.

Prompts (lmms-eval / thinking-in-space ``vsibench``, ``doc_to_text`` and ``vsibench.yaml``):

- numeric types: ``PRE_PROMPT + "\\n" + question + "\\n" + NUMERIC_POST_PROMPT``;
- choice types: ``"\\n".join([PRE_PROMPT, question, "Options:\\n" + "\\n".join(options),
  CHOICE_POST_PROMPT])``;
- generation: greedy, at most 16 new tokens (`GENERATION`).

The yaml's ``gemini_api`` / ``gpt4v`` entries replace the numeric post prompt by
`API_NUMERIC_POST_PROMPT`; ``pre_prompt`` is empty there too, which the code replaces by
`PRE_PROMPT`.

Question templates (`TEMPLATES`): the phrasings of VSI-Bench's test records, gathered from
published records and the paper; VSI-Bench's generation code is not public, so line breaks
inside a template follow the published records where seen and are otherwise a best guess.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from vfm3d.metrics.vsi import CHOICE_TASKS, NUMERIC_TASKS

PRE_PROMPT = "These are frames of a video."
NUMERIC_POST_PROMPT = "Please answer the question using a single word or phrase."
CHOICE_POST_PROMPT = "Answer with the option's letter from the given choices directly."
API_NUMERIC_POST_PROMPT = "Do not response anything other than a single number!"
"""The numeric post prompt of the yaml's ``gemini_api`` and ``gpt4v`` entries (sic)."""
GENERATION: dict[str, object] = {
    "max_new_tokens": 16,
    "temperature": 0,
    "top_p": 1.0,
    "num_beams": 1,
    "do_sample": False,
}
"""``generation_kwargs`` of the official task: greedy decoding, 16 new tokens."""

POST_PROMPTS: dict[str, str] = {
    **{kind: NUMERIC_POST_PROMPT for kind in NUMERIC_TASKS},
    **{kind: CHOICE_POST_PROMPT for kind in CHOICE_TASKS},
}
"""The post prompt of every ``question_type``."""

TEMPLATES: dict[str, str] = {
    "object_counting": "How many {category}(s) are in this room?",
    "object_abs_distance": (
        "Measuring from the closest point of each object, what is the direct distance between "
        "the {object_1} and the {object_2} (in meters)?"
    ),
    "object_size_estimation": (
        "What is the length of the longest dimension (length, width, or height) of the "
        "{category}, measured in centimeters?"
    ),
    "room_size_estimation": (
        "What is the size of this room (in square meters)? If multiple rooms are shown, "
        "estimate the size of the combined space."
    ),
    "object_rel_distance": (
        "Measuring from the closest point of each object, which of these objects ({choices}) "
        "is the closest to the {category}?"
    ),
    "object_rel_direction_easy": (
        "If I am standing by the {positioning} and facing the {orienting}, is the {querying} "
        "to the left or the right of the {orienting}?"
    ),
    "object_rel_direction_medium": (
        "If I am standing by the {positioning} and facing the {orienting}, is the {querying} "
        "to my left, right, or back?\nAn object is to my back if I would have to turn at least "
        "135 degrees in order to face it."
    ),
    "object_rel_direction_hard": (
        "If I am standing by the {positioning} and facing the {orienting}, is the {querying} "
        "to my front-left, front-right, back-left, or back-right?\nThe directions refer to the "
        "quadrants of a Cartesian plane (if I am standing at the origin and facing along the "
        "positive y-axis)."
    ),
    "route_planning": (
        "You are a robot beginning at the {start} facing the {facing}. You want to navigate to "
        "the {goal}. You will perform the following actions (Note: for each [please fill in], "
        "choose either 'turn back,' 'turn left,' or 'turn right.'): {steps} You have reached "
        "the final destination."
    ),
    "obj_appearance_order": (
        "What will be the first-time appearance order of the following categories in the "
        "video: {choices}?"
    ),
}
"""VSI-Bench's question phrasing per ``question_type`` (``str.format`` fields in braces)."""

DIRECTION_CHOICES: dict[str, tuple[str, ...]] = {
    "object_rel_direction_easy": ("left", "right"),
    "object_rel_direction_medium": ("left", "right", "back"),
    "object_rel_direction_hard": ("front-left", "front-right", "back-left", "back-right"),
}
"""The answer options of the three relative-direction levels."""
ROUTE_TURNS = ("Turn Left", "Turn Right", "Turn Back")
"""The actions of route-planning options (``"A. Turn Left, Turn Right"``)."""
OPTION_LETTERS = "ABCDEFGH"


def format_options(choices: Sequence[str]) -> list[str]:
    """``["A. first", "B. second", ...]``, VSI-Bench's option strings."""
    if len(choices) > len(OPTION_LETTERS):
        raise ValueError(f"at most {len(OPTION_LETTERS)} options, got {len(choices)}")
    return [f"{OPTION_LETTERS[i]}. {choice}" for i, choice in enumerate(choices)]


def build_prompt(
    record: Mapping[str, object],
    pre_prompt: str = PRE_PROMPT,
    numeric_post_prompt: str = NUMERIC_POST_PROMPT,
    choice_post_prompt: str = CHOICE_POST_PROMPT,
) -> str:
    """The text given to the model for one VSI-Bench record, as the official ``doc_to_text``.

    Empty prompt arguments fall back to the defaults, as the official ``... or default`` does.

    Raises:
        ValueError: unknown ``question_type``, or a choice record without ``options``.
    """
    kind = str(record["question_type"])
    question = str(record["question"])
    pre = pre_prompt or PRE_PROMPT
    if kind in NUMERIC_TASKS:
        return pre + "\n" + question + "\n" + (numeric_post_prompt or NUMERIC_POST_PROMPT)
    if kind in CHOICE_TASKS:
        options = record.get("options")
        if not options:
            raise ValueError(f"a {kind} record needs options, got {options!r}")
        listed = "Options:\n" + "\n".join(str(o) for o in options)  # type: ignore[union-attr]
        return "\n".join([pre, question, listed, choice_post_prompt or CHOICE_POST_PROMPT])
    raise ValueError(f"unknown question_type {kind!r}")
