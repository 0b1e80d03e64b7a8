"""Procedural solid textures: colour is a function of a 3D point only (view-independent).

A texture is evaluated at points given in the coordinates of the surface's own frame (the
object-local frame for objects, world coordinates for the ground), so a surface point has the
same albedo from every view and a moving object carries its texture with it.

Kinds: ``checker`` (3D checkerboard), ``stripes`` (bands along a direction), ``noise``
(two-octave value noise) and ``cells`` (a random colour per 3D lattice cell). Every kind is
modulated by a fine sum-of-sines detail layer so that the surface has texture at several scales
(enough for multi-view correspondence).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TEXTURE_KINDS = ("checker", "stripes", "noise", "cells")


@dataclass(frozen=True)
class Texture:
    """Parameters of one procedural texture (all lengths in metres, colours RGB in [0, 1])."""

    kind: str
    color_a: tuple[float, float, float]
    color_b: tuple[float, float, float]
    scale: float
    phase: tuple[float, float, float]
    direction: tuple[float, float, float]
    hash_seed: int
    detail_waves: tuple[tuple[float, float, float, float], ...]  # (kx, ky, kz, phase) per wave
    detail_amp: float

    def __post_init__(self) -> None:
        if self.kind not in TEXTURE_KINDS:
            raise ValueError(f"texture kind must be one of {TEXTURE_KINDS}, got {self.kind!r}")
        if not self.scale > 0:
            raise ValueError(f"texture scale must be positive, got {self.scale}")

    @property
    def mean_color(self) -> tuple[float, float, float]:
        """The average albedo (used as the object's recorded colour)."""
        return tuple(0.5 * (a + b) for a, b in zip(self.color_a, self.color_b))  # type: ignore[return-value]


def random_texture(
    rng: np.random.Generator,
    scale: float,
    kind: str | None = None,
    base_color: tuple[float, float, float] | None = None,
) -> Texture:
    """Sample a texture with feature size about ``scale`` metres."""
    kind = kind if kind is not None else str(rng.choice(TEXTURE_KINDS))
    if base_color is None:
        hue = rng.uniform(0.0, 1.0)
        base_color = _hsv_to_rgb(hue, rng.uniform(0.35, 0.85), rng.uniform(0.55, 0.9))
    a = np.asarray(base_color, dtype=np.float64)
    # second colour: a darker/lighter, hue-shifted partner so patterns have contrast
    hue_b = (_rgb_to_hue(a) + rng.uniform(0.08, 0.5)) % 1.0
    b = np.asarray(_hsv_to_rgb(hue_b, rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.6)))
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction)
    waves = []
    for _ in range(3):
        k = rng.normal(size=3)
        k *= 2.0 * np.pi / (scale * rng.uniform(0.6, 1.2)) / np.linalg.norm(k)
        waves.append((float(k[0]), float(k[1]), float(k[2]), float(rng.uniform(0, 2 * np.pi))))
    return Texture(
        kind=kind,
        color_a=(float(a[0]), float(a[1]), float(a[2])),
        color_b=(float(b[0]), float(b[1]), float(b[2])),
        scale=float(scale),
        phase=tuple(float(x) for x in rng.uniform(0.0, 10.0 * scale, size=3)),  # type: ignore[arg-type]
        direction=(float(direction[0]), float(direction[1]), float(direction[2])),
        hash_seed=int(rng.integers(0, 2**31 - 1)),
        detail_waves=tuple(waves),
        detail_amp=float(rng.uniform(0.12, 0.25)),
    )


def _hsv_to_rgb(h: float, s: float, v: float) -> tuple[float, float, float]:
    i = int(h * 6.0) % 6
    f = h * 6.0 - int(h * 6.0)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    table = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    r, g, b = table[i]
    return (float(r), float(g), float(b))


def _rgb_to_hue(rgb: np.ndarray) -> float:
    r, g, b = (float(x) for x in rgb)
    mx, mn = max(r, g, b), min(r, g, b)
    if mx == mn:
        return 0.0
    if mx == r:
        h = ((g - b) / (mx - mn)) % 6.0
    elif mx == g:
        h = (b - r) / (mx - mn) + 2.0
    else:
        h = (r - g) / (mx - mn) + 4.0
    return h / 6.0


_HASH_X, _HASH_Y, _HASH_Z = np.uint32(0x8DA6B343), np.uint32(0xD8163841), np.uint32(0xCB1AB31F)


def _mix(h: np.ndarray) -> np.ndarray:
    """Avalanche a uint32 array in place (xor-shift-multiply finaliser) and return it."""
    h ^= h >> np.uint32(15)
    h *= np.uint32(0x2C1B3C6D)
    h ^= h >> np.uint32(12)
    h *= np.uint32(0x297A2D39)
    h ^= h >> np.uint32(15)
    return h


def hash3(ix: np.ndarray, iy: np.ndarray, iz: np.ndarray, seed: int | np.ndarray) -> np.ndarray:
    """Deterministic 32-bit hash ``uint32`` of integer lattice coordinates (int32 arrays);
    ``seed`` an int or a uint32 array of the same shape."""
    seed_u = np.uint32(seed & 0xFFFFFFFF) if isinstance(seed, int) else seed
    return _mix(
        ix.view(np.uint32) * _HASH_X
        ^ iy.view(np.uint32) * _HASH_Y
        ^ iz.view(np.uint32) * _HASH_Z
        ^ seed_u
    )


def _unit(h: np.ndarray) -> np.ndarray:
    """uint32 hash -> float32 in [0, 1)."""
    return (h >> np.uint32(8)).astype(np.float32) * np.float32(1.0 / 16777216.0)


def _lattice(v: np.ndarray) -> np.ndarray:
    return np.floor(v).astype(np.int32)


def value_noise(x: np.ndarray, y: np.ndarray, z: np.ndarray, seed: int | np.ndarray) -> np.ndarray:
    """Trilinear value noise with smoothstep fade; lattice spacing 1; values in [0, 1).

    Corner values are `hash3` of the lattice corners (per-axis products computed once).
    """
    fx, fy, fz = np.floor(x), np.floor(y), np.floor(z)
    tx, ty, tz = x - fx, y - fy, z - fz
    tx = tx * tx * (3.0 - 2.0 * tx)
    ty = ty * ty * (3.0 - 2.0 * ty)
    tz = tz * tz * (3.0 - 2.0 * tz)
    seed_u = np.uint32(seed & 0xFFFFFFFF) if isinstance(seed, int) else seed
    hx0 = fx.astype(np.int32).view(np.uint32) * _HASH_X ^ seed_u
    hx1 = hx0 ^ seed_u
    hx1 += _HASH_X
    hx1 ^= seed_u  # (ix + 1) * A ^ seed
    hy0 = fy.astype(np.int32).view(np.uint32) * _HASH_Y
    hz0 = fz.astype(np.int32).view(np.uint32) * _HASH_Z
    hy1, hz1 = hy0 + _HASH_Y, hz0 + _HASH_Z
    lerp_x = []
    for hx in (hx0, hx1):
        lerp_y = []
        for hy in (hy0, hy1):
            hxy = hx ^ hy
            v0, v1 = _unit(_mix(hxy ^ hz0)), _unit(_mix(hxy ^ hz1))
            lerp_y.append(v0 + (v1 - v0) * tz)
        lerp_x.append(lerp_y[0] + (lerp_y[1] - lerp_y[0]) * ty)
    return lerp_x[0] + (lerp_x[1] - lerp_x[0]) * tx


_N_WAVES = 3
N_PARAMS = 14 + 4 * _N_WAVES
"""Rows of a texture parameter matrix (see `texture_params`)."""


def texture_params(textures: list[Texture]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parameters of many textures as arrays, for evaluating surfaces in vectorised runs.

    Returns ``(params, kinds, seeds)``: ``params`` float32 ``[N_PARAMS, N]`` with rows inverse
    scale, phase (3), colour a (3), colour b (3), stripe direction (3), detail amplitude per
    wave, then (kx, ky, kz, phase) of 3 detail waves; ``kinds`` int64 ``[N]`` index into
    `TEXTURE_KINDS`; ``seeds`` uint32 ``[N]`` hash seeds.
    """
    rows = []
    for tex in textures:
        if len(tex.detail_waves) != _N_WAVES:
            raise ValueError(f"textures need {_N_WAVES} detail waves, got {len(tex.detail_waves)}")
        waves = [v for wave in tex.detail_waves for v in wave]
        head = [1.0 / tex.scale, *tex.phase, *tex.color_a, *tex.color_b, *tex.direction]
        rows.append([*head, tex.detail_amp / _N_WAVES, *waves])
    params = np.ascontiguousarray(np.asarray(rows, dtype=np.float32).reshape(-1, N_PARAMS).T)
    kinds = np.asarray([TEXTURE_KINDS.index(t.kind) for t in textures], dtype=np.int64)
    seeds = np.asarray([t.hash_seed & 0xFFFFFFFF for t in textures], dtype=np.uint32)
    return params, kinds, seeds


def evaluate_kind(
    kind: int, p: np.ndarray, seeds: np.ndarray, x: np.ndarray, y: np.ndarray, z: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Albedo channels ``(r, g, b)`` (each ``[N]`` float32, about [0, 1.25]: clip after shading)
    of textures of one kind.

    ``kind`` indexes `TEXTURE_KINDS`; ``p`` ``[N_PARAMS, N]`` (or ``[N_PARAMS, 1]``) per-point
    texture parameters, ``seeds`` uint32 ``[N]`` (or ``[1]``); ``x, y, z`` ``[N]`` float32 points
    in the surface's texture frame (metres).
    """
    px = (x + p[1]) * p[0]
    py = (y + p[2]) * p[0]
    pz = (z + p[3]) * p[0]
    name = TEXTURE_KINDS[kind]
    if name == "cells":  # a random colour between a and b per lattice cell and channel
        h = hash3(_lattice(px), _lattice(py), _lattice(pz), seeds)
        weights = [((h >> np.uint32(k)) & np.uint32(1023)).astype(np.float32) for k in (0, 10, 20)]
        weights = [w * np.float32(1.0 / 1023.0) for w in weights]
    else:
        if name == "checker":
            m = ((_lattice(px) + _lattice(py) + _lattice(pz)) & 1).astype(np.float32)
        elif name == "stripes":
            phase = (px * p[10] + py * p[11] + pz * p[12]) * np.float32(np.pi)
            m = np.clip(np.sin(phase) * np.float32(2.5) + np.float32(0.5), 0.0, 1.0)
        else:  # noise
            m = np.clip((value_noise(px, py, pz, seeds) - 0.5) * 2.2 + 0.5, 0.0, 1.0)
        weights = [m, m, m]
    detail = np.ones_like(x)
    for w in range(_N_WAVES):
        k = 14 + 4 * w
        detail += p[13] * np.sin(x * p[k] + y * p[k + 1] + z * p[k + 2] + p[k + 3])
    return tuple(  # type: ignore[return-value]
        (p[4 + c] + (p[7 + c] - p[4 + c]) * weights[c]) * detail for c in range(3)
    )


def evaluate(texture: Texture, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Albedo ``[N, 3]`` float32 in [0, 1] of one texture at points ``x, y, z`` (``[N]``)."""
    params, kinds, seeds = texture_params([texture])
    f32 = np.float32
    rgb = evaluate_kind(int(kinds[0]), params, seeds, x.astype(f32), y.astype(f32), z.astype(f32))
    return np.clip(np.stack(rgb, axis=1), 0.0, 1.0)
