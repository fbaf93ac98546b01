"""The dashboard in a real browser: Debian's chromium driven by Playwright."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
import requests
from pydicom import dcmread

from tests.conftest import require_tool
from tests.helpers import VALID, ServerProcess, run_cli
from tests.web.test_dicomweb import multipart

try:
    from playwright.sync_api import expect
except ImportError:  # the fixture below skips (or fails in CI) with the reason
    expect = None

CHROMIUM = Path("/usr/bin/chromium")
#: [server] max_upload_mb of the test server.
UPLOAD_LIMIT_MB = 8
pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright  # noqa: F401
    except ImportError:
        require_tool(False, "playwright is not installed (pip install -e '.[test]')")
    require_tool(CHROMIUM.exists(), "Debian's chromium is not installed; .ci/run installs it")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("dash") / "home"
    home.mkdir()
    (home / "pacsdash.toml").write_text(f"[server]\nmax_upload_mb = {UPLOAD_LIMIT_MB}\n")
    for role in ("admin", "editor", "viewer"):
        assert run_cli("users", "add", role, "--role", role, "--password-stdin", "--home", str(home), input=f"{role}-pw\n").returncode == 0
    server = ServerProcess.start(home)
    body, content_type = multipart([p.read_bytes() for p in VALID])
    assert requests.post(f"http://127.0.0.1:{server.http_port}/dicom-web/studies", data=body,
                         headers={"Content-Type": content_type}, auth=("admin", "admin-pw")).status_code == 200
    yield server
    server.stop()


def log_in(browser, server, role: str, shots: Path):
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    page = context.new_page()
    outside = []
    page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(("http://127.0.0.1", "ws://127.0.0.1", "data:", "blob:")) else None)
    page.goto(f"http://127.0.0.1:{server.http_port}/")
    assert "/login" in page.url  # nothing of the archive before login
    assert "CompressedSamples" not in page.content()
    page.screenshot(path=shots / f"{role}-login.png")
    page.fill("#username", role)
    page.fill("#password", f"{role}-pw")
    page.click("button[type=submit]")
    page.wait_for_selector("text=Find studies", timeout=60_000)
    page.wait_for_selector(".tabulator-row", timeout=30_000)
    page.screenshot(path=shots / f"{role}-studies.png")
    assert outside == [], f"requests left the machine: {outside}"
    return context, page


def search_name(page, text: str, rows: int) -> None:
    """Type a patient name in the search box and wait for ``rows`` results."""
    name = page.get_by_placeholder("e.g. smith or müller*")
    name.fill(text)
    name.press("Enter")
    expect(page.locator(".tabulator-row")).to_have_count(rows, timeout=30_000)  # locators see into shadow roots


def open_tab(page, name: str) -> None:
    """Click the dashboard tab called ``name``."""
    page.locator(".bk-tab", has_text=name).click()


def test_admin_searches_opens_and_downloads(browser, server, tmp_path):
    context, page = log_in(browser, server, "admin", tmp_path)
    assert page.locator("text=admin (admin)").is_visible()
    search_name(page, "compressed*mr1", 1)
    page.screenshot(path=tmp_path / "admin-search.png")
    page.locator(".tabulator-row").first.click()
    page.wait_for_selector("text=Download the study (ZIP)", timeout=30_000)
    assert page.locator("button:has-text('Delete study')").is_visible()
    with page.expect_download() as download:
        page.click("text=Download the study (ZIP)")
    data = Path(download.value.path()).read_bytes()
    page.screenshot(path=tmp_path / "admin-study.png")
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        got = sorted(archive.read(info) for info in archive.infolist())
    mr_study = dcmread(next(p for p in VALID if p.name == "MR_small.dcm"), stop_before_pixels=True).StudyInstanceUID
    expected = sorted(p.read_bytes() for p in VALID if dcmread(p, stop_before_pixels=True).StudyInstanceUID == mr_study)
    assert got == expected
    context.close()


def test_viewer_sees_no_delete_and_the_api_refuses(browser, server, tmp_path):
    context, page = log_in(browser, server, "viewer", tmp_path)
    page.locator(".tabulator-row").first.click()
    page.wait_for_selector("text=Download the study (ZIP)", timeout=30_000)
    assert page.locator("button:has-text('Delete study')").count() == 0
    page.screenshot(path=tmp_path / "viewer-study.png")
    response = requests.delete(f"http://127.0.0.1:{server.http_port}/api/studies/1.2.3", auth=("viewer", "viewer-pw"))
    assert response.status_code == 403
    context.close()


def test_names_are_shown_escaped(browser, server, tmp_path):
    from tests.factories import make_instance

    raw = make_instance(PatientName="<img src=x onerror=alert(1)>^Mallory", PatientID="XSS1")
    body, content_type = multipart([raw])
    requests.post(f"http://127.0.0.1:{server.http_port}/dicom-web/studies", data=body,
                  headers={"Content-Type": content_type}, auth=("admin", "admin-pw"))
    context, page = log_in(browser, server, "admin", tmp_path)
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    search_name(page, "*mallory*", 1)
    page.locator(".tabulator-row").first.click()
    page.wait_for_selector("text=Download the study (ZIP)", timeout=30_000)
    assert page.locator("img[src=x]").count() == 0
    assert dialogs == []
    assert "&lt;img" in page.content() or "<img src=x" not in page.content()
    context.close()


def test_a_new_study_appears_without_reloading(browser, server, tmp_path):
    from tests.factories import make_instance

    context, page = log_in(browser, server, "admin", tmp_path)
    search_name(page, "*latecomer*", 0)
    body, content_type = multipart([make_instance(PatientName="LATECOMER^LUKE", PatientID="LATE1")])
    assert requests.post(f"http://127.0.0.1:{server.http_port}/dicom-web/studies", data=body,
                         headers={"Content-Type": content_type}, auth=("admin", "admin-pw")).status_code == 200
    expect(page.locator(".tabulator-row")).to_have_count(1, timeout=30_000)
    page.screenshot(path=tmp_path / "arrived.png")
    context.close()


def test_a_study_opens_in_the_viewer(browser, server, tmp_path):
    context, page = log_in(browser, server, "viewer", tmp_path)
    search_name(page, "compressed*mr1", 1)
    page.locator(".tabulator-row").first.click()
    page.locator("canvas").first.wait_for(timeout=60_000)
    expect(page.get_by_text("image 1 / 7")).to_be_visible(timeout=30_000)
    page.screenshot(path=tmp_path / "viewer.png")
    context.close()


def zip_file(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def test_an_editor_uploads_a_zip_and_a_file_and_finds_the_study(browser, server, tmp_path):
    from tests.factories import make_instance

    zipped = zip_file(tmp_path / "export.zip", {
        "EXPORT/PAT1/ST1/IM0001": make_instance(PatientName="ZIPPED^ZOE", PatientID="ZIP1", StudyInstanceUID="1.2.826.0.1.3680043.10.1474.77.1"),
        "EXPORT/PAT1/ST1/SE2/IM0002": make_instance(PatientName="ZIPPED^ZOE", PatientID="ZIP1", StudyInstanceUID="1.2.826.0.1.3680043.10.1474.77.1"),
        "EXPORT/README.TXT": b"exported by a CD burner",
        "EXPORT/CT_small.dcm": next(p for p in VALID if p.name == "CT_small.dcm").read_bytes(),  # already stored
    })
    single = tmp_path / "single.dcm"
    single.write_bytes(make_instance(PatientName="SINGLE^SAM", PatientID="SGL1"))
    context, page = log_in(browser, server, "editor", tmp_path)
    open_tab(page, "Upload")
    page.locator("input[type=file]").set_input_files([str(zipped), str(single)])
    store = page.get_by_role("button", name="Store 2 files in the archive")
    expect(store).to_be_enabled(timeout=30_000)
    page.screenshot(path=tmp_path / "upload-dropped.png")
    store.click()
    summary = page.locator(".pd-upload-summary")
    expect(summary).to_contain_text("3 stored, 1 duplicate, 1 failed", timeout=60_000)
    expect(page.locator(".pd-upload-failed")).to_contain_text("export.zip/EXPORT/README.TXT")
    page.screenshot(path=tmp_path / "upload-done.png")
    open_tab(page, "Studies")
    search_name(page, "zipped", 1)
    expect(page.locator(".tabulator-row").first).to_contain_text("ZIP1")
    search_name(page, "single^sam", 1)
    page.screenshot(path=tmp_path / "upload-found.png")
    studies = requests.get(f"http://127.0.0.1:{server.http_port}/api/studies", params={"PatientID": "ZIP1"},
                           auth=("viewer", "viewer-pw")).json()["studies"]
    assert [s["NumberOfStudyRelatedInstances"] for s in studies] == ["2"]
    log = (server.home / "logs" / "pacsdash.log").read_text()
    assert "dashboard upload by editor: 2 files received, 3 stored, 1 duplicate, 1 failed" in log
    context.close()


def test_an_upload_beyond_the_limit_is_refused(browser, server, tmp_path):
    big = tmp_path / "big.dcm"
    big.write_bytes(bytes((UPLOAD_LIMIT_MB + 1) * 2**20))
    context, page = log_in(browser, server, "editor", tmp_path)
    open_tab(page, "Upload")
    page.locator("input[type=file]").set_input_files([str(big)])
    expect(page.locator(".filepond--file-status-main", has_text="File is too large")).to_be_visible(timeout=30_000)
    page.screenshot(path=tmp_path / "upload-too-large.png")
    expect(page.get_by_role("button", name="Store in the archive")).to_be_disabled()
    context.close()


def test_a_zip_bomb_is_refused(browser, server, tmp_path):
    bomb = zip_file(tmp_path / "bomb.zip", {f"IM{k}": bytes(4 * 2**20) for k in range(UPLOAD_LIMIT_MB)})
    assert bomb.stat().st_size < 2**20
    context, page = log_in(browser, server, "editor", tmp_path)
    open_tab(page, "Upload")
    page.locator("input[type=file]").set_input_files([str(bomb)])
    page.get_by_role("button", name="Store 1 file in the archive").click()
    expect(page.locator(".pd-upload-refused")).to_contain_text(
        f"bomb.zip unpacks to more than the {UPLOAD_LIMIT_MB}.0 MB allowed", timeout=30_000)
    page.screenshot(path=tmp_path / "upload-bomb.png")
    context.close()


def test_a_viewer_sees_no_upload(browser, server, tmp_path):
    context, page = log_in(browser, server, "viewer", tmp_path)
    assert page.locator(".bk-tab", has_text="Overview").count() == 1
    assert page.locator(".bk-tab", has_text="Upload").count() == 0
    assert page.locator("input[type=file]").count() == 0
    context.close()
