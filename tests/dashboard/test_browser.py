"""The dashboard in a real browser: Debian's chromium driven by Playwright."""

from __future__ import annotations

import io
import re
import time
import zipfile
from pathlib import Path

import pytest
import requests
from pydicom import dcmread

from tests.dashboard.viewer.conftest import CINE_FRAMES
from tests.helpers import VALID, ServerProcess, run_cli
from tests.web.test_dicomweb import multipart

try:
    from playwright.sync_api import expect
except ImportError:  # the fixture below skips (or fails in CI) with the reason
    expect = None

#: Where the page may fetch from: this machine only.
LOCAL = ("http://127.0.0.1", "ws://127.0.0.1", "data:", "blob:")
#: [server] max_upload_mb of the test server.
UPLOAD_LIMIT_MB = 8
pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("dash") / "home"
    home.mkdir()
    (home / "pacsdash.toml").write_text(f"[server]\nmax_upload_mb = {UPLOAD_LIMIT_MB}\n")
    for role in ("admin", "editor", "viewer"):
        assert run_cli("users", "add", role, "--role", role, "--password-stdin", "--home", str(home), input=f"{role}-password\n").returncode == 0
    server = ServerProcess.start(home)
    body, content_type = multipart([p.read_bytes() for p in VALID])
    assert requests.post(f"http://127.0.0.1:{server.http_port}/dicom-web/studies", data=body,
                         headers={"Content-Type": content_type}, auth=("admin", "admin-password")).status_code == 200
    yield server
    server.stop()


def log_in(browser, server, role: str, shots: Path, viewport: tuple[int, int] = (1400, 1000),
           base: str | None = None):
    """A new context logged in as ``role``; ``base``: the URL to reach the server by (a proxy's)."""
    context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]}, accept_downloads=True)
    page = context.new_page()
    outside = []
    page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(LOCAL) else None)
    page.goto(f"{base or f'http://127.0.0.1:{server.http_port}'}/")
    assert "/login" in page.url  # nothing of the archive before login
    assert "CompressedSamples" not in page.content()
    page.screenshot(path=shots / f"{role}-login.png")
    page.fill("#username", role)
    page.fill("#password", f"{role}-password")
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


def open_first_study(page) -> None:
    """Click the first row's date: opens the study (a patient cell would open the patient)."""
    page.locator(".tabulator-row").first.locator(".tabulator-cell[tabulator-field='Date']").click()


def open_tab(page, name: str) -> None:
    """Click the dashboard tab called ``name``."""
    page.locator(".bk-tab", has_text=name).click()


def test_admin_searches_opens_and_downloads(browser, server, tmp_path):
    context, page = log_in(browser, server, "admin", tmp_path)
    assert page.locator("text=admin (admin)").is_visible()
    search_name(page, "compressed*mr1", 1)
    page.screenshot(path=tmp_path / "admin-search.png")
    open_first_study(page)
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
    open_first_study(page)
    page.wait_for_selector("text=Download the study (ZIP)", timeout=30_000)
    assert page.locator("button:has-text('Delete study')").count() == 0
    page.screenshot(path=tmp_path / "viewer-study.png")
    response = requests.delete(f"http://127.0.0.1:{server.http_port}/api/studies/1.2.3", auth=("viewer", "viewer-password"))
    assert response.status_code == 403
    context.close()


def test_names_are_shown_escaped(browser, server, tmp_path):
    from tests.factories import make_instance

    raw = make_instance(PatientName="<img src=x onerror=alert(1)>^Mallory", PatientID="<b>XSS1</b>",
                        StudyDescription="<img src=x onerror=alert(2)>", SeriesDescription="<img src=x onerror=alert(3)>",
                        Modality="<i>CT")
    body, content_type = multipart([raw])
    requests.post(f"http://127.0.0.1:{server.http_port}/dicom-web/studies", data=body,
                  headers={"Content-Type": content_type}, auth=("admin", "admin-password"))
    context, page = log_in(browser, server, "admin", tmp_path)
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    search_name(page, "*mallory*", 1)
    open_first_study(page)
    page.wait_for_selector("text=Download the study (ZIP)", timeout=30_000)
    expect(page.locator(".pd-series-list")).to_contain_text("<img src=x onerror=alert(3)>", timeout=30_000)
    expect(page.locator(".pd-study-title")).to_contain_text("<img src=x onerror=alert(2)>")
    page.get_by_role("button", name="All studies of this patient").click()
    expect(page.locator(".pd-patient")).to_contain_text("<b>XSS1</b>", timeout=30_000)
    expect(page.locator(".pd-patient-studies")).to_contain_text("<img src=x onerror=alert(2)>")
    page.screenshot(path=tmp_path / "escaped-patient.png")
    assert page.locator("img[src=x]").count() == 0 and page.locator("b", has_text="XSS1").count() == 0
    assert dialogs == []
    context.close()


def test_a_new_study_appears_without_reloading(browser, server, tmp_path):
    from tests.factories import make_instance

    context, page = log_in(browser, server, "admin", tmp_path)
    search_name(page, "*latecomer*", 0)
    body, content_type = multipart([make_instance(PatientName="LATECOMER^LUKE", PatientID="LATE1")])
    assert requests.post(f"http://127.0.0.1:{server.http_port}/dicom-web/studies", data=body,
                         headers={"Content-Type": content_type}, auth=("admin", "admin-password")).status_code == 200
    expect(page.locator(".tabulator-row")).to_have_count(1, timeout=30_000)
    page.screenshot(path=tmp_path / "arrived.png")
    context.close()


def test_a_study_opens_in_the_viewer(browser, server, tmp_path):
    context, page = log_in(browser, server, "viewer", tmp_path)
    search_name(page, "compressed*mr1", 1)
    open_first_study(page)
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

    zoe = {"PatientName": "ZIPPED^ZOE", "PatientID": "ZIP1", "StudyInstanceUID": "1.2.826.0.1.3680043.10.1474.77.1"}
    zipped = zip_file(tmp_path / "export.zip", {
        "EXPORT/PAT1/ST1/IM0001": make_instance(**zoe),
        "EXPORT/PAT1/ST1/SE2/IM0002": make_instance(**zoe),
        "EXPORT/README.TXT": b"exported by a CD burner",
        "EXPORT/CT_small.dcm": next(p for p in VALID if p.name == "CT_small.dcm").read_bytes(),  # already stored
    })
    single = tmp_path / "single.dcm"
    single.write_bytes(make_instance(PatientName="SINGLE^SAM", PatientID="SGL1"))
    context, page = log_in(browser, server, "editor", tmp_path)
    outside = []
    page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(LOCAL) else None)
    open_tab(page, "Upload")
    page.locator("input.pd-input-files").set_input_files([str(zipped), str(single)])
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
                           auth=("viewer", "viewer-password")).json()["studies"]
    assert [s["NumberOfStudyRelatedInstances"] for s in studies] == ["2"]
    log = (server.home / "logs" / "pacsdash.log").read_text()
    assert "dashboard upload by editor: 2 files received, 3 stored, 1 duplicate, 1 failed" in log
    assert outside == [], f"requests left the machine: {outside}"
    context.close()


def test_an_upload_beyond_the_limit_is_refused(browser, server, tmp_path):
    big = tmp_path / "big.dcm"
    big.write_bytes(bytes((UPLOAD_LIMIT_MB + 1) * 2**20))
    context, page = log_in(browser, server, "editor", tmp_path)
    open_tab(page, "Upload")
    page.locator("input.pd-input-files").set_input_files([str(big)])
    expect(page.locator(".pd-files tr[data-state=refused]")).to_contain_text("larger than the 8.0 MB allowed",
                                                                             timeout=30_000)
    expect(page.locator(".pd-upload-refused")).to_contain_text("big.dcm")
    page.screenshot(path=tmp_path / "upload-too-large.png")
    expect(page.get_by_role("button", name="Store in the archive")).to_be_disabled()
    context.close()


def test_a_zip_bomb_is_refused(browser, server, tmp_path):
    bomb = zip_file(tmp_path / "bomb.zip", {f"IM{k}": bytes(4 * 2**20) for k in range(UPLOAD_LIMIT_MB)})
    assert bomb.stat().st_size < 2**20
    context, page = log_in(browser, server, "editor", tmp_path)
    open_tab(page, "Upload")
    page.locator("input.pd-input-files").set_input_files([str(bomb)])
    page.get_by_role("button", name="Store 1 file in the archive").click()
    expect(page.locator(".pd-upload-refused")).to_contain_text(
        f"bomb.zip unpacks to more than the {UPLOAD_LIMIT_MB}.0 MB allowed", timeout=30_000)
    page.screenshot(path=tmp_path / "upload-bomb.png")
    context.close()


def upload_files(folder: Path, stem: str, patient_id: str, count: int) -> list[Path]:
    """``count`` 128 KB instances of one patient, as files to pick."""
    from tests.factories import make_instance

    paths = []
    for k in range(count):
        path = folder / f"{stem}-{k:02d}.dcm"
        path.write_bytes(make_instance(PatientName=f"{stem.upper()}^UPLOAD", PatientID=patient_id, Rows=256,
                                       Columns=256, PixelData=bytes(256 * 256 * 2)))
        paths.append(path)
    return paths


def test_a_viewer_sees_no_upload(browser, server, tmp_path):
    context, page = log_in(browser, server, "viewer", tmp_path)
    assert page.locator(".bk-tab", has_text="Overview").count() == 1
    assert page.locator(".bk-tab", has_text="Upload").count() == 0
    assert page.locator("input[type=file]").count() == 0
    context.close()


def stow(server, raws: list[bytes]) -> None:
    body, content_type = multipart(raws)
    assert requests.post(f"http://127.0.0.1:{server.http_port}/dicom-web/studies", data=body,
                         headers={"Content-Type": content_type}, auth=("admin", "admin-password")).status_code == 200


@pytest.fixture(scope="module")
def thumbs_study(server, tmp_path_factory):
    """A study with a report (no image), a CT series and a multi-frame series."""
    from pacsdash.archive import Level
    from tests.dashboard.viewer.conftest import make_viewer_study

    study = make_viewer_study(tmp_path_factory.mktemp("thumbs") / "home", "THUMBS^TINA")
    raws = [study.archive.local_path(loc).read_bytes() for loc in study.archive.locate(Level.STUDY, study.study_uid)]
    study.archive.close()
    stow(server, raws)
    return study


#: Luminance spread of each thumbnail image on the page (-1: not loaded yet).
THUMBNAIL_SPREAD = """imgs => imgs.map(img => {
  if (!img.complete || !img.naturalWidth) return -1
  const c = document.createElement("canvas"); c.width = img.naturalWidth; c.height = img.naturalHeight
  const ctx = c.getContext("2d"); ctx.drawImage(img, 0, 0)
  const d = ctx.getImageData(0, 0, c.width, c.height).data
  let lo = 255, hi = 0
  for (let i = 0; i < d.length; i += 4) {
    const v = (d[i] + d[i + 1] + d[i + 2]) / 3; lo = Math.min(lo, v); hi = Math.max(hi, v)
  }
  return hi - lo
})"""


@pytest.mark.parametrize("role", ["viewer", "admin"])  # the admin has the most actions above the viewer
def test_a_study_fits_a_small_screen_with_thumbnails(browser, server, thumbs_study, tmp_path, role):
    context, page = log_in(browser, server, role, tmp_path, viewport=(1366, 768))
    search_name(page, "thumbs^tina", 1)
    open_first_study(page)
    expect(page.get_by_text("image 1 / 20")).to_be_visible(timeout=60_000)
    thumbnails = page.locator("img.pd-thumb")
    expect(thumbnails).to_have_count(2, timeout=30_000)  # the CT and the cine series; the report has none
    expect(page.locator(".pd-thumb-none", has_text="SR")).to_have_count(1)
    deadline = time.monotonic() + 30
    while min(spread := thumbnails.evaluate_all(THUMBNAIL_SPREAD)) < 0 and time.monotonic() < deadline:
        page.wait_for_timeout(200)
    assert all(value > 20 for value in spread), f"blank or missing thumbnails: {spread}"
    page.wait_for_timeout(500)
    page.screenshot(path=tmp_path / "study-1366x768.png")
    # Everything needed at once, without scrolling: the series list and the whole image.
    assert page.evaluate("window.scrollY") == 0
    canvas = page.locator("canvas").first.bounding_box()
    assert canvas["height"] > 300 and canvas["y"] + canvas["height"] <= 768, canvas
    for k in range(2):
        box = thumbnails.nth(k).bounding_box()
        assert box["y"] + box["height"] <= 768 and box["x"] + box["width"] <= 1366, box
    # A click on a series shows it in the viewer.
    cine = page.locator(".pd-series-list .tabulator-row", has_text="Cine")
    cine.locator(".tabulator-cell[tabulator-field='Description']").click()
    expect(page.get_by_text(f"image 1 / {CINE_FRAMES}")).to_be_visible(timeout=30_000)
    page.screenshot(path=tmp_path / "study-cine.png")
    context.close()


def test_the_patient_view_lists_the_patients_studies(browser, server, tmp_path):
    from tests.factories import make_instance

    stow(server, [
        make_instance(PatientName="VIEWS^PETRA", PatientID="PV1", StudyDate="20240105", StudyDescription="CT HEAD"),
        make_instance(PatientName="VIEWS^PETRA", PatientID="PV1", StudyDate="20250720", StudyDescription="MR KNEE"),
        make_instance(PatientName="VIEWS^PAUL", PatientID="PV2", StudyDate="20250721", StudyDescription="US NECK"),
    ])
    context, page = log_in(browser, server, "viewer", tmp_path)
    search_name(page, "views^petra", 2)
    page.locator(".tabulator-row").first.locator(".tabulator-cell[tabulator-field='Patient ID']").click()
    expect(page.locator(".pd-patient-name")).to_have_text("VIEWS, PETRA", timeout=30_000)
    studies = page.locator(".pd-patient-studies .tabulator-row")
    expect(studies).to_have_count(2)
    expect(studies.nth(0)).to_contain_text("MR KNEE")
    expect(studies.nth(1)).to_contain_text("CT HEAD")
    expect(page.locator(".pd-patient-studies")).not_to_contain_text("US NECK")
    page.screenshot(path=tmp_path / "patient.png")
    studies.nth(1).locator(".tabulator-cell[tabulator-field='Description']").click()
    expect(page.locator(".pd-study-title")).to_contain_text("CT HEAD", timeout=30_000)
    page.get_by_role("button", name="All studies of this patient").click()
    expect(page.locator(".pd-patient-studies .tabulator-row")).to_have_count(2, timeout=30_000)
    context.close()


def export_zip(page) -> dict[str, bytes]:
    """Wait for the export's download link, download it, return the ZIP's members."""
    link = page.locator("a.pd-export-download")
    expect(link).to_be_visible(timeout=120_000)
    with page.expect_download() as download:
        link.click()
    with zipfile.ZipFile(io.BytesIO(Path(download.value.path()).read_bytes())) as bundle:
        return {name: bundle.read(name) for name in bundle.namelist()}


def test_an_editor_anonymizes_a_study_opens_it_and_exports_a_cohort(browser, server, tmp_path):
    import csv

    from tests.factories import make_instance

    original = "1.2.826.0.1.3680043.10.1474.88.1"
    stow(server, [make_instance(PatientName="TEACHING^TESSA", PatientID="TEACH1", StudyInstanceUID=original,
                                SeriesInstanceUID=f"{original}.1", SOPInstanceUID=f"{original}.1.{k}", InstanceNumber=k,
                                StudyDescription="TEACHING CASE", StudyDate="20240301",
                                InstitutionName="Teaching Hospital") for k in (1, 2, 3)])
    context, page = log_in(browser, server, "editor", tmp_path)
    search_name(page, "teaching^tessa", 1)
    open_first_study(page)
    expect(page.locator(".pd-study-title")).to_contain_text("TEACHING CASE", timeout=30_000)
    page.get_by_role("button", name="Anonymize…").click()
    # The before/after view of the instance in the viewer: the rule of each change.
    compare = page.locator("table.pd-compare")
    expect(compare.locator("tr[data-keyword='PatientName']")).to_contain_text("Basic Profile", timeout=30_000)
    expect(compare.locator("tr[data-keyword='PatientName'] .pd-code")).to_have_text("Z")
    expect(compare.locator("tr[data-keyword='StudyDate']")).to_contain_text("with Modified Dates")
    expect(compare.locator("tr[data-keyword='StudyDescription']")).to_contain_text("removed")
    expect(compare.locator("tr[data-keyword='Modality']")).to_have_count(0)  # unchanged: hidden
    page.locator(".pd-show-unchanged input[type=checkbox]").click()
    expect(compare.locator("tr[data-keyword='Modality']")).to_have_count(1, timeout=30_000)
    expect(page.locator(".pd-options input[type=checkbox]:checked")).to_have_count(1)  # the default option
    page.screenshot(path=tmp_path / "anonymize-before-after.png", full_page=True)
    # Both date options: said, and the button is disabled.
    page.locator(".pd-options label", has_text="with Full Dates").click()
    expect(page.locator(".pd-options-problem")).to_contain_text("not both", timeout=30_000)
    expect(page.get_by_role("button", name="Anonymize this study")).to_be_disabled()
    page.screenshot(path=tmp_path / "anonymize-both-dates.png")
    page.locator(".pd-options label", has_text="with Full Dates").click()
    start = page.get_by_role("button", name="Anonymize this study")
    expect(start).to_be_enabled(timeout=30_000)
    start.click()
    expect(page.locator(".pd-anon-result")).to_contain_text("3 instances stored", timeout=60_000)
    new_uid = page.locator(".pd-new-study").inner_text().strip()
    assert new_uid.startswith("2.25.")
    page.screenshot(path=tmp_path / "anonymize-done.png", full_page=True)
    page.get_by_role("button", name="Open the new study").click()
    title = page.locator(".pd-study-title")
    expect(title).to_contain_text("SUBJ-", timeout=30_000)
    expect(title).not_to_contain_text("TEACHING")
    subject = re.search(r"SUBJ-[A-Z0-9]+", title.inner_text()).group()
    expect(page.get_by_text(f"{subject} {subject}")).to_be_visible(timeout=30_000)  # the viewer shows it too
    page.screenshot(path=tmp_path / "anonymize-new-study.png")
    # The cohort: every study matching the search, anonymized with the default options, as a ZIP.
    open_tab(page, "Studies")
    search_name(page, "teaching^tessa", 1)
    open_tab(page, "Export")
    expect(page.locator(".pd-export-matching")).to_have_text("1", timeout=30_000)
    page.get_by_text("Every study matching the current search").click()
    page.locator(".pd-export-anonymize input[type=checkbox]").click()
    expect(page.locator(".pd-export .pd-options")).to_be_visible(timeout=30_000)
    page.get_by_role("button", name="Export", exact=True).click()
    members = export_zip(page)
    page.screenshot(path=tmp_path / "export-anonymized.png", full_page=True)
    manifest = list(csv.DictReader(io.StringIO(members["manifest.csv"].decode())))
    assert len(manifest) == 3 and all(row["path"] in members for row in manifest)
    for row in manifest:
        data = members[row["path"]]
        ds = dcmread(io.BytesIO(data))
        assert ds.PatientIdentityRemoved == "YES" and str(ds.PatientName).startswith("SUBJ-")
        assert ds.StudyInstanceUID == new_uid  # the same pseudonyms as the copy in the archive
        assert b"TEACH" not in data.upper() and original.encode() not in data
    context.close()


def test_a_viewer_sees_no_anonymize_and_exports_originals(browser, server, tmp_path):
    import csv

    context, page = log_in(browser, server, "viewer", tmp_path)
    search_name(page, "compressed*mr1", 1)
    open_first_study(page)
    page.wait_for_selector("text=Download the study (ZIP)", timeout=30_000)
    assert page.get_by_role("button", name="Anonymize…").count() == 0
    assert page.locator(".pd-research, .pd-anonymize, .pd-compare-panel").count() == 0
    open_tab(page, "Export")
    expect(page.get_by_text("anonymized exports are for editors")).to_be_visible(timeout=30_000)
    assert page.get_by_text("Anonymize (PS3.15 Annex E").count() == 0 and page.locator(".pd-options").count() == 0
    assert page.locator(".pd-export-anonymize").count() == 0
    page.locator(".pd-export-table .tabulator-row").first.locator("input[type=checkbox]").click()
    expect(page.locator(".pd-export-ticked")).to_have_text("1", timeout=30_000)
    page.screenshot(path=tmp_path / "viewer-export.png", full_page=True)
    page.get_by_role("button", name="Export", exact=True).click()
    members = export_zip(page)
    manifest = list(csv.DictReader(io.StringIO(members["manifest.csv"].decode())))
    mr_study = dcmread(next(p for p in VALID if p.name == "MR_small.dcm"), stop_before_pixels=True).StudyInstanceUID
    expected = sorted(p.read_bytes() for p in VALID if dcmread(p, stop_before_pixels=True).StudyInstanceUID == mr_study)
    assert sorted(members[row["path"]] for row in manifest) == expected  # the originals, unchanged
    context.close()
