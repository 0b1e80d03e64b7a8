"""Camera-only readers: RealEstate10K text files and DL3DV nerfstudio transforms.json."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.data.scene import H, Truth, W, assert_reads_back, make_truth, save_png
from vfm3d.data import DatasetFormatError, read
from vfm3d.data.readers.dl3dv import parse_transforms
from vfm3d.data.readers.re10k import parse_camera_file


# ---------------------------------------------------------------- RealEstate10K
def re10k_text(truth: Truth, stamps: list[int]) -> str:
    lines = ["https://www.youtube.com/watch?v=abcdefghijk"]
    for i, stamp in enumerate(stamps):
        k = truth.intrinsics[i]
        normalised = [k[0, 0] / W, k[1, 1] / H, k[0, 2] / W, k[1, 2] / H]
        world_to_cam = np.linalg.inv(truth.cam_to_world[i])[:3, :].ravel()
        values = [*normalised, 0.0, 0.0, *world_to_cam]
        lines.append(f"{stamp} " + " ".join(f"{v:.15g}" for v in values))
    return "\n".join(lines) + "\n"


@pytest.fixture
def re10k(tmp_path: Path) -> tuple[Path, Truth, list[int]]:
    truth = make_truth(3, seed=7)
    stamps = [33366667, 33400000, 33433333]
    (tmp_path / "test").mkdir()
    (tmp_path / "test" / "0a1b2c3d4e5f6a7b.txt").write_text(re10k_text(truth, stamps))
    for i, stamp in enumerate(stamps):
        save_png(tmp_path / "frames" / "0a1b2c3d4e5f6a7b" / f"{stamp}.png", truth.frames[i])
    return tmp_path, truth, stamps


def test_re10k_reads_back(re10k) -> None:
    root, truth, stamps = re10k
    reader = read("re10k", root)
    assert reader.ids == ["0a1b2c3d4e5f6a7b"]
    clip = reader.load(reader.ids[0])
    assert clip.depth is None and clip.valid is None
    assert_reads_back(clip, truth)
    np.testing.assert_allclose(clip.meta["timestamps"], np.array(stamps) * 1e-6)
    assert clip.meta["url"].startswith("https://")


def test_re10k_frames_in_order_and_mismatch(re10k) -> None:
    root, truth, stamps = re10k
    folder = root / "frames" / "0a1b2c3d4e5f6a7b"
    for i, stamp in enumerate(stamps):
        (folder / f"{stamp}.png").rename(folder / f"img_{i:03d}.png")
    assert_reads_back(read("re10k", root).load("0a1b2c3d4e5f6a7b"), truth)
    (folder / "img_002.png").unlink()
    with pytest.raises(DatasetFormatError, match="cannot match 2 images"):
        read("re10k", root).load("0a1b2c3d4e5f6a7b")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("33500000 0.5 0.5 0.5 0.5 0 0 1 0 0 0 0 1 0 0 0 0 1", r"\.txt:5: expected 19 fields"),
        ("33500000 0.5 0.5 0.5 0.5 0 0 1 0 0 0 0 1 0 0 0 0 1 inf", r"\.txt:5: non-finite"),
        ("3.3e7 0.5 0.5 0.5 0.5 0 0 1 0 0 0 0 1 0 0 0 0 1 0", r"\.txt:5: timestamp"),
        ("33500000 0.5 0.5 0.5 0.5 0 0 2 0 0 0 0 1 0 0 0 0 1 0", r"\.txt:5: pose rotation"),
    ],
)
def test_re10k_malformed_line(re10k, line: str, message: str) -> None:
    root, _, _ = re10k
    path = root / "test" / "0a1b2c3d4e5f6a7b.txt"
    path.write_text(path.read_text() + line + "\n")
    with pytest.raises(DatasetFormatError, match=message):
        read("re10k", root).load("0a1b2c3d4e5f6a7b")


@given(st.text(alphabet="0123456789.-+e naif\n", max_size=300))
def test_fuzz_re10k(text: str) -> None:
    try:
        _, rows = parse_camera_file(text, "clip.txt")
    except DatasetFormatError as error:
        assert "clip.txt" in str(error)
    else:
        assert all(np.isfinite(w2c).all() for _, _, w2c in rows)


# ---------------------------------------------------------------- DL3DV
def dl3dv_transforms(truth: Truth, scale: float) -> dict:
    """nerfstudio transforms for images ``scale`` times larger than the ones on disk."""
    flip = np.diag([1.0, -1.0, -1.0, 1.0])  # OpenCV camera axes -> OpenGL camera axes
    k = truth.intrinsics[0]
    frames = [
        {
            "file_path": f"images/frame_{i + 1:05d}.png",
            "transform_matrix": (truth.cam_to_world[i] @ flip).tolist(),
        }
        for i in range(len(truth.frames))
    ]
    return {
        "w": W * scale,
        "h": H * scale,
        "fl_x": k[0, 0] * scale,
        "fl_y": k[1, 1] * scale,
        "cx": k[0, 2] * scale,
        "cy": k[1, 2] * scale,
        "k1": 0.01,
        "camera_model": "OPENCV",
        "frames": frames[::-1],  # file order is not frame order
    }


@pytest.fixture
def dl3dv(tmp_path: Path) -> tuple[Path, Truth]:
    truth = make_truth(4, seed=8)
    scene = tmp_path / "1K" / "0123abcd"
    scene.mkdir(parents=True)
    (scene / "transforms.json").write_text(json.dumps(dl3dv_transforms(truth, 4.0)))
    for i in range(4):
        save_png(scene / "images_4" / f"frame_{i + 1:05d}.png", truth.frames[i])
    return tmp_path, truth


def test_dl3dv_reads_back_with_scaled_intrinsics(dl3dv) -> None:
    root, truth = dl3dv
    reader = read("dl3dv", root, image_folder="images_4")
    assert reader.ids == ["1K_0123abcd"]
    clip = reader.load("1K_0123abcd")
    assert clip.depth is None
    assert_reads_back(clip, truth)
    assert clip.meta["distortion"] == {"k1": 0.01} and clip.meta["camera_model"] == "OPENCV"
    auto = read("dl3dv", root).load("1K_0123abcd")  # falls back to images_4
    assert auto.meta["image_folder"] == "images_4"
    np.testing.assert_allclose(auto.intrinsics, clip.intrinsics)
    with pytest.raises(DatasetFormatError, match=r"images_8/frame_00001\.png: missing"):
        read("dl3dv", root, image_folder="images_8").load("1K_0123abcd")
    for image in (root / "1K" / "0123abcd" / "images_4").iterdir():
        image.unlink()
    with pytest.raises(DatasetFormatError, match=r"images/frame_00001\.png: missing"):
        read("dl3dv", root).load("1K_0123abcd")


def test_dl3dv_per_frame_intrinsics_and_protocol(dl3dv) -> None:
    root, _ = dl3dv
    path = root / "1K" / "0123abcd" / "transforms.json"
    obj = json.loads(path.read_text())
    for frame in obj["frames"]:
        frame.update(w=W, h=H, fl_x=10.0, fl_y=11.0, cx=12.0, cy=8.0)
    path.write_text(json.dumps(obj))
    clip = read("dl3dv", root, image_folder="images_4").load("1K_0123abcd")
    np.testing.assert_allclose(clip.intrinsics[0], [[10, 0, 12], [0, 11, 8], [0, 0, 1]])
    with pytest.raises(DatasetFormatError, match="need 150 frames"):
        read("dl3dv", root, protocol="vidfm3d", image_folder="images_4").load("1K_0123abcd")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda o: o["frames"][1].pop("transform_matrix"), r"frames\[1\]: 'transform_matrix'"),
        (lambda o: o["frames"][0].update(transform_matrix=[[1, 0], [0, 1]]), r"frames\[0\]: .*4x4"),
        (lambda o: o.pop("fl_x"), r"frames\[0\]: 'fl_x'"),
        (
            lambda o: o["frames"][2]["transform_matrix"][0].__setitem__(3, float("nan")),
            "non-finite pose",
        ),
    ],
)
def test_dl3dv_malformed(dl3dv, edit, message) -> None:
    root, _ = dl3dv
    path = root / "1K" / "0123abcd" / "transforms.json"
    obj = json.loads(path.read_text())
    edit(obj)
    path.write_text(json.dumps(obj))
    with pytest.raises(DatasetFormatError, match=rf"transforms\.json.*{message}"):
        read("dl3dv", root, image_folder="images_4").load("1K_0123abcd")
    path.write_text("{not json")
    with pytest.raises(DatasetFormatError, match=r"transforms\.json: cannot parse JSON"):
        read("dl3dv", root).load("1K_0123abcd")


json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@given(json_values)
def test_fuzz_transforms(obj) -> None:
    try:
        parse_transforms(obj, "transforms.json")
    except DatasetFormatError as error:
        assert "transforms.json" in str(error)


@given(
    st.lists(
        st.fixed_dictionaries(
            {"file_path": st.text(min_size=1, max_size=4), "transform_matrix": json_values}
        ),
        max_size=3,
    )
)
def test_fuzz_transforms_frames(frames) -> None:
    obj = {"fl_x": 1.0, "fl_y": 1.0, "cx": 0.5, "cy": 0.5, "w": 2, "h": 2, "frames": frames}
    try:
        parse_transforms(obj, "transforms.json")
    except DatasetFormatError as error:
        assert "transforms.json" in str(error)
