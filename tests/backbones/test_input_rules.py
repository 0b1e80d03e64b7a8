"""InputRules: frame-count refusals name the rule and the nearest counts that work."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from vfm3d.backbones import InputRules, UnsupportedInputError
from vfm3d.backbones._hf_common import ExplainedRules
from vfm3d.features.runner import choose_num_frames

WAN = InputRules(frame_step=4, frame_offset=1)


@pytest.mark.parametrize(
    ("rules", "n", "nearest"),
    [
        (WAN, 10, [9, 13]),
        (WAN, 9, [9]),
        (WAN, 2, [1, 5]),
        (WAN, 0, [1]),
        (InputRules(frame_step=4, frame_offset=1, min_frames=5), 3, [5]),
        (InputRules(frame_step=4, frame_offset=1, max_frames=13), 20, [13]),
        (InputRules(frame_step=4, frame_offset=1, max_frames=13), 12, [9, 13]),
        (InputRules(fixed_frames=16), 10, [16]),
        (InputRules(frame_step=2, min_frames=2), 7, [6, 8]),
        (InputRules(), 5, [5]),
        (InputRules(min_frames=5, max_frames=3), 4, []),
    ],
)
def test_nearest_valid_frames(rules: InputRules, n: int, nearest: list[int]) -> None:
    assert rules.nearest_valid_frames(n) == nearest
    assert all(rules.frames_ok(t) for t in nearest)


def test_check_names_the_rule_and_the_nearest_counts() -> None:
    with pytest.raises(
        UnsupportedInputError,
        match=r"^10 frames not supported: the rule is T = 4k\+1; nearest counts that work: 9, 13$",
    ):
        WAN.check(10, 64, 64)
    with pytest.raises(UnsupportedInputError, match=r"T = 16.*nearest counts that work: 16$"):
        InputRules(fixed_frames=16).check(8, 224, 224)
    with pytest.raises(UnsupportedInputError, match="no frame count satisfies it"):
        InputRules(min_frames=5, max_frames=3).check(4, 8, 8)
    WAN.check(13, 64, 64)  # valid input passes
    with pytest.raises(UnsupportedInputError, match=r"frame size 65x64 not supported") as error:
        InputRules(spatial_multiple=8).check(3, 65, 64)
    assert "nearest" not in str(error.value)  # size errors are unchanged


def test_explained_rules_keep_their_note() -> None:
    rules = ExplainedRules(frame_step=2, min_frames=2, frames_note="tubelets of 2 frames")
    with pytest.raises(
        UnsupportedInputError, match=r"nearest counts that work: 2, 4 \(tubelets of 2 frames\)$"
    ):
        rules.check(3, 16, 16)


def test_largest_valid_frames_error_names_the_smallest_that_works() -> None:
    rules = InputRules(frame_step=4, frame_offset=1, min_frames=5)
    assert rules.largest_valid_frames(12) == 9
    with pytest.raises(
        UnsupportedInputError,
        match=r"no valid frame count <= 3 for rule: T = 4k\+1, T >= 5; nearest counts that work: 5",
    ):
        rules.largest_valid_frames(3)


def test_choose_num_frames_names_counts_the_clip_allows() -> None:
    model: Any = SimpleNamespace(name="rules-test", rules=WAN)  # all choose_num_frames reads
    assert choose_num_frames(model, 12, None) == 9
    with pytest.raises(
        UnsupportedInputError,
        match=r"num_frames: 10 frames not supported by rules-test: the rule is T = 4k\+1; "
        r"nearest counts that work \(clip has 12\): 9$",
    ):
        choose_num_frames(model, 12, 10)
    with pytest.raises(UnsupportedInputError, match=r"\(clip has 14\): 9, 13$"):
        choose_num_frames(model, 14, 10)
