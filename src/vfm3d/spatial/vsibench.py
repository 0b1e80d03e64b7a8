"""VSI-Bench from a local folder: its question records and its videos, N frames per video.

Layout (as the Hugging Face dataset ``nyu-visionx/VSI-Bench`` unpacks)::

    ROOT/test-00000-of-00001.parquet     the test split (or any .parquet / .jsonl / .json of
                                         records: pass it as ``questions``)
    ROOT/<dataset>/<scene_name>.mp4      arkitscenes/, scannet/, scannetpp/ (the zips, unpacked)

A record has ``id``, ``dataset``, ``scene_name``, ``question_type``, ``question``, ``options``
(a list of ``"A. ..."`` strings, None for numeric types) and ``ground_truth``; other fields are
kept. Parquet needs ``pyarrow`` (``pip install pyarrow``); JSONL needs nothing (the records
generated from the world, `vfm3d.spatial.questions`, have the same format).

Frames: a video is decoded with `vfm3d.data.readers.video.VideoReader` and ``num_frames`` frames
are taken at ``np.linspace(0, total - 1, num_frames).astype(int)`` of its decoded frames (all of
them when it has fewer), the uniform sampling of lmms-eval's VSI-Bench loader; ``size`` /
``resize_mode`` then resize the kept frames only. The clip has placeholder intrinsics and identity
poses (``intrinsics_known`` / ``poses_known`` False): VSI-Bench gives no cameras.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vfm3d.clip import Clip
from vfm3d.data.errors import DatasetFormatError
from vfm3d.metrics.vsi import CHOICE_TASKS, QUESTION_TYPES
from vfm3d.spatial.prompts import build_prompt

REQUIRED_KEYS = ("id", "dataset", "scene_name", "question_type", "question", "ground_truth")
QUESTION_SUFFIXES = (".parquet", ".jsonl", ".json")


def find_question_file(root: str | os.PathLike[str]) -> Path:
    """The test records of a VSI-Bench folder: ``test-*.parquet`` (also under ``data/``), else
    the only ``.parquet`` / ``.jsonl`` / ``.json`` file there.

    Raises:
        FileNotFoundError: none found. DatasetFormatError: several candidates (pass one).
    """
    base = Path(root)
    if not base.is_dir():
        raise FileNotFoundError(f"VSI-Bench folder not found: {base}")
    for folder in (base, base / "data"):
        tests = sorted(folder.glob("test-*.parquet")) if folder.is_dir() else []
        if len(tests) == 1:
            return tests[0]
        if len(tests) > 1:
            raise DatasetFormatError(
                f"{folder}: several test parquet files ({', '.join(p.name for p in tests)}); "
                "pass the one to use as the questions file"
            )
    found = sorted(
        p for p in base.iterdir() if p.is_file() and p.suffix.lower() in QUESTION_SUFFIXES
    )
    if len(found) == 1:
        return found[0]
    if not found:
        raise FileNotFoundError(
            f"{base}: no question records (test-*.parquet, *.parquet, *.jsonl or *.json)"
        )
    raise DatasetFormatError(
        f"{base}: several question files ({', '.join(p.name for p in found)}); pass one"
    )


def read_records(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The records of a ``.parquet``, ``.jsonl`` or ``.json`` (a list, or ``{"data": [...]}``)
    file, normalised (`normalise_record`).

    Raises:
        FileNotFoundError, DatasetFormatError (the message names the file and the record).
    """
    source = Path(path)
    if not source.is_file():
        raise FileNotFoundError(f"question file not found: {source}")
    suffix = source.suffix.lower()
    if suffix == ".parquet":
        raw = _read_parquet(source)
    elif suffix == ".jsonl":
        raw = []
        for n, line in enumerate(source.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    raw.append(json.loads(line))
                except json.JSONDecodeError as error:
                    raise DatasetFormatError(f"{source}:{n}: not JSON ({error})") from error
    elif suffix == ".json":
        try:
            data = json.loads(source.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise DatasetFormatError(f"{source}: not JSON ({error})") from error
        raw = data.get("data") if isinstance(data, dict) else data
        if not isinstance(raw, list):
            raise DatasetFormatError(f"{source}: expected a list of records (or {{'data': [...]}})")
    else:
        raise DatasetFormatError(
            f"{source}: unknown question file type {suffix!r} (expected .parquet, .jsonl, .json)"
        )
    return [normalise_record(r, f"{source} record {i}") for i, r in enumerate(raw)]


def _read_parquet(path: Path) -> list[dict[str, Any]]:
    try:
        import pyarrow.parquet as pq
    except ImportError as error:
        raise ImportError(
            f"reading {path.name} needs pyarrow (pip install pyarrow), or give the records as JSONL"
        ) from error
    return pq.read_table(path).to_pylist()


def normalise_record(raw: Mapping[str, Any], where: str = "record") -> dict[str, Any]:
    """A record with the VSI-Bench fields typed: ``id`` int (when numeric), the strings str,
    ``options`` a list of str (None for numeric types); unknown fields are kept.

    Raises:
        DatasetFormatError: a field is missing, the type is unknown, or a choice record has no
            options.
    """
    if not isinstance(raw, Mapping):
        raise DatasetFormatError(f"{where}: not a record ({type(raw).__name__})")
    missing = [k for k in REQUIRED_KEYS if k not in raw]
    if missing:
        raise DatasetFormatError(f"{where}: missing field(s) {missing}")
    record = dict(raw)
    for key in ("dataset", "scene_name", "question_type", "question", "ground_truth"):
        record[key] = str(record[key])
    try:
        record["id"] = int(record["id"])
    except (TypeError, ValueError):
        record["id"] = str(record["id"])
    kind = record["question_type"]
    if kind not in QUESTION_TYPES:
        raise DatasetFormatError(f"{where}: unknown question_type {kind!r}")
    options = record.get("options")
    if options is not None and not isinstance(options, str):
        options = [str(o) for o in list(options)]  # parquet gives arrays
    if isinstance(options, str):
        raise DatasetFormatError(f"{where}: options must be a list of strings, got a string")
    if kind in CHOICE_TASKS and not options:
        raise DatasetFormatError(f"{where}: a {kind} record needs options")
    record["options"] = options if options else None
    return record


def uniform_indices(total: int, num_frames: int) -> np.ndarray:
    """``np.linspace(0, total - 1, min(num_frames, total)).astype(int)``: lmms-eval's uniform
    frame sampling (floor of evenly spaced positions, first and last frame included)."""
    if int(total) < 1 or int(num_frames) < 1:
        raise ValueError(f"total and num_frames must be >= 1, got {total}, {num_frames}")
    return np.linspace(0, int(total) - 1, min(int(num_frames), int(total))).astype(int)


def load_video_frames(
    path: str | os.PathLike[str],
    num_frames: int,
    size: tuple[int, int] | Sequence[int] | str | None = None,
    resize_mode: str = "crop",
    clip_id: str | None = None,
) -> Clip:
    """``num_frames`` frames of the video at ``path`` sampled by `uniform_indices` (decoded twice:
    once to count, once to keep; at most 64 frames held besides the kept ones), then resized to
    ``size`` (H, W). ``meta``: ``id``, ``source="vsibench"``, ``path``, ``fps``,
    ``frame_indices`` (positions among the decoded frames), ``timestamps``, ``video_frames`` (the
    count), ``sampling``, ``intrinsics_known=False``, ``poses_known=False``."""
    from vfm3d.data.readers.video import (
        VideoReader,
        build_clip,
        fit_transform,
        placeholder_intrinsics,
    )
    from vfm3d.data.transforms import parse_hw

    reader = VideoReader(path)
    total = reader.count_selected()
    wanted = uniform_indices(total, num_frames)
    need = {int(i) for i in wanted}  # distinct: the spacing is >= 1 frame
    frames: list[np.ndarray] = []
    stamps: list[float] = []
    position = 0
    for window in reader.iter_windows(64):
        times = window.meta.get("timestamps") or [0.0] * window.num_frames
        for k in range(window.num_frames):
            if position in need:
                frames.append(window.frames[k])
                stamps.append(float(times[k]))
            position += 1
        if len(frames) == len(wanted):
            break
    if len(frames) != len(wanted):
        raise DatasetFormatError(
            f"{path}: decoded {position} frames on the second pass, {total} on the first"
        )
    info = reader.probe()
    hw = (int(frames[0].shape[0]), int(frames[0].shape[1]))
    target: tuple[int, int] | None = None
    if size is not None:
        target = parse_hw(size) if isinstance(size, str) else (int(size[0]), int(size[1]))
    transform = fit_transform(hw, target, resize_mode)
    meta = {
        "id": clip_id or Path(path).stem,
        "source": "vsibench",
        "path": str(path),
        "fps": info.fps,
        "frame_indices": [int(i) for i in wanted],
        "timestamps": [round(t, 9) for t in stamps],
        "video_frames": int(total),
        "sampling": {"uniform": int(num_frames)},
        "intrinsics_known": False,
        "poses_known": False,
    }
    return build_clip(frames, placeholder_intrinsics(hw), transform, meta, path)


class VSIBench:
    """VSI-Bench in a local folder: records, prompts, and each scene's sampled frames.

    ``questions``: the records file (default `find_question_file`); ``num_frames`` frames per
    video (lmms-eval's loader default is 32; VG-LLM evaluates with 16 to 32); ``size`` (H, W) /
    ``resize_mode`` for the frames; ``question_types``: keep only these types.
    Iterating gives the records; `scenes` lists ``(dataset, scene_name)`` in record order;
    `load_scene` decodes one scene (the last one is cached, so iterate scene by scene).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        questions: str | os.PathLike[str] | None = None,
        num_frames: int = 32,
        size: tuple[int, int] | str | None = None,
        resize_mode: str = "crop",
        question_types: Sequence[str] | None = None,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"VSI-Bench folder not found: {self.root}")
        if int(num_frames) < 1:
            raise ValueError(f"num_frames must be >= 1, got {num_frames}")
        self.questions_path = Path(questions) if questions else find_question_file(self.root)
        records = read_records(self.questions_path)
        if question_types is not None:
            unknown = [t for t in question_types if t not in QUESTION_TYPES]
            if unknown:
                raise ValueError(
                    f"unknown question types {unknown}; VSI-Bench has {QUESTION_TYPES}"
                )
            records = [r for r in records if r["question_type"] in set(question_types)]
        self.records = records
        self.num_frames = int(num_frames)
        self.size = size
        self.resize_mode = resize_mode
        self._cached: tuple[tuple[str, str], Clip] | None = None

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.records)

    def scenes(self) -> list[tuple[str, str]]:
        """``(dataset, scene_name)`` of the records, each once, in record order."""
        return list(dict.fromkeys((r["dataset"], r["scene_name"]) for r in self.records))

    def video_path(self, dataset: str, scene_name: str) -> Path:
        """``ROOT/<dataset>/<scene_name>.mp4``."""
        return self.root / dataset / f"{scene_name}.mp4"

    def load_scene(self, dataset: str, scene_name: str) -> Clip:
        """The sampled frames of one scene's video (`load_video_frames`).

        Raises:
            FileNotFoundError: the video is missing (the path is named).
        """
        key = (dataset, scene_name)
        if self._cached is not None and self._cached[0] == key:
            return self._cached[1]
        path = self.video_path(dataset, scene_name)
        if not path.is_file():
            raise FileNotFoundError(f"VSI-Bench video not found: {path}")
        clip = load_video_frames(path, self.num_frames, self.size, self.resize_mode, scene_name)
        clip.meta["dataset"] = dataset
        self._cached = (key, clip)
        return clip

    def load(self, record: Mapping[str, Any]) -> Clip:
        """The sampled frames of ``record``'s scene."""
        return self.load_scene(str(record["dataset"]), str(record["scene_name"]))

    @staticmethod
    def prompt(record: Mapping[str, Any]) -> str:
        """The official prompt of ``record`` (`vfm3d.spatial.prompts.build_prompt`)."""
        return build_prompt(record)
