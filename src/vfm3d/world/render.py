"""CPU ray caster of the procedural world with exact z-depth (numpy, vectorised).

For pixel ``(u, v)`` (integer coordinates are pixel centres) the ray is ``K^-1 [u, v, 1]`` in
OpenCV camera coordinates. Its z component is 1, so the ray parameter ``t`` of a hit *is* the
z-depth. Every primitive is intersected analytically (plane, box with yaw, sphere, vertical
cylinder) inside a screen rectangle that conservatively bounds its projection, the nearest hit
wins. Shading is Lambertian under fixed directional lights with albedo from solid textures in
object coordinates, so a static surface point has the same colour from every view. Sky pixels
(no hit) get a vertical gradient and are invalid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vfm3d.world import textures
from vfm3d.world.layouts import World

NEAR = 0.05
"""Hits closer than this z-depth (metres) are ignored."""
LIGHTS = (
    (np.array([0.35, 0.25, 0.9]) / np.linalg.norm([0.35, 0.25, 0.9]), 0.6),
    (np.array([-0.6, -0.45, 0.5]) / np.linalg.norm([-0.6, -0.45, 0.5]), 0.25),
)
AMBIENT = 0.32
_BOX, _SPHERE, _CYLINDER = 0, 1, 2
_SHAPE_CODE = {"box": _BOX, "sphere": _SPHERE, "cylinder": _CYLINDER}


@dataclass
class FrameBuffers:
    """One rendered frame: ``rgb`` uint8 ``[H, W, 3]``, ``depth`` float32 ``[H, W]`` (0 where
    invalid), ``valid`` and ``dynamic`` bool ``[H, W]``, ``ids`` int32 ``[H, W]`` (-1 sky,
    0 ground, k >= 1 primitive k - 1 of the frame's primitive list)."""

    rgb: np.ndarray
    depth: np.ndarray
    valid: np.ndarray
    dynamic: np.ndarray
    ids: np.ndarray


@dataclass
class _Prims:
    """The world's primitives at one frame, as parallel arrays ``[N, ...]`` (world frame)."""

    shape: np.ndarray  # [N] int
    center: np.ndarray  # [N, 3] part centre
    cos_yaw: np.ndarray  # [N]
    sin_yaw: np.ndarray  # [N]
    half: np.ndarray  # [N, 3] half extents in the part's (yawed) frame
    radius: np.ndarray  # [N] bounding-sphere radius
    local_offset: np.ndarray  # [N, 3] part centre in object coordinates (texture frame)
    dynamic: np.ndarray  # [N] bool
    texture: list[textures.Texture]


def _prims_at(world: World, frame: int) -> _Prims:
    shape, center, cos_yaw, sin_yaw, half, offset, dynamic, texs = [], [], [], [], [], [], [], []
    for obj in world.objects:
        yaw = float(obj.yaws[frame])
        c, s = np.cos(yaw), np.sin(yaw)
        origin = obj.origins[frame]
        for part in obj.parts:
            pc = np.asarray(part.center, dtype=np.float64)
            shape.append(_SHAPE_CODE[part.shape])
            center.append(origin + np.array([c * pc[0] - s * pc[1], s * pc[0] + c * pc[1], pc[2]]))
            cos_yaw.append(c)
            sin_yaw.append(s)
            half.append(np.asarray(part.size, dtype=np.float64) / 2)
            offset.append(pc)
            dynamic.append(obj.dynamic)
            texs.append(part.texture)
    half_arr = np.array(half).reshape(-1, 3)
    return _Prims(
        shape=np.array(shape, dtype=np.int64),
        center=np.array(center).reshape(-1, 3),
        cos_yaw=np.array(cos_yaw),
        sin_yaw=np.array(sin_yaw),
        half=half_arr,
        radius=np.linalg.norm(half_arr, axis=1),
        local_offset=np.array(offset).reshape(-1, 3),
        dynamic=np.array(dynamic, dtype=bool),
        texture=texs,
    )


def _screen_rects(
    prims: _Prims, world_to_cam: np.ndarray, intrinsics: np.ndarray, height: int, width: int
) -> np.ndarray:
    """``[N, 4]`` int (v0, v1, u0, u1) pixel rectangles that contain each primitive's image.

    Projects the 8 corners of each primitive's oriented bounding box (exact for boxes,
    conservative for spheres and cylinders). A box wholly behind the near plane gets an empty
    rectangle (v0 >= v1); one that straddles it gets the whole image.
    """
    signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], float)
    local = signs[None, :, :] * prims.half[:, None, :]  # [N, 8, 3] in the part frame
    c, s = prims.cos_yaw[:, None], prims.sin_yaw[:, None]
    corners = np.stack(
        [
            prims.center[:, None, 0] + c * local[..., 0] - s * local[..., 1],
            prims.center[:, None, 1] + s * local[..., 0] + c * local[..., 1],
            prims.center[:, None, 2] + local[..., 2],
        ],
        axis=-1,
    )
    cam = corners @ world_to_cam[:3, :3].T + world_to_cam[:3, 3]  # [N, 8, 3]
    z = cam[..., 2]
    behind = np.all(z <= NEAR, axis=1)
    straddle = np.any(z <= NEAR, axis=1) & ~behind
    zs = np.maximum(z, NEAR)
    u = intrinsics[0, 0] * cam[..., 0] / zs + intrinsics[0, 2]
    v = intrinsics[1, 1] * cam[..., 1] / zs + intrinsics[1, 2]
    rects = np.stack(
        [
            np.clip(np.floor(v.min(axis=1)) - 1, 0, height),
            np.clip(np.ceil(v.max(axis=1)) + 2, 0, height),
            np.clip(np.floor(u.min(axis=1)) - 1, 0, width),
            np.clip(np.ceil(u.max(axis=1)) + 2, 0, width),
        ],
        axis=1,
    ).astype(np.int64)
    rects[straddle] = (0, height, 0, width)
    rects[behind] = (0, 0, 0, 0)
    return rects


def _hit_box(
    o: tuple[float, float, float],
    dx: np.ndarray,
    dy: np.ndarray,
    iz: np.ndarray,
    c: float,
    s: float,
    h: tuple[float, float, float],
    inv_xy: tuple[np.ndarray, np.ndarray] | None,
) -> np.ndarray:
    """Entry ``t`` of rays ``o + t d`` into a box (origin ``o`` relative to its centre, yaw
    ``(c, s)``, half extents ``h``); ``inf`` for misses. ``dx, dy`` ``[h, w]`` ray directions,
    ``iz = 1 / dz``; ``inv_xy = (1 / dx, 1 / dy)`` when the box has no yaw (c=1, s=0)."""
    ox, oy, oz = c * o[0] + s * o[1], -s * o[0] + c * o[1], o[2]
    with np.errstate(divide="ignore", invalid="ignore"):
        if inv_xy is None:
            ix, iy = 1.0 / (c * dx + s * dy), 1.0 / (c * dy - s * dx)
        else:
            ix, iy = inv_xy
        ax, bx = (-h[0] - ox) * ix, (h[0] - ox) * ix
        ay, by = (-h[1] - oy) * iy, (h[1] - oy) * iy
        az, bz = (-h[2] - oz) * iz, (h[2] - oz) * iz
        t_near = np.maximum(np.maximum(np.minimum(ax, bx), np.minimum(ay, by)), np.minimum(az, bz))
        t_far = np.minimum(np.minimum(np.maximum(ax, bx), np.maximum(ay, by)), np.maximum(az, bz))
    t_near[(t_near > t_far) | (t_near <= NEAR)] = np.inf
    t_near[np.isnan(t_near)] = np.inf
    return t_near


def _hit_sphere(
    o: tuple[float, float, float],
    dx: np.ndarray,
    dy: np.ndarray,
    dz: np.ndarray,
    dd: np.ndarray,
    r: float,
) -> np.ndarray:
    """Entry ``t`` into a sphere of radius ``r`` (``o`` relative to its centre, ``dd = |d|^2``)."""
    b = o[0] * dx + o[1] * dy + o[2] * dz
    disc = b * b - dd * (o[0] * o[0] + o[1] * o[1] + o[2] * o[2] - r * r)
    with np.errstate(invalid="ignore"):
        t = (-b - np.sqrt(disc)) / dd
    t[~(t > NEAR)] = np.inf  # also NaN (disc < 0)
    return t


def _hit_cylinder(
    o: tuple[float, float, float],
    dx: np.ndarray,
    dy: np.ndarray,
    dz: np.ndarray,
    dxy: np.ndarray,
    r: float,
    hz: float,
) -> np.ndarray:
    """Entry ``t`` into a vertical cylinder (radius ``r``, half height ``hz``, ``o`` relative to
    its centre, ``dxy = dx^2 + dy^2``), side or cap."""
    b = o[0] * dx + o[1] * dy
    disc = b * b - dxy * (o[0] * o[0] + o[1] * o[1] - r * r)
    with np.errstate(invalid="ignore", divide="ignore"):
        t = (-b - np.sqrt(disc)) / dxy
    z = o[2] + t * dz
    t[~((np.abs(z) <= hz) & (t > NEAR))] = np.inf
    if abs(o[2]) > hz:  # the camera is above (below) the cylinder: the top (bottom) cap can show
        plane = hz if o[2] > 0 else -hz
        with np.errstate(divide="ignore", invalid="ignore"):
            t_cap = (plane - o[2]) / dz
        px, py = o[0] + t_cap * dx, o[1] + t_cap * dy
        cap = (t_cap > NEAR) & (px * px + py * py <= r * r) & (t_cap < t)
        t[cap] = t_cap[cap]
    return t


def _normals_local(shape: int, qx: np.ndarray, qy: np.ndarray, qz: np.ndarray, half: np.ndarray):
    """Outward unit normals (three ``[N]`` arrays) at points ``q`` on a part (part coordinates)."""
    if shape == _SPHERE:
        inv = 1.0 / float(half[0])
        return qx * inv, qy * inv, qz * inv
    if shape == _BOX:
        rx, ry, rz = (
            np.abs(qx) / float(half[0]),
            np.abs(qy) / float(half[1]),
            np.abs(qz) / float(half[2]),
        )
        on_x = (rx >= ry) & (rx >= rz)
        on_y = ~on_x & (ry >= rz)
        on_z = ~on_x & ~on_y
        return (
            np.where(on_x, np.sign(qx), 0.0).astype(np.float32),
            np.where(on_y, np.sign(qy), 0.0).astype(np.float32),
            np.where(on_z, np.sign(qz), 0.0).astype(np.float32),
        )
    rho = np.hypot(qx, qy)
    cap = np.abs(np.abs(qz) / float(half[2]) - 1.0) < np.abs(rho / float(half[0]) - 1.0)
    inv_rho = np.where(cap, 0.0, 1.0 / np.maximum(rho, 1e-12)).astype(np.float32)
    return qx * inv_rho, qy * inv_rho, np.where(cap, np.sign(qz), 0.0).astype(np.float32)


def _light(nx: np.ndarray, ny: np.ndarray, nz: np.ndarray) -> np.ndarray:
    """Lambertian light factor ``[N]`` for world normals under the fixed lights."""
    out = np.full(nx.shape, AMBIENT, dtype=np.float32)
    for direction, intensity in LIGHTS:
        d = [float(v) * intensity for v in direction]
        out += np.maximum(nx * d[0] + ny * d[1] + nz * d[2], 0.0)
    return out


def render_frame(
    world: World,
    frame: int,
    intrinsics: np.ndarray,
    cam_to_world: np.ndarray,
    height: int,
    width: int,
) -> FrameBuffers:
    """Render frame ``frame`` of ``world`` through ``intrinsics`` ``[3, 3]`` (no skew) and
    ``cam_to_world`` ``[4, 4]`` (OpenCV) at ``height x width``."""
    if abs(intrinsics[0, 1]) > 0 or abs(intrinsics[1, 0]) > 0:
        raise ValueError("render_frame: intrinsics with skew are not supported")
    rot = cam_to_world[:3, :3]
    eye = [float(v) for v in cam_to_world[:3, 3]]
    x_cam = ((np.arange(width) - intrinsics[0, 2]) / intrinsics[0, 0]).astype(np.float32)[None, :]
    y_cam = ((np.arange(height) - intrinsics[1, 2]) / intrinsics[1, 1]).astype(np.float32)[:, None]
    r = [[float(v) for v in row] for row in rot]
    dx = r[0][0] * x_cam + r[0][1] * y_cam + r[0][2]
    dy = r[1][0] * x_cam + r[1][1] * y_cam + r[1][2]
    dz = np.ascontiguousarray(
        np.broadcast_to(r[2][0] * x_cam + r[2][1] * y_cam + r[2][2], (height, width))
    )
    dxy = dx * dx + dy * dy
    dd = dxy + dz * dz
    with np.errstate(divide="ignore"):
        inv = (1.0 / dx, 1.0 / dy, 1.0 / dz)

    # ground plane z = 0 inside its extent
    tbuf = np.full((height, width), np.inf, dtype=np.float32)
    ids = np.full((height, width), -1, dtype=np.int16)
    if eye[2] > 0:
        t_g = -eye[2] * inv[2]
        gx, gy = eye[0] + t_g * dx, eye[1] + t_g * dy
        x0, x1, y0, y1 = (float(v) for v in world.ground.extent)
        hit = (t_g > NEAR) & (gx >= x0) & (gx <= x1) & (gy >= y0) & (gy <= y1)
        tbuf[hit] = t_g[hit]
        ids[hit] = 0

    prims = _prims_at(world, frame)
    if len(prims.shape) >= np.iinfo(np.int16).max:
        raise ValueError(f"render_frame: too many primitives ({len(prims.shape)})")
    world_to_cam = np.linalg.inv(cam_to_world)
    rects = _screen_rects(prims, world_to_cam, intrinsics, height, width)
    for k in np.flatnonzero((rects[:, 0] < rects[:, 1]) & (rects[:, 2] < rects[:, 3])):
        v0, v1, u0, u1 = (int(x) for x in rects[k])
        block = (slice(v0, v1), slice(u0, u1))
        o = (eye[0] - prims.center[k, 0], eye[1] - prims.center[k, 1], eye[2] - prims.center[k, 2])
        o = tuple(float(x) for x in o)
        shape = prims.shape[k]
        h = tuple(float(x) for x in prims.half[k])
        if shape == _BOX:
            c, s = float(prims.cos_yaw[k]), float(prims.sin_yaw[k])
            inv_xy = (inv[0][block], inv[1][block]) if (c == 1.0 and s == 0.0) else None
            t = _hit_box(o, dx[block], dy[block], inv[2][block], c, s, h, inv_xy)
        elif shape == _SPHERE:
            t = _hit_sphere(o, dx[block], dy[block], dz[block], dd[block], h[0])
        else:
            t = _hit_cylinder(o, dx[block], dy[block], dz[block], dxy[block], h[0], h[2])
        tb = tbuf[block]
        closer = t < tb
        tb[closer] = t[closer]
        ids[block][closer] = k + 1

    return _shade_frame(world, prims, eye, dx, dy, dz, dd, tbuf, ids)


def _shade_frame(
    world: World,
    prims: _Prims,
    eye: list[float],
    dx: np.ndarray,
    dy: np.ndarray,
    dz: np.ndarray,
    dd: np.ndarray,
    tbuf: np.ndarray,
    ids: np.ndarray,
) -> FrameBuffers:
    height, width = ids.shape
    flat_ids = ids.ravel()
    rgb = np.empty((height * width, 3), dtype=np.float32)
    order = np.argsort(flat_ids, kind="stable")
    counts = np.bincount(flat_ids.astype(np.int64) + 1, minlength=len(prims.shape) + 2)
    starts = np.concatenate([[0], np.cumsum(counts)])
    flat_t = tbuf.ravel()
    fdx, fdy, fdz = dx.ravel(), dy.ravel(), dz.ravel()
    for label in np.flatnonzero(counts):
        idx = order[starts[label] : starts[label + 1]]
        k = int(label) - 1  # -1 sky, 0 ground, >= 1 primitive k - 1
        if k < 0:
            horizon = np.asarray(world.sky_horizon, dtype=np.float32)
            zenith = np.asarray(world.sky_zenith, dtype=np.float32)
            up = fdz[idx] / np.sqrt(dd.ravel()[idx])
            sky = horizon + (zenith - horizon) * np.clip(up, 0.0, 1.0)[:, None]
            sky[up < 0] *= 0.8
            rgb[idx] = sky
            continue
        t = flat_t[idx]
        px = eye[0] + t * fdx[idx]
        py = eye[1] + t * fdy[idx]
        if k == 0:
            albedo = textures.evaluate(world.ground.texture, px, py, np.zeros_like(px))
            light = _light(np.float32(0.0), np.float32(0.0), np.float32(1.0))
        else:
            j = k - 1
            pz = eye[2] + t * fdz[idx]
            cx, cy, cz = (float(v) for v in prims.center[j])
            qx_w, qy_w, qz = px - cx, py - cy, pz - cz
            c, s = float(prims.cos_yaw[j]), float(prims.sin_yaw[j])
            qx, qy = c * qx_w + s * qy_w, c * qy_w - s * qx_w
            nx, ny, nz = _normals_local(int(prims.shape[j]), qx, qy, qz, prims.half[j])
            light = _light(c * nx - s * ny, s * nx + c * ny, nz)
            ox, oy, oz = (float(v) for v in prims.local_offset[j])
            albedo = textures.evaluate(prims.texture[j], qx + ox, qy + oy, qz + oz)
        rgb[idx] = albedo * light[..., None] if np.ndim(light) else albedo * light

    valid = ids >= 0
    dyn_table = np.concatenate([[False, False], prims.dynamic])
    return FrameBuffers(
        rgb=(np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8).reshape(height, width, 3),
        depth=np.where(valid, tbuf, np.float32(0.0)),
        valid=valid,
        dynamic=dyn_table[ids.astype(np.int64) + 1],
        ids=ids.astype(np.int32),
    )
