"""The interactive part of ``report.html``: a small WebGL point-cloud viewer and a depth slider.

Python side only: it turns a `SceneView` into a JSON payload (base64 of little-endian Float32 /
Uint8 arrays, PNG images colour-mapped with numpy) and the HTML section that holds it; the
drawing is done in the browser by ``vfm3d/assets/viewer.js`` (plain WebGL, no library, inlined
so the page works offline from a ``file://`` URL).

Geometry follows DESIGN.md: OpenCV cameras (x right, y down, z forward), ``K`` in pixels with
pixel centres at integer coordinates (so the image spans ``[-0.5, W - 0.5] x [-0.5, H - 0.5]``),
poses as ``cam_to_world``. The viewer starts looking at the cloud from the first camera's side,
with the camera's y axis pointing down on screen (roughly what the first camera sees).
"""

from __future__ import annotations

import base64
import html
import io
import json
from importlib import resources
from typing import Any

import numpy as np

from vfm3d.report.scene import SceneView

POINT_CAP = 20_000
"""Default maximum number of points drawn per cloud (a seeded random subsample beyond it)."""
MAX_SLIDER_FRAMES = 24
"""At most this many frames (evenly spaced) in the depth slider."""
MAX_SLIDER_SIDE = 256
"""Slider images are downscaled so that their longer side is at most this many pixels."""
FRUSTUM_FRACTION = 0.08
"""Frustum depth as a fraction of the scene size (diagonal of the 2-98 % bounding box)."""

# Anchor colours of the depth colour map (near -> far): dark blue, teal, yellow-green, yellow.
_DEPTH_ANCHORS = np.array(
    [[48, 18, 59], [40, 110, 220], [30, 190, 160], [170, 220, 60], [250, 230, 35]],
    dtype=np.float64,
)
_INVALID_GREY = np.array([60, 60, 60], dtype=np.uint8)


# ----------------------------------------------------------------------------- encoding
def b64_array(array: np.ndarray, dtype: str) -> str:
    """Base64 of ``array`` as a little-endian ``dtype`` (``"<f4"`` or ``"u1"``), C order."""
    return base64.b64encode(np.ascontiguousarray(array, dtype=np.dtype(dtype)).tobytes()).decode(
        "ascii"
    )


def decode_array(text: str, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of `b64_array`: base64 ``text`` -> array of ``dtype`` and ``shape``."""
    return np.frombuffer(base64.b64decode(text), dtype=np.dtype(dtype)).reshape(shape)


def png_b64(image: np.ndarray) -> str:
    """A uint8 ``[H, W, 3]`` image -> base64 PNG (Pillow, no matplotlib)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


# ----------------------------------------------------------------------------- geometry
def subsample_indices(n: int, cap: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of at most ``cap`` of ``n`` rows (all rows when ``n <= cap``), seeded."""
    if cap <= 0 or n <= cap:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=cap, replace=False))


def scene_extent(points: np.ndarray) -> tuple[np.ndarray, float]:
    """Robust centre ``[3]`` and size (diagonal of the 2-98 % box) of finite ``points`` ``[N, 3]``."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    pts = pts[np.all(np.isfinite(pts), axis=1)]
    if pts.shape[0] == 0:
        return np.zeros(3), 1.0
    lo, hi = np.percentile(pts, 2, axis=0), np.percentile(pts, 98, axis=0)
    size = float(np.linalg.norm(hi - lo))
    return (lo + hi) / 2.0, size if size > 1e-9 else 1.0


def image_corners(width: int, height: int) -> np.ndarray:
    """The 4 image corners ``[4, 2]`` (u, v), clockwise from top-left; pixel centres are integers."""
    w, h = float(width), float(height)
    return np.array([[-0.5, -0.5], [w - 0.5, -0.5], [w - 0.5, h - 0.5], [-0.5, h - 0.5]])


def frustum_corners(
    intrinsics: np.ndarray, cam_to_world: np.ndarray, width: int, height: int, depth: float
) -> tuple[np.ndarray, np.ndarray]:
    """Apexes ``[S, 3]`` (camera centres) and base corners ``[S, 4, 3]`` in the world frame.

    The base corners are the image corners back-projected with ``K^-1`` to z-depth ``depth``
    (OpenCV camera), then mapped by ``cam_to_world`` ``[S, 4, 4]``; ``intrinsics`` ``[S, 3, 3]``.
    """
    k = np.asarray(intrinsics, dtype=np.float64).reshape(-1, 3, 3)
    c2w = np.asarray(cam_to_world, dtype=np.float64).reshape(-1, 4, 4)
    uv1 = np.concatenate([image_corners(width, height), np.ones((4, 1))], axis=1)  # [4, 3]
    rays = np.einsum("sij,cj->sci", np.linalg.inv(k), uv1)  # [S, 4, 3], z = 1
    cam = rays / rays[..., 2:3] * depth
    world = np.einsum("sij,scj->sci", c2w[:, :3, :3], cam) + c2w[:, None, :3, 3]
    return c2w[:, :3, 3], world


def frustum_segments(
    intrinsics: np.ndarray, cam_to_world: np.ndarray, width: int, height: int, depth: float
) -> np.ndarray:
    """Line segments ``[S, 8, 2, 3]`` of each camera's frustum: 4 apex-corner edges, 4 base edges."""
    apex, base = frustum_corners(intrinsics, cam_to_world, width, height, depth)
    s = apex.shape[0]
    segments = np.empty((s, 8, 2, 3))
    for c in range(4):
        segments[:, c, 0], segments[:, c, 1] = apex, base[:, c]
        segments[:, 4 + c, 0], segments[:, 4 + c, 1] = base[:, c], base[:, (c + 1) % 4]
    return segments


# ----------------------------------------------------------------------------- depth images
def colorize_depth(
    depth: np.ndarray, valid: np.ndarray | None, vmin: float, vmax: float
) -> np.ndarray:
    """Depth ``[H, W]`` -> uint8 ``[H, W, 3]`` (near dark blue, far yellow); invalid pixels grey."""
    d = np.asarray(depth, dtype=np.float64)
    t = np.clip((d - vmin) / max(vmax - vmin, 1e-12), 0.0, 1.0)
    t = np.where(np.isfinite(t), t, 0.0) * (len(_DEPTH_ANCHORS) - 1)
    lo = np.minimum(np.floor(t).astype(int), len(_DEPTH_ANCHORS) - 2)
    frac = (t - lo)[..., None]
    rgb = _DEPTH_ANCHORS[lo] * (1.0 - frac) + _DEPTH_ANCHORS[lo + 1] * frac
    out = np.round(rgb).astype(np.uint8)
    bad = ~np.isfinite(d) if valid is None else (~np.asarray(valid, dtype=bool) | ~np.isfinite(d))
    out[bad] = _INVALID_GREY
    return out


def _depth_range(scene: SceneView) -> tuple[float, float]:
    """One colour range for the whole clip: 2-98 % of the valid true depth (else predicted)."""
    if scene.gt_depth is not None:
        values = np.asarray(scene.gt_depth)[np.asarray(scene.valid, dtype=bool)]
    else:
        values = np.asarray(scene.pred_depth).ravel()
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(values, 2), np.percentile(values, 98)
    return float(lo), float(hi if hi > lo else lo + 1.0)


def _shrink(image: np.ndarray, max_side: int, nearest: bool = False) -> np.ndarray:
    """Downscale ``[H, W, 3]`` uint8 so its longer side is at most ``max_side`` (aspect kept)."""
    from PIL import Image

    h, w = image.shape[:2]
    if max(h, w) <= max_side:
        return image
    scale = max_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    resample = Image.Resampling.NEAREST if nearest else Image.Resampling.BILINEAR
    return np.asarray(Image.fromarray(image).resize(size, resample))


def slider_frames(
    scene: SceneView, max_frames: int = MAX_SLIDER_FRAMES, max_side: int = MAX_SLIDER_SIDE
) -> list[dict[str, Any]]:
    """Per shown frame: ``{"index", "rgb", "gt", "pred", "range"}`` (PNG base64; ``gt`` None
    without true depth). True and predicted depth share one colour range over the clip."""
    s = scene.num_frames
    shown = np.unique(np.linspace(0, s - 1, min(s, max_frames)).round().astype(int))
    vmin, vmax = _depth_range(scene)
    frames = []
    for i in shown.tolist():
        gt = None
        if scene.gt_depth is not None:
            gt_rgb = colorize_depth(scene.gt_depth[i], scene.valid[i], vmin, vmax)
            gt = png_b64(_shrink(gt_rgb, max_side, nearest=True))
        pred_rgb = colorize_depth(scene.pred_depth[i], None, vmin, vmax)
        frames.append(
            {
                "index": i,
                "rgb": png_b64(_shrink(np.asarray(scene.images[i]), max_side)),
                "gt": gt,
                "pred": png_b64(_shrink(pred_rgb, max_side, nearest=True)),
                "range": [vmin, vmax],
            }
        )
    return frames


# ----------------------------------------------------------------------------- payload
def scene_payload(scene: SceneView, max_points: int = POINT_CAP, seed: int = 0) -> dict[str, Any]:
    """The JSON-able data of the viewer (see docs/report.md for the fields).

    Clouds keep the same subsampled rows for predicted and true points (row for row), non-finite
    rows dropped. ``clouds[k]["positions"]`` is base64 ``<f4`` ``[n, 3]``, ``colors`` ``u1``
    ``[n, 3]``; ``frusta[k]["segments"]`` is base64 ``<f4`` ``[S, 8, 2, 3]`` (world frame).
    ``initial`` holds the first camera's ``world_to_cam`` rotation (row-major ``[3, 3]``) and
    vertical field of view, from which the viewer starts.
    """
    pred = np.asarray(scene.pred_points, dtype=np.float64).reshape(-1, 3)
    gt = None if scene.gt_points is None else np.asarray(scene.gt_points, np.float64).reshape(-1, 3)
    keep = np.all(np.isfinite(pred), axis=1)
    if gt is not None:
        keep &= np.all(np.isfinite(gt), axis=1)
    rows = np.flatnonzero(keep)
    rows = rows[subsample_indices(rows.size, max_points, seed)]
    colors = np.asarray(scene.colors, dtype=np.uint8).reshape(-1, 3)[rows]
    clouds: dict[str, Any] = {}
    for name, pts in (("pred", pred), ("gt", gt)):
        if pts is not None:
            clouds[name] = {
                "n": int(rows.size),
                "positions": b64_array(pts[rows], "<f4"),
                "colors": b64_array(colors, "u1"),
            }
    center, size = scene_extent(gt[rows] if gt is not None else pred[rows])
    h, w = scene.images.shape[1:3]
    depth = FRUSTUM_FRACTION * size
    frusta: dict[str, Any] = {}
    cams = {"pred": scene.pred_cam_to_world, "gt": scene.gt_cam_to_world}
    for name, c2w in cams.items():
        if c2w is not None:
            seg = frustum_segments(scene.intrinsics, c2w, w, h, depth)
            frusta[name] = {"count": int(seg.shape[0]), "segments": b64_array(seg, "<f4")}
    first = np.asarray(
        scene.gt_cam_to_world if scene.gt_cam_to_world is not None else scene.pred_cam_to_world,
        dtype=np.float64,
    )[0]
    fy = float(np.asarray(scene.intrinsics)[0, 1, 1])
    return {
        "version": 1,
        "title": scene.title,
        "aligned": bool(scene.aligned),
        "cap": int(max_points),
        "total_points": int(pred.shape[0]),
        "clouds": clouds,
        "frusta": frusta,
        "frustum_depth": depth,
        "center": center.tolist(),
        "size": size,
        "image_size": [int(w), int(h)],
        "initial": {
            "world_to_cam_rotation": first[:3, :3].T.reshape(-1).tolist(),
            "fov_y": float(2.0 * np.arctan((h / 2.0) / fy)) if fy > 0 else 1.0,
        },
        "frames": slider_frames(scene),
        "num_frames": scene.num_frames,
    }


def viewer_script() -> str:
    """The viewer's JavaScript source (package data ``vfm3d/assets/viewer.js``)."""
    return (resources.files("vfm3d") / "assets" / "viewer.js").read_text(encoding="utf-8")


def _json_for_script(payload: dict[str, Any]) -> str:
    """JSON safe inside ``<script type="application/json">`` (no ``</`` sequences)."""
    return json.dumps(payload, separators=(",", ":")).replace("</", "<\\/")


def scene_section(scene: SceneView, max_points: int = POINT_CAP) -> str:
    """The HTML of the interactive section: the 3D view, its controls, the depth slider."""
    payload = scene_payload(scene, max_points)
    n = payload["clouds"]["pred"]["n"]
    total = payload["total_points"]
    has_gt = "gt" in payload["clouds"]
    cap_note = (
        f"Showing {n:,} of {total:,} points per cloud (cap {max_points:,}, seeded random "
        "subsample; the PLY files hold them all)."
    )
    aligned = " Predictions are Sim(3)-aligned to the truth for display." if scene.aligned else ""
    gt_toggles = (
        "<label><input type=checkbox id=v3d-gt checked> true cloud</label>"
        "<label><input type=checkbox id=v3d-gtcam checked> true cameras</label>"
        "<label><input type=checkbox id=v3d-side> side by side (predicted | true)</label>"
        if has_gt
        else ""
    )
    depth_head = "<th>true depth</th>" if payload["frames"][0]["gt"] is not None else ""
    depth_cell = "<td><img id=v3d-gtimg alt='true depth'></td>" if depth_head else ""
    s = len(payload["frames"])
    legend = "<span style='color:#e8731a'>Predicted cameras</span>" + (
        ", <span style='color:#1f8fff'>true cameras</span>." if has_gt else "."
    )
    depth_note = (
        "RGB | true depth | predicted depth; both depths share one colour range over the clip "
        "(2-98 % of the valid true depth)"
        if depth_head
        else "RGB | predicted depth (no ground truth); one colour range over the clip (2-98 % "
        "of the predicted depth)"
    )
    return f"""
<h2>3D view: {html.escape(scene.title)}</h2>
<p class='note'>{html.escape(cap_note)}{aligned} Starts from the first camera's side, its y axis
down on screen (OpenCV), roughly what that camera sees. Drag: rotate; wheel: zoom; right-drag or
shift-drag: pan; double-click: reset. {legend}</p>
<div id=v3d-controls class=note>
<label><input type=checkbox id=v3d-pred checked> predicted cloud</label>
<label><input type=checkbox id=v3d-predcam checked> predicted cameras</label>
{gt_toggles}
<label><input type=checkbox id=v3d-tint> tint by source</label>
<label>point size <input type=range id=v3d-size min=1 max=8 value=3></label>
</div>
<div id=v3d-nogl style='display:none;color:#a00;font-weight:bold'>WebGL is not available in
this browser, so the interactive 3D view cannot be drawn; the static figures below show the
same clouds.</div>
<canvas id=v3d-canvas width=960 height=540 style='width:960px;height:540px;border:1px solid
#ccc;background:#fff;touch-action:none'></canvas>
<h3>Depth per frame</h3>
<p class='note'>{depth_note}, near dark blue, far yellow, invalid grey. The slider holds {s} of the {scene.num_frames} frames.</p>
<div><input type=range id=v3d-frame min=0 max={s - 1} value=0 step=1 style='width:400px'>
<span id=v3d-framelabel class=note></span></div>
<table id=v3d-depth><tr><th>RGB</th>{depth_head}<th>predicted depth</th></tr>
<tr><td><img id=v3d-rgbimg alt='RGB'></td>{depth_cell}<td><img id=v3d-predimg
alt='predicted depth'></td></tr></table>
<script type="application/json" id=v3d-data>{_json_for_script(payload)}</script>
<script>{viewer_script()}</script>
"""
