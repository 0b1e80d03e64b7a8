"""Contact sheets: a PNG grid of RGB frames and colour-mapped depth (PIL only)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from vfm3d.clip import Clip
from vfm3d.utils.atomic import atomic_path

# A perceptually ordered colour map (dark blue -> cyan -> yellow -> dark red), as key points.
_CMAP_KEYS = np.array(
    [
        [0.19, 0.07, 0.23],
        [0.27, 0.42, 0.93],
        [0.11, 0.81, 0.84],
        [0.48, 0.98, 0.37],
        [0.93, 0.82, 0.23],
        [0.98, 0.42, 0.09],
        [0.48, 0.02, 0.01],
    ]
)


def colorize_depth(depth: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """uint8 ``[H, W, 3]`` image of ``depth`` ``[H, W]``: near = blue, far = red, invalid = black.

    Uses inverse depth between the 2nd and 98th percentiles of the valid pixels.
    """
    mask = np.isfinite(depth) & (depth > 0)
    if valid is not None:
        mask &= valid
    out = np.zeros((*depth.shape, 3), dtype=np.uint8)
    if not mask.any():
        return out
    inv = 1.0 / depth[mask]
    lo, hi = np.percentile(inv, [2.0, 98.0])
    x = 1.0 - np.clip((inv - lo) / max(hi - lo, 1e-12), 0.0, 1.0)  # 0 near, 1 far
    pos = x * (len(_CMAP_KEYS) - 1)
    i0 = np.minimum(np.floor(pos).astype(int), len(_CMAP_KEYS) - 2)
    frac = (pos - i0)[:, None]
    rgb = _CMAP_KEYS[i0] * (1 - frac) + _CMAP_KEYS[i0 + 1] * frac
    out[mask] = (rgb * 255 + 0.5).astype(np.uint8)
    return out


def contact_sheet(clips: Iterable[Clip], path: str | os.PathLike[str], max_frames: int = 8) -> Path:
    """Write a PNG grid to ``path``: for each clip a row of RGB frames and a row of depth.

    At most ``max_frames`` frames per clip, evenly spaced. Clips without depth get only the RGB
    row. Returns the path written (atomically).
    """
    from PIL import Image, ImageDraw

    if max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")
    rows: list[tuple[str, list[np.ndarray]]] = []
    for clip in clips:
        idx = np.unique(
            np.linspace(0, clip.num_frames - 1, min(max_frames, clip.num_frames)).round()
        )
        idx = idx.astype(int)
        rows.append((clip.id, [clip.frames[i] for i in idx]))
        if clip.depth is not None:
            rows.append(("", [colorize_depth(clip.depth[i], clip.valid[i]) for i in idx]))
    if not rows:
        raise ValueError("contact_sheet: no clips given")
    pad, label_h = 2, 12
    cell_h = max(r[1][0].shape[0] for r in rows)
    cell_w = max(r[1][0].shape[1] for r in rows)
    ncols = max(len(r[1]) for r in rows)
    row_h = cell_h + pad + label_h
    sheet = Image.new("RGB", (ncols * (cell_w + pad) + pad, len(rows) * row_h + pad), (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    for r, (label, images) in enumerate(rows):
        y = pad + r * row_h
        if label:
            draw.text((pad, y), label, fill=(230, 230, 230))
        for c, image in enumerate(images):
            sheet.paste(Image.fromarray(image), (pad + c * (cell_w + pad), y + label_h))
    target = Path(path)
    with atomic_path(target) as tmp:
        sheet.save(tmp, format="PNG")
    return target
