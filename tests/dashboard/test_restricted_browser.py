"""Access by study in a real browser (issue 15): a user restricted to the
label trial-7 sees only that study in the search, a colleague's link to
another study says there is no such study and shows nothing of it, the back
button returns to their search, the images of their study load through the
cookie-authenticated HTTP door, and they label their study on its page; an
unrestricted admin, in another browser context, sees both studies."""

from __future__ import annotations

import io
from urllib.parse import quote

import pytest
import requests
from pydicom import dcmread

from tests.dashboard.browsing import log_in, new_page, open_logged_in, path_and_query, shot
from tests.factories import make_instance
from tests.helpers import ServerProcess, run_cli
from tests.web.test_dicomweb import multipart

try:
    from playwright.sync_api import expect
except ImportError:  # the browser fixture skips (or fails in CI) with the reason
    expect = None

pytestmark = pytest.mark.browser
#: What of the hidden study would give it away if it appeared anywhere in the restricted user's page.
HIDDEN_GIVEAWAYS = ("HEIDI", "SECRET STUDY", "SCR999")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A server with two studies, one labelled trial-7, an admin and ``ruth`` (editor, trial-7 only)."""
    home = tmp_path_factory.mktemp("restricted") / "home"
    home.mkdir(parents=True)
    for name, role, labels in (("admin", "admin", []), ("ruth", "editor", ["--labels", "trial-7"])):
        done = run_cli("users", "add", name, "--role", role, *labels, "--password-stdin", "--home", str(home),
                       input=f"{name}-password\n")
        assert done.returncode == 0, done.stderr
    server = ServerProcess.start(home)
    url = f"http://127.0.0.1:{server.http_port}"
    admin = ("admin", "admin-password")
    files = {"trial": make_instance(PatientName="TRIAL^TOM", PatientID="TRL001", StudyDescription="TRIAL STUDY",
                                    Modality="CT", SeriesNumber=1, InstanceNumber=1),
             "hidden": make_instance(PatientName="HIDDEN^HEIDI", PatientID="SCR999",
                                     StudyDescription="SECRET STUDY", Modality="MR", SeriesNumber=1, InstanceNumber=1)}
    uids = {name: dcmread(io.BytesIO(raw)).StudyInstanceUID for name, raw in files.items()}
    body, content_type = multipart(list(files.values()))
    stored = requests.post(f"{url}/dicom-web/studies", data=body, headers={"Content-Type": content_type}, auth=admin)
    assert stored.status_code == 200, stored.text
    labelled = requests.put(f"{url}/api/studies/{uids['trial']}/labels/trial-7", auth=admin)
    assert labelled.status_code in (200, 201, 204), labelled.text
    yield url, uids, admin
    server.stop()


def studies_rows(page):
    return page.locator(".pd-studies .tabulator-row")


def assert_nothing_of_the_hidden_study(page, uid: str) -> None:
    text = page.content().upper()
    for giveaway in HIDDEN_GIVEAWAYS:
        assert giveaway not in text, giveaway
    assert page.locator(".pd-series-list .tabulator-row").count() == 0 and page.locator("canvas").count() == 0


def test_a_restricted_user_sees_only_their_study_and_labels_it(browser, served, tmp_path):
    url, uids, admin = served
    context, page = new_page(browser)
    doors: list[tuple[str, int]] = []  # every HTTP read of studies the page makes, with its status
    page.on("response", lambda r: doors.append((r.url, r.status))
            if any(part in r.url for part in ("/dicom-web/", "/wado", "/api/studies")) else None)
    page.goto(url + "/")
    log_in(page, "ruth")
    expect(studies_rows(page)).to_have_count(1, timeout=30_000)
    expect(studies_rows(page).first).to_contain_text("TRIAL, TOM")
    expect(studies_rows(page).first.locator(".tabulator-cell[tabulator-field='Labels']")).to_have_text("trial-7")
    expect(page.locator(".pd-studies")).not_to_contain_text("HEIDI")

    # A colleague's link to the other study, typed in the address bar: no such study, nothing of it.
    page.goto(f"{url}/study/{uids['hidden']}")
    expect(page.locator(".pd-no-study")).to_contain_text(f"No study with the UID {uids['hidden']}", timeout=60_000)
    page.locator(".bk-tab", has_text="Studies").wait_for(timeout=30_000)
    assert_nothing_of_the_hidden_study(page, uids["hidden"])
    shot(page, tmp_path, "restricted-hidden-link")

    # Back: the search again, still their one study.
    page.go_back()
    page.wait_for_selector(".pd-header", timeout=60_000)
    assert path_and_query(page) in ("/", "/?"), page.url
    expect(studies_rows(page)).to_have_count(1, timeout=30_000)
    expect(studies_rows(page).first).to_contain_text("TRIAL, TOM")

    # Their study: its thumbnail loads through the cookie door (scoped too), and they label it.
    studies_rows(page).first.locator(".tabulator-cell[tabulator-field='Date']").click()
    expect(page.locator(".pd-study-title")).to_contain_text("TRIAL STUDY", timeout=30_000)
    labels = page.locator(".pd-labels")
    expect(labels).to_contain_text("trial-7", timeout=30_000)
    thumbnail = page.locator("img.pd-thumb").first
    expect(thumbnail).to_be_visible(timeout=30_000)
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=thumbnail.element_handle(),
                           timeout=30_000)
    page.locator(".pd-label-new input").fill("teaching")
    page.get_by_role("button", name="Add label").click()
    expect(labels).to_contain_text("teaching", timeout=30_000)
    expect(page.locator(".pd-message")).to_contain_text("Added the label teaching")
    shown = requests.get(f"{url}/api/studies/{uids['trial']}/labels", auth=admin)
    assert shown.status_code == 200 and "teaching" in shown.text and "trial-7" in shown.text, shown.text
    # A bad label is said, and the page still shows both.
    page.locator(".pd-label-new input").fill("two words")
    page.get_by_role("button", name="Add label").click()
    expect(page.locator(".pd-message")).to_contain_text("Could not add the label", timeout=30_000)
    expect(labels).to_contain_text("teaching")
    # Their own way in (trial-7) has no ×; "teaching" has one.
    expect(page.get_by_role("button", name="teaching ×")).to_be_visible()
    assert page.get_by_role("button", name="trial-7 ×").count() == 0
    shot(page, tmp_path, "restricted-labelled")
    page.get_by_role("button", name="teaching ×").click()
    expect(page.locator(".pd-message")).to_contain_text("Removed the label teaching", timeout=30_000)
    expect(labels).not_to_contain_text("teaching")
    shown = requests.get(f"{url}/api/studies/{uids['trial']}/labels", auth=admin)
    assert "teaching" not in shown.text and "trial-7" in shown.text, shown.text

    thumbnails = [(u, s) for u, s in doors if "/thumbnail" in u]
    assert thumbnails and all(s == 200 for _, s in thumbnails), thumbnails
    visible = quote(uids["trial"], safe="")
    assert all(s == 200 for u, s in doors if visible in u or uids["trial"] in u), doors
    assert not [u for u, _ in doors if uids["hidden"] in u or quote(uids["hidden"], safe="") in u], doors
    assert page.outside == []
    context.close()


def test_an_unrestricted_admin_sees_both_studies(browser, served, tmp_path):
    url, uids, _ = served
    context, page = open_logged_in(browser, type("S", (), {"url": url})(), "admin")
    expect(studies_rows(page)).to_have_count(2, timeout=30_000)
    expect(page.locator(".pd-studies")).to_contain_text("HIDDEN, HEIDI")
    page.goto(f"{url}/study/{uids['hidden']}")
    expect(page.locator(".pd-study-title")).to_contain_text("SECRET STUDY", timeout=60_000)
    expect(page.locator(".pd-labels")).to_contain_text("No labels", timeout=30_000)
    shot(page, tmp_path, "admin-hidden-study")
    context.close()
