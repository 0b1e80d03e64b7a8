"""Captions from world meta and the small text encoder."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vfm3d.jointgen.captions import (
    PromptEncoder,
    camera_phrase,
    caption,
    clip_caption,
    colour_name,
    train_tokenizer,
)
from vfm3d.world import render_clip


def _poses(centres: np.ndarray, yaw_deg: np.ndarray) -> np.ndarray:
    """OpenCV cameras at ``centres [T, 3]`` (x right, z forward of frame 0) turned by ``yaw``
    about the camera's y axis (positive = right), frame 0 = identity."""
    out = np.tile(np.eye(4), (len(centres), 1, 1))
    for i, (c, yaw) in enumerate(zip(centres, np.radians(yaw_deg), strict=True)):
        cy, sy = np.cos(yaw), np.sin(yaw)
        out[i, :3, :3] = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
        out[i, :3, 3] = c
    return out


def _line(direction: tuple[float, float, float], frames: int = 9, step: float = 0.05) -> np.ndarray:
    return np.arange(frames)[:, None] * step * np.asarray(direction, dtype=np.float64)[None]


def _obj(cls: str, color: tuple[float, float, float], pixels: int, dynamic: bool = False) -> dict:
    return {"class": cls, "color": list(color), "pixels": [pixels] * 9, "dynamic": dynamic}


def test_colour_names() -> None:
    assert colour_name((0.8, 0.1, 0.1)) == "red"
    assert colour_name((0.1, 0.7, 0.2)) == "green"
    assert colour_name((0.2, 0.3, 0.8)) == "blue"
    assert colour_name((0.5, 0.5, 0.52)) == "grey"
    assert colour_name((0.95, 0.95, 0.95)) == "white"
    assert colour_name((0.4, 0.25, 0.1)) == "brown"


def test_camera_phrases_follow_the_motion() -> None:
    zero = np.zeros(9)
    turn = np.linspace(0, 30, 9)
    assert camera_phrase(_poses(_line((0, 0, 1)), zero), "walk") == "the camera walks forward"
    assert camera_phrase(_poses(_line((-1, 0, 0)), zero), "walk") == "the camera walks left"
    assert camera_phrase(_poses(_line((0, 0, -1)), -turn), "walk") == (
        "the camera walks backward, turning left"
    )
    assert camera_phrase(_poses(np.zeros((9, 3)), turn), "walk") == "the camera pans right"
    assert camera_phrase(_poses(np.zeros((9, 3)), zero), "walk") == "the camera is still"
    assert camera_phrase(_poses(_line((1, 0, 0.2)), zero), "orbit") == (
        "the camera orbits right around it"
    )


def test_caption_is_faithful_to_meta() -> None:
    meta = {
        "layout": "room",
        "motion": {"path": "walk"},
        "objects": [
            _obj("wall", (0.2, 0.2, 0.8), 900),  # structural: never named
            _obj("sofa", (0.8, 0.1, 0.1), 300),
            _obj("chair", (0.1, 0.7, 0.2), 100),
            _obj("chair", (0.1, 0.2, 0.7), 100),
            _obj("lamp", (0.9, 0.9, 0.1), 1),  # barely visible: left out
        ],
    }
    poses = _poses(_line((-1, 0, 0)), np.zeros(9))
    text = caption(meta, poses, 32 * 32)
    assert text == "a red sofa and two chairs in a room, the camera walks left"
    street = {
        "layout": "street",
        "motion": {"path": "walk"},
        "objects": [_obj("person", (0.5, 0.3, 0.3), 200, dynamic=True)],
    }
    assert caption(street, poses, 32 * 32).startswith("a moving person on a street")


def test_captions_of_world_clips_are_deterministic() -> None:
    clips = [render_clip(kind, 3, 9, 32, 32) for kind in ("object", "scene", "dynamic")]
    first = [clip_caption(c) for c in clips]
    again = [
        clip_caption(render_clip(kind, 3, 9, 32, 32)) for kind in ("object", "scene", "dynamic")
    ]
    assert first == again
    assert "orbits" in first[0] and "on the ground" in first[0]
    assert clips[0].meta["objects"][0]["class"] in first[0]  # the orbited object is named
    assert "walks" in first[1] or "pans" in first[1]


def test_tokenizer_is_deterministic_and_covers_any_prompt() -> None:
    corpus = ["a red sofa in a room, the camera walks left", "a blue car on the ground"]
    a, b = train_tokenizer(corpus), train_tokenizer(list(reversed(corpus)))
    assert a.get_vocab() == b.get_vocab()
    ids = a("a room with a zebra")["input_ids"]
    assert a.unk_token_id not in ids
    assert ids[-1] == a.eos_token_id and a.pad_token_id == 0 and a.eos_token_id == 1


def test_prompt_encoder_output() -> None:
    corpus = ["a red sofa in a room, the camera walks left"]
    enc = PromptEncoder.build(corpus, d_model=16, seed=0, max_tokens=12)
    with torch.no_grad():
        out = enc(["a red sofa", None, ""])
    assert out.shape == (3, 12, 16)
    _, mask = enc.tokenize(["a red sofa", None, ""])
    assert torch.all(out[mask == 0] == 0)  # zero past the real tokens, as WanPipeline
    assert torch.equal(out[1], out[2])  # None is the empty prompt
    assert out[0, 0].abs().sum() > 0
    again = PromptEncoder.build(corpus, d_model=16, seed=0, max_tokens=12)
    with torch.no_grad():
        assert torch.equal(again(["a red sofa"]), out[:1])


def test_prompt_encoder_round_trip(tmp_path) -> None:
    enc = PromptEncoder.build(["a lamp in a room"], d_model=16, seed=1, max_tokens=8)
    enc.save_pretrained(tmp_path)
    loaded = PromptEncoder.from_pretrained(tmp_path, max_tokens=8)
    with torch.no_grad():
        assert torch.allclose(loaded(["a lamp"]), enc(["a lamp"]))
    with pytest.raises(FileNotFoundError, match="text_encoder"):
        PromptEncoder.from_pretrained(tmp_path / "nowhere", max_tokens=8)
