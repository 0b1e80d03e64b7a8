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


def hash3(ix: np.ndarray, iy: np.ndarray, iz: np.ndarray, seed: int) -> np.ndarray:
    """Deterministic 32-bit hash ``uint32`` of integer lattice coordinates (int32 arrays)."""
    h = (
        ix.view(np.uint32) * np.uint32(0x8DA6B343)
        ^ iy.view(np.uint32) * np.uint32(0xD8163841)
        ^ iz.view(np.uint32) * np.uint32(0xCB1AB31F)
        ^ np.uint32(seed & 0xFFFFFFFF)
    )
    h ^= h >> np.uint32(15)
    h *= np.uint32(0x2C1B3C6D)
    h ^= h >> np.uint32(12)
    h *= np.uint32(0x297A2D39)
    h ^= h >> np.uint32(15)
    return h


def _unit(h: np.ndarray) -> np.ndarray:
    """uint32 hash -> float32 in [0, 1)."""
    return (h >> np.uint32(8)).astype(np.float32) * np.float32(1.0 / 16777216.0)


def _lattice(v: np.ndarray) -> np.ndarray:
    return np.floor(v).astype(np.int32)


def value_noise(x: np.ndarray, y: np.ndarray, z: np.ndarray, seed: int) -> np.ndarray:
    """Trilinear value noise with smoothstep fade; lattice spacing 1; values in [0, 1)."""
    fx, fy, fz = np.floor(x), np.floor(y), np.floor(z)
    tx, ty, tz = x - fx, y - fy, z - fz
    tx = tx * tx * (3.0 - 2.0 * tx)
    ty = ty * ty * (3.0 - 2.0 * ty)
    tz = tz * tz * (3.0 - 2.0 * tz)
    ix, iy, iz = fx.astype(np.int32), fy.astype(np.int32), fz.astype(np.int32)
    ix1, iy1, iz1 = ix + 1, iy + 1, iz + 1
    out = np.zeros_like(x)
    for cx, wx in ((ix, 1.0 - tx), (ix1, tx)):
        for cy, wy in ((iy, 1.0 - ty), (iy1, ty)):
            wxy = wx * wy
            for cz, wz in ((iz, 1.0 - tz), (iz1, tz)):
                out += wxy * wz * _unit(hash3(cx, cy, cz, seed))
    return out


def evaluate(texture: Texture, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Albedo ``[N, 3]`` float32 in [0, 1] at surface points ``x, y, z`` (each ``[N]``, metres)."""
    inv = 1.0 / texture.scale
    px = (x + texture.phase[0]) * inv
    py = (y + texture.phase[1]) * inv
    pz = (z + texture.phase[2]) * inv
    a = np.asarray(texture.color_a, dtype=np.float32)
    b = np.asarray(texture.color_b, dtype=np.float32)
    if texture.kind == "checker":
        parity = (_lattice(px) + _lattice(py) + _lattice(pz)) & 1
        color = np.where(parity[:, None] == 1, b, a)
    elif texture.kind == "stripes":
        d = texture.direction
        m = np.clip(np.sin((px * d[0] + py * d[1] + pz * d[2]) * np.pi) * 2.5 + 0.5, 0.0, 1.0)
        color = a + (b - a) * m[:, None]
    elif texture.kind == "noise":
        m = np.clip((value_noise(px, py, pz, texture.hash_seed) - 0.5) * 2.2 + 0.5, 0.0, 1.0)
        color = a + (b - a) * m[:, None]
    else:  # cells: a random colour between a and b per lattice cell and channel
        h = hash3(_lattice(px), _lattice(py), _lattice(pz), texture.hash_seed)
        m = np.stack([(h >> np.uint32(s)) & np.uint32(1023) for s in (0, 10, 20)], axis=1)
        color = a + (b - a) * (m.astype(np.float32) * np.float32(1.0 / 1023.0))
    detail = np.zeros_like(x)
    for kx, ky, kz, ph in texture.detail_waves:
        detail += np.sin(x * kx + y * ky + z * kz + ph)
    detail *= texture.detail_amp / len(texture.detail_waves)
    detail += 1.0
    return np.clip(color * detail[:, None], 0.0, 1.0)
