"""The admin page's Audit tab: its filters, pages and CSV without a browser (against
a real archive), and the tab in a real browser, showing a hostile user name as text."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest
import requests

from pacsdash.archive import audit
from pacsdash.archive.records import ActionRecord
from pacsdash.dashboard.admin_audit import AuditView, entries_csv, read_entries
from tests.helpers import ServerProcess, run_cli

STUDY_A, STUDY_B = "1.2.826.0.1.3680043.8.498.10", "1.2.826.0.1.3680043.8.498.11"


@pytest.fixture
def trail(archive):
    archive.record(ActionRecord(actor="vic", action="login", studies=[], address="10.0.0.1", outcome="failure"))
    archive.record(ActionRecord(actor="eve", action="anonymize", studies=[STUDY_A], address="10.0.0.2"))
    archive.record(ActionRecord(actor="eve", action="export", studies=[STUDY_A, STUDY_B], address="10.0.0.2"))
    for n in range(7):
        archive.record(ActionRecord(actor="ada", action="retrieve", studies=[STUDY_B], address=f"10.0.1.{n}"))
    return archive


def test_filters_give_the_rows_the_api_gives(trail):
    assert [e["user"] for e in read_entries(trail, user="eve")] == ["eve", "eve"]  # newest first
    [login] = read_entries(trail, action="login")
    assert (login["user"], login["outcome"], login["address"], login["studies"]) == ("vic", "failure", "10.0.0.1", [])
    assert {e["action"] for e in read_entries(trail, study=STUDY_A)} == {"anonymize", "export"}
    assert len(read_entries(trail, study=STUDY_B)) == 8
    tomorrow = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1)).date().isoformat()
    assert read_entries(trail, since=tomorrow) == []
    assert len(read_entries(trail, until=tomorrow)) == 10
    with pytest.raises(audit.BadFilter, match="action must be one of"):
        read_entries(trail, action="dance")
    with pytest.raises(audit.BadFilter, match="ISO-8601"):
        read_entries(trail, since="yesterday")


def test_the_view_pages_and_its_csv_is_the_cli_csv(trail):
    view = AuditView(trail, page_size=4)
    assert list(view.table.value.columns) == ["Time", "User", "Address", "Action", "Outcome", "Studies"]
    assert len(view.table.value) == 4 and view.newer.disabled and not view.older.disabled
    view.older.clicks += 1
    view.older.clicks += 1
    assert view.offset == 8 and len(view.table.value) == 2 and view.older.disabled
    assert list(view.table.value["User"]) == ["eve", "vic"]
    view.user.value = "ada"  # a new filter starts at the newest page
    assert view.offset == 0 and set(view.table.value["User"]) == {"ada"}
    view.user.value = ""
    view.study.value = STUDY_A
    assert list(view.table.value["Studies"]) == [f"{STUDY_A}\n{STUDY_B}", STUDY_A]
    text = view.csv_text()
    assert text == entries_csv(trail, study=STUDY_A)
    assert text == audit.as_csv(audit.entry(r) for r in trail.records(study=STUDY_A))  # what `pacsdash audit --csv` writes
    rows = list(csv.DictReader(io.StringIO(view._csv_file().read().decode("utf-8"))))
    assert [(r["user"], r["action"], r["studies"]) for r in rows] == [
        ("eve", "export", f"{STUDY_A}\\{STUDY_B}"), ("eve", "anonymize", STUDY_A)]
    view.since.value = "not a time"
    assert "ISO-8601" in view.notice.object and view.csv_text() == ""


def test_the_view_shows_nothing_to_someone_no_longer_admin(trail):
    state = {"admin": True}
    view = AuditView(trail, still_admin=lambda: state["admin"])
    assert len(view.table.value) == 10
    state["admin"] = False
    view.reload.clicks += 1
    assert len(view.table.value) == 0 and view.csv_text() == ""


@pytest.mark.browser
def test_the_audit_tab_in_a_browser_shows_a_hostile_name_as_text(browser, tmp_path):
    from playwright.sync_api import expect

    home = tmp_path / "home"
    assert run_cli("users", "add", "admin", "--role", "admin", "--password-stdin", "--home", str(home),
                   input="admin-password\n").returncode == 0
    server = ServerProcess.start(home)
    base = f"http://127.0.0.1:{server.http_port}"
    hostile = '<img src=x onerror="window.pwned=1">'
    try:
        assert requests.post(f"{base}/login", data={"username": hostile, "password": "nope"},
                             allow_redirects=False, timeout=30).status_code == 302
        context = browser.new_context(viewport={"width": 1366, "height": 768}, accept_downloads=True)
        page = context.new_page()
        page.goto(f"{base}/admin")
        page.fill("#username", "admin")
        page.fill("#password", "admin-password")
        page.click("button[type=submit]")
        page.get_by_text("Audit", exact=True).click(timeout=60_000)
        expect(page.get_by_text(hostile)).to_be_visible(timeout=30_000)
        assert page.evaluate("window.pwned") is None
        assert page.evaluate("document.documentElement.scrollWidth") <= 1366  # nothing wider than the window
        with page.expect_download() as download:
            page.get_by_role("button", name="Download CSV").click()
        rows = list(csv.DictReader(open(download.value.path(), encoding="utf-8")))
        assert hostile in [r["user"] for r in rows]
        context.close()
    finally:
        server.stop()
