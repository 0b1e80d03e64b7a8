"""Scene layouts and camera paths of the three world kinds, all drawn from one seed.

- ``object`` (CO3D-like): one main object (sometimes with a few small ones) on a textured ground;
  the camera orbits it with smoothly varying radius, elevation, focal length and a little roll.
- ``scene`` (DL3DV / RealEstate10K-like): a room (walls, furniture, pillars) or a street
  (buildings, cars, trees, street lights); the camera walks a smooth path and turns.
- ``dynamic``: an ``object`` or ``scene`` layout plus one to three objects that move (translate
  and turn) during the clip.
- ``room`` (VSI-Bench-like indoor scene, for spatial questions): the walls and walk of a
  ``scene`` room with the view panning at twice the orbit rate (a full turn in 40 frames by
  default, so the clip scans the room), furnished with repeats for counting: a dining set
  (table and 2-6 chairs), two classes with 2-4 instances each, 3-5 single pieces. Added after
  the other kinds: their seeds render exactly as before.

The world is z-up, in metres. Trajectories are functions of the path time ``s = frame / 80``
(`vfm3d.world.camera.frame_times`): the camera moves at per-frame rates (`Motion`: an orbit's
degrees per frame, a walk's metres per frame) whatever the clip length, and the same seed gives
the same world and path for any clip of up to 81 frames (a shorter clip is a prefix of a longer
one). Objects are placed away from the camera path up to `path_horizon`, so the camera is never
inside or grazing one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from vfm3d.world.camera import (
    FOV_RANGE_DEG,
    REFERENCE_FRAMES,
    Motion,
    SmoothSignal,
    dense_times,
    direction_from_angles,
    frame_times,
    look_at,
    path_horizon,
)
from vfm3d.world.objects import SceneObject, make_object, make_wall
from vfm3d.world.textures import Texture, random_texture

KINDS = ("object", "scene", "dynamic", "room")
FPS = 10.0
_CAMERA_CLEARANCE = 0.6  # metres between the camera path and any object footprint

OBJECT_CLASSES = (
    "box",
    "sphere",
    "cylinder",
    "table",
    "chair",
    "lamp",
    "snowman",
    "cabinet",
    "sofa",
    "car",
    "plant",
    "bed",
    "tv",
    "stool",
)
SMALL_CLASSES = ("box", "sphere", "cylinder", "plant")
ROOM_CLASSES = (
    "table",
    "chair",
    "chair",
    "cabinet",
    "sofa",
    "lamp",
    "plant",
    "box",
    "sphere",
    "bed",
    "tv",
    "bookshelf",
    "stool",
)
MOVER_CLASSES_OBJECT = ("sphere", "box", "cylinder")
MOVER_CLASSES_SCENE = ("person", "sphere", "box")


@dataclass
class _Path:
    """A camera path evaluated at times ``s``: eye ``[S, 3]``, cam_to_world ``[S, 4, 4]``, fov."""

    eye: np.ndarray
    cam_to_world: np.ndarray
    fov_x_deg: np.ndarray


@dataclass
class Ground:
    """The ground plane z = 0, limited to ``extent`` = (xmin, xmax, ymin, ymax); beyond is sky."""

    extent: tuple[float, float, float, float]
    texture: Texture


@dataclass
class World:
    """Everything needed to render a clip: geometry, lights, cameras (one per frame).

    ``cam_to_world`` ``[T, 4, 4]`` float64 (OpenCV), ``fov_x_deg`` ``[T]`` horizontal FoV.
    """

    kind: str
    base_kind: str
    layout: str
    seed: int
    ground: Ground
    objects: list[SceneObject]
    cam_to_world: np.ndarray
    fov_x_deg: np.ndarray
    sky_horizon: tuple[float, float, float]
    sky_zenith: tuple[float, float, float]
    free_bounds: tuple[float, float, float, float]
    """Region (xmin, xmax, ymin, ymax) where objects may stand (inside the room, on the street)."""
    path: Callable[[np.ndarray], _Path] = field(repr=False)
    """The camera path: path times ``[S]`` (`frame_times`) -> eyes, cam_to_world, FoV."""
    lights: tuple[tuple[tuple[float, float, float], float], ...] = ()
    """Directional lights: (unit direction towards the light, intensity), fixed for the clip."""
    ambient: float = 0.32
    motion: Motion = field(default_factory=Motion)
    """The per-frame rates the camera path was built with."""

    @property
    def num_frames(self) -> int:
        return int(self.cam_to_world.shape[0])


def build_world(kind: str, seed: int, frames: int, motion: Motion | None = None) -> World:
    """Sample the world of ``kind`` from ``seed`` and its camera at ``frames`` frames.

    ``motion``: per-frame camera rates (default `Motion()`: 4.5 deg per frame orbits, 0.05 m per
    frame walks).
    """
    motion = Motion() if motion is None else motion
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    if not 0 <= int(seed) < 2**63:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    rng = np.random.default_rng([int(seed), KINDS.index(kind)])
    base_kind = kind if kind != "dynamic" else str(rng.choice(["object", "scene"]))
    if kind == "room":
        base_kind = "scene"
        world = _furnished_room_world(rng, frames, motion)
    elif base_kind == "object":
        world = _object_world(rng, frames, motion)
    elif rng.uniform() < 0.5:
        world = _room_world(rng, frames, motion)
    else:
        world = _street_world(rng, frames, motion)
    world.kind, world.base_kind, world.seed = kind, base_kind, int(seed)
    world.motion = motion
    if kind == "dynamic":
        _add_movers(rng, world, frames)
    return world


def _sky(rng: np.random.Generator) -> tuple[tuple[float, ...], tuple[float, ...]]:
    horizon = tuple(
        float(v) for v in np.clip(np.array([0.8, 0.85, 0.92]) + rng.normal(0, 0.03, 3), 0, 1)
    )
    zenith = tuple(
        float(v) for v in np.clip(np.array([0.3, 0.5, 0.85]) + rng.normal(0, 0.05, 3), 0, 1)
    )
    return horizon, zenith


def _sample_fov(rng: np.random.Generator) -> float:
    return float(rng.uniform(*FOV_RANGE_DEG))


def _finish(
    rng: np.random.Generator,
    base_kind: str,
    layout: str,
    ground: Ground,
    objects: list[SceneObject],
    path: Callable[[np.ndarray], _Path],
    frames: int,
    free_bounds: tuple[float, float, float, float],
) -> World:
    """Evaluate the camera path at the clip's frames, draw the sky, assemble the `World`."""
    cams = path(frame_times(frames))
    horizon, zenith = _sky(rng)
    return World(
        base_kind, base_kind, layout, 0, ground, objects, cams.cam_to_world, cams.fov_x_deg,
        horizon, zenith, free_bounds, path, _lights(rng), float(rng.uniform(0.25, 0.4)),
    )  # fmt: skip


def _lights(rng: np.random.Generator) -> tuple[tuple[tuple[float, float, float], float], ...]:
    """A key light (elevation 35-75 deg, any azimuth) and a weaker fill light opposite it."""
    azimuth = rng.uniform(0.0, 2.0 * np.pi)
    key = direction_from_angles(azimuth, np.radians(rng.uniform(35.0, 75.0)))
    fill = direction_from_angles(azimuth + np.pi + rng.uniform(-0.5, 0.5), np.radians(30.0))
    return (
        (tuple(float(v) for v in key), float(rng.uniform(0.5, 0.7))),  # type: ignore[misc]
        (tuple(float(v) for v in fill), float(rng.uniform(0.15, 0.3))),  # type: ignore[misc]
    )


# ---------------------------------------------------------------------- object kind
def _object_world(rng: np.random.Generator, frames: int, motion: Motion) -> World:
    cls = str(rng.choice(OBJECT_CLASSES))
    scale = float(rng.uniform(0.7, 1.4)) if cls != "car" else 1.0
    main = make_object(cls, rng, frames, (0.0, 0.0), float(rng.uniform(0, 2 * np.pi)), scale)
    lo, hi = main.local_bounds()
    radius = float(np.linalg.norm(hi - lo) / 2)
    target = main.box_center(0)

    fov0 = _sample_fov(rng)
    fill = rng.uniform(0.5, 0.85)
    r0 = max(radius / np.tan(np.radians(fov0) / 2) / fill, radius + 1.5)
    el0 = np.radians(rng.uniform(15.0, 40.0))
    az0 = rng.uniform(0, 2 * np.pi)
    # azimuth rate per unit of path time (REFERENCE_FRAMES - 1 frames), either direction
    sweep = np.radians(motion.deg_per_frame) * (REFERENCE_FRAMES - 1) * rng.choice([-1.0, 1.0])
    sig_r, sig_e, sig_a, sig_f, sig_roll = (SmoothSignal(rng) for _ in range(5))
    sig_t = [SmoothSignal(rng) for _ in range(3)]

    def path(s: np.ndarray) -> _Path:
        rad = r0 * (1.0 + 0.15 * sig_r(s))
        el = el0 + np.radians(8.0) * sig_e(s)
        az = az0 + sweep * s + 0.1 * sig_a(s)
        fov = np.clip(fov0 * (1.0 + 0.08 * sig_f(s)), *FOV_RANGE_DEG)
        tgt = target[None, :] + 0.08 * radius * np.stack([g(s) for g in sig_t], axis=1)
        offset = np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], axis=1)
        eye = tgt + rad[:, None] * offset
        c2w = look_at(eye, tgt, np.radians(3.0) * sig_roll(s))
        return _Path(eye, c2w, fov)

    dense = path(dense_times(frames))
    cam_dist = float(np.min(np.hypot(dense.eye[:, 0], dense.eye[:, 1])))
    objects = [main]
    for _ in range(int(rng.integers(0, 4))):
        small = make_object(
            str(rng.choice(SMALL_CLASSES)),
            rng,
            frames,
            (0.0, 0.0),
            0.0,
            float(rng.uniform(0.3, 0.6)),
        )
        _place(rng, small, objects, dense.eye, (-cam_dist, cam_dist, -cam_dist, cam_dist), 30)
    ground_half = float(rng.uniform(2.5, 4.0) * r0)
    ground = Ground(
        (-ground_half, ground_half, -ground_half, ground_half),
        random_texture(rng, scale=float(rng.uniform(0.25, 0.6)) * scale),
    )
    bounds = (-cam_dist, cam_dist, -cam_dist, cam_dist)
    return _finish(rng, "object", cls, ground, objects, path, frames, bounds)


# ---------------------------------------------------------------------- placement helpers
def _clear_of(
    obj: SceneObject,
    xy: np.ndarray,
    others: list[SceneObject],
    eyes: np.ndarray,
) -> bool:
    """Whether ``obj`` at ``xy`` keeps clear of ``others`` (frame 0 poses) and the camera path."""
    fp = obj.footprint_radius()
    if np.min(np.hypot(eyes[:, 0] - xy[0], eyes[:, 1] - xy[1])) < fp + _CAMERA_CLEARANCE:
        return False
    for other in others:
        if other.cls in ("wall", "building"):
            continue
        if np.hypot(*(other.origins[0, :2] - xy)) < fp + other.footprint_radius() + 0.1:
            return False
    return True


def _place(
    rng: np.random.Generator,
    obj: SceneObject,
    objects: list[SceneObject],
    eyes: np.ndarray,
    bounds: tuple[float, float, float, float],
    tries: int,
) -> bool:
    """Try random positions/yaws inside ``bounds``; append ``obj`` to ``objects`` on success."""
    fp = obj.footprint_radius()
    x0, x1, y0, y1 = bounds[0] + fp, bounds[1] - fp, bounds[2] + fp, bounds[3] - fp
    if x0 >= x1 or y0 >= y1:
        return False
    for _ in range(tries):
        xy = np.array([rng.uniform(x0, x1), rng.uniform(y0, y1)])
        yaw = float(rng.uniform(0, 2 * np.pi))
        if _clear_of(obj, xy, objects, eyes):
            obj.origins[:, :2] = xy
            obj.yaws[:] = yaw
            objects.append(obj)
            return True
    return False


def _walker(
    rng: np.random.Generator,
    position: Callable[[np.ndarray], np.ndarray],
    fov0: float,
    yaw_offset: float,
    yaw_amp_deg: float,
    look_xy: np.ndarray | None = None,
    pan: float = 0.0,
) -> Callable[[np.ndarray], _Path]:
    """Camera path of a walking viewer at ``position(s)`` ``[S, 2]`` (ground xy): eye height
    about 1.4-1.75 m with slight bobbing, facing along the walk (or towards the point
    ``look_xy`` when given) plus ``yaw_offset``, a steady pan of ``pan`` radians per unit of
    path time (0: none) and a smooth look-around of ``yaw_amp_deg``, slight downward pitch and
    roll; fixed FoV."""
    sig_yaw, sig_pitch, sig_roll, sig_h = (SmoothSignal(rng) for _ in range(4))
    height = rng.uniform(1.4, 1.75)
    pitch0 = np.radians(rng.uniform(-15.0, 0.0))

    def path(s: np.ndarray) -> _Path:
        xy = position(s)
        if look_xy is None:
            ahead = position(s + 1e-3) - position(s - 1e-3)  # walking direction
        else:
            ahead = look_xy[None, :] - xy
        heading = np.arctan2(ahead[:, 1], ahead[:, 0])
        yaw = heading + yaw_offset + pan * np.asarray(s) + np.radians(yaw_amp_deg) * sig_yaw(s)
        pitch = pitch0 + np.radians(5.0) * sig_pitch(s)
        eye = np.concatenate([xy, (height + 0.05 * sig_h(s))[:, None]], axis=1)
        c2w = look_at(eye, eye + direction_from_angles(yaw, pitch), np.radians(2.0) * sig_roll(s))
        return _Path(eye, c2w, np.full(len(s), fov0))

    return path


# ---------------------------------------------------------------------- scene kind: room
@dataclass
class _RoomShell:
    """The walls, camera path and free region of a room (drawn before its furniture)."""

    lx: float
    ly: float
    wall_h: float
    objects: list[SceneObject]
    path: Callable[[np.ndarray], _Path]
    eyes: np.ndarray
    bounds: tuple[float, float, float, float]


def _room_shell(
    rng: np.random.Generator,
    frames: int,
    motion: Motion,
    yaw_offset_deg: float = 40.0,
    look_around_deg: float = 30.0,
    pan: float = 0.0,
    face_out: bool = False,
) -> _RoomShell:
    """Walls (inner size ``lx`` x ``ly``, centred on the origin, axis-aligned) and the walk.

    The camera walks an ellipse around the middle of the room at ``motion.m_per_frame``, facing
    a point near the middle (away from it with ``face_out``) plus an offset drawn in
    +-``yaw_offset_deg``, a steady pan of ``pan`` radians per unit of path time and a smooth
    look-around of ``look_around_deg``. The random draws do not depend on these arguments, so
    the ``scene`` rooms are unchanged by them.
    """
    lx, ly = float(rng.uniform(6.0, 12.0)), float(rng.uniform(5.0, 10.0))
    wall_h, thick = float(rng.uniform(2.5, 3.2)), 0.2
    wall_tex = random_texture(rng, scale=float(rng.uniform(0.3, 0.8)))
    objects: list[SceneObject] = [
        make_wall(
            frames, (0.0, sy * (ly / 2 + thick / 2)), (lx + 2 * thick, thick, wall_h), wall_tex
        )
        for sy in (-1, 1)
    ] + [
        make_wall(frames, (sx * (lx / 2 + thick / 2), 0.0), (thick, ly, wall_h), wall_tex)
        for sx in (-1, 1)
    ]
    centre = rng.uniform(-0.1, 0.1, size=2) * np.array([lx, ly])
    a, b = rng.uniform(0.15, 0.28) * lx, rng.uniform(0.15, 0.28) * ly
    theta0 = rng.uniform(0, 2 * np.pi)
    turn = float(rng.choice([-1.0, 1.0]))
    sig_rad = SmoothSignal(rng)
    walked = motion.m_per_frame * (REFERENCE_FRAMES - 1) * path_horizon(frames)
    angle_of = _ellipse_angle_by_arc(a, b, theta0, turn, walked)

    def position(s: np.ndarray) -> np.ndarray:
        # walk the ellipse at m_per_frame: the angle is a function of the arc length walked
        th = angle_of(motion.m_per_frame * (REFERENCE_FRAMES - 1) * np.asarray(s))
        k = 1.0 + 0.1 * sig_rad(s)
        return centre[None, :] + np.stack([a * k * np.cos(th), b * k * np.sin(th)], axis=1)

    fov0 = _sample_fov(rng)
    # face the middle of the room (where the furniture is), looking around
    look = centre + rng.uniform(-0.15, 0.15, size=2) * np.array([lx, ly])
    offset = float(np.radians(rng.uniform(-yaw_offset_deg, yaw_offset_deg)))
    offset += np.pi if face_out else 0.0
    path = _walker(rng, position, fov0, offset, look_around_deg, look, pan)
    eyes = path(dense_times(frames)).eye
    bounds = (-lx / 2 + 0.05, lx / 2 - 0.05, -ly / 2 + 0.05, ly / 2 - 0.05)
    return _RoomShell(lx, ly, wall_h, objects, path, eyes, bounds)


def _room_ground(rng: np.random.Generator, lx: float, ly: float) -> Ground:
    return Ground(
        (-lx / 2 - 1.0, lx / 2 + 1.0, -ly / 2 - 1.0, ly / 2 + 1.0),
        random_texture(rng, scale=float(rng.uniform(0.3, 0.7))),
    )


def _room_world(rng: np.random.Generator, frames: int, motion: Motion) -> World:
    """A ``scene`` room: 1-2 pillars and 5-10 pieces of furniture drawn from `ROOM_CLASSES`."""
    room = _room_shell(rng, frames, motion)
    objects = room.objects
    for _ in range(int(rng.integers(1, 3))):
        _place(
            rng,
            make_object("pillar", rng, frames, (0, 0), 0.0, room.wall_h),
            objects,
            room.eyes,
            room.bounds,
            30,
        )
    for _ in range(int(rng.integers(5, 11))):
        obj = make_object(str(rng.choice(ROOM_CLASSES)), rng, frames, (0, 0), 0.0)
        _place(rng, obj, objects, room.eyes, room.bounds, 30)
    ground = _room_ground(rng, room.lx, room.ly)
    return _finish(rng, "scene", "room", ground, objects, room.path, frames, room.bounds)


# ---------------------------------------------------------------------- room kind (furnished)
REPEAT_CLASSES = ("plant", "lamp", "stool", "box", "cabinet", "sphere", "bookshelf")
"""Classes of which a ``room`` clip holds 2-4 instances (two of them per room)."""
SINGLE_CLASSES = (
    "sofa",
    "bed",
    "tv",
    "bookshelf",
    "cabinet",
    "lamp",
    "plant",
    "stool",
    "box",
    "sphere",
    "cylinder",
    "snowman",
)
"""Classes of a ``room`` clip's single pieces (3-5 of them, none of the repeated classes)."""


def _furnished_room_world(rng: np.random.Generator, frames: int, motion: Motion) -> World:
    """A ``room`` clip (VSI-Bench-like indoor scene, for spatial questions): the walls and walk
    of a ``scene`` room, starting to face away from the middle and panning steadily at twice
    ``motion.deg_per_frame`` (either way; a full turn in 40 frames by default, so the clip scans
    the room and objects come into view one after another) with a look-around of 20 deg; a
    dining set (a table with 2-6 chairs around it), two classes of `REPEAT_CLASSES` with 2-4
    instances each and 3-5 single pieces of `SINGLE_CLASSES`; no pillars. Pieces that find no
    free spot are left out.
    """
    turn = float(rng.choice([-1, 1]))
    pan = 2.0 * np.radians(motion.deg_per_frame) * (REFERENCE_FRAMES - 1) * turn
    room = _room_shell(rng, frames, motion, 20.0, 20.0, pan, face_out=True)
    objects = room.objects
    _place_dining_set(rng, objects, frames, room.eyes, room.bounds, int(rng.integers(2, 7)), 40)
    repeated = [str(c) for c in rng.choice(REPEAT_CLASSES, size=2, replace=False)]
    for cls in repeated:
        for _ in range(int(rng.integers(2, 5))):
            obj = make_object(cls, rng, frames, (0, 0), 0.0)
            _place(rng, obj, objects, room.eyes, room.bounds, 30)
    singles = [c for c in SINGLE_CLASSES if c not in repeated]
    for cls in rng.choice(singles, size=int(rng.integers(3, 6)), replace=False):
        obj = make_object(str(cls), rng, frames, (0, 0), 0.0)
        _place(rng, obj, objects, room.eyes, room.bounds, 30)
    ground = _room_ground(rng, room.lx, room.ly)
    return _finish(rng, "scene", "room", ground, objects, room.path, frames, room.bounds)


def _place_dining_set(
    rng: np.random.Generator,
    objects: list[SceneObject],
    frames: int,
    eyes: np.ndarray,
    bounds: tuple[float, float, float, float],
    chairs: int,
    tries: int,
) -> bool:
    """A table with up to ``chairs`` chairs facing it (two per long side when the table is at
    least 1.25 m long, else one; one at each end), placed as one unit clear of ``objects`` and
    of the camera path; appended to ``objects`` on success."""
    table = make_object("table", rng, frames, (0.0, 0.0), 0.0)
    lo, hi = table.local_bounds()
    w, d = float(hi[0] - lo[0]), float(hi[1] - lo[1])
    gap = 0.3  # seat centre beyond the table edge
    xs = (-w / 4, w / 4) if w >= 1.25 else (0.0,)
    seats = [(x, sy * (d / 2 + gap)) for x in xs for sy in (-1.0, 1.0)]
    seats += [(sx * (w / 2 + gap), 0.0) for sx in (-1.0, 1.0)]
    seats = seats[: max(0, int(chairs))]
    seated = [make_object("chair", rng, frames, (0.0, 0.0), 0.0) for _ in seats]
    radius = max(
        [table.footprint_radius()]
        + [float(np.hypot(*xy)) + c.footprint_radius() for xy, c in zip(seats, seated)]
    )
    x0, x1, y0, y1 = bounds[0] + radius, bounds[1] - radius, bounds[2] + radius, bounds[3] - radius
    if x0 >= x1 or y0 >= y1:
        return False
    for _ in range(tries):
        xy = np.array([rng.uniform(x0, x1), rng.uniform(y0, y1)])
        yaw = float(rng.uniform(0, 2 * np.pi))
        if np.min(np.hypot(eyes[:, 0] - xy[0], eyes[:, 1] - xy[1])) < radius + _CAMERA_CLEARANCE:
            continue
        if any(
            np.hypot(*(o.origins[0, :2] - xy)) < radius + o.footprint_radius() + 0.1
            for o in objects
            if o.cls not in ("wall", "building")
        ):
            continue
        table.origins[:, :2] = xy
        table.yaws[:] = yaw
        objects.append(table)
        rot = np.array([[np.cos(yaw), -np.sin(yaw)], [np.sin(yaw), np.cos(yaw)]])
        for seat, chair in zip(seats, seated):
            at = xy + rot @ np.asarray(seat)
            to_table = xy - at
            chair.origins[:, :2] = at
            # a chair's front is its local -y (the backrest is at +y): turn it to the table
            chair.yaws[:] = float(np.arctan2(to_table[0], -to_table[1]))
            objects.append(chair)
        return True
    return False


# ---------------------------------------------------------------------- scene kind: street
def _street_world(rng: np.random.Generator, frames: int, motion: Motion) -> World:
    half_w = float(rng.uniform(4.0, 7.0))
    direction = float(rng.choice([-1.0, 1.0]))
    sig_y = SmoothSignal(rng)
    speed = motion.m_per_frame * (REFERENCE_FRAMES - 1)  # metres per unit of path time
    horizon = path_horizon(frames)
    # sideways drift: up to 30% of one unit's walk (at most 1.2 m), so the walk stays a walk
    drift = min(1.2, 0.3 * speed)
    street_half = max(35.0, speed * horizon / 2 + 10.0)

    def position(s: np.ndarray) -> np.ndarray:
        x = direction * speed * (np.asarray(s) - horizon / 2)
        return np.stack([x, drift * sig_y(s)], axis=1)

    fov0 = _sample_fov(rng)
    path = _walker(rng, position, fov0, float(np.radians(rng.uniform(-20.0, 20.0))), 25.0)
    dense = path(dense_times(frames))
    objects: list[SceneObject] = []
    for side in (-1.0, 1.0):
        x = -street_half + rng.uniform(0.0, 3.0)
        while x < street_half:
            bld = make_object("building", rng, frames, (0.0, 0.0), 0.0)
            lo, hi = bld.local_bounds()
            w, d = hi[0] - lo[0], hi[1] - lo[1]
            bld.origins[:, :2] = (x + w / 2, side * (half_w + d / 2))
            objects.append(bld)
            x += w + rng.uniform(0.0, 3.0)
    street = (-street_half, street_half, -half_w + 0.1, half_w - 0.1)
    for cls, count in (
        ("streetlight", (3, 7)),
        ("tree", (2, 6)),
        ("car", (2, 6)),
        ("pillar", (0, 3)),
    ):
        for _ in range(int(rng.integers(*count))):
            scale = 1.0 if cls != "pillar" else float(rng.uniform(1.0, 3.0))
            obj = make_object(cls, rng, frames, (0.0, 0.0), 0.0, scale)
            _place(rng, obj, objects, dense.eye, street, 30)
    ground = Ground(
        (-street_half - 5.0, street_half + 5.0, -half_w - 12.0, half_w + 12.0),
        random_texture(
            rng,
            scale=float(rng.uniform(0.5, 1.2)),
            kind=str(rng.choice(["noise", "cells", "checker"])),
        ),
    )
    return _finish(rng, "scene", "street", ground, objects, path, frames, street)


# ---------------------------------------------------------------------- dynamic kind
_FIXED = ("wall", "building")


def _add_movers(rng: np.random.Generator, world: World, frames: int) -> None:
    """Add one to three moving objects that keep clear of the camera and of other objects.

    Each mover translates along a straight line and turns at a constant rate (per unit of path
    time, so per frame whatever the clip length); scene movers start in front of the camera at
    some time of the clip (20-80% of its frames), and every mover is well inside the view of at
    least one frame. Movers are laid out over the clip's own time span (a dense grid), so unlike
    the static world their layout depends on the clip length.
    If no free path is found, static furniture in the way is removed (never walls, buildings
    or the main object of an ``object`` clip).
    """
    # Movers are laid out for the clip itself (its own time span), so that they are seen and
    # move at a per-frame rate: unlike the static world, their layout depends on T.
    times = frame_times(frames)
    s_dense = np.linspace(0.0, float(times[-1]), max(int(np.ceil(120 * times[-1])), 1) + 1)
    in_clip = len(s_dense)
    mid = float(times[-1]) / 2
    dense = world.path(s_dense)
    eyes = dense.eye
    on_object = world.base_kind == "object"
    classes = MOVER_CLASSES_OBJECT if on_object else MOVER_CLASSES_SCENE
    x0, x1, y0, y1 = world.free_bounds
    keep = {id(world.objects[0])} if on_object else set()
    wanted, placed = int(rng.integers(1, 4)), 0
    mover_paths: dict[int, np.ndarray] = {}  # id -> [S, 2] ground positions at s_dense
    for _ in range(wanted + 4):  # a few extra attempts so that at least one mover is placed
        if placed >= wanted:
            break
        cls = str(rng.choice(classes))
        scale = float(rng.uniform(0.35, 0.7)) if on_object else 1.0
        mover = make_object(cls, rng, frames, (0.0, 0.0), 0.0, scale)
        mover.dynamic = True
        fp = mover.footprint_radius()
        best: tuple[np.ndarray, np.ndarray, list[SceneObject]] | None = None
        for _try in range(80):
            if on_object:
                reach = float(np.min(np.hypot(eyes[:, 0], eyes[:, 1]))) * rng.uniform(0.4, 0.8)
                start = rng.uniform(-reach, reach, size=2)
                dist = rng.uniform(1.0, 2.5) * scale  # per unit of path time (80 frames)
            else:
                k = int(rng.integers(in_clip // 5, max(in_clip - in_clip // 5, in_clip // 5 + 1)))
                forward = dense.cam_to_world[k, :3, 2]
                start = eyes[k, :2] + forward[:2] * rng.uniform(1.8, 4.5) + rng.normal(0, 0.5, 2)
                dist = rng.uniform(1.6, 4.0)  # 0.02-0.05 m per frame
            heading = rng.uniform(0, 2 * np.pi)
            step = dist * np.array([np.cos(heading), np.sin(heading)])
            xy = start[None, :] + (s_dense[:, None] - mid) * step[None, :]
            inside = (
                np.all(xy[:, 0] - fp > x0)
                and np.all(xy[:, 0] + fp < x1)
                and np.all(xy[:, 1] - fp > y0)
                and np.all(xy[:, 1] + fp < y1)
            )
            if not inside or np.any(np.hypot(*(xy - eyes[:, :2]).T) < fp + _CAMERA_CLEARANCE + 0.3):
                continue
            at_frames = start[None, :] + (times[:, None] - mid) * step[None, :]
            if not _in_view(world, at_frames, 0.5 * float(mover.local_bounds()[1][2])):
                continue
            hits = _conflicts(xy, fp, world.objects, mover_paths)
            if any(o.cls in _FIXED or id(o) in keep or o.dynamic for o in hits):
                continue
            if not hits:
                best = (start, step, [])
                break
            if best is None or len(hits) < len(best[2]):
                best = (start, step, hits)
        if best is None:
            continue
        start, step, hits = best
        world.objects[:] = [o for o in world.objects if all(o is not h for h in hits)]
        yaw0, spin = rng.uniform(0, 2 * np.pi), rng.uniform(-np.pi, np.pi)
        mover.origins[:, :2] = start[None, :] + (times[:, None] - mid) * step[None, :]
        mover.yaws[:] = yaw0 + spin * times
        world.objects.append(mover)
        mover_paths[id(mover)] = start[None, :] + (s_dense[:, None] - mid) * step[None, :]
        placed += 1


def _in_view(world: World, xy: np.ndarray, height: float) -> bool:
    """Whether a point at ground position ``xy`` ``[T, 2]`` (clip frames) and ``height`` is well
    inside the view (70% of the half field of view) of at least one frame's camera."""
    point = np.concatenate([xy, np.full((len(xy), 1), height)], axis=1)
    ray = point - world.cam_to_world[:, :3, 3]
    ray = ray / np.linalg.norm(ray, axis=1, keepdims=True).clip(1e-9)
    cos = np.sum(ray * world.cam_to_world[:, :3, 2], axis=1)
    half = np.radians(0.7 * world.fov_x_deg / 2)
    return bool(np.any(cos > np.cos(half)))


def _conflicts(
    xy: np.ndarray, fp: float, others: list[SceneObject], mover_paths: dict[int, np.ndarray]
) -> list[SceneObject]:
    """Objects that a mover at ``xy`` ``[S, 2]`` (dense path times, footprint ``fp``) would touch;
    ``mover_paths`` holds the placed movers' positions at the same times."""
    out = []
    for other in others:
        if other.cls in _FIXED:
            lo, hi = other.local_bounds()
            c = other.origins[0, :2] + (lo[:2] + hi[:2]) / 2
            half = (hi[:2] - lo[:2]) / 2 + fp + 0.05
            if np.any(np.all(np.abs(xy - c[None, :]) < half[None, :], axis=1)):
                out.append(other)
            continue
        oxy = mover_paths.get(id(other), other.origins[:1, :2])
        if np.any(np.hypot(*(xy - oxy).T) < fp + other.footprint_radius() + 0.05):
            out.append(other)
    return out


def _ellipse_angle_by_arc(
    a: float, b: float, theta0: float, turn: float, max_arc: float
) -> Callable[[np.ndarray], np.ndarray]:
    """The angle ``theta0 + turn * phi`` on the ellipse ``(a cos t, b sin t)`` reached after an arc
    length ``arc`` from ``theta0`` (``turn`` = +-1 the direction), as a function of ``arc``
    (numerically inverted on a fine grid covering ``max_arc``)."""
    perimeter = 2 * np.pi * np.sqrt((a * a + b * b) / 2)
    turns = max_arc / max(perimeter, 1e-9) + 1.0
    phi = np.linspace(0.0, 2 * np.pi * turns, int(4096 * turns) + 2)
    th = theta0 + turn * phi
    speed = np.sqrt((a * np.sin(th)) ** 2 + (b * np.cos(th)) ** 2)
    arc = np.concatenate([[0.0], np.cumsum((speed[1:] + speed[:-1]) / 2 * np.diff(phi))])

    def angle(length: np.ndarray) -> np.ndarray:
        return theta0 + turn * np.interp(np.asarray(length, dtype=np.float64), arc, phi)

    return angle
