"""Links in a real browser: /study/{uid}, /patient/{id}, the search state in the URL, back and forward."""

from __future__ import annotations

from urllib.parse import parse_qs, quote, urlsplit

import pytest

from tests.dashboard.browsing import first_study, log_in, new_page, open_logged_in, path_and_query, shot, start
from tests.helpers import run_cli

try:
    from playwright.sync_api import expect
except ImportError:  # the browser fixture skips (or fails in CI) with the reason
    expect = None

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    served = start(tmp_path_factory.mktemp("links") / "home", users=("admin", "viewer", "gone"))
    yield served
    served.server.stop()


def studies_rows(page):
    return page.locator(".tabulator-row")


def test_a_shared_link_opens_the_study_for_another_user_and_refuses_a_logged_out_one(browser, served, tmp_path):
    uid = first_study(served)
    context, page = open_logged_in(browser, served, "admin")
    name = page.get_by_placeholder("e.g. smith or müller*")
    name.fill("link^00")
    name.press("Enter")
    expect(studies_rows(page)).to_have_count(1, timeout=30_000)
    studies_rows(page).first.locator(".tabulator-cell[tabulator-field='Date']").click()
    expect(page.locator(".pd-study-title")).to_contain_text("LINK STUDY 00", timeout=30_000)
    # The second series, chosen in the list: the URL names it.
    page.locator(".pd-series-list .tabulator-row", has_text="SECOND SERIES").click()
    page.wait_for_function(f"() => window.location.search.includes('series={served.series[1]}')", timeout=30_000)
    assert urlsplit(page.url).path == f"/study/{uid}"
    assert parse_qs(urlsplit(page.url).query)["name"] == ["link^00"]
    shown = page.locator(".pd-link input").first
    expect(shown).to_have_value(page.url, timeout=30_000)  # the copyable link is the address
    link = shown.input_value()
    shot(page, tmp_path, "link-admin-study")
    context.close()

    # Logged out: the link leads to the login page, and nothing of the study is sent.
    context, page = new_page(browser)
    response = page.goto(link)
    assert "/login" in page.url and "next=" in page.url
    assert "LINK STUDY 00" not in page.content() and uid not in page.content().replace(quote(uid, safe=""), "")
    assert response is not None and response.status == 200
    shot(page, tmp_path, "link-logged-out")
    # After login (another user), the link itself opens: the study and its second series.
    log_in(page, "viewer")
    assert page.url == link
    expect(page.locator(".pd-study-title")).to_contain_text("LINK STUDY 00", timeout=30_000)
    expect(page.locator(".pd-series-list .tabulator-row.tabulator-selected")).to_contain_text("SECOND SERIES",
                                                                                               timeout=30_000)
    page.locator(".bk-tab", has_text="Studies").click()  # the search of the link, behind the study
    expect(page.get_by_placeholder("e.g. smith or müller*")).to_have_value("link^00", timeout=30_000)
    expect(studies_rows(page)).to_have_count(1, timeout=30_000)
    assert page.outside == []
    shot(page, tmp_path, "link-viewer-study")
    context.close()


def test_the_search_state_in_a_url_is_restored(browser, served, tmp_path):
    path = "/?name=link&mod=CT&sort=PatientID&page=0&acc=A00*"
    context, page = open_logged_in(browser, served, "viewer", path)
    # A000..A009 of CT: k = 1, 2, 4, 5, 7, 8 (k % 3 != 0) among A000..A009.
    expect(studies_rows(page)).to_have_count(6, timeout=30_000)
    ids = [c.inner_text() for c in page.locator(".tabulator-cell[tabulator-field='Patient ID']").all()]
    assert ids == ["LNK01", "LNK02", "LNK04", "LNK05", "LNK07", "LNK08"]
    expect(page.get_by_placeholder("e.g. smith or müller*")).to_have_value("link")
    context.close()

    # A later page, sorted descending: page 2 of 20 CT studies by 25... use a page size of 25: 20 fit in one
    # page, so ask for every modality (30 studies): page 1 holds the last 5.
    context, page = open_logged_in(browser, served, "viewer", "/?name=link&sort=-PatientID&page=1")
    expect(studies_rows(page)).to_have_count(5, timeout=30_000)
    ids = [c.inner_text() for c in page.locator(".tabulator-cell[tabulator-field='Patient ID']").all()]
    assert ids == ["LNK04", "LNK03", "LNK02", "LNK01", "LNK00"]
    expect(page.locator("text=30 studies, page 2 of 2")).to_be_visible()
    # A change in the page goes to the URL: the previous page, then a modality.
    page.get_by_role("button", name="◀ Previous").click()
    page.wait_for_function("() => !window.location.search.includes('page=')", timeout=30_000)
    assert parse_qs(urlsplit(page.url).query) == {"name": ["link"], "sort": ["-PatientID"]}
    shot(page, tmp_path, "search-restored")
    context.close()


def test_back_and_forward_move_between_states(browser, served, tmp_path):
    context, page = open_logged_in(browser, served, "viewer")
    expect(studies_rows(page).first).to_be_visible(timeout=30_000)
    name = page.get_by_placeholder("e.g. smith or müller*")
    name.fill("link^07")
    name.press("Enter")
    expect(studies_rows(page)).to_have_count(1, timeout=30_000)
    page.wait_for_function("() => window.location.search.includes('name=')", timeout=30_000)
    studies_rows(page).first.locator(".tabulator-cell[tabulator-field='Date']").click()
    expect(page.locator(".pd-study-title")).to_contain_text("LINK STUDY 07", timeout=30_000)
    page.wait_for_function("() => window.location.pathname.startsWith('/study/')", timeout=30_000)
    page.go_back()
    page.wait_for_function("() => window.location.pathname === '/'", timeout=30_000)
    expect(page.locator(".bk-tab.bk-active")).to_have_text("Studies", timeout=30_000)
    expect(name).to_have_value("link^07")
    page.go_back()  # before the name was typed
    page.wait_for_function("() => !window.location.search.includes('name=')", timeout=30_000)
    expect(name).to_have_value("", timeout=30_000)
    expect(studies_rows(page)).to_have_count(25, timeout=30_000)
    page.go_forward()
    page.go_forward()
    page.wait_for_function("() => window.location.pathname.startsWith('/study/')", timeout=30_000)
    expect(page.locator(".bk-tab.bk-active")).to_have_text("Study", timeout=30_000)
    expect(page.locator(".pd-study-title")).to_contain_text("LINK STUDY 07")
    shot(page, tmp_path, "forward-to-study")
    context.close()


def test_a_patient_link_and_bad_links(browser, served, tmp_path):
    context, page = open_logged_in(browser, served, "viewer", "/patient/LNK03")
    expect(page.locator(".pd-patient-name")).to_contain_text("LINK, 03", timeout=30_000)
    expect(page.locator(".pd-patient-studies")).to_contain_text("LINK STUDY 03")
    expect(page.locator(".pd-link input").first).to_have_value(f"{served.url}/patient/LNK03")
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    # Neither a UID nor an ID from a URL is trusted: shown as text, never as HTML.
    page.goto(served.url + "/patient/" + quote("<img src=x onerror=alert(1)>", safe=""))
    expect(page.locator(".pd-patient-name, dl.pd-patient, p").filter(has_text="No patient with the ID")
           ).to_contain_text("<img src=x onerror=alert(1)>", timeout=30_000)
    page.goto(served.url + "/study/" + quote("1.2.3'<b>x</b>", safe=""))
    expect(page.locator(".pd-link-problem")).to_contain_text("<b>x</b>", timeout=30_000)
    assert page.locator("img[src=x]").count() == 0 and page.locator("b", has_text="x").count() == 0
    page.goto(served.url + "/study/1.2.3.4.5")
    expect(page.locator(".pd-no-study")).to_contain_text("No study with the UID 1.2.3.4.5", timeout=30_000)
    page.goto(served.url + "/?page=-1&sort=Nope&where=NotAKeyword%3D1")
    expect(page.locator(".pd-link-problem")).to_contain_text("not a DICOM keyword", timeout=30_000)
    page.wait_for_function("() => window.location.search === ''", timeout=10_000)  # the dropped parts are gone
    assert path_and_query(page) == "/"
    assert dialogs == []
    shot(page, tmp_path, "bad-link")
    context.close()


def test_a_removed_user_gets_a_clear_message(browser, served, tmp_path):
    uid = first_study(served)
    context, page = open_logged_in(browser, served, "gone")
    removed = run_cli("users", "remove", "gone", "--home", str(served.home))
    assert removed.returncode == 0, removed.stderr
    page.goto(f"{served.url}/study/{uid}")
    if "/login" not in page.url:  # still logged in by cookie: the page says why nothing is shown
        expect(page.locator(".pd-refused")).to_contain_text("no longer exists", timeout=30_000)
    assert "LINK STUDY 00" not in page.content()
    shot(page, tmp_path, "removed-user")
    context.close()
