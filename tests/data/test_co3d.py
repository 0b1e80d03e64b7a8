"""CO3Dv2 reader: gzipped annotations with PyTorch3D NDC cameras, float16-in-uint16 depth."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.data.scene import (
    MARKER_UV,
    Truth,
    assert_reads_back,
    make_truth,
    project,
    save_jpg,
    save_png,
    save_png16,
)
from vfm3d.cli import main as vfm3d_main
from vfm3d.data import DatasetFormatError, SequenceRejected, read
from vfm3d.data.readers.co3d import aspect_crop_around_centre, parse_frame_annotation

FLIP = np.diag([-1.0, -1.0, 1.0])  # OpenCV camera axes <-> PyTorch3D camera axes


def p3d_viewpoint(k: np.ndarray, cam_to_world: np.ndarray, hw: tuple[int, int], fmt: str) -> dict:
    """OpenCV camera -> PyTorch3D ``R, T`` (X_cam = X @ R + T, x left / y up) and NDC intrinsics."""
    world_to_cam = np.linalg.inv(cam_to_world)
    rotation_p3d = world_to_cam[:3, :3].T @ FLIP
    translation_p3d = FLIP @ world_to_cam[:3, 3]
    h, w = hw
    sx, sy = (min(h, w) / 2, min(h, w) / 2) if fmt == "ndc_isotropic" else (w / 2, h / 2)
    return {
        "R": rotation_p3d.tolist(),
        "T": translation_p3d.tolist(),
        "focal_length": [k[0, 0] / sx, k[1, 1] / sy],
        "principal_point": [(w / 2 - k[0, 2]) / sx, (h / 2 - k[1, 2]) / sy],
        "intrinsics_format": fmt,
    }


def write_sequence(
    root: Path,
    category: str,
    seq: str,
    truth: Truth,
    fmt: str = "ndc_isotropic",
    depth_scale: float = 0.5,
    with_depth: bool = True,
    masks: list[np.ndarray] | None = None,
) -> tuple[list[dict], np.ndarray]:
    """Files of one sequence; returns its annotation entries and the expected depth."""
    entries, expected = [], []
    h, w = truth.frames.shape[1:3]
    for i in range(len(truth.frames)):
        name = f"frame{i + 1:06d}"
        rel = f"{category}/{seq}"
        save_jpg(root / rel / "images" / f"{name}.jpg", truth.frames[i])
        entry = {
            "sequence_name": seq,
            "frame_number": i,
            "frame_timestamp": i / 30,
            "image": {"path": f"{rel}/images/{name}.jpg", "size": [h, w]},
            "viewpoint": p3d_viewpoint(truth.intrinsics[i], truth.cam_to_world[i], (h, w), fmt),
            "meta": {"frame_type": "train"},
        }
        if with_depth:
            stored = (truth.depth[i] / depth_scale).astype(np.float16)
            stored[0, 0] = 0
            save_png16(root / rel / "depths" / f"{name}.jpg.geometric.png", stored.view(np.uint16))
            dmask = np.full((h, w), 255, np.uint8)
            dmask[2, 2] = 0
            save_png(root / rel / "depth_masks" / f"{name}.png", dmask)
            entry["depth"] = {
                "path": f"{rel}/depths/{name}.jpg.geometric.png",
                "scale_adjustment": depth_scale,
                "mask_path": f"{rel}/depth_masks/{name}.png",
            }
            value = stored.astype(np.float32) * np.float32(depth_scale)
            value[2, 2] = 0
            expected.append(value)
        if masks is not None:
            save_png(root / rel / "masks" / f"{name}.png", masks[i])
            entry["mask"] = {"path": f"{rel}/masks/{name}.png", "mass": float(masks[i].sum())}
        entries.append(entry)
    return entries[::-1], np.stack(expected) if expected else np.zeros(0)  # unsorted on disk


def write_annotations(root: Path, category: str, entries: list[dict], sequences: list[str]) -> None:
    (root / category).mkdir(parents=True, exist_ok=True)
    (root / category / "frame_annotations.jgz").write_bytes(
        gzip.compress(json.dumps(entries).encode())
    )
    seq_entries = [{"sequence_name": s, "category": category} for s in sequences]
    (root / category / "sequence_annotations.jgz").write_bytes(
        gzip.compress(json.dumps(seq_entries).encode())
    )


@pytest.fixture
def co3d(tmp_path: Path):
    truth_a = make_truth(3, seed=9, blob=1)
    truth_b = make_truth(2, seed=10, blob=1)
    entries_a, depth_a = write_sequence(tmp_path, "apple", "110_13051_23361", truth_a)
    entries_b, depth_b = write_sequence(
        tmp_path, "apple", "189_20393_38136", truth_b, fmt="ndc_norm_image_bounds"
    )
    write_annotations(
        tmp_path, "apple", entries_a + entries_b, ["110_13051_23361", "189_20393_38136"]
    )
    lists = {
        "train": [["110_13051_23361", i, "x"] for i in range(3)],
        "val": [["189_20393_38136", 1, "x"]],
    }
    (tmp_path / "apple" / "set_lists").mkdir()
    (tmp_path / "apple" / "set_lists" / "set_lists_fewview_dev.json").write_text(json.dumps(lists))
    return tmp_path, (truth_a, depth_a), (truth_b, depth_b)


def test_co3d_isotropic_and_bounds_formats_read_back(co3d) -> None:
    root, (truth_a, depth_a), (truth_b, depth_b) = co3d
    reader = read("co3d", root)
    assert reader.ids == ["apple_110_13051_23361", "apple_189_20393_38136"]
    clip = reader.load("apple_110_13051_23361")
    assert_reads_back(clip, truth_a, depth=depth_a)
    assert (
        not clip.valid[:, 0, 0].any()
        and not clip.valid[:, 2, 2].any()
        and clip.valid[:, 5, 5].all()
    )
    assert clip.meta["frame_indices"] == [0, 1, 2] and clip.meta["category"] == "apple"
    assert_reads_back(reader.load("apple_189_20393_38136"), truth_b, depth=depth_b)


def test_co3d_set_lists_categories_and_sequence_names(co3d) -> None:
    root, _, (truth_b, _) = co3d
    reader = read("co3d", root, subset_name="fewview_dev", split="val")
    assert reader.ids == ["apple_189_20393_38136"]
    clip = reader.load(reader.ids[0])
    assert clip.meta["frame_indices"] == [1]
    np.testing.assert_allclose(clip.cam_to_world[0], truth_b.cam_to_world[1], atol=1e-6)
    assert read("co3d", root, sequences=["110_13051_23361"]).ids == ["apple_110_13051_23361"]
    with pytest.raises(DatasetFormatError, match="categories not found"):
        read("co3d", root, categories=["banana"])


def test_co3d_depth_mask_can_be_ignored(co3d) -> None:
    root, _, _ = co3d
    clip = read("co3d", root, use_depth_mask=False).load("apple_110_13051_23361")
    assert clip.valid[:, 2, 2].all()


def test_co3d_vidfm3d_protocol_crops_and_keeps_cameras(tmp_path: Path, capsys) -> None:
    n = 88
    truth = make_truth(n, seed=11)
    masks = []
    for i in range(n):
        mask = np.zeros((16, 24), np.uint8)
        if i >= 3:  # windows that include frames 0-2 (empty masks) are discarded
            mask[4:12, 6:18] = 255
        masks.append(mask)
    entries, _ = write_sequence(tmp_path, "car", "1_2_3", truth, with_depth=False, masks=masks)
    write_annotations(tmp_path, "car", entries, ["1_2_3"])
    with pytest.raises(SequenceRejected, match="upsampling"):
        read("co3d", tmp_path, protocol="vidfm3d").load("car_1_2_3")  # 16x24 -> 540x960
    rejecting = read("co3d", tmp_path, protocol="vidfm3d")
    assert list(rejecting) == [] and "car_1_2_3" in rejecting.rejected[0]
    assert vfm3d_main(["data", "info", "co3d", str(tmp_path), "--protocol", "vidfm3d"]) == 0
    assert "rejected by the vidfm3d rule" in capsys.readouterr().out
    reader = read("co3d", tmp_path, protocol="vidfm3d")
    reader.protocol["resize_hw"] = [9, 16]
    clip = reader.load("car_1_2_3")
    assert clip.num_frames == 81 and clip.meta["frame_indices"] == list(range(4, 85))
    assert clip.frames.shape[1:3] == (9, 16)
    record = clip.meta["transform"]
    assert record["in_hw"] == [16, 24] and record["out_hw"] == [9, 16]
    sx, sy = record["scale"]
    ox, oy = record["offset"]
    for t in (0, 40, 80):
        i = t + 4
        expected = np.array([MARKER_UV[0] * sx + ox, MARKER_UV[1] * sy + oy])
        uv = project(clip.intrinsics[t], clip.cam_to_world[t], truth.markers[i])
        np.testing.assert_allclose(uv, expected, atol=1e-3)


def test_aspect_crop_rule() -> None:
    assert aspect_crop_around_centre((16, 24), (3, 2, 20, 13), 16 / 9) == (1, 2, 21, 13)
    x0, y0, x1, y1 = aspect_crop_around_centre((100, 100), (0, 40, 99, 60), 16 / 9)
    assert (x0, x1) == (0, 99) and abs((x1 - x0 + 1) / (y1 - y0 + 1) - 16 / 9) < 0.05


# ---------------------------------------------------------------- malformed input
def test_co3d_malformed_annotations(co3d) -> None:
    root, _, _ = co3d
    path = root / "apple" / "frame_annotations.jgz"
    entries = json.loads(gzip.decompress(path.read_bytes()))
    entries[1]["viewpoint"]["T"] = [0.0, float("nan"), 1.0]
    path.write_bytes(gzip.compress(json.dumps(entries).encode()))
    with pytest.raises(
        DatasetFormatError, match=r"frame_annotations\.jgz: entry 1: non-finite 'viewpoint\.T'"
    ):
        read("co3d", root).load("apple_110_13051_23361")
    del entries[1]["viewpoint"]
    path.write_bytes(gzip.compress(json.dumps(entries).encode()))
    with pytest.raises(DatasetFormatError, match="entry 1: missing field 'viewpoint'"):
        read("co3d", root).load("apple_110_13051_23361")
    path.write_bytes(gzip.compress(b"[1, 2")[:-3])
    with pytest.raises(DatasetFormatError, match=r"frame_annotations\.jgz: cannot parse JSON"):
        read("co3d", root).load("apple_110_13051_23361")


def test_co3d_truncated_depth_names_the_file(co3d) -> None:
    root, _, _ = co3d
    depth = root / "apple" / "110_13051_23361" / "depths" / "frame000002.jpg.geometric.png"
    depth.write_bytes(depth.read_bytes()[:30])
    with pytest.raises(DatasetFormatError, match=r"frame000002\.jpg\.geometric\.png"):
        read("co3d", root).load("apple_110_13051_23361")


json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=4),
    lambda children: (
        st.lists(children, max_size=9) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=30,
)


@given(json_values)
def test_fuzz_frame_annotation(entry) -> None:
    try:
        parse_frame_annotation(entry, "frame_annotations.jgz: entry 0")
    except DatasetFormatError as error:
        assert "frame_annotations.jgz" in str(error)


@given(
    st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=9, max_size=9),
    st.lists(st.floats(), min_size=3, max_size=3),
    st.lists(st.floats(), min_size=2, max_size=2),
    st.sampled_from(["ndc_isotropic", "ndc_norm_image_bounds", "screen", 3]),
)
def test_fuzz_viewpoint(rotation, translation, focal, fmt) -> None:
    entry = {
        "sequence_name": "s",
        "frame_number": 0,
        "image": {"path": "a.jpg", "size": [4, 6]},
        "viewpoint": {
            "R": rotation,
            "T": translation,
            "focal_length": focal,
            "principal_point": [0, 0],
            "intrinsics_format": fmt,
        },
    }
    try:
        parsed = parse_frame_annotation(entry, "frame_annotations.jgz: entry 0")
    except DatasetFormatError as error:
        assert "frame_annotations.jgz" in str(error)
    else:
        assert np.isfinite(parsed["intrinsics"]).all() and np.isfinite(parsed["world_to_cam"]).all()
