"""Uploads over a slow link, as from a ward's PC: Store pressed early, tabs switched mid-upload.

The browser reaches the server through :class:`~tests.slow_link.SlowUplink`
(~64 KB/s from the browser, as Chromium's own throttling leaves websockets
alone); the server lists the proxy's origin in ``cors_origins`` so that it
accepts the dashboard's websocket from there.
"""

from __future__ import annotations

import re

import pytest
import requests

from tests.dashboard.test_browser import log_in, open_tab, upload_files
from tests.factories import make_instance
from tests.helpers import ServerProcess, run_cli
from tests.slow_link import SlowUplink
from tests.web.test_dicomweb import multipart

try:
    from playwright.sync_api import expect
except ImportError:  # the browser fixture says why the tests skip
    pass

#: Browser-to-server bytes per second: 10 files of 128 KB take about 20 s.
RATE = 64 * 1024


@pytest.fixture(scope="module")
def slow_link():
    """A proxy with a slow uplink, its origin allowed by the server behind it."""
    return SlowUplink(RATE)


@pytest.fixture(scope="module")
def server(tmp_path_factory, slow_link):
    home = tmp_path_factory.mktemp("slow") / "home"
    home.mkdir()
    (home / "pacsdash.toml").write_text(f'[server]\ncors_origins = ["{slow_link.url}"]\n')
    assert run_cli("users", "add", "editor", "--role", "editor", "--password-stdin", "--home", str(home),
                   input="editor-password\n").returncode == 0
    server = ServerProcess.start(home)
    body, content_type = multipart([make_instance(PatientName="ALREADY^HERE", PatientID="HERE1")])
    assert requests.post(f"http://127.0.0.1:{server.http_port}/dicom-web/studies", data=body,  # a study to list
                         headers={"Content-Type": content_type}, auth=("editor", "editor-password")).status_code == 200
    slow_link.start(server.http_port)
    yield server
    slow_link.stop()
    server.stop()


@pytest.fixture(autouse=True)
def slowed(slow_link):
    """Every test starts on the slow link."""
    slow_link.rate = RATE


def test_store_pressed_early_stores_every_picked_file(browser, server, slow_link, tmp_path):
    """10 files picked on a slow link, Store pressed after the first arrived:
    all 10 are stored and reported (an early Store once dropped the other 8)."""
    paths = upload_files(tmp_path, "early", "EARLY10", 10)
    # Over the slow uplink the upload takes about 20 s, so Store is pressed
    # early even when the machine is busy.
    context, page = log_in(browser, server, "editor", tmp_path, base=slow_link.url)
    open_tab(page, "Upload")
    page.locator("input.pd-input-files").set_input_files([str(p) for p in paths])
    store = page.get_by_role("button", name="Store 10 files in the archive")
    expect(store).to_be_enabled(timeout=30_000)
    expect(page.locator(".pd-upload-waiting")).to_contain_text("still uploading")
    still_open = int(page.locator(".pd-receiver").get_attribute("data-open"))
    store.click()
    # The click travels the websocket the files go over: it must not wait
    # behind all of them (the page answers while they are still uploading).
    expect(page.get_by_text(re.compile(r"Waiting for \d+ of 10 files still uploading"))).to_be_visible(timeout=10_000)
    page.screenshot(path=tmp_path / "upload-early-store.png")
    assert still_open >= 5, f"pressed after {10 - still_open} of 10 arrived: not early enough to test anything"
    summary = page.locator(".pd-upload-summary")
    expect(summary).to_contain_text("10 stored, 0 duplicates, 0 failed", timeout=120_000)
    page.screenshot(path=tmp_path / "upload-early-done.png")
    found = requests.get(f"http://127.0.0.1:{server.http_port}/dicom-web/instances", params={"PatientID": "EARLY10"},
                         auth=("editor", "editor-password")).json()
    assert len(found) == 10
    context.close()


@pytest.mark.parametrize("away_ms", [0, 800])
def test_an_upload_survives_switching_tabs(browser, server, slow_link, tmp_path, away_ms):
    """Switching to another tab mid-upload and back, at once or after a while,
    twice, then pressing Store while files are still on their way: every file
    is stored and the page says so. (With Panel's dynamic tabs a quick switch
    left the page deaf: the server stored the upload and the page never showed
    it, or a Store click went nowhere.)"""
    paths = upload_files(tmp_path, "tabs", f"TABS6-{away_ms}", 6)
    context, page = log_in(browser, server, "editor", tmp_path, base=slow_link.url)
    open_tab(page, "Upload")
    page.locator("input.pd-input-files").set_input_files([str(p) for p in paths])
    for _ in range(2):
        open_tab(page, "Studies")
        page.wait_for_timeout(away_ms)
        open_tab(page, "Upload")
    expect(page.locator(".pd-upload-waiting")).to_contain_text("still uploading", timeout=30_000)
    page.get_by_role("button", name="Store 6 files in the archive").click()
    expect(page.get_by_text(re.compile(r"Waiting for [1-6] of 6 files still uploading"))).to_be_visible(timeout=30_000)
    slow_link.rate = None
    expect(page.locator(".pd-upload-summary")).to_contain_text("6 stored, 0 duplicates, 0 failed", timeout=60_000)
    context.close()
