"""A single self-contained ``report.html``: tables, figures (PNG embedded as base64), videos
(linked, played in the page) and, given a `SceneView`, an interactive WebGL 3D view with a
depth-per-frame slider (`vfm3d.report.viewer`).

The page needs no network: the viewer's JavaScript and all data are inlined; videos are files
beside the page (relative links).
"""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vfm3d.report.scene import SceneView
from vfm3d.report.tables import HEADLINE_METRICS, ID_COLUMNS, _fmt
from vfm3d.report.viewer import POINT_CAP, scene_section
from vfm3d.utils.atomic import atomic_write_text

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}
table{border-collapse:collapse;font-size:13px;margin:1em 0}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f3f3f3} td:first-child,th:first-child{text-align:left}
img{max-width:100%;border:1px solid #eee;margin:.5em 0}
.note{color:#555;font-size:13px}
#v3d-controls label{margin-right:1em;white-space:nowrap}
#v3d-depth td,#v3d-depth th{text-align:center;vertical-align:top}
#v3d-depth img{image-rendering:pixelated;width:256px}
.videos{display:flex;flex-wrap:wrap;gap:1em}
.videos figure{margin:0;width:256px}
.videos video{width:256px;image-rendering:pixelated;background:#000}
.videos figcaption{font-size:12px;color:#555}
"""


def _table(rows: Sequence[dict[str, Any]], metrics: Sequence[str]) -> str:
    ids = [c for c in ID_COLUMNS if any(c in r for r in rows)]
    mets = [m for m in metrics if any(r.get(m) is not None for r in rows)]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in ids + mets)
    body = []
    for r in rows:
        cells = "".join(f"<td>{html.escape(_fmt(r.get(c)))}</td>" for c in ids + mets)
        body.append(f"<tr>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(path.name)}" src="data:image/png;base64,{data}">'


def _videos(videos: Sequence[tuple[str, str]]) -> str:
    """A "Videos" section: each (caption, href) as a looping, muted, autoplaying player."""
    items = "".join(
        f"<figure><video controls loop muted autoplay playsinline src='{html.escape(href)}'>"
        f"</video><figcaption>{html.escape(caption)}</figcaption></figure>"
        for caption, href in videos
    )
    return f"<h2>Videos</h2><div class='videos'>{items}</div>"


def write_report(
    path: str | os.PathLike[str],
    title: str,
    rows: Sequence[dict[str, Any]],
    figures: Sequence[tuple[str, Path]],
    notes: Sequence[str] = (),
    metrics: Sequence[str] = HEADLINE_METRICS,
    links: Sequence[tuple[str, str]] = (),
    scene: SceneView | None = None,
    max_points: int = POINT_CAP,
    videos: Sequence[tuple[str, str]] = (),
) -> Path:
    """Write the HTML report: ``notes`` paragraphs, the results table, each (caption, href)
    of ``videos`` as an in-page player (``href`` relative to the page, e.g. an H.264 mp4), the
    interactive 3D view and depth slider of ``scene`` (when given; at most ``max_points`` points
    per cloud), then each (caption, PNG) figure (static fallbacks when WebGL is unavailable)
    and the links."""
    parts = [f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title>"]
    parts.append(f"<style>{_STYLE}</style><h1>{html.escape(title)}</h1>")
    parts += [f"<p class='note'>{html.escape(n)}</p>" for n in notes]
    parts.append("<h2>Results</h2>" + _table(rows, metrics))
    if videos:
        parts.append(_videos(videos))
    if scene is not None:
        parts.append(scene_section(scene, max_points))
    shown = [(caption, Path(fig)) for caption, fig in figures if Path(fig).is_file()]
    if shown:
        parts.append("<h2>Figures</h2>")
    for caption, fig in shown:
        parts.append(f"<h3>{html.escape(caption)}</h3>{_img(fig)}")
    if links:
        items = "".join(
            f"<li><a href='{html.escape(href)}'>{html.escape(text)}</a></li>"
            for text, href in links
        )
        parts.append(f"<h2>Files</h2><ul>{items}</ul>")
    target = Path(path)
    atomic_write_text(target, "\n".join(parts) + "\n")
    return target
