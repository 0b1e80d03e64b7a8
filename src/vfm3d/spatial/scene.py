"""Scene facts for spatial questions, read from a world clip's ``meta``, and their geometry.

A world clip records every object (``meta["objects"]``: ``class``, box ``center`` / ``size`` /
``yaw`` about world +z, ``dynamic``, ``pixels`` visible per frame); `SceneFacts` turns that into
what questions may use:

- structural objects (``wall``, ``building``) are not objects of questions; the walls of a room
  give its floor area (`room_extent`);
- an instance is **seen** when it covers at least ``min_pixels`` pixels in some frame
  (default 0.5% of the frame, at least 16 pixels); its first such frame is its appearance;
- a category (class) is **usable** only when all its instances in the scene are seen and none
  moves: a category with an unseen, barely seen or moving instance is never asked about
  (counting it, or measuring to its closest instance, would be ambiguous from the video);
- a **unique** category is a usable one with exactly one instance in the scene.

Geometry (world z-up, metres): boxes are oriented about +z only, so the closest-point distance
of two boxes (`box_distance`, VSI-Bench's "measuring from the closest point of each object")
splits exactly into the gap of their height intervals and the distance of their footprint
rectangles: ``sqrt(d_xy^2 + d_z^2)``. Directions (`signed_angle_deg`) use box centres on the
ground plane, counter-clockwise (to the left) positive.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

STRUCTURAL_CLASSES = frozenset({"wall", "building"})
MIN_PIXELS = 16
"""Smallest per-frame pixel count of a seen instance, whatever the frame size."""
SEEN_FRACTION = 0.005
"""Default fraction of the frame a seen instance covers in at least one frame."""


@dataclass(frozen=True)
class ObjectBox:
    """One object instance of a scene.

    ``index`` is its position in ``meta["objects"]``; ``center`` ``[3]`` and ``size`` ``[3]``
    (full extents along the object's own x, y, z) in metres, ``yaw`` radians about world +z;
    ``pixels`` ``[T]`` visible pixels per frame.
    """

    index: int
    category: str
    center: np.ndarray
    size: np.ndarray
    yaw: float
    pixels: np.ndarray
    dynamic: bool = False

    def footprint(self) -> np.ndarray:
        """``[4, 2]`` corners of the box's ground rectangle (counter-clockwise), world xy."""
        hx, hy = float(self.size[0]) / 2, float(self.size[1]) / 2
        local = np.array([[-hx, -hy], [hx, -hy], [hx, hy], [-hx, hy]])
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        rot = np.array([[c, -s], [s, c]])
        return self.center[None, :2] + local @ rot.T

    def z_range(self) -> tuple[float, float]:
        """``(bottom, top)`` heights of the box."""
        half = float(self.size[2]) / 2
        return float(self.center[2]) - half, float(self.center[2]) + half

    @property
    def longest_side(self) -> float:
        """The longest of the box's three extents, metres."""
        return float(np.max(self.size))


@dataclass
class SceneFacts:
    """What spatial questions about one clip may use (see the module docstring).

    ``objects``: the non-structural instances; ``room_extent``: the room's inner floor
    ``(xmin, xmax, ymin, ymax)`` or None; ``num_frames``; ``min_pixels``: the seen threshold.
    """

    scene_name: str
    objects: list[ObjectBox]
    num_frames: int
    min_pixels: int
    room_extent: tuple[float, float, float, float] | None = None
    layout: str | None = None
    by_category: dict[str, list[ObjectBox]] = field(init=False)

    def __post_init__(self) -> None:
        self.by_category = {}
        for obj in self.objects:
            self.by_category.setdefault(obj.category, []).append(obj)

    @classmethod
    def from_meta(
        cls,
        meta: Mapping[str, Any],
        image_hw: tuple[int, int],
        seen_fraction: float = SEEN_FRACTION,
        scene_name: str | None = None,
    ) -> SceneFacts:
        """Facts of a world clip's ``meta`` rendered at ``image_hw`` = (H, W).

        Raises:
            ValueError: ``meta`` has no ``objects`` list, or an object lacks a field.
        """
        raw = meta.get("objects")
        if not isinstance(raw, list):
            raise ValueError(f"clip {meta.get('id')!r}: meta has no 'objects' list")
        h, w = (int(v) for v in image_hw)
        min_pixels = max(MIN_PIXELS, math.ceil(float(seen_fraction) * h * w))
        objects, walls, frames = [], [], None
        for i, obj in enumerate(raw):
            try:
                box = ObjectBox(
                    index=i,
                    category=str(obj["class"]),
                    center=np.asarray(obj["center"], dtype=np.float64),
                    size=np.asarray(obj["size"], dtype=np.float64),
                    yaw=float(obj.get("yaw", 0.0)),
                    pixels=np.asarray(obj.get("pixels", []), dtype=np.int64),
                    dynamic=bool(obj.get("dynamic", False)),
                )
            except (KeyError, TypeError, ValueError) as error:
                raise ValueError(
                    f"clip {meta.get('id')!r}: object {i} is malformed ({error})"
                ) from error
            if box.category in STRUCTURAL_CLASSES:
                if box.category == "wall":
                    walls.append(box)
                continue
            frames = len(box.pixels) if frames is None else frames
            objects.append(box)
        num = len(meta.get("frame_indices") or []) or (frames or 0)
        return cls(
            scene_name=str(scene_name if scene_name is not None else meta.get("id", "")),
            objects=objects,
            num_frames=int(num),
            min_pixels=int(min_pixels),
            room_extent=room_extent(walls) if meta.get("layout") == "room" else None,
            layout=meta.get("layout"),
        )

    @classmethod
    def from_clip(cls, clip: Any, seen_fraction: float = SEEN_FRACTION) -> SceneFacts:
        """Facts of a `vfm3d.clip.Clip` of the world (its meta and frame size)."""
        return cls.from_meta(clip.meta, (clip.height, clip.width), seen_fraction, clip.id)

    # ------------------------------------------------------------------ visibility
    def is_seen(self, obj: ObjectBox) -> bool:
        """Whether ``obj`` covers at least ``min_pixels`` pixels in some frame."""
        return bool(obj.pixels.size) and int(obj.pixels.max()) >= self.min_pixels

    def first_seen(self, obj: ObjectBox) -> int | None:
        """The first frame where ``obj`` covers at least ``min_pixels`` pixels, or None."""
        hits = np.flatnonzero(obj.pixels >= self.min_pixels)
        return int(hits[0]) if hits.size else None

    def category_first_seen(self, category: str) -> int | None:
        """The first frame where some instance of ``category`` is seen, or None."""
        frames = [self.first_seen(o) for o in self.by_category.get(category, [])]
        frames = [f for f in frames if f is not None]
        return min(frames) if frames else None

    @property
    def usable(self) -> dict[str, list[ObjectBox]]:
        """Categories whose every instance is seen and static -> their instances (sorted)."""
        return {
            name: objs
            for name, objs in sorted(self.by_category.items())
            if all(self.is_seen(o) and not o.dynamic for o in objs)
        }

    @property
    def unique(self) -> dict[str, ObjectBox]:
        """Usable categories with exactly one instance in the scene -> that instance."""
        return {name: objs[0] for name, objs in self.usable.items() if len(objs) == 1}

    @property
    def room_area(self) -> float | None:
        """The room's floor area in m² (from its walls), or None when it is not a room."""
        if self.room_extent is None:
            return None
        x0, x1, y0, y1 = self.room_extent
        return (x1 - x0) * (y1 - y0)


def room_extent(walls: Sequence[ObjectBox]) -> tuple[float, float, float, float] | None:
    """The inner floor ``(xmin, xmax, ymin, ymax)`` enclosed by four axis-aligned walls (two
    thin in x, two thin in y, as the world builds rooms), or None for any other set of walls."""
    xs, ys = [], []
    for wall in walls:
        if abs(math.sin(wall.yaw)) > 1e-6:
            return None
        sx, sy = float(wall.size[0]), float(wall.size[1])
        cx, cy = float(wall.center[0]), float(wall.center[1])
        if sx < sy:  # thin in x: a wall at x = cx; its inner face looks at the middle
            xs.append(cx - math.copysign(sx / 2, cx))
        else:
            ys.append(cy - math.copysign(sy / 2, cy))
    if len(xs) != 2 or len(ys) != 2:
        return None
    x0, x1 = sorted(xs)
    y0, y1 = sorted(ys)
    if x1 <= x0 or y1 <= y0:
        return None
    return x0, x1, y0, y1


# ---------------------------------------------------------------------- geometry
def _point_segment(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    ab = b - a
    t = float(np.clip(np.dot(p - a, ab) / max(float(np.dot(ab, ab)), 1e-18), 0.0, 1.0))
    return float(np.linalg.norm(p - (a + t * ab)))


def _rectangles_overlap(a: np.ndarray, b: np.ndarray) -> bool:
    """Separating-axis test of two convex quadrilaterals ``[4, 2]``."""
    for poly in (a, b):
        for i in range(4):
            edge = poly[(i + 1) % 4] - poly[i]
            axis = np.array([-edge[1], edge[0]])
            pa, pb = a @ axis, b @ axis
            if pa.max() < pb.min() or pb.max() < pa.min():
                return False
    return True


def footprint_distance(a: ObjectBox, b: ObjectBox) -> float:
    """Closest distance between the ground rectangles of ``a`` and ``b`` (0 if they overlap)."""
    ra, rb = a.footprint(), b.footprint()
    if _rectangles_overlap(ra, rb):
        return 0.0
    best = math.inf
    for p_set, q_set in ((ra, rb), (rb, ra)):
        for p in p_set:
            for i in range(4):
                best = min(best, _point_segment(p, q_set[i], q_set[(i + 1) % 4]))
    return best


def box_distance(a: ObjectBox, b: ObjectBox) -> float:
    """Closest-point distance (metres) between two boxes oriented about +z: 0 if they touch.

    Exact: ``sqrt(footprint_distance^2 + height_gap^2)`` since each box is its ground rectangle
    times its height interval.
    """
    (a0, a1), (b0, b1) = a.z_range(), b.z_range()
    dz = max(0.0, b0 - a1, a0 - b1)
    return float(math.hypot(footprint_distance(a, b), dz))


def category_distance(a: ObjectBox, others: Sequence[ObjectBox]) -> float:
    """Closest-point distance from ``a`` to the closest of ``others`` (one category's
    instances), metres."""
    return min(box_distance(a, o) for o in others)


def signed_angle_deg(origin: np.ndarray, towards: np.ndarray, target: np.ndarray) -> float:
    """Angle (degrees, in (-180, 180]) on the ground plane from the direction ``origin ->
    towards`` to ``origin -> target``; positive = counter-clockwise seen from above = to the
    left of someone at ``origin`` facing ``towards`` (world z-up)."""
    f = np.asarray(towards, dtype=np.float64)[:2] - np.asarray(origin, dtype=np.float64)[:2]
    q = np.asarray(target, dtype=np.float64)[:2] - np.asarray(origin, dtype=np.float64)[:2]
    return float(np.degrees(math.atan2(f[0] * q[1] - f[1] * q[0], float(np.dot(f, q)))))


def ground_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Distance between two points on the ground plane (their xy), metres."""
    return float(np.hypot(*(np.asarray(a, dtype=np.float64)[:2] - np.asarray(b)[:2])))
