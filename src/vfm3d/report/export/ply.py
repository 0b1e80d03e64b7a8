"""Point clouds as binary little-endian PLY, coloured, with optional per-vertex confidence.

Layout written by `write_ply` (one element, `vertex`, packed records, no padding)::

    ply
    format binary_little_endian 1.0
    comment vfm3d point cloud
    element vertex N
    property float x
    property float y
    property float z
    property uchar red
    property uchar green
    property uchar blue
    property float confidence      (only when confidence is given)
    end_header
    <N records of 15 bytes (3 x float32 + 3 x uint8), or 19 with confidence>

Coordinates are written as given (vfm3d writes world-frame points: the world of a
reconstruction is frame 0's OpenCV camera, x right, y down, z forward). Points with a NaN or inf
coordinate are dropped together with their colour and confidence. The `confidence` property is
not part of any PLY standard; MeshLab, Open3D and CloudCompare show it as a scalar field.

`read_point_cloud` reads any binary little-endian PLY whose first element is `vertex` with
scalar properties (x, y, z required; red, green, blue and confidence optional).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vfm3d.report.export._validate import as_numpy, check_shape, colors_uint8
from vfm3d.utils.atomic import atomic_path

#: PLY scalar type names -> little-endian numpy dtypes
PLY_TYPES: dict[str, str] = {
    "char": "i1",
    "int8": "i1",
    "uchar": "u1",
    "uint8": "u1",
    "short": "<i2",
    "int16": "<i2",
    "ushort": "<u2",
    "uint16": "<u2",
    "int": "<i4",
    "int32": "<i4",
    "uint": "<u4",
    "uint32": "<u4",
    "float": "<f4",
    "float32": "<f4",
    "double": "<f8",
    "float64": "<f8",
}


@dataclass
class PointCloud:
    """A read-back point cloud: `points` `[N, 3]` float32, `colors` `[N, 3]` uint8, `confidence` `[N]` float32 or None."""

    points: np.ndarray
    colors: np.ndarray
    confidence: np.ndarray | None = None


def write_ply(
    path: str | os.PathLike[str],
    points: np.ndarray,
    colors: np.ndarray | None = None,
    confidence: np.ndarray | None = None,
) -> Path:
    """Write `points` `[N, 3]` (or `[..., 3]`), optional `colors` `[N, 3]` and `confidence` `[N]` as PLY.

    Colours may be uint8, or floats in [0, 1] (scaled by 255) or [0, 255]; None gives grey.
    Non-finite points are dropped. The file is written atomically. Returns the path.
    """
    pts = as_numpy("points", points, np.float32)
    if pts.shape[-1:] != (3,):
        raise ValueError(f"points must have shape [N, 3] (or [..., 3]), got {list(pts.shape)}")
    pts = pts.reshape(-1, 3)
    count = pts.shape[0]
    cols = colors_uint8(colors, count)
    fields: list[tuple[str, str]] = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    conf = None
    if confidence is not None:
        conf = as_numpy("confidence", confidence, np.float32).reshape(-1)
        check_shape("confidence", conf, (count,), "N")
        fields.append(("confidence", "<f4"))
    keep = np.isfinite(pts).all(axis=1)
    vertex = np.empty(int(keep.sum()), dtype=np.dtype(fields))
    vertex["x"], vertex["y"], vertex["z"] = pts[keep, 0], pts[keep, 1], pts[keep, 2]
    vertex["red"], vertex["green"], vertex["blue"] = cols[keep, 0], cols[keep, 1], cols[keep, 2]
    if conf is not None:
        vertex["confidence"] = conf[keep]
    type_names = {"<f4": "float", "u1": "uchar"}
    header = [
        "ply",
        "format binary_little_endian 1.0",
        "comment vfm3d point cloud",
        f"element vertex {vertex.shape[0]}",
        *(f"property {type_names[kind]} {name}" for name, kind in fields),
        "end_header",
    ]
    target = Path(path)
    with atomic_path(target) as tmp, open(tmp, "wb") as handle:
        handle.write(("\n".join(header) + "\n").encode("ascii"))
        handle.write(vertex.tobytes())
    return target


def read_point_cloud(path: str | os.PathLike[str]) -> PointCloud:
    """Read a binary little-endian PLY point cloud (see the module docstring) -> `PointCloud`.

    Missing colours read as grey (200); `confidence` is None when the file has none. Raises
    ValueError for a file that is not such a PLY, or whose body is truncated.
    """
    file = Path(path)
    data = file.read_bytes()
    marker = b"end_header\n"
    end = data.find(marker)
    if not data.startswith(b"ply\n") or end < 0:
        raise ValueError(f"{file}: not a PLY file (no 'ply' magic or no end_header)")
    lines = data[:end].decode("ascii").splitlines()
    if "format binary_little_endian 1.0" not in (line.strip() for line in lines):
        raise ValueError(f"{file}: only binary_little_endian PLY is supported")
    count: int | None = None
    fields: list[tuple[str, str]] = []
    for line in lines:
        words = line.split()
        if not words:
            continue
        if words[0] == "element":
            if count is not None:
                break  # only the first element (vertex) is read
            if words[1] != "vertex":
                raise ValueError(f"{file}: the first element must be 'vertex', got {words[1]!r}")
            count = int(words[2])
        elif words[0] == "property" and count is not None:
            if words[1] == "list":
                raise ValueError(f"{file}: list properties in 'vertex' are not supported")
            if words[1] not in PLY_TYPES:
                raise ValueError(f"{file}: unknown PLY type {words[1]!r}")
            fields.append((words[2], PLY_TYPES[words[1]]))
    if count is None:
        raise ValueError(f"{file}: no 'element vertex' in the header")
    dtype = np.dtype(fields)
    names = set(dtype.names or ())
    if not {"x", "y", "z"} <= names:
        raise ValueError(f"{file}: vertex needs properties x, y, z; has {sorted(names)}")
    body = data[end + len(marker) :]
    if len(body) < count * dtype.itemsize:
        raise ValueError(
            f"{file}: truncated PLY body ({len(body)} bytes for {count} vertices of "
            f"{dtype.itemsize} bytes)"
        )
    vertex = np.frombuffer(body, dtype=dtype, count=count)
    pts = np.stack([vertex["x"], vertex["y"], vertex["z"]], axis=1).astype(np.float32)
    if {"red", "green", "blue"} <= names:
        cols = np.stack([vertex["red"], vertex["green"], vertex["blue"]], axis=1)
        cols = cols.astype(np.uint8)
    else:
        cols = np.full((count, 3), 200, dtype=np.uint8)
    conf = vertex["confidence"].astype(np.float32) if "confidence" in names else None
    return PointCloud(points=pts, colors=cols, confidence=conf)


def read_ply(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Read a PLY written by `write_ply` -> `(points [N, 3] float32, colors [N, 3] uint8)`.

    Use `read_point_cloud` to get the confidence as well.
    """
    cloud = read_point_cloud(path)
    return cloud.points, cloud.colors
