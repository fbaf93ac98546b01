"""The viewer in a real headless Chromium: drawn, windowed locally, scrolled by keyboard.

Needs the ``playwright`` Python package and Debian's /usr/bin/chromium (no
``playwright install``: the system browser is used). Skips, saying why,
when either is missing; fails instead when the CI variable is set.
"""

from __future__ import annotations

import os
from pathlib import Path

import panel as pn
import pytest
from panel.io.state import state

from pacsdash.dashboard.viewer import SeriesViewer
from tests.dashboard.viewer.conftest import CT_SIZE, CT_SLICES, make_viewer_study
from tests.helpers import wait_until

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
#: Finds an element by class through every shadow root (Bokeh renders into them).
FIND = """
function find(root, cls) {
  for (const e of root.querySelectorAll('*')) {
    if (e.classList && e.classList.contains(cls)) return e
    if (e.shadowRoot) { const f = find(e.shadowRoot, cls); if (f) return f }
  }
  return null
}
function hasText(root, text) {
  for (const e of root.querySelectorAll('*')) {
    if (e.shadowRoot && (e.shadowRoot.textContent.includes(text) || hasText(e.shadowRoot, text))) return true
  }
  return false
}
"""


def require_browser() -> None:
    reason = None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        reason = "the playwright package is not installed (pip install playwright; the system Chromium is used)"
    if reason is None and not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing (apt-get install chromium)"
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must provide it)")
    print(f"skipping the browser test: {reason}")
    pytest.skip(reason)


@pytest.fixture
def served_viewer(tmp_path: Path):
    """A SeriesViewer of a 20-slice CT series served on 127.0.0.1; yields (url, viewers)."""
    require_browser()
    study = make_viewer_study(tmp_path / "home")
    viewers: list[SeriesViewer] = []

    def app() -> SeriesViewer:
        viewer = SeriesViewer(archive=study.archive, study_uid=study.study_uid)
        viewers.append(viewer)
        return viewer

    server = pn.serve({"/": app}, port=0, address="127.0.0.1", threaded=True, show=False, verbose=False)
    try:
        wait_until(lambda: server.server_id in state._servers or not server.is_alive(), 30, what="the Panel server")
        assert server.server_id in state._servers, "the Panel server did not start"
        port = state._servers[server.server_id][0].port
        yield f"http://127.0.0.1:{port}/", viewers
    finally:
        server.stop()
        server.join(timeout=10)
        study.archive.close()


def js(body: str) -> str:
    return f"() => {{ {FIND}; {body} }}"


def test_window_is_applied_in_the_browser_and_arrows_move_frames(served_viewer, tmp_path):
    from playwright.sync_api import sync_playwright

    url, viewers = served_viewer
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            requests: list[str] = []
            page.on("request", lambda request: requests.append(request.url))
            binary: list[int] = []  # sizes of binary websocket messages (frames travel as those)
            page.on("websocket", lambda ws: ws.on(
                "framereceived", lambda payload: binary.append(len(payload)) if isinstance(payload, bytes) else None))

            page.goto(url)
            # drawn, and the whole (small) series prefetched into the browser cache
            page.wait_for_function(js(f"""
                const root = find(document, 'pd-viewer')
                return root && root.querySelector('canvas').dataset.frameIndex === '0'
                    && Number(root.dataset.cached) >= {CT_SLICES}"""), timeout=30_000)
            page.screenshot(path=str(tmp_path / "1-loaded.png"))
            assert not errors
            frame_bytes = CT_SIZE * CT_SIZE * 2
            assert binary.count(frame_bytes) >= CT_SLICES  # raw int16 frames, not PNGs

            box = page.evaluate(js("""
                const r = find(document, 'pd-canvas').getBoundingClientRect()
                return [r.x, r.y, r.width, r.height]"""))
            x, y = box[0] + box[2] / 2, box[1] + box[3] / 2
            checksum = js("""
                const c = find(document, 'pd-canvas')
                const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data
                let s = 0
                for (let i = 0; i < d.length; i += 4) s += d[i] * ((i >> 2) % 251 + 1)
                return s""")
            before = page.evaluate(checksum)
            assert before > 0

            page.mouse.move(x, y)
            page.wait_for_function(js("return /HU$/.test(find(document, 'pd-bl').textContent)"))
            requests_before, binary_before = len(requests), len(binary)
            page.mouse.down()
            page.mouse.move(x + 160, y + 80, steps=12)
            page.mouse.up()
            page.wait_for_function(js("return find(document, 'pd-canvas').dataset.windowWidth !== '400'"))
            page.screenshot(path=str(tmp_path / "2-dragged.png"))
            after = page.evaluate(checksum)
            assert after != before
            assert requests[requests_before:] == []  # no HTTP request for the window change
            assert binary[binary_before:] == []  # and no image data over the websocket
            viewer = viewers[-1]
            wait_until(lambda: viewer.window_width > 400 and viewer.window_center > 40, 10, what="window synced")
            center, width = page.evaluate(js("""
                const c = find(document, 'pd-canvas')
                return [Number(c.dataset.windowCenter), Number(c.dataset.windowWidth)]"""))
            wait_until(lambda: (viewer.window_center, viewer.window_width) == (center, width), 10,
                       what="the final window in Python")

            page.keyboard.press("ArrowDown")
            page.wait_for_function(js("return find(document, 'pd-canvas').dataset.frameIndex === '1'"))
            wait_until(lambda: viewer.frame_index == 1, 10, what="frame index 1 in Python")
            assert page.evaluate(checksum) != after  # another slice is on screen
            page.keyboard.press("2")  # the Lung preset
            wait_until(lambda: (viewer.window_center, viewer.window_width) == (-600, 1500), 10, what="lung window")

            viewer.frame_index = 12  # and from Python to the browser
            page.wait_for_function(js("return find(document, 'pd-canvas').dataset.frameIndex === '12'"))
            page.wait_for_function(js("return hasText(document, 'image 13 / 20')"))  # the info line followed
            page.screenshot(path=str(tmp_path / "3-frame-12-lung.png"))
            assert requests[requests_before:] == []
            assert not errors
        finally:
            browser.close()
