"""Resize / crop / pad that keep intrinsics right, with an invertible transform record.

Every operation is an axis-aligned affine map of pixel coordinates (pixel centres at integers,
as everywhere in vfm3d)::

    x_out = scale_x * x_in + offset_x        y_out = scale_y * y_in + offset_y

so new intrinsics are ``K_out = A @ K_in`` with ``A = [[sx, 0, ox], [0, sy, oy], [0, 0, 1]]``.
Resizing an image of width ``W`` to ``W'`` maps pixel *edges* 0 -> 0 and W -> W', hence
``sx = W'/W`` and ``ox = (sx - 1) / 2``. A crop at ``left`` is ``ox = -left``; a pad adds ``left``.

`PixelTransform` records the map with both image sizes; it composes (`then`), inverts
(`inverse`), serialises to JSON (`to_dict`, stored in ``clip.meta["transform"]`` by
`apply_to_clip`) and resamples arrays (`warp_image` bicubic for frames, `warp_nearest` for
depth / masks), so a prediction made at the new resolution maps back with
``warp_nearest(pred, t.inverse())``. Pixels whose source lies outside the input become the
fill value (0 / False), e.g. padding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from vfm3d.clip import Clip


@dataclass(frozen=True)
class PixelTransform:
    """Affine pixel map from an ``in_hw`` image to an ``out_hw`` image (see module docstring)."""

    in_hw: tuple[int, int]
    out_hw: tuple[int, int]
    scale: tuple[float, float] = (1.0, 1.0)  # (sx, sy)
    offset: tuple[float, float] = (0.0, 0.0)  # (ox, oy)

    def __post_init__(self) -> None:
        for name in ("in_hw", "out_hw"):
            h, w = getattr(self, name)
            if int(h) != h or int(w) != w or h < 1 or w < 1:
                raise ValueError(f"{name} must be two positive integers, got {(h, w)}")
        if not all(math.isfinite(s) and s > 0 for s in self.scale):
            raise ValueError(f"scale must be positive and finite, got {self.scale}")
        if not all(math.isfinite(o) for o in self.offset):
            raise ValueError(f"offset must be finite, got {self.offset}")

    # -------------------------------------------------------------- algebra
    @property
    def matrix(self) -> np.ndarray:
        """``[3, 3]`` float64 ``A`` with ``[x_out, y_out, 1] = A @ [x_in, y_in, 1]``."""
        (sx, sy), (ox, oy) = self.scale, self.offset
        return np.array([[sx, 0.0, ox], [0.0, sy, oy], [0.0, 0.0, 1.0]], dtype=np.float64)

    @classmethod
    def identity(cls, hw: tuple[int, int]) -> PixelTransform:
        return cls(tuple(hw), tuple(hw))  # type: ignore[arg-type]

    def then(self, other: PixelTransform) -> PixelTransform:
        """The transform ``other ∘ self`` (first ``self``, then ``other``)."""
        if tuple(other.in_hw) != tuple(self.out_hw):
            raise ValueError(
                f"cannot compose: output size {self.out_hw} != next input size {other.in_hw}"
            )
        sx = other.scale[0] * self.scale[0]
        sy = other.scale[1] * self.scale[1]
        ox = other.scale[0] * self.offset[0] + other.offset[0]
        oy = other.scale[1] * self.offset[1] + other.offset[1]
        return PixelTransform(self.in_hw, other.out_hw, (sx, sy), (ox, oy))

    def inverse(self) -> PixelTransform:
        (sx, sy), (ox, oy) = self.scale, self.offset
        return PixelTransform(self.out_hw, self.in_hw, (1 / sx, 1 / sy), (-ox / sx, -oy / sy))

    def apply_points(self, uv: np.ndarray) -> np.ndarray:
        """Map pixel coordinates ``[..., 2]`` (x, y) from the input to the output image."""
        uv = np.asarray(uv, dtype=np.float64)
        return uv * np.asarray(self.scale) + np.asarray(self.offset)

    def apply_intrinsics(self, intrinsics: np.ndarray) -> np.ndarray:
        """``[..., 3, 3]`` K of the input image -> K of the output image (same dtype)."""
        k = np.asarray(intrinsics)
        return (self.matrix @ k.astype(np.float64)).astype(k.dtype)

    def to_dict(self) -> dict[str, Any]:
        return {
            "in_hw": list(self.in_hw),
            "out_hw": list(self.out_hw),
            "scale": list(self.scale),
            "offset": list(self.offset),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PixelTransform:
        try:
            return cls(
                tuple(int(v) for v in data["in_hw"]),  # type: ignore[arg-type]
                tuple(int(v) for v in data["out_hw"]),  # type: ignore[arg-type]
                tuple(float(v) for v in data["scale"]),  # type: ignore[arg-type]
                tuple(float(v) for v in data["offset"]),  # type: ignore[arg-type]
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"not a PixelTransform record: {data!r} ({error})") from error

    # -------------------------------------------------------------- resampling
    def _source_coords(self) -> tuple[np.ndarray, np.ndarray]:
        """Source x for each output column and source y for each output row (float64)."""
        (sx, sy), (ox, oy) = self.scale, self.offset
        xs = (np.arange(self.out_hw[1], dtype=np.float64) - ox) / sx
        ys = (np.arange(self.out_hw[0], dtype=np.float64) - oy) / sy
        return xs, ys

    def warp_nearest(self, array: np.ndarray, fill: Any = 0) -> np.ndarray:
        """Nearest-neighbour resample of a map whose **last two axes** are the image (H, W).

        ``array``: ``[H, W]``, ``[T, H, W]``, ... (any dtype: depth, valid, dynamic, confidence).
        For channels-last RGB use `warp_image`. Output pixels whose source lies outside the
        input get ``fill``.
        """
        arr = np.asarray(array)
        if tuple(arr.shape[-2:]) != tuple(self.in_hw):
            raise ValueError(f"array's last two axes {arr.shape[-2:]} != in_hw {self.in_hw}")
        xs, ys = self._source_coords()
        ix = np.floor(xs + 0.5).astype(np.int64)
        iy = np.floor(ys + 0.5).astype(np.int64)
        inside_x = (ix >= 0) & (ix < self.in_hw[1])
        inside_y = (iy >= 0) & (iy < self.in_hw[0])
        out = arr[
            ..., np.clip(iy, 0, self.in_hw[0] - 1)[:, None], np.clip(ix, 0, self.in_hw[1] - 1)
        ]
        inside = inside_y[:, None] & inside_x[None, :]
        if not inside.all():
            out = np.where(inside, out, np.asarray(fill, dtype=arr.dtype))
        return np.ascontiguousarray(out)

    def warp_image(self, frames: np.ndarray) -> np.ndarray:
        """Resample uint8 RGB ``[T, H, W, 3]`` or ``[H, W, 3]`` (bicubic via PIL; 0 outside)."""
        from PIL import Image

        arr = np.asarray(frames)
        single = arr.ndim == 3
        batch = arr[None] if single else arr
        if tuple(batch.shape[1:3]) != tuple(self.in_hw):
            raise ValueError(f"frames' size {batch.shape[1:3]} != in_hw {self.in_hw}")
        (sx, sy), (ox, oy) = self.scale, self.offset
        out_h, out_w = self.out_hw
        if sx == 1.0 and sy == 1.0 and float(ox).is_integer() and float(oy).is_integer():
            moved = np.moveaxis(batch, -1, 1)  # integer shift: exact copy (crop / pad)
            out = np.moveaxis(self.warp_nearest(moved, 0), 1, -1)
        else:
            # output pixel-edge box [0, W_out] maps to this source box (edge coordinates)
            x0 = (-0.5 - ox) / sx + 0.5
            y0 = (-0.5 - oy) / sy + 0.5
            x1 = (out_w - 0.5 - ox) / sx + 0.5
            y1 = (out_h - 0.5 - oy) / sy + 0.5
            in_h, in_w = self.in_hw
            # PIL needs the box inside the image: extend the input by edge replication if not
            box = (x0, y0, x1, y1)
            source = batch
            overflow = max(0.0, -x0, -y0, x1 - in_w, y1 - in_h)
            if overflow > 0:
                margin = math.ceil(overflow) + 2
                widths = ((0, 0), (margin, margin), (margin, margin), (0, 0))
                source = np.pad(batch, widths, mode="edge")
                box = (x0 + margin, y0 + margin, x1 + margin, y1 + margin)
            resized = [
                np.asarray(
                    Image.fromarray(frame).resize((out_w, out_h), Image.Resampling.BICUBIC, box=box)
                )
                for frame in source
            ]
            out = np.stack(resized).astype(np.uint8)
            inside = self.warp_nearest(np.ones(self.in_hw, dtype=bool), False)
            out = out * inside[None, :, :, None].astype(np.uint8)
        return out[0] if single else out


# ------------------------------------------------------------------ constructors
def resize(in_hw: tuple[int, int], out_hw: tuple[int, int]) -> PixelTransform:
    """Resize the whole image to ``out_hw`` (may change the aspect ratio)."""
    sx = out_hw[1] / in_hw[1]
    sy = out_hw[0] / in_hw[0]
    return PixelTransform(tuple(in_hw), tuple(out_hw), (sx, sy), ((sx - 1) / 2, (sy - 1) / 2))  # type: ignore[arg-type]


def crop(in_hw: tuple[int, int], top: int, left: int, height: int, width: int) -> PixelTransform:
    """Keep rows ``top:top+height`` and columns ``left:left+width`` (must lie inside)."""
    if top < 0 or left < 0 or top + height > in_hw[0] or left + width > in_hw[1]:
        raise ValueError(
            f"crop box top={top} left={left} height={height} width={width} "
            f"is not inside the image {in_hw}"
        )
    return PixelTransform(tuple(in_hw), (height, width), (1.0, 1.0), (-float(left), -float(top)))  # type: ignore[arg-type]


def center_crop(in_hw: tuple[int, int], out_hw: tuple[int, int]) -> PixelTransform:
    """Crop a centred ``out_hw`` window (``out_hw`` <= ``in_hw``)."""
    top = (in_hw[0] - out_hw[0]) // 2
    left = (in_hw[1] - out_hw[1]) // 2
    return crop(in_hw, top, left, out_hw[0], out_hw[1])


def crop_to_aspect(in_hw: tuple[int, int], aspect_w: float, aspect_h: float) -> PixelTransform:
    """The largest centred crop with width / height = ``aspect_w / aspect_h``."""
    h, w = in_hw
    ratio = aspect_w / aspect_h
    if w / h > ratio:
        new_h, new_w = h, max(1, round(h * ratio))
    else:
        new_h, new_w = max(1, round(w / ratio)), w
    return center_crop(in_hw, (min(new_h, h), min(new_w, w)))


def pad(in_hw: tuple[int, int], top: int, bottom: int, left: int, right: int) -> PixelTransform:
    """Add ``top/bottom/left/right`` pixels of fill (0 / invalid)."""
    if min(top, bottom, left, right) < 0:
        raise ValueError("pad amounts must be >= 0")
    out_hw = (in_hw[0] + top + bottom, in_hw[1] + left + right)
    return PixelTransform(tuple(in_hw), out_hw, (1.0, 1.0), (float(left), float(top)))  # type: ignore[arg-type]


def pad_to_multiple(in_hw: tuple[int, int], multiple: int) -> PixelTransform:
    """Pad bottom / right so both sides are multiples of ``multiple``."""
    h, w = in_hw
    return pad(in_hw, 0, (-h) % multiple, 0, (-w) % multiple)


def resize_short_side(in_hw: tuple[int, int], short_side: int) -> PixelTransform:
    """Resize keeping the aspect ratio so that the shorter side is ``short_side``."""
    h, w = in_hw
    s = short_side / min(h, w)
    return resize(in_hw, (max(1, round(h * s)), max(1, round(w * s))))


def parse_hw(text: str) -> tuple[int, int]:
    """``"480x640"`` -> ``(480, 640)`` (height first)."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError as error:
        raise ValueError(f"size must look like HxW (e.g. 480x640), got {text!r}") from error
    if h < 1 or w < 1:
        raise ValueError(f"size must be positive, got {text!r}")
    return h, w


def hw_argument(text: str) -> tuple[int, int]:
    """`parse_hw` as an argparse ``type=`` (its error becomes argparse's usage error)."""
    import argparse

    try:
        return parse_hw(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


# ------------------------------------------------------------------ clips
def apply_to_clip(clip: Clip, transform: PixelTransform) -> Clip:
    """Resample every per-pixel array of ``clip`` and update its intrinsics.

    Frames: bicubic; depth, valid, dynamic: nearest (never blended across edges); pixels whose
    source is outside the input become 0 / invalid. ``meta["transform"]`` accumulates the
    composed record (original resolution -> this one), so `restore_to_original` can invert it.
    """
    if (clip.height, clip.width) != tuple(transform.in_hw):
        raise ValueError(
            f"transform expects {transform.in_hw} images, clip {clip.id!r} has "
            f"{(clip.height, clip.width)}"
        )
    meta = dict(clip.meta)
    previous = meta.get("transform")
    total = PixelTransform.from_dict(previous).then(transform) if previous else transform
    meta["transform"] = total.to_dict()
    valid = clip.valid
    if valid is not None:
        valid = transform.warp_nearest(valid, False)
    return Clip(
        frames=transform.warp_image(clip.frames),
        intrinsics=transform.apply_intrinsics(clip.intrinsics).astype(np.float32),
        cam_to_world=clip.cam_to_world.copy(),
        depth=None if clip.depth is None else transform.warp_nearest(clip.depth, 0.0),
        valid=valid,
        dynamic=None if clip.dynamic is None else transform.warp_nearest(clip.dynamic, False),
        meta=meta,
    )


def restore_to_original(array: np.ndarray, meta: dict[str, Any], fill: Any = 0) -> np.ndarray:
    """Map a per-pixel prediction ``[..., H, W]`` made on a transformed clip back to the
    original resolution recorded in ``meta["transform"]`` (nearest; identity if none)."""
    record = meta.get("transform")
    if not record:
        return np.asarray(array)
    return PixelTransform.from_dict(record).inverse().warp_nearest(array, fill)
