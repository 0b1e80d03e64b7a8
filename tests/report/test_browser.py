"""report.html in a real browser: headless Chromium (software WebGL through SwiftShader).

Skipped only when no Chromium binary exists. Checks: no JS errors, the canvas is drawn (not
blank), a mouse drag changes the picture (orbit), the depth slider switches frames, and without
WebGL the page says so while the static figures still show.
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.report.test_viewer import synthetic_scene
from vfm3d.report import html as report_html

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
MIN_VARIANCE = 100.0  # grey-level variance of the canvas screenshot; a blank canvas has 0


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = _chromium()
    if executable is None:
        pytest.skip("no chromium binary found (install Debian's `chromium`)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


def _open(browser: Any, page_path: Path, init_script: str | None = None) -> tuple[Any, list[str]]:
    """A new page at ``page_path`` (file:// URL) and the list its JS errors are collected into."""
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
    page.on(
        "console",
        lambda msg: errors.append(f"console: {msg.text}") if msg.type == "error" else None,
    )
    if init_script:
        page.add_init_script(init_script)
    page.goto(page_path.resolve().as_uri())
    return page, errors


def _pixels(png: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float64)


def _wait_drawn(page: Any, more_than: int = 0) -> None:
    page.wait_for_function(
        f"() => window.vfm3dViewer && window.vfm3dViewer.ready"
        f" && window.vfm3dViewer.drawn > {more_than}",
        timeout=15_000,
    )


def _figure(path: Path) -> Path:
    from PIL import Image

    v, u = np.mgrid[0:40, 0:60]
    Image.fromarray(np.stack([u * 4, v * 6, u * 0 + 90], -1).astype(np.uint8)).save(path)
    return path


def test_viewer_draws_orbits_and_slides(browser: Any, tmp_path: Path) -> None:
    scene = synthetic_scene(num_points=6000, frames=4)
    page_path = report_html.write_report(
        tmp_path / "report.html",
        "browser test",
        [{"backbone": "a", "layer": 1, "split": "s", "point_err": 0.2}],
        [("a static figure", _figure(tmp_path / "fig.png"))],
        scene=scene,
    )
    page, errors = _open(browser, page_path)
    _wait_drawn(page)
    hook = page.evaluate("() => window.vfm3dViewer")
    assert hook["webgl"] is True, "Chromium gave no WebGL context (check the SwiftShader flags)"
    canvas = page.locator("#v3d-canvas")
    shot = canvas.screenshot(path=str(tmp_path / "canvas.png"))
    before = _pixels(shot)
    variance = float(before.mean(axis=2).var())
    colours = np.unique(before.reshape(-1, 3), axis=0).shape[0]
    print(f"canvas grey variance {variance:.1f}, {colours} distinct colours")
    assert variance > MIN_VARIANCE, variance
    assert colours > 1
    assert page.evaluate("() => window.vfm3dViewer.drawCalls") > 0
    # Initial view = the first camera's (identity here): x right, y down on screen. The sphere's
    # colour is (direction + 1) / 2, so red grows to the right and green downwards.
    ink = before.min(axis=2) < 230
    rows, cols = np.nonzero(ink)
    red, green = before[..., 0][ink], before[..., 1][ink]
    right = cols > np.median(cols)
    down = rows > np.median(rows)
    print(
        f"red right/left {red[right].mean():.0f}/{red[~right].mean():.0f}, "
        f"green down/up {green[down].mean():.0f}/{green[~down].mean():.0f}"
    )
    assert red[right].mean() > red[~right].mean() + 30
    assert green[down].mean() > green[~down].mean() + 30

    # Orbit: drag across the canvas, the picture must change.
    box = canvas.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    drawn = page.evaluate("() => window.vfm3dViewer.drawn")
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 150, y + 60, steps=6)
    page.mouse.up()
    _wait_drawn(page, drawn)
    after = _pixels(canvas.screenshot(path=str(tmp_path / "canvas_orbited.png")))
    changed = float(np.abs(after - before).mean())
    print(f"mean absolute pixel change after the drag {changed:.2f}")
    assert changed > 1.0, changed

    # Side-by-side toggle redraws without errors.
    drawn = page.evaluate("() => window.vfm3dViewer.drawn")
    page.locator("#v3d-side").check()
    _wait_drawn(page, drawn)

    # Depth slider: the arrow keys move it to frame 2; the shown images follow.
    srcs0 = [page.locator(f"#v3d-{k}img").get_attribute("src") for k in ("rgb", "gt", "pred")]
    label0 = page.locator("#v3d-framelabel").inner_text()
    page.locator("#v3d-frame").focus()
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    page.wait_for_function("() => window.vfm3dViewer.frame === 2", timeout=5_000)
    srcs2 = [page.locator(f"#v3d-{k}img").get_attribute("src") for k in ("rgb", "gt", "pred")]
    assert all(a != b for a, b in zip(srcs0, srcs2))
    assert page.locator("#v3d-framelabel").inner_text() != label0
    assert page.locator("img[alt='fig.png']").count() == 1  # static figures still there
    assert not errors, errors
    assert not page.evaluate("() => window.vfm3dViewer.errors")
    page.close()


def test_without_webgl_the_page_says_so(browser: Any, tmp_path: Path) -> None:
    page_path = report_html.write_report(
        tmp_path / "report.html",
        "no webgl",
        [],
        [("a static figure", _figure(tmp_path / "fig.png"))],
        scene=synthetic_scene(num_points=300, frames=2),
    )
    no_webgl = (
        "const get = HTMLCanvasElement.prototype.getContext;"
        "HTMLCanvasElement.prototype.getContext = function (kind, opts) {"
        " return String(kind).includes('webgl') ? null : get.call(this, kind, opts); };"
    )
    page, errors = _open(browser, page_path, init_script=no_webgl)
    page.wait_for_function("() => window.vfm3dViewer && window.vfm3dViewer.webgl === false")
    assert page.locator("#v3d-nogl").is_visible()
    assert "WebGL is not available" in page.locator("#v3d-nogl").inner_text()
    assert page.locator("img[alt='fig.png']").is_visible()
    assert page.locator("#v3d-rgbimg").get_attribute("src").startswith("data:image/png")
    assert not errors, errors
    page.close()


def test_sweep_report_page_loads(browser: Any, tmp_path: Path) -> None:
    """The real sweep report path (tables, matplotlib figures, PLY links, the 3D view)."""
    pytest.importorskip("matplotlib")
    from vfm3d.report.sweep_report import write_sweep_report

    rows = [
        {"backbone": "a", "layer": 0, "timestep": None, "split": "s", "point_err": 0.5},
        {"backbone": "a", "layer": 1, "timestep": None, "split": "s", "point_err": 0.3},
    ]
    page_path = write_sweep_report(rows, tmp_path, synthetic_scene(num_points=2000, frames=3))
    page, errors = _open(browser, page_path)
    _wait_drawn(page)
    assert page.evaluate("() => window.vfm3dViewer.webgl") is True
    assert page.locator("h3").count() >= 3  # static figures kept
    assert not errors, errors
    page.close()
