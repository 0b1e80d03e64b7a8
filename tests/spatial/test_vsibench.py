"""VSI-Bench in a local folder: records, video frames sampled uniformly, official prompts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vfm3d.data.errors import DatasetFormatError
from vfm3d.spatial.prompts import (
    CHOICE_POST_PROMPT,
    GENERATION,
    NUMERIC_POST_PROMPT,
    POST_PROMPTS,
    PRE_PROMPT,
    build_prompt,
)
from vfm3d.spatial.vsibench import (
    VSIBench,
    find_question_file,
    normalise_record,
    read_records,
    uniform_indices,
)

av = pytest.importorskip("av")

RECORDS = [
    {"id": 0, "dataset": "arkitscenes", "scene_name": "41069025", "question_type": "object_counting",
     "question": "How many chair(s) are in this room?", "options": None, "ground_truth": "4"},
    {"id": 1, "dataset": "arkitscenes", "scene_name": "41069025",
     "question_type": "object_rel_direction_easy",
     "question": "If I am standing by the sofa and facing the tv, is the chair to the left or the "
     "right of the tv?", "options": ["A. left", "B. right"], "ground_truth": "B"},
    {"id": 2, "dataset": "scannet", "scene_name": "scene0011_00", "question_type": "route_planning",
     "question": "You are a robot ...", "options": ["A. Turn Left", "B. Turn Back"],
     "ground_truth": "A", "extra": 7},
]  # fmt: skip


def _write_video(path: Path, frames: np.ndarray, fps: int = 10) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "0"}
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("vsibench")
    (root / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    ramp = np.stack([np.full((32, 48, 3), 10 * i, dtype=np.uint8) for i in range(20)])
    _write_video(root / "arkitscenes" / "41069025.mp4", ramp)
    _write_video(root / "scannet" / "scene0011_00.mp4", ramp[:3])
    return root


def test_uniform_indices_as_lmms_eval() -> None:
    assert uniform_indices(20, 5).tolist() == [0, 4, 9, 14, 19]
    assert uniform_indices(3, 8).tolist() == [0, 1, 2]
    assert uniform_indices(10, 1).tolist() == [0]
    assert uniform_indices(100, 32).tolist() == np.linspace(0, 99, 32, dtype=int).tolist()
    with pytest.raises(ValueError):
        uniform_indices(0, 4)


def test_reader_records_and_frames(bench: Path) -> None:
    vsi = VSIBench(bench, num_frames=5)
    assert vsi.questions_path.name == "test.jsonl" and len(vsi) == 3
    assert vsi.scenes() == [("arkitscenes", "41069025"), ("scannet", "scene0011_00")]
    assert list(vsi)[2]["extra"] == 7  # unknown fields are kept
    clip = vsi.load(RECORDS[0])
    assert clip.frames.shape == (5, 32, 48, 3)
    assert clip.meta["frame_indices"] == [0, 4, 9, 14, 19] and clip.meta["video_frames"] == 20
    brightness = clip.frames.reshape(5, -1).mean(axis=1)
    np.testing.assert_allclose(brightness, [0, 40, 90, 140, 190], atol=3)
    assert not clip.intrinsics_known and not clip.poses_known
    assert clip.meta["source"] == "vsibench" and clip.meta["dataset"] == "arkitscenes"
    assert vsi.load(RECORDS[1]) is clip  # same scene: cached
    short = vsi.load(RECORDS[2])
    assert short.meta["frame_indices"] == [0, 1, 2]  # fewer frames than asked: all of them


def test_reader_resizes_and_filters(bench: Path) -> None:
    vsi = VSIBench(bench, num_frames=4, size=(16, 16), question_types=["object_counting"])
    assert len(vsi) == 1
    clip = vsi.load_scene("arkitscenes", "41069025")
    assert clip.frames.shape == (4, 16, 16, 3)
    assert clip.intrinsics[0, 0, 2] == pytest.approx(7.5)  # principal point follows the crop
    with pytest.raises(ValueError, match="unknown question types"):
        VSIBench(bench, question_types=["counting"])


def test_missing_video_and_bad_records(bench: Path, tmp_path: Path) -> None:
    vsi = VSIBench(bench)
    with pytest.raises(FileNotFoundError, match=r"nowhere\.mp4"):
        vsi.load_scene("scannet", "nowhere")
    with pytest.raises(DatasetFormatError, match="missing field"):
        normalise_record({"id": 1, "question": "?"})
    with pytest.raises(DatasetFormatError, match="needs options"):
        normalise_record({**RECORDS[1], "options": None})
    with pytest.raises(DatasetFormatError, match="unknown question_type"):
        normalise_record({**RECORDS[0], "question_type": "counting"})
    arr = normalise_record({**RECORDS[1], "options": np.array(["A. left", "B. right"])})
    assert arr["options"] == ["A. left", "B. right"]  # parquet gives arrays
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 0}\nnot json\n')
    with pytest.raises(DatasetFormatError, match=r"bad\.jsonl"):
        read_records(bad)
    (tmp_path / "a.jsonl").write_text("")
    with pytest.raises(DatasetFormatError, match="several"):
        find_question_file(tmp_path)
    with pytest.raises(FileNotFoundError):
        find_question_file(tmp_path / "empty")


def test_parquet_records(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    pq.write_table(pa.Table.from_pylist(RECORDS[:2]), tmp_path / "test-00000-of-00001.parquet")
    (tmp_path / "other.jsonl").write_text("")
    path = find_question_file(tmp_path)  # the test parquet wins over other files
    assert path.name == "test-00000-of-00001.parquet"
    got = read_records(path)
    assert got[0]["options"] is None and got[1]["options"] == ["A. left", "B. right"]


def test_official_prompts() -> None:
    assert PRE_PROMPT == "These are frames of a video."
    assert NUMERIC_POST_PROMPT == "Please answer the question using a single word or phrase."
    assert CHOICE_POST_PROMPT == "Answer with the option's letter from the given choices directly."
    assert GENERATION["max_new_tokens"] == 16 and GENERATION["do_sample"] is False
    assert build_prompt(RECORDS[0]) == (
        "These are frames of a video.\nHow many chair(s) are in this room?\n"
        "Please answer the question using a single word or phrase."
    )
    assert build_prompt(RECORDS[1]) == (
        "These are frames of a video.\n"
        + RECORDS[1]["question"]
        + "\nOptions:\nA. left\nB. right\n"
        "Answer with the option's letter from the given choices directly."
    )
    assert build_prompt(RECORDS[0], pre_prompt="") == build_prompt(RECORDS[0])  # "" -> default
    assert len(POST_PROMPTS) == 10
    with pytest.raises(ValueError, match="unknown question_type"):
        build_prompt({"question_type": "x", "question": "?"})
