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

import itertools
from dataclasses import dataclass

import numpy as np

from vfm3d.world import textures
from vfm3d.world.layouts import World

NEAR = 0.05
"""Hits closer than this z-depth (metres) are ignored."""
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
class _PartTable:
    """The world's parts as arrays ``[P, ...]`` (fixed order), built once per world."""

    obj: np.ndarray  # [P] index of the owning object
    local_center: np.ndarray  # [P, 3] part centre in object coordinates
    half: np.ndarray  # [P, 3] half extents
    shape: np.ndarray  # [P] int
    dynamic: np.ndarray  # [P] bool
    tex_params: np.ndarray  # [N_PARAMS, 1 + P] float32: column 0 = ground, 1 + p = part p
    tex_kinds: np.ndarray  # [1 + P] int
    tex_seeds: np.ndarray  # [1 + P] uint32


@dataclass
class _Prims:
    """The world's primitives at one frame (world frame), arrays ``[P, ...]``."""

    shape: np.ndarray
    center: np.ndarray  # [P, 3]
    cos_yaw: np.ndarray  # [P]
    sin_yaw: np.ndarray  # [P]
    half: np.ndarray  # [P, 3]
    local_offset: np.ndarray  # [P, 3] part centre in object coordinates (texture frame)
    dynamic: np.ndarray  # [P] bool


def _part_table(world: World) -> _PartTable:
    cache = world.__dict__.setdefault("_render_cache", {})
    if "parts" not in cache:
        parts = [(i, part) for i, obj in enumerate(world.objects) for part in obj.parts]
        tex_params, tex_kinds, tex_seeds = textures.texture_params(
            [world.ground.texture] + [p.texture for _, p in parts]
        )
        cache["parts"] = _PartTable(
            obj=np.array([i for i, _ in parts], dtype=np.int64),
            local_center=np.array([p.center for _, p in parts], dtype=np.float64).reshape(-1, 3),
            half=np.array([p.size for _, p in parts], dtype=np.float64).reshape(-1, 3) / 2,
            shape=np.array([_SHAPE_CODE[p.shape] for _, p in parts], dtype=np.int64),
            dynamic=np.array([world.objects[i].dynamic for i, _ in parts], dtype=bool),
            tex_params=tex_params,
            tex_kinds=tex_kinds,
            tex_seeds=tex_seeds,
        )
    return cache["parts"]


def object_pixel_counts(world: World, ids: np.ndarray) -> np.ndarray:
    """``[num_objects]`` int: pixels of each object in a frame's ``ids`` buffer (see
    `FrameBuffers`)."""
    prim = ids[ids >= 1].astype(np.int64) - 1
    return np.bincount(_part_table(world).obj[prim], minlength=len(world.objects))


def _prims_at(world: World, frame: int) -> _Prims:
    table = _part_table(world)
    origins = np.array([obj.origins[frame] for obj in world.objects]).reshape(-1, 3)
    yaws = np.array([obj.yaws[frame] for obj in world.objects], dtype=np.float64)
    c, s = np.cos(yaws)[table.obj], np.sin(yaws)[table.obj]
    lc = table.local_center
    center = origins[table.obj] + np.stack(
        [c * lc[:, 0] - s * lc[:, 1], s * lc[:, 0] + c * lc[:, 1], lc[:, 2]], axis=1
    )
    return _Prims(table.shape, center, c, s, table.half, lc, table.dynamic)


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
    np.copyto(t_near, np.float32(np.inf), where=~((t_near <= t_far) & (t_near > NEAR)))  # + NaN
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
    np.copyto(t, np.float32(np.inf), where=~(t > NEAR))  # also NaN (disc < 0)
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
    np.copyto(t, np.float32(np.inf), where=~((np.abs(z) <= hz) & (t > NEAR)))
    if abs(o[2]) > hz:  # the camera is above (below) the cylinder: the top (bottom) cap can show
        plane = hz if o[2] > 0 else -hz
        with np.errstate(divide="ignore", invalid="ignore"):
            t_cap = (plane - o[2]) / dz
        px, py = o[0] + t_cap * dx, o[1] + t_cap * dy
        cap = (t_cap > NEAR) & (px * px + py * py <= r * r) & (t_cap < t)
        np.copyto(t, t_cap, where=cap)
    return t


def _normals(
    shape: int, qx: np.ndarray, qy: np.ndarray, qz: np.ndarray, half: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Outward unit normals (part coordinates) at points ``q`` (``[N]`` each) on parts of one
    ``shape`` code (-1 = the ground plane) with half extents ``half`` ``[3, N]``."""
    if shape == -1:
        return np.zeros_like(qx), np.zeros_like(qx), np.ones_like(qx)
    if shape == _SPHERE:
        inv = 1.0 / half[0]
        return qx * inv, qy * inv, qz * inv
    if shape == _BOX:
        rx, ry, rz = np.abs(qx) / half[0], np.abs(qy) / half[1], np.abs(qz) / half[2]
        on_x = (rx >= ry) & (rx >= rz)
        on_y = ~on_x & (ry >= rz)
        zero = np.float32(0.0)
        return (
            np.where(on_x, np.sign(qx), zero),
            np.where(on_y, np.sign(qy), zero),
            np.where(on_x | on_y, zero, np.sign(qz)),
        )
    rho = np.hypot(qx, qy)
    cap = np.abs(np.abs(qz) / half[2] - 1.0) < np.abs(rho / half[0] - 1.0)
    inv_rho = np.where(cap, np.float32(0.0), 1.0 / np.maximum(rho, np.float32(1e-12)))
    return qx * inv_rho, qy * inv_rho, np.where(cap, np.sign(qz), np.float32(0.0))


def _light(world: World, nx: np.ndarray, ny: np.ndarray, nz: np.ndarray) -> np.ndarray:
    """Lambertian light factor ``[N]`` for world normals under the world's fixed lights."""
    out = np.full(nx.shape, world.ambient, dtype=np.float32)
    for direction, intensity in world.lights:
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
        np.copyto(tbuf, t_g, where=hit)
        np.copyto(ids, np.int16(0), where=hit)

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
        np.copyto(tb, t, where=closer)
        np.copyto(ids[block], np.int16(k + 1), where=closer)

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
    """Colour every pixel: sky gradient where ``ids < 0``, else Lambertian textured surface.

    Pixels are sorted into runs of one (shape, texture kind) group; each run is shaded in one
    vectorised pass with per-pixel parameters repeated from per-primitive tables.
    """
    height, width = ids.shape
    table = _part_table(world)
    n_labels = len(prims.shape) + 2  # label 0 sky, 1 ground, 2 + p primitive p
    labels = ids.ravel() + np.int16(1)
    shape_of = np.concatenate([[-2, -1], prims.shape])
    kind_of = np.concatenate([[0], table.tex_kinds])
    group_of = np.where(
        shape_of == -2, 0, 1 + (shape_of + 1) * len(textures.TEXTURE_KINDS) + kind_of
    )
    label_order = np.argsort(group_of * n_labels + np.arange(n_labels), kind="stable")
    rank = np.empty(n_labels, dtype=np.int16)
    rank[label_order] = np.arange(n_labels, dtype=np.int16)
    order = np.argsort(rank[labels], kind="stable")  # int16 keys: radix sort
    counts = np.bincount(labels, minlength=n_labels)[label_order]
    ends = np.cumsum(counts)
    groups = group_of[label_order]
    bounds = np.concatenate([[0], np.flatnonzero(np.diff(groups)) + 1, [n_labels]])

    t_s = tbuf.ravel()[order]
    dx_s, dy_s, dz_s = dx.ravel()[order], dy.ravel()[order], dz.ravel()[order]
    # geometry rows per label: centre (3), cos, sin, half (3), texture-frame offset (3)
    geo = np.zeros((11, n_labels), dtype=np.float32)
    geo[3, :2], geo[5:8, :2] = 1.0, 1.0
    geo[0:3, 2:] = prims.center.T
    geo[3, 2:], geo[4, 2:] = prims.cos_yaw, prims.sin_yaw
    geo[5:8, 2:] = prims.half.T
    geo[8:11, 2:] = prims.local_offset.T
    out = np.empty((3, height * width), dtype=np.float32)
    for i0, i1 in itertools.pairwise(bounds):
        a, b = int(ends[i0] - counts[i0]), int(ends[i1 - 1])
        if a == b:
            continue
        if groups[i0] == 0:  # sky: vertical gradient, darker below the horizon
            up = dz_s[a:b] / np.sqrt(dx_s[a:b] ** 2 + dy_s[a:b] ** 2 + dz_s[a:b] ** 2)
            w = np.clip(up, 0.0, 1.0)
            dim = np.where(up < 0, np.float32(0.8), np.float32(1.0))
            for c in range(3):
                lo, hi = world.sky_horizon[c], world.sky_zenith[c]
                out[c, a:b] = (lo + (hi - lo) * w) * dim
            continue
        labs, cnt = label_order[i0:i1], counts[i0:i1]
        tex = labs - 1  # texture column: 0 ground, 1 + p primitive p
        if len(labs) == 1:  # one primitive: its parameters broadcast as [rows, 1]
            g, tex_p, tex_s = geo[:, labs], table.tex_params[:, tex], table.tex_seeds[tex]
        else:
            g = np.repeat(geo[:, labs], cnt, axis=1)
            tex_p = np.repeat(table.tex_params[:, tex], cnt, axis=1)
            tex_s = np.repeat(table.tex_seeds[tex], cnt)
        t = t_s[a:b]
        px = eye[0] + t * dx_s[a:b] - g[0]
        py = eye[1] + t * dy_s[a:b] - g[1]
        shape = int(shape_of[labs[0]])
        qz = (eye[2] + t * dz_s[a:b] - g[2]) if shape >= 0 else np.zeros_like(t)
        cos_yaw, sin_yaw = g[3], g[4]
        qx = cos_yaw * px + sin_yaw * py
        qy = cos_yaw * py - sin_yaw * px
        nx, ny, nz = _normals(shape, qx, qy, qz, g[5:8])
        light = _light(world, cos_yaw * nx - sin_yaw * ny, sin_yaw * nx + cos_yaw * ny, nz)
        rgb = textures.evaluate_kind(
            int(kind_of[labs[0]]),
            tex_p,
            tex_s,
            qx + g[8],
            qy + g[9],
            qz + g[10],
        )
        for c in range(3):
            out[c, a:b] = rgb[c] * light

    rgb_sorted = (np.clip(out, 0.0, 1.0) * np.float32(255.0) + np.float32(0.5)).astype(np.uint8)
    unsort = np.empty_like(order)
    unsort[order] = np.arange(len(order))
    rgb8 = np.stack([rgb_sorted[c, unsort] for c in range(3)], axis=-1)
    valid = ids >= 0
    dyn_table = np.concatenate([[False, False], prims.dynamic])
    return FrameBuffers(
        rgb=rgb8.reshape(height, width, 3),
        depth=np.where(valid, tbuf, np.float32(0.0)),
        valid=valid,
        dynamic=dyn_table[labels].reshape(height, width),
        ids=ids.astype(np.int32),
    )
