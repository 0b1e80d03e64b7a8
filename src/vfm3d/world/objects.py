"""Objects of the procedural world: rigid sets of primitive parts with a pose per frame.

An object has its own frame: z up, origin at the centre of its footprint on the ground. Its
parts (``box``, ``sphere``, ``cylinder`` with a vertical axis) are axis-aligned in that frame.
The object's pose at frame t is a world position of that origin and a yaw about world +z, so a
moving object carries its texture (evaluated in object coordinates) with it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from vfm3d.world.textures import Texture, random_texture

SHAPES = ("box", "sphere", "cylinder")


@dataclass(frozen=True)
class Part:
    """One primitive in object coordinates.

    ``size`` holds full extents ``(sx, sy, sz)``: a sphere has ``(d, d, d)``, a cylinder
    ``(2r, 2r, h)`` (vertical axis).
    """

    shape: str
    center: tuple[float, float, float]
    size: tuple[float, float, float]
    texture: Texture

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"part shape must be one of {SHAPES}, got {self.shape!r}")
        if min(self.size) <= 0:
            raise ValueError(f"part size must be positive, got {self.size}")
        if self.shape == "sphere" and not (self.size[0] == self.size[1] == self.size[2]):
            raise ValueError(f"a sphere part needs equal extents, got {self.size}")
        if self.shape == "cylinder" and self.size[0] != self.size[1]:
            raise ValueError(f"a cylinder part needs equal x and y extents, got {self.size}")


@dataclass
class SceneObject:
    """An object with a pose per frame. ``origins`` ``[T, 3]`` world metres, ``yaws`` ``[T]`` rad."""

    cls: str
    parts: list[Part]
    origins: np.ndarray
    yaws: np.ndarray
    dynamic: bool = False

    def local_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """``(lo, hi)`` ``[3]`` of the axis-aligned box around all parts, object coordinates."""
        lo = np.min([np.subtract(p.center, np.divide(p.size, 2)) for p in self.parts], axis=0)
        hi = np.max([np.add(p.center, np.divide(p.size, 2)) for p in self.parts], axis=0)
        return lo, hi

    def footprint_radius(self) -> float:
        """Radius of a vertical cylinder around the object origin that contains every part."""
        return float(
            max(np.hypot(p.center[0], p.center[1]) + np.hypot(*p.size[:2]) / 2 for p in self.parts)
        )

    def box_center(self, frame: int) -> np.ndarray:
        """``[3]`` world centre of the object's box at ``frame``."""
        lo, hi = self.local_bounds()
        return self.origins[frame] + rotz(self.yaws[frame]) @ ((lo + hi) / 2)

    def meta(self) -> dict:
        """JSON-ready facts: class, box centre/size/yaw, colour, dynamic flag (+ per-frame poses)."""
        lo, hi = self.local_bounds()
        color = self.parts[0].texture.mean_color
        out = {
            "class": self.cls,
            "center": _round(self.box_center(0)),
            "size": _round(hi - lo),
            "yaw": round(float(self.yaws[0]), 6),
            "color": [round(float(c), 4) for c in color],
            "dynamic": bool(self.dynamic),
            "parts": [
                {"shape": p.shape, "center": _round(p.center), "size": _round(p.size)}
                for p in self.parts
            ],
        }
        if self.dynamic:
            out["centers"] = [_round(self.box_center(t)) for t in range(len(self.origins))]
            out["yaws"] = [round(float(y), 6) for y in self.yaws]
        return out


def _round(values: np.ndarray | tuple[float, ...]) -> list[float]:
    return [round(float(v), 6) for v in values]


def rotz(yaw: float) -> np.ndarray:
    """``[3, 3]`` rotation about +z by ``yaw`` radians."""
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


# ---------------------------------------------------------------------- object factories
# Each factory returns the parts of one object in its own frame (origin on the ground).
Factory = Callable[[np.random.Generator, float], list[Part]]


def _tex(rng: np.random.Generator, size: float, kind: str | None = None) -> Texture:
    return random_texture(rng, scale=max(size, 0.05) / rng.uniform(2.5, 6.0), kind=kind)


def _box(
    center: tuple[float, float, float], size: tuple[float, float, float], tex: Texture
) -> Part:
    return Part("box", center, size, tex)


def _legs(w: float, d: float, h: float, thick: float, tex: Texture) -> list[Part]:
    xs, ys = w / 2 - thick / 2, d / 2 - thick / 2
    return [
        _box((sx * xs, sy * ys, h / 2), (thick, thick, h), tex) for sx in (-1, 1) for sy in (-1, 1)
    ]


def make_box(rng: np.random.Generator, scale: float) -> list[Part]:
    sx, sy, sz = (float(v) for v in rng.uniform(0.3, 1.0, size=3) * scale)
    return [_box((0.0, 0.0, sz / 2), (sx, sy, sz), _tex(rng, max(sx, sy, sz)))]


def make_sphere(rng: np.random.Generator, scale: float) -> list[Part]:
    d = float(rng.uniform(0.3, 0.9) * scale)
    return [Part("sphere", (0.0, 0.0, d / 2), (d, d, d), _tex(rng, d))]


def make_cylinder(rng: np.random.Generator, scale: float) -> list[Part]:
    r = float(rng.uniform(0.15, 0.4) * scale)
    h = float(rng.uniform(0.3, 1.1) * scale)
    return [Part("cylinder", (0.0, 0.0, h / 2), (2 * r, 2 * r, h), _tex(rng, max(2 * r, h)))]


def make_table(rng: np.random.Generator, scale: float) -> list[Part]:
    w, d, h = rng.uniform(0.9, 1.6) * scale, rng.uniform(0.6, 1.0) * scale, 0.75 * scale
    top = 0.05 * scale
    tex = _tex(rng, w)
    return [
        _box((0.0, 0.0, h - top / 2), (w, d, top), tex),
        *_legs(w, d, h - top, 0.07 * scale, tex),
    ]


def make_chair(rng: np.random.Generator, scale: float) -> list[Part]:
    w = rng.uniform(0.42, 0.55) * scale
    seat_h, back_h, thick = 0.45 * scale, rng.uniform(0.35, 0.5) * scale, 0.05 * scale
    tex = _tex(rng, w)
    return [
        _box((0.0, 0.0, seat_h - thick / 2), (w, w, thick), tex),
        _box((0.0, w / 2 - thick / 2, seat_h + back_h / 2), (w, thick, back_h), tex),
        *_legs(w, w, seat_h - thick, 0.05 * scale, tex),
    ]


def make_lamp(rng: np.random.Generator, scale: float) -> list[Part]:
    h = rng.uniform(1.2, 1.7) * scale
    shade = rng.uniform(0.12, 0.2) * scale
    tex = _tex(rng, 0.3 * scale)
    return [
        Part("cylinder", (0.0, 0.0, 0.02 * scale), (0.3 * scale, 0.3 * scale, 0.04 * scale), tex),
        Part("cylinder", (0.0, 0.0, h / 2), (0.05 * scale, 0.05 * scale, h), tex),
        Part("sphere", (0.0, 0.0, h + shade * 0.8), (2 * shade,) * 3, _tex(rng, 2 * shade)),
    ]


def make_snowman(rng: np.random.Generator, scale: float) -> list[Part]:
    radii = np.array([0.3, 0.22, 0.15]) * rng.uniform(0.8, 1.2) * scale
    tex = random_texture(rng, scale=0.08 * scale, base_color=(0.92, 0.92, 0.95))
    parts, z = [], 0.0
    for r in radii:
        z += r
        parts.append(Part("sphere", (0.0, 0.0, float(z)), (float(2 * r),) * 3, tex))
        z += r * 0.85
    return parts


def make_cabinet(rng: np.random.Generator, scale: float) -> list[Part]:
    w, d, h = rng.uniform(0.5, 1.0), rng.uniform(0.4, 0.6), rng.uniform(0.8, 2.0)
    w, d, h = w * scale, d * scale, h * scale
    return [_box((0.0, 0.0, h / 2), (w, d, h), _tex(rng, h))]


def make_sofa(rng: np.random.Generator, scale: float) -> list[Part]:
    w, d = rng.uniform(1.6, 2.2) * scale, rng.uniform(0.8, 0.95) * scale
    seat, back, arm = 0.45 * scale, 0.45 * scale, 0.2 * scale
    tex = _tex(rng, w)
    return [
        _box((0.0, 0.0, seat / 2), (w, d, seat), tex),
        _box((0.0, d / 2 - arm / 2, seat + back / 2), (w, arm, back), tex),
        _box((-(w / 2 - arm / 2), 0.0, seat + 0.1 * scale), (arm, d, 0.2 * scale), tex),
        _box((w / 2 - arm / 2, 0.0, seat + 0.1 * scale), (arm, d, 0.2 * scale), tex),
    ]


def make_bed(rng: np.random.Generator, scale: float) -> list[Part]:
    w, length = rng.uniform(0.9, 1.8) * scale, rng.uniform(1.9, 2.1) * scale
    base, head = rng.uniform(0.4, 0.55) * scale, rng.uniform(0.8, 1.1) * scale
    frame = _tex(rng, length)
    sheet = random_texture(rng, scale=0.2 * scale, kind=str(rng.choice(["stripes", "cells"])))
    return [
        _box((0.0, 0.0, base / 2), (w, length, base), sheet),
        # the headboard sticks out past the base so that no faces of different textures
        # coincide (coplanar faces would flicker between views)
        _box(
            (0.0, length / 2 + 0.02 * scale, head / 2),
            (w + 0.04 * scale, 0.08 * scale, head),
            frame,
        ),
    ]


def make_tv(rng: np.random.Generator, scale: float) -> list[Part]:
    w = rng.uniform(0.9, 1.6) * scale
    h, stand_h = w * 0.58, rng.uniform(0.5, 0.7) * scale
    cabinet = _tex(rng, w)
    screen = random_texture(rng, scale=0.1 * scale, kind="noise", base_color=(0.12, 0.12, 0.15))
    return [
        _box((0.0, 0.0, stand_h / 2), (w * 1.1, 0.45 * scale, stand_h), cabinet),
        _box((0.0, 0.0, stand_h + h / 2), (w, 0.06 * scale, h), screen),
    ]


def make_bookshelf(rng: np.random.Generator, scale: float) -> list[Part]:
    w, d, h = rng.uniform(0.6, 1.2), rng.uniform(0.25, 0.4), rng.uniform(1.2, 2.2)
    tex = random_texture(rng, scale=0.12 * scale, kind="cells")
    return [_box((0.0, 0.0, h * scale / 2), (w * scale, d * scale, h * scale), tex)]


def make_stool(rng: np.random.Generator, scale: float) -> list[Part]:
    r, h = rng.uniform(0.15, 0.22) * scale, rng.uniform(0.45, 0.75) * scale
    tex = _tex(rng, 2 * r)
    return [
        Part("cylinder", (0.0, 0.0, h - 0.03 * scale), (2 * r, 2 * r, 0.06 * scale), tex),
        Part(
            "cylinder",
            (0.0, 0.0, (h - 0.06 * scale) / 2),
            (0.06 * scale,) * 2 + (h - 0.06 * scale,),
            tex,
        ),
    ]


def make_car(rng: np.random.Generator, scale: float) -> list[Part]:
    length, width = rng.uniform(3.6, 4.6) * scale, rng.uniform(1.6, 1.9) * scale
    body_h, cabin_h = rng.uniform(0.6, 0.8) * scale, rng.uniform(0.45, 0.6) * scale
    clearance = 0.2 * scale
    tex = _tex(rng, length, kind=str(rng.choice(["noise", "stripes"])))
    cabin = random_texture(rng, scale=0.25 * scale, kind="checker")
    return [
        _box((0.0, 0.0, clearance + body_h / 2), (length, width, body_h), tex),
        _box(
            (-0.1 * length, 0.0, clearance + body_h + cabin_h / 2),
            (0.5 * length, 0.9 * width, cabin_h),
            cabin,
        ),
    ]


def make_plant(rng: np.random.Generator, scale: float) -> list[Part]:
    pot_r, pot_h = rng.uniform(0.15, 0.25) * scale, rng.uniform(0.3, 0.5) * scale
    crown = rng.uniform(0.25, 0.45) * scale
    green = random_texture(rng, scale=0.1 * scale, kind="noise", base_color=(0.2, 0.55, 0.2))
    return [
        Part("cylinder", (0.0, 0.0, pot_h / 2), (2 * pot_r, 2 * pot_r, pot_h), _tex(rng, pot_h)),
        Part("sphere", (0.0, 0.0, pot_h + crown * 0.9), (2 * crown,) * 3, green),
    ]


def make_tree(rng: np.random.Generator, scale: float) -> list[Part]:
    trunk_r, trunk_h = rng.uniform(0.12, 0.2) * scale, rng.uniform(1.5, 2.5) * scale
    crown = rng.uniform(0.8, 1.4) * scale
    bark = random_texture(rng, scale=0.15 * scale, kind="stripes", base_color=(0.45, 0.3, 0.18))
    leaves = random_texture(rng, scale=0.3 * scale, kind="noise", base_color=(0.2, 0.5, 0.15))
    return [
        Part("cylinder", (0.0, 0.0, trunk_h / 2), (2 * trunk_r, 2 * trunk_r, trunk_h), bark),
        Part("sphere", (0.0, 0.0, trunk_h + crown * 0.8), (2 * crown,) * 3, leaves),
    ]


def make_streetlight(rng: np.random.Generator, scale: float) -> list[Part]:
    h = rng.uniform(3.5, 4.5) * scale
    tex = random_texture(rng, scale=0.2, kind="noise", base_color=(0.3, 0.3, 0.32))
    lamp = random_texture(rng, scale=0.1, kind="cells", base_color=(0.95, 0.9, 0.6))
    return [
        Part("cylinder", (0.0, 0.0, h / 2), (0.12 * scale, 0.12 * scale, h), tex),
        Part("sphere", (0.0, 0.0, h + 0.15 * scale), (0.4 * scale,) * 3, lamp),
    ]


def make_person(rng: np.random.Generator, scale: float) -> list[Part]:
    h = rng.uniform(1.3, 1.5) * scale
    head = rng.uniform(0.11, 0.13) * scale
    return [
        Part("cylinder", (0.0, 0.0, h / 2), (0.4 * scale, 0.4 * scale, h), _tex(rng, h)),
        Part(
            "sphere",
            (0.0, 0.0, h + head * 1.1),
            (2 * head,) * 3,
            random_texture(rng, 0.05, base_color=(0.85, 0.65, 0.5)),
        ),
    ]


def make_pillar(rng: np.random.Generator, scale: float) -> list[Part]:
    r = rng.uniform(0.15, 0.35)
    h = scale  # the pillar factory takes its height as `scale`
    return [Part("cylinder", (0.0, 0.0, h / 2), (2 * r, 2 * r, h), _tex(rng, 1.0, "stripes"))]


def make_building(rng: np.random.Generator, scale: float) -> list[Part]:
    w, d, h = rng.uniform(4.0, 10.0), rng.uniform(5.0, 10.0), rng.uniform(4.0, 15.0)
    tex = random_texture(
        rng, scale=rng.uniform(1.0, 2.5), kind=str(rng.choice(["checker", "cells"]))
    )
    return [_box((0.0, 0.0, h / 2), (w * scale, d * scale, h * scale), tex)]


FACTORIES: dict[str, Factory] = {
    "box": make_box,
    "sphere": make_sphere,
    "cylinder": make_cylinder,
    "table": make_table,
    "chair": make_chair,
    "lamp": make_lamp,
    "snowman": make_snowman,
    "cabinet": make_cabinet,
    "sofa": make_sofa,
    "car": make_car,
    "bed": make_bed,
    "tv": make_tv,
    "bookshelf": make_bookshelf,
    "stool": make_stool,
    "plant": make_plant,
    "tree": make_tree,
    "streetlight": make_streetlight,
    "person": make_person,
    "pillar": make_pillar,
    "building": make_building,
}


def make_object(
    cls: str,
    rng: np.random.Generator,
    frames: int,
    position: tuple[float, float],
    yaw: float,
    scale: float = 1.0,
) -> SceneObject:
    """A static object of class ``cls`` standing on the ground at ``position`` (x, y)."""
    if cls not in FACTORIES:
        raise ValueError(f"unknown object class {cls!r}; known: {sorted(FACTORIES)}")
    parts = FACTORIES[cls](rng, scale)
    origins = np.tile(np.array([position[0], position[1], 0.0]), (frames, 1))
    return SceneObject(cls, parts, origins, np.full(frames, float(yaw)))


def make_wall(
    frames: int,
    center: tuple[float, float],
    size: tuple[float, float, float],
    texture: Texture,
) -> SceneObject:
    """An axis-aligned wall (a thin box standing on the ground)."""
    part = _box((0.0, 0.0, size[2] / 2), size, texture)
    origins = np.tile(np.array([center[0], center[1], 0.0]), (frames, 1))
    return SceneObject("wall", [part], origins, np.zeros(frames))
