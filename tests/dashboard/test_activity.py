"""The /activity page in Debian's chromium: a real storescu's association, live,
with its contexts and C-STORE statuses; teaching mode; refused to a viewer."""

from __future__ import annotations

import subprocess

import pytest
from pydicom import dcmread
from pynetdicom import AE
from pynetdicom.sop_class import Verification

from tests.helpers import DCMTK, VALID, ServerProcess, run_cli

try:
    from playwright.sync_api import expect
except ImportError:  # the browser fixture skips (or fails in CI) with the reason
    expect = None

pytestmark = pytest.mark.browser
CT_SAMPLE = next(p for p in VALID if p.name == "CT_small.dcm")
SCANNER = "CTSCANNER"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("activity") / "home"
    home.mkdir()
    for role in ("admin", "viewer"):
        assert run_cli("users", "add", role, "--role", role, "--password-stdin", "--home", str(home),
                       input=f"{role}-password\n").returncode == 0
    assert run_cli("modalities", "add", "scanner", "--home", str(home), "--aet", SCANNER, "--host", "127.0.0.1",
                   "--port", "11112").returncode == 0
    server = ServerProcess.start(home)  # two DICOM worker processes, as by default
    yield server
    server.stop()


def open_activity(browser, server, role: str, query: str = ""):
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    page = context.new_page()
    page.goto(f"http://127.0.0.1:{server.http_port}/activity{query}")
    assert "/login" in page.url
    page.fill("#username", role)
    page.fill("#password", f"{role}-password")
    page.click("button[type=submit]")
    page.wait_for_load_state()
    if "/activity" not in page.url:  # the login took us to the archive
        page.goto(f"http://127.0.0.1:{server.http_port}/activity{query}")
    return context, page


def test_a_storescu_association_appears_live_with_its_contexts(browser, server, tmp_path):
    context, page = open_activity(browser, server, "admin")
    expect(page.get_by_text("DICOM associations")).to_be_visible(timeout=60_000)
    page.screenshot(path=tmp_path / "activity-empty.png")
    ct = dcmread(CT_SAMPLE, stop_before_pixels=True)
    held = AE(ae_title=SCANNER)
    held.add_requested_context(Verification)
    association = held.associate("127.0.0.1", server.dicom_port, ae_title="PACSDASH")
    assert association.is_established and association.send_c_echo().Status == 0
    first = page.locator(".pd-assoc").first
    expect(first).to_contain_text("open", timeout=15_000)  # live, without a reload
    expect(first).to_contain_text("C-ECHO-RSP")
    association.release()
    expect(page.locator(".pd-assoc").first).to_contain_text("released", timeout=15_000)

    result = subprocess.run([str(DCMTK / "storescu"), "-aet", SCANNER, "-aec", "PACSDASH", "127.0.0.1",
                             str(server.dicom_port), str(CT_SAMPLE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    stored = page.locator(".pd-assoc").filter(has_text="C-STORE-RSP")
    expect(stored).to_have_count(1, timeout=15_000)
    expect(stored).to_contain_text(SCANNER)
    expect(stored).to_contain_text("127.0.0.1")
    expect(stored).to_contain_text("released")
    contexts = stored.locator(".pd-contexts")
    expect(contexts).to_contain_text("CT Image Storage")  # its accepted context ...
    expect(contexts).to_contain_text("Explicit VR Little Endian")  # ... with its transfer syntax
    expect(stored.locator(".pd-message", has_text="C-STORE-RSP")).to_contain_text("0000 Success")
    expect(stored.locator(".pd-message", has_text="C-STORE-RQ")).to_contain_text(ct.SOPInstanceUID)
    expect(stored.locator(".pd-patient-name")).to_have_text(str(ct.PatientName), timeout=15_000)
    story = page.locator(".pd-story")
    for step in ("A-ASSOCIATE-RQ", "A-ASSOCIATE-AC", "C-STORE-RQ", "C-STORE-RSP", "A-RELEASE-RQ"):
        expect(story).to_contain_text(step)
    expect(page.locator(".pd-http")).to_contain_text("/activity")
    page.screenshot(path=tmp_path / "activity-stored.png", full_page=True)

    page.locator(".pd-teaching input[type=checkbox]").check()
    expect(stored.locator(".pd-patient-name")).to_have_text("‹patient 1›", timeout=10_000)
    text = page.locator("body").inner_text()
    assert str(ct.PatientName) not in text and ct.PatientID not in text and ct.SOPInstanceUID not in text
    assert ct.StudyInstanceUID not in text and "127.0.0.1" not in text
    expect(stored).to_contain_text(SCANNER)  # AE titles and syntaxes stay: they are the lesson
    expect(contexts).to_contain_text("Explicit VR Little Endian")
    page.screenshot(path=tmp_path / "activity-teaching.png", full_page=True)
    context.close()


def test_the_page_opens_in_teaching_mode_from_its_link(browser, server, tmp_path):
    ct = dcmread(CT_SAMPLE, stop_before_pixels=True)
    context, page = open_activity(browser, server, "admin", "?teaching=1")
    expect(page.locator(".pd-story")).to_be_visible(timeout=60_000)
    expect(page.locator(".pd-assoc").first).to_be_visible(timeout=15_000)
    assert str(ct.PatientName) not in page.locator("body").inner_text()
    context.close()


def test_a_viewer_is_refused(browser, server, tmp_path):
    context, page = open_activity(browser, server, "viewer")
    expect(page.get_by_text("This page is for administrators")).to_be_visible(timeout=60_000)
    assert page.locator(".pd-assoc").count() == 0 and page.locator(".pd-http").count() == 0
    page.screenshot(path=tmp_path / "activity-viewer.png")
    context.close()
