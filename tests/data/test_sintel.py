"""Sintel reader: `.cam` / `.dpt` binaries written byte-for-byte with `struct`."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.data.scene import Truth, assert_reads_back, make_truth, save_png
from vfm3d.data import DatasetFormatError, read
from vfm3d.data.readers.sintel import parse_cam, parse_dpt

TAG = 202021.25


def dpt_bytes(depth: np.ndarray) -> bytes:
    h, w = depth.shape
    body = struct.pack(f"<{h * w}f", *depth.astype(np.float32).ravel().tolist())
    return struct.pack("<fii", TAG, w, h) + body


def cam_bytes(k: np.ndarray, cam_to_world: np.ndarray) -> bytes:
    world_to_cam = np.linalg.inv(cam_to_world)[:3, :]  # x = K [R|t] X
    return (
        struct.pack("<f", TAG)
        + struct.pack("<9d", *k.ravel())
        + struct.pack("<12d", *world_to_cam.ravel())
    )


def write_sintel(root: Path, seq: str, truth: Truth) -> None:
    training = root / "training"
    for i in range(len(truth.frames)):
        name = f"frame_{i + 1:04d}"
        save_png(training / "final" / seq / f"{name}.png", truth.frames[i])
        clean = truth.frames[i].copy()
        clean[..., 2] = 10
        save_png(training / "clean" / seq / f"{name}.png", clean)
        depth = truth.depth[i].copy()
        depth[0, 0] = np.inf  # an invalid pixel
        (training / "depth" / seq).mkdir(parents=True, exist_ok=True)
        (training / "depth" / seq / f"{name}.dpt").write_bytes(dpt_bytes(depth))
        (training / "camdata_left" / seq).mkdir(parents=True, exist_ok=True)
        cam = cam_bytes(truth.intrinsics[i], truth.cam_to_world[i])
        (training / "camdata_left" / seq / f"{name}.cam").write_bytes(cam)


@pytest.fixture
def sintel(tmp_path: Path) -> tuple[Path, Truth]:
    truth = make_truth(3, seed=4)
    write_sintel(tmp_path, "alley_2", truth)
    write_sintel(tmp_path, "not_in_protocol", make_truth(2, seed=5))
    return tmp_path, truth


def test_sintel_reads_back(sintel) -> None:
    root, truth = sintel
    reader = read("sintel", root)
    assert reader.ids == ["alley_2", "not_in_protocol"]
    clip = reader.load("alley_2")
    expected = truth.depth.astype(np.float32)
    expected[:, 0, 0] = 0.0
    assert_reads_back(clip, truth, depth=expected)
    assert not clip.valid[:, 0, 0].any() and clip.valid[:, 1:, 1:].all()
    assert clip.meta["pass"] == "final" and clip.dynamic is None


def test_sintel_dynamic_masks(sintel) -> None:
    root, _ = sintel
    folder = root / "training" / "dynamic_label_perfect" / "alley_2"
    for i in range(3):
        mask = np.zeros((16, 24), np.uint8)
        mask[i, :5] = 255
        save_png(folder / f"frame_{i + 1:04d}.png", mask)
    clip = read("sintel", root).load("alley_2")
    assert clip.dynamic.dtype == bool and clip.dynamic.sum() == 15
    assert clip.dynamic[1, 1, :5].all() and not clip.dynamic[1, 0].any()
    assert read("sintel", root).describe("alley_2")["dynamic"]


def test_sintel_clean_pass_protocol_and_training_root(sintel) -> None:
    root, _ = sintel
    clip = read("sintel", root / "training", pass_name="clean").load("alley_2")
    assert (clip.frames[..., 2][~np.all(clip.frames == [255, 0, 0], -1)] == 10).all()
    assert read("sintel", root, protocol="monst3r").ids == ["alley_2"]
    with pytest.raises(ValueError, match="pass_name"):
        read("sintel", root, pass_name="albedo")


@pytest.mark.parametrize(
    ("target", "mutate", "message"),
    [
        ("depth", lambda b: b[:-10], "truncated"),
        ("depth", lambda b: b[:6], "truncated header"),
        ("depth", lambda b: struct.pack("<f", 1.5) + b[4:], "wrong tag"),
        ("depth", lambda b: b + b"\0\0\0\0", "trailing bytes"),
        ("cam", lambda b: b[:100], "truncated"),
        ("cam", lambda b: struct.pack("<f", 7.0) + b[4:], "wrong tag"),
        ("cam", lambda b: b[:4] + struct.pack("<d", float("nan")) + b[12:], "non-finite"),
    ],
)
def test_malformed_binaries_name_the_file(sintel, target, mutate, message) -> None:
    root, _ = sintel
    folder = {"depth": "depth", "cam": "camdata_left"}[target]
    path = (
        root
        / "training"
        / folder
        / "alley_2"
        / f"frame_0002.{'dpt' if target == 'depth' else 'cam'}"
    )
    path.write_bytes(mutate(path.read_bytes()))
    with pytest.raises(DatasetFormatError, match=rf"{path.name}.*{message}|{message}.*{path.name}"):
        read("sintel", root).load("alley_2")


def test_missing_cam_names_the_file(sintel) -> None:
    root, _ = sintel
    path = root / "training" / "camdata_left" / "alley_2" / "frame_0003.cam"
    path.unlink()
    with pytest.raises(DatasetFormatError, match=r"frame_0003\.cam: missing"):
        read("sintel", root).load("alley_2")


@given(st.binary(max_size=200))
def test_fuzz_dpt(data: bytes) -> None:
    try:
        depth = parse_dpt(data, "x.dpt")
    except DatasetFormatError as error:
        assert "x.dpt" in str(error)
    else:
        assert depth.dtype == np.float32 and depth.ndim == 2


@given(st.binary(min_size=0, max_size=200), st.booleans())
def test_fuzz_cam(data: bytes, tagged: bool) -> None:
    if tagged:
        data = struct.pack("<f", TAG) + data
    try:
        k, world_to_cam = parse_cam(data, "x.cam")
    except DatasetFormatError as error:
        assert "x.cam" in str(error)
    else:
        assert k.shape == (3, 3) and world_to_cam.shape == (4, 4)


@given(st.integers(1, 6), st.integers(1, 6), st.binary(max_size=8))
def test_fuzz_dpt_sizes(width: int, height: int, tail: bytes) -> None:
    data = struct.pack("<fii", TAG, width, height) + bytes(4 * width * height) + tail
    if tail:
        with pytest.raises(DatasetFormatError):
            parse_dpt(data, "x.dpt")
    else:
        assert parse_dpt(data, "x.dpt").shape == (height, width)
