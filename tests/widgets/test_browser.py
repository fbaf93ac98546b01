"""The Explorer served as ``panel serve`` serves it, driven in Debian's chromium
(Playwright): a name typed, a study clicked, its series listed, the series drawn
on the viewer's canvas; once against pacsdash, once against Orthanc."""

from __future__ import annotations

import re

import panel as pn
import pytest
from panel.io.state import state
from pydicom import dcmread

from pacsdash.widgets import Explorer
from tests.helpers import VALID, wait_until
from tests.widgets.conftest import Server

try:
    from playwright.sync_api import expect
except ImportError:  # the browser fixture skips (or fails in CI) saying why
    expect = None

pytestmark = pytest.mark.browser

#: Where the page may fetch from: this machine only.
LOCAL = ("http://127.0.0.1", "ws://127.0.0.1", "data:", "blob:")
CT = next(p for p in VALID if p.name == "CT_small.dcm")
#: CompressedSamples^MR1: one series, an instance per transfer syntax.
MR_NAME = "compressed*mr1"
MR_FILES = "MR_small"
#: Whether a canvas shows anything but black (a drawn frame is not blank).
NOT_BLANK = """canvas => {
  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data
  for (let i = 0; i < data.length; i += 4) if (data[i] || data[i + 1] || data[i + 2]) return true
  return false
}"""


@pytest.fixture
def served_explorer(server: Server):
    """``Explorer(client)`` served by Panel on 127.0.0.1 in this process (``pn.serve`` as
    ``panel serve`` does it); yields (url, the Explorers made, one per browser session)."""
    explorers: list[Explorer] = []

    def app() -> Explorer:
        explorer = Explorer(server.widget_client())
        explorers.append(explorer)
        return explorer

    running = pn.serve({"/": app}, port=0, address="127.0.0.1", threaded=True, show=False, start=True,
                       verbose=False, title="pacsdash Explorer")
    try:
        wait_until(lambda: running.server_id in state._servers or not running.is_alive(), 30,  # noqa: SLF001
                   what="the Panel server")
        assert running.server_id in state._servers, "the Panel server did not start"  # noqa: SLF001
        port = state._servers[running.server_id][0].port  # noqa: SLF001
        yield f"http://127.0.0.1:{port}/", explorers
    finally:
        running.stop()
        running.join(timeout=10)


def test_explorer_drives_a_query_in_a_browser(browser, server: Server, served_explorer, tmp_path):
    url, explorers = served_explorer
    shots = tmp_path / server.name
    shots.mkdir()
    context = browser.new_context(viewport={"width": 1400, "height": 1100})
    page = context.new_page()
    outside: list[str] = []
    errors: list[str] = []
    page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(LOCAL) else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(url)
        name = page.get_by_placeholder("e.g. smith or müller*")
        name.wait_for(timeout=60_000)
        assert len(explorers) == 1
        explorer = explorers[0]
        studies = page.locator(".tabulator-row").filter(has=page.locator(".tabulator-cell[tabulator-field='Date']"))
        expect(studies.first).to_be_visible(timeout=30_000)  # every study, before a search
        page.screenshot(path=shots / "1-opened.png")

        name.fill("compressed*ct1")
        name.press("Enter")
        expect(studies).to_have_count(1, timeout=30_000)
        expect(studies.first).to_contain_text("CompressedSamples, CT1")
        page.screenshot(path=shots / "2-found.png")

        ct = dcmread(CT, stop_before_pixels=True)
        studies.first.locator(".tabulator-cell[tabulator-field='Date']").click()
        series_rows = page.locator(".pd-series-list").locator(".tabulator-row")
        expect(series_rows).to_have_count(1, timeout=30_000)
        expect(series_rows.first).to_contain_text("CT")
        thumbnail = series_rows.first.locator("img.pd-thumb")
        expect(thumbnail).to_have_attribute("src", re.compile(r"^data:image/jpeg;base64,"), timeout=30_000)
        page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=thumbnail.element_handle(),
                               timeout=30_000)
        assert explorer.study_uid == ct.StudyInstanceUID

        # choosing the series (a click on its row) shows it on the viewer's canvas
        series_rows.first.locator(".tabulator-cell[tabulator-field='Modality']").click()
        wait_until(lambda: explorer.series_uid == ct.SeriesInstanceUID, 30, what="the series chosen")
        viewer = page.locator(".pd-viewer")
        canvas = viewer.locator("canvas.pd-canvas")
        expect(canvas).to_have_attribute("data-frame-index", "0", timeout=60_000)
        expect(viewer).to_have_attribute("data-drawn", re.compile(r"^[1-9]\d*$"))
        expect(viewer).to_have_attribute("data-cached", "1")
        page.wait_for_function(NOT_BLANK, arg=canvas.element_handle(), timeout=30_000)
        expect(page.get_by_text(re.compile(r"image 1 / 1"))).to_be_visible(timeout=30_000)
        wait_until(lambda: explorer.viewer.canvas.drawn_index == 0, 30, what="the browser to report the frame drawn")
        assert explorer.viewer.series_uid == ct.SeriesInstanceUID
        page.screenshot(path=shots / "3-viewer.png")

        # a series of 7 instances (one per transfer syntax): all of them reach the browser
        MR = [p for p in server.files if p.name.startswith(MR_FILES)]  # noqa: N806
        name.fill(MR_NAME)
        name.press("Enter")
        expect(studies).to_have_count(1, timeout=30_000)
        expect(studies.first).to_contain_text("CompressedSamples, MR1")
        studies.first.locator(".tabulator-cell[tabulator-field='Date']").click()
        expect(series_rows).to_have_count(1, timeout=30_000)
        expect(series_rows.first).to_contain_text("MR")
        expect(viewer).to_have_attribute("data-cached", str(len(MR)), timeout=60_000)
        expect(canvas).to_have_attribute("data-frame-index", "0")
        expect(page.get_by_text(re.compile(rf"image 1 / {len(MR)}"))).to_be_visible(timeout=30_000)
        viewer.focus()
        page.keyboard.press("End")
        expect(canvas).to_have_attribute("data-frame-index", str(len(MR) - 1), timeout=30_000)
        page.wait_for_function(NOT_BLANK, arg=canvas.element_handle(), timeout=30_000)
        wait_until(lambda: explorer.viewer.frame_index == len(MR) - 1, 30, what="the frame index back in Python")
        assert explorer.study_uid == dcmread(MR[0], stop_before_pixels=True).StudyInstanceUID
        page.screenshot(path=shots / "4-last-mr-frame.png")

        assert outside == [], f"requests left the machine: {outside}"
        assert errors == [], f"errors in the page: {errors}"
    finally:
        context.close()
