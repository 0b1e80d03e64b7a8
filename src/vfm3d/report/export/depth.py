"""Depth maps as 16-bit PNGs (one per frame) and as one safetensors file.

PNG folder (`depth/`): `000000.png`, `000001.png`, ... are greyscale 16-bit PNGs (Pillow mode
"I;16"), `value = round(depth / scale)`, value 0 = invalid pixel; `depth_scale.json` records
`scale` as `metres_per_unit` (scene units per PNG unit; metres for the synthetic world) with the
convention, so `depth = value * metres_per_unit` where `value > 0`. Unless given, the scale is
`max valid depth / 65535`, so the largest valid depth maps to 65535 and the round trip error is
at most `scale / 2`. A valid depth below `scale / 2` would round to 0 (= invalid); it is stored
as 1 instead, so no valid pixel is lost.

Safetensors (`depth.safetensors`): `depth` float32 `[T, H, W]` (values as given, also at invalid
pixels) and `valid` bool `[T, H, W]`; readable with `safetensors` and numpy alone.

Depth is z-depth along the optical axis of the OpenCV camera (not ray length); invalid pixels
are marked by `valid`, never by a depth value alone.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from vfm3d.report.export._validate import as_numpy, check_finite, check_shape
from vfm3d.utils.atomic import atomic_path, atomic_write_json

#: largest value of a 16-bit PNG pixel
MAX_UINT16 = 65535
DEPTH_CONVENTION = (
    "z-depth along the optical axis of the OpenCV camera (x right, y down, z forward), "
    "not ray length; depth = value * metres_per_unit for value > 0; value 0 = invalid pixel"
)
SAFETENSORS_CONVENTION = (
    "depth: float32 [T, H, W] z-depth along the optical axis (OpenCV camera); "
    "valid: bool [T, H, W], True where depth is meaningful"
)
SCALE_FILE = "depth_scale.json"


def _depth_and_valid(depth: np.ndarray, valid: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Checked `depth` float32 `[T, H, W]` and `valid` bool (default: finite and > 0)."""
    dep = as_numpy("depth", depth, np.float32)
    check_shape("depth", dep, (None, None, None), "T, H, W")
    if valid is None:
        mask = np.isfinite(dep) & (dep > 0)
    else:
        mask = as_numpy("valid", valid)
        if mask.dtype != np.bool_:
            raise ValueError(f"valid must be a bool array, got dtype {mask.dtype}")
        check_shape("valid", mask, dep.shape, "T, H, W")
        check_finite("depth", dep, where=mask)
        if bool((dep[mask] <= 0).any()):
            raise ValueError("depth must be > 0 at valid pixels (z-depth of a visible point)")
    return dep, mask


def choose_depth_scale(depth: np.ndarray, valid: np.ndarray) -> float:
    """Scale (units per PNG step) mapping the largest valid depth to 65535; 1e-3 with no valid pixel."""
    if not bool(valid.any()):
        return 1e-3
    return float(np.max(depth[valid].astype(np.float64))) / MAX_UINT16


def quantize_depth(depth: np.ndarray, valid: np.ndarray, scale: float) -> np.ndarray:
    """Depth `[..., H, W]` -> uint16 PNG values: `round(depth / scale)` (>= 1) at valid pixels, 0 elsewhere."""
    if not (np.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a finite number > 0, got {scale}")
    values = np.zeros(depth.shape, dtype=np.float64)
    values[valid] = np.round(depth[valid].astype(np.float64) / scale)
    if values.size and values.max() > MAX_UINT16:
        raise ValueError(
            f"scale {scale} is too small: the largest valid depth {float(depth[valid].max())} "
            f"needs {int(values.max())} > {MAX_UINT16} units; use a scale >= "
            f"{float(depth[valid].max()) / MAX_UINT16}"
        )
    values[valid] = np.maximum(values[valid], 1.0)
    return values.astype(np.uint16)


def write_depth_png(
    out_dir: str | os.PathLike[str],
    depth: np.ndarray,
    valid: np.ndarray | None = None,
    scale: float | None = None,
) -> Path:
    """Write depth `[T, H, W]` as `out_dir/000000.png ...` (16-bit) plus `depth_scale.json`.

    `valid` bool `[T, H, W]` (default: finite and > 0); `scale` in depth units per PNG unit
    (default: `choose_depth_scale`). Every file is written atomically. Returns `out_dir`.
    """
    from PIL import Image

    dep, mask = _depth_and_valid(depth, valid)
    step = choose_depth_scale(dep, mask) if scale is None else float(scale)
    values = quantize_depth(dep, mask, step)
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"{index:06d}.png" for index in range(dep.shape[0])]
    for name, frame in zip(names, values, strict=True):
        image = Image.fromarray(np.ascontiguousarray(frame.astype("<u2")))
        if image.mode != "I;16":
            raise RuntimeError(f"Pillow made a mode {image.mode!r} image, expected 'I;16'")
        with atomic_path(folder / name) as tmp:
            image.save(tmp, format="PNG")
    atomic_write_json(
        folder / SCALE_FILE,
        {
            "metres_per_unit": step,
            "convention": DEPTH_CONVENTION,
            "invalid_value": 0,
            "dtype": "uint16",
            "num_frames": int(dep.shape[0]),
            "height": int(dep.shape[1]),
            "width": int(dep.shape[2]),
            "files": names,
        },
    )
    return folder


def read_depth_png(out_dir: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Read a folder written by `write_depth_png` -> `(depth [T, H, W] float32, valid [T, H, W] bool)`.

    Invalid pixels read as depth 0 with `valid` False.
    """
    from PIL import Image

    folder = Path(out_dir)
    meta = json.loads((folder / SCALE_FILE).read_text(encoding="utf-8"))
    scale = float(meta["metres_per_unit"])
    frames = []
    for name in meta["files"]:
        with Image.open(folder / name) as image:
            if image.mode not in ("I;16", "I"):
                raise ValueError(f"{folder / name}: expected a 16-bit PNG, got mode {image.mode}")
            frames.append(np.asarray(image, dtype=np.uint16))
    values = np.stack(frames) if frames else np.zeros((0, 0, 0), dtype=np.uint16)
    valid = values > 0
    depth = (values.astype(np.float64) * scale).astype(np.float32)
    return depth, valid


def write_depth_safetensors(
    path: str | os.PathLike[str], depth: np.ndarray, valid: np.ndarray | None = None
) -> Path:
    """Write `depth` float32 `[T, H, W]` and `valid` bool `[T, H, W]` to a safetensors file (atomically)."""
    from safetensors.numpy import save_file

    dep, mask = _depth_and_valid(depth, valid)
    target = Path(path)
    with atomic_path(target) as tmp:
        save_file(
            {"depth": np.ascontiguousarray(dep), "valid": np.ascontiguousarray(mask)},
            str(tmp),
            metadata={"convention": SAFETENSORS_CONVENTION},
        )
    return target


def read_depth_safetensors(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Read `depth.safetensors` -> `(depth [T, H, W] float32, valid [T, H, W] bool)`."""
    from safetensors.numpy import load_file

    tensors = load_file(str(path))
    missing = {"depth", "valid"} - set(tensors)
    if missing:
        raise ValueError(f"{path}: missing tensors {sorted(missing)}")
    return tensors["depth"], tensors["valid"]
