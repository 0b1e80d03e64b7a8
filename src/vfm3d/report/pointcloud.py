"""Point-cloud export: binary little-endian PLY with per-vertex colour."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from vfm3d.utils.atomic import atomic_path


def write_ply(
    path: str | os.PathLike[str], points: np.ndarray, colors: np.ndarray | None = None
) -> Path:
    """Write ``points`` ``[N, 3]`` (float) and optional ``colors`` ``[N, 3]`` uint8 as a PLY file.

    Non-finite points are dropped. The file is written atomically.
    """
    pts = np.asarray(points, dtype=np.float32).reshape(-1, 3)
    if colors is None:
        cols = np.full((pts.shape[0], 3), 200, dtype=np.uint8)
    else:
        cols = np.asarray(colors).reshape(-1, 3)
        if cols.shape[0] != pts.shape[0]:
            raise ValueError(f"colors: expected {pts.shape[0]} rows, got {cols.shape[0]}")
        if cols.dtype != np.uint8:
            cols = np.clip(np.round(cols * (255.0 if cols.max() <= 1.0 else 1.0)), 0, 255)
            cols = cols.astype(np.uint8)
    keep = np.all(np.isfinite(pts), axis=1)
    pts, cols = pts[keep], cols[keep]
    vertex = np.empty(
        pts.shape[0],
        dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("r", "u1"), ("g", "u1"), ("b", "u1")],
    )
    vertex["x"], vertex["y"], vertex["z"] = pts[:, 0], pts[:, 1], pts[:, 2]
    vertex["r"], vertex["g"], vertex["b"] = cols[:, 0], cols[:, 1], cols[:, 2]
    header = (
        "ply\nformat binary_little_endian 1.0\n"
        f"element vertex {pts.shape[0]}\n"
        "property float x\nproperty float y\nproperty float z\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n"
    )
    target = Path(path)
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(header.encode("ascii"))
            handle.write(vertex.tobytes())
    return target


def read_ply(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Read a PLY written by `write_ply`; returns ``(points [N,3] float32, colors [N,3] uint8)``."""
    data = Path(path).read_bytes()
    end = data.find(b"end_header\n")
    if not data.startswith(b"ply\n") or end < 0:
        raise ValueError(f"{path}: not a PLY file written by vfm3d")
    header = data[:end].decode("ascii").splitlines()
    count = next(int(line.split()[-1]) for line in header if line.startswith("element vertex"))
    dtype = np.dtype(
        [("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("r", "u1"), ("g", "u1"), ("b", "u1")]
    )
    body = data[end + len(b"end_header\n") :]
    if len(body) != count * dtype.itemsize:
        raise ValueError(f"{path}: truncated PLY body")
    vertex = np.frombuffer(body, dtype=dtype, count=count)
    pts = np.stack([vertex["x"], vertex["y"], vertex["z"]], axis=1)
    cols = np.stack([vertex["r"], vertex["g"], vertex["b"]], axis=1)
    return pts, cols
