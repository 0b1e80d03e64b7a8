"""`vfm3d ask` end to end on a tiny random model: an mp4, an image folder and a clip folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from vfm3d.cli import main as vfm3d_main
from vfm3d.models.vggt import VGGTConfig
from vfm3d.spatial.model import (
    VGLLMConfig,
    VGLLMForConditionalGeneration,
    VGLLMProcessor,
    generate_answers,
    input_frames,
    question_prompt,
    save_vgllm,
    train_tokenizer,
)
from vfm3d.spatial.prompts import CHOICE_POST_PROMPT, NUMERIC_POST_PROMPT, PRE_PROMPT
from vfm3d.world import render_clip

av = pytest.importorskip("av")

QUESTION = "How many chair(s) are in this room?"


def write_mp4(path: Path, frames: np.ndarray, fps: int = 10) -> Path:
    """uint8 RGB ``[T, H, W, 3]`` -> H.264 mp4 (PyAV)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "10"}
        for image in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture(scope="module")
def clip():
    return render_clip("room", 1, 12, 48, 64, clip_id="room-a")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tokenizer = train_tokenizer(
        [PRE_PROMPT, QUESTION, NUMERIC_POST_PROMPT, CHOICE_POST_PROMPT, "A. sofa B. lamp 3"] * 3,
        vocab_size=300,
        min_frequency=1,
    )
    geometry = VGGTConfig.tiny(patch_size=8, img_size=32, init_values=1.0)
    config = VGLLMConfig.tiny(tokenizer, geometry, patch_size=8)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = VGLLMForConditionalGeneration(config).eval()
    processor = VGLLMProcessor.for_model(tokenizer, config, (32, 48))
    processor.extra["num_frames"] = 4
    return save_vgllm(model, processor, tmp_path_factory.mktemp("model") / "vgllm")


def _ask(capsys, *argv: str) -> dict:
    code = vfm3d_main(["ask", *argv, "--json"])
    out = capsys.readouterr().out
    assert code == 0, out
    return json.loads(out.strip().splitlines()[-1])


def test_ask_answers_about_an_mp4(tmp_path: Path, clip, model_dir: Path, capsys) -> None:
    video = write_mp4(tmp_path / "room.mp4", clip.frames)
    result = _ask(capsys, str(video), QUESTION, "--model", str(model_dir))
    assert isinstance(result["answer"], str)
    assert result["prompt"] == f"{PRE_PROMPT}\n{QUESTION}\n{NUMERIC_POST_PROMPT}"
    assert result["num_frames"] == 4 and result["size_hw"] == [32, 48]
    assert result["frame_indices"] == [0, 3, 7, 11]  # uniform, first and last included
    # the CLI's answer is the library's greedy answer on the same frames
    from vfm3d.spatial.model import load_vgllm

    model, processor = load_vgllm(model_dir)
    frames, _ = input_frames(video, 4, processor)
    expected = generate_answers(model, processor, [frames], [result["prompt"]])[0]
    assert result["answer"] == expected
    # plain output: the answer alone
    assert vfm3d_main(["ask", str(video), QUESTION, "--model", str(model_dir)]) == 0
    assert capsys.readouterr().out.strip() == expected.strip()


def test_ask_image_folder_clip_folder_and_options(
    tmp_path: Path, clip, model_dir: Path, capsys
) -> None:
    from PIL import Image

    images = tmp_path / "frames"
    images.mkdir()
    for i, frame in enumerate(clip.frames):
        Image.fromarray(frame).save(images / f"{i:03d}.png")
    result = _ask(
        capsys, str(images), "Which is closer?", "--model", str(model_dir), "--frames", "3",
        "--options", "A. sofa", "B. lamp",
    )  # fmt: skip
    assert result["num_frames"] == 3 and result["frame_indices"] == [0, 5, 11]
    assert result["prompt"].endswith("Options:\nA. sofa\nB. lamp\n" + CHOICE_POST_PROMPT)
    assert result["prompt"] == question_prompt("Which is closer?", ["A. sofa", "B. lamp"])

    from vfm3d.clip import ClipFolder
    from vfm3d.world import generate_dataset

    generate_dataset(tmp_path / "clips", "room", 2, 8, 48, 64, seed=0, progress=False)
    result = _ask(capsys, str(tmp_path / "clips"), QUESTION, "--model", str(model_dir))
    ids = ClipFolder(tmp_path / "clips").ids
    assert result["clip_id"] == ids[0] and result["num_frames"] == 4
    picked = _ask(capsys, str(tmp_path / "clips"), QUESTION, "--model", str(model_dir), "--clip",
                  ids[1])  # fmt: skip
    assert picked["clip_id"] == ids[1]


def test_ask_reports_bad_input(tmp_path: Path, model_dir: Path, capsys) -> None:
    code = vfm3d_main(["ask", str(tmp_path / "missing.mp4"), QUESTION, "--model", str(model_dir)])
    assert code == 2
    assert "not found" in capsys.readouterr().err
