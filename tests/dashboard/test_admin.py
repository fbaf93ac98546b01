"""The admin page at /admin in a real browser (Debian's chromium, Playwright), against a
running pacsdash and dcmtk's storescp as the peer; outcomes read from the accounts file,
the peer's own log and the server's log."""

from __future__ import annotations

import re
import subprocess

import pytest
import requests

from pacsdash.access import Accounts, Role
from tests.helpers import VALID, ServerProcess, free_port, have_dcmtk, run_cli, wait_for_port, wait_until
from tests.web.test_dicomweb import multipart

try:
    from playwright.sync_api import expect
except ImportError:  # the browser fixture skips (or fails in CI) with the reason
    expect = None

LOCAL = ("http://127.0.0.1", "ws://127.0.0.1", "data:", "blob:")
pytestmark = pytest.mark.browser
SIZES = [(1366, 768), (1920, 1080)]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("admin") / "home"
    home.mkdir()
    (home / "pacsdash.toml").write_text('[modalities.fromconfig]\naet = "CONFIGURED"\nhost = "127.0.0.1"\nport = 104\n')
    for role in ("admin", "viewer"):
        added = run_cli("users", "add", role, "--role", role, "--password-stdin", "--home", str(home),
                        input=f"{role}-password\n")
        assert added.returncode == 0, added.stderr
    server = ServerProcess.start(home)
    base = f"http://127.0.0.1:{server.http_port}"
    body, content_type = multipart([VALID[0].read_bytes()])
    assert requests.post(f"{base}/dicom-web/studies", data=body, headers={"Content-Type": content_type},
                         auth=("admin", "admin-password")).status_code == 200
    study = requests.get(f"{base}/api/studies", auth=("admin", "admin-password")).json()
    uid = (study["studies"] if isinstance(study, dict) else study)[0]["StudyInstanceUID"]
    assert requests.post(f"{base}/api/studies/{uid}/anonymize", json={},
                         auth=("admin", "admin-password")).status_code == 200  # leaves an action record
    server.study_uid = uid
    yield server
    server.stop()


@pytest.fixture
def storescp(tmp_path):
    """dcmtk's storescp on a free loopback port, logging verbosely to a file."""
    if not have_dcmtk():
        pytest.skip("dcmtk is not installed")
    port = free_port()
    log = tmp_path / "storescp.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(["/usr/bin/storescp", "-d", "-aet", "ADMINSCP", "-od", str(tmp_path), str(port)],
                                   stdout=out, stderr=subprocess.STDOUT)
    wait_for_port(port)
    yield port, log
    process.terminate()
    process.wait(10)


def accounts(server) -> Accounts:
    return Accounts(server.home / "accounts.sqlite")


def open_page(browser, server, user: str | None, password: str = "", path: str = "/admin",
              size: tuple[int, int] = (1366, 768)):
    """A new browser context logged in as ``user`` (or not), showing ``path``."""
    context = browser.new_context(viewport={"width": size[0], "height": size[1]})
    page = context.new_page()
    page.outside = []
    page.dialogs = []
    page.on("request", lambda r: page.outside.append(r.url) if not r.url.startswith(LOCAL) else None)
    page.on("dialog", lambda d: (page.dialogs.append(d.message), d.dismiss()))
    base = f"http://127.0.0.1:{server.http_port}"
    if user is not None:
        page.goto(f"{base}/login")
        page.fill("#username", user)
        page.fill("#password", password or f"{user}-password")
        page.click("button[type=submit]")
        page.wait_for_url(lambda url: "/login" not in url, timeout=30_000)
    page.goto(f"{base}{path}")
    return context, page


def open_admin(browser, server, size=(1366, 768)):
    context, page = open_page(browser, server, "admin", size=size)
    page.wait_for_selector("text=Administration", timeout=60_000)
    page.wait_for_selector(".tabulator-row", timeout=30_000)
    return context, page


def tab(page, name: str) -> None:
    page.locator(".bk-tab", has_text=name).first.click()


def field(page, label: str, card: str | None = None):
    """The input under the widget label ``label`` (inside the card titled ``card``)."""
    scope = page.locator(".card", has_text=card) if card else page
    return scope.locator(".bk-input-group", has=page.locator(f"label:text-is('{label}')")).locator("input, select").first


def click_button(page, name: str) -> None:
    page.locator("button", has_text=name).first.click()


def notice(page, text: str) -> None:
    expect(page.locator(".pd-ok, .pd-error").filter(has_text=text).first).to_be_visible(timeout=30_000)


def cell(page, text: str):
    """Table cells showing exactly ``text``."""
    return page.get_by_role("gridcell", name=text, exact=True)


def row(page, text: str):
    """Table rows with a cell showing exactly ``text``."""
    return page.get_by_role("row").filter(has=cell(page, text))


def test_admin_manages_users(browser, server, tmp_path):
    context, page = open_admin(browser, server)
    page.screenshot(path=tmp_path / "users.png")
    expect(row(page, "viewer")).to_be_visible()
    field(page, "Name", "Add a user").fill("carol")
    field(page, "Role", "Add a user").select_option("viewer")
    field(page, "Password", "Add a user").fill("9-chars!!")
    field(page, "Password again", "Add a user").fill("9-chars!!")
    click_button(page, "Add user")
    notice(page, "the password must be at least 10 characters long")
    assert accounts(server).credential_stamp("carol") is None
    field(page, "Password", "Add a user").fill("carol-pass-1")
    field(page, "Password again", "Add a user").fill("carol-pass-1")
    click_button(page, "Add user")
    notice(page, "added user carol (viewer)")
    assert accounts(server).authenticate("carol", "carol-pass-1").role is Role.VIEWER
    expect(row(page, "carol")).to_be_visible()

    row(page, "carol").click()
    change = page.locator(".card", has_text="Change the selected user")
    expect(change.locator("text=Selected:")).to_contain_text("carol")
    field(page, "Role", "Change the selected user").select_option("editor")
    click_button(page, "Change role")
    notice(page, "user carol is now editor")
    assert accounts(server).credential_stamp("carol")[0] == "editor"

    field(page, "New password", "Change the selected user").fill("carol-pass-2")
    field(page, "New password again", "Change the selected user").fill("carol-other")
    click_button(page, "Reset password")
    notice(page, "the passwords differ")
    field(page, "New password", "Change the selected user").fill("carol-p-2")
    field(page, "New password again", "Change the selected user").fill("carol-p-2")
    click_button(page, "Reset password")
    notice(page, "the password must be at least 10 characters long")
    assert accounts(server).authenticate("carol", "carol-pass-1") is not None  # unchanged
    field(page, "New password", "Change the selected user").fill("carol-pass-2")
    field(page, "New password again", "Change the selected user").fill("carol-pass-2")
    click_button(page, "Reset password")
    notice(page, "changed the password of carol")
    assert accounts(server).authenticate("carol", "carol-pass-2") is not None
    assert accounts(server).authenticate("carol", "carol-pass-1") is None

    carol, carol_page = open_page(browser, server, "carol", "carol-pass-2", path="/")
    carol_page.wait_for_selector("text=carol (editor)", timeout=60_000)  # the new password logs in
    carol.close()

    row(page, "admin").click()  # the only admin: neither demoted nor removed
    field(page, "Role", "Change the selected user").select_option("viewer")
    click_button(page, "Change role")
    notice(page, "last admin")
    click_button(page, "Remove user")
    click_button(page, "Yes, remove admin")
    notice(page, "last admin")
    assert accounts(server).credential_stamp("admin")[0] == "admin"

    row(page, "carol").click()
    click_button(page, "Remove user")
    click_button(page, "Yes, remove carol")
    notice(page, "removed user carol")
    assert accounts(server).credential_stamp("carol") is None
    expect(row(page, "carol")).to_have_count(0)
    page.screenshot(path=tmp_path / "users-after.png")

    tab(page, "Log")  # the changes are in the server's log, with who made them
    field(page, "Text").fill("carol")
    field(page, "Text").press("Enter")
    expect(page.locator(".tabulator-cell", has_text="removed user carol (by admin admin")).to_be_visible(timeout=30_000)
    expect(page.locator(".tabulator-cell", has_text="added user carol (viewer)")).to_be_visible()
    page.screenshot(path=tmp_path / "log.png")
    assert page.outside == [], f"requests left the machine: {page.outside}"
    context.close()


def test_admin_adds_echoes_edits_removes_a_peer(browser, server, storescp, tmp_path):
    port, scp_log = storescp
    context, page = open_admin(browser, server)
    tab(page, "Peers")
    expect(row(page, "fromconfig")).to_be_visible(timeout=30_000)
    field(page, "Name").fill("scp1")
    field(page, "AE title").fill("ADMINSCP")
    field(page, "Host").fill("127.0.0.1")
    field(page, "Port").fill(str(port))
    field(page, "Port").press("Enter")
    page.locator("label", has_text="get").locator("input").uncheck()
    click_button(page, "Add peer")
    notice(page, f"added peer scp1: ADMINSCP@127.0.0.1:{port} may store,find,move")
    peer = accounts(server).modality("scp1")
    assert (peer.aet, peer.host, peer.port, peer.allow) == ("ADMINSCP", "127.0.0.1", port, ("store", "find", "move"))

    click_button(page, "Echo")
    notice(page, f"C-ECHO ADMINSCP@127.0.0.1:{port}: success (status 0x0000)")
    wait_until(lambda: "Received Echo Request" in scp_log.read_text(errors="replace"), 10, what="storescp's log")
    log = scp_log.read_text(errors="replace")
    assert re.search(r"Called Application Name:\s+ADMINSCP", log) and re.search(r"Calling Application Name:\s+PACSDASH", log)
    page.screenshot(path=tmp_path / "peer-echoed.png")

    row(page, "scp1").click()
    field(page, "AE title").fill("EDITED")
    field(page, "Port").fill(str(port + 1 if port < 65535 else port - 1))
    field(page, "Port").press("Enter")
    click_button(page, "Save changes")
    notice(page, "changed peer scp1: EDITED@127.0.0.1")
    assert accounts(server).modality("scp1").aet == "EDITED"
    click_button(page, "Echo")  # nothing listens there now
    notice(page, "failed")

    row(page, "fromconfig").click()
    click_button(page, "Save changes")
    notice(page, "defined in pacsdash.toml")

    row(page, "scp1").click()
    click_button(page, "Remove peer")
    click_button(page, "Yes, remove scp1")
    notice(page, "removed peer scp1")
    assert accounts(server).modality("scp1") is None
    expect(row(page, "scp1")).to_have_count(0)
    assert page.outside == [] and page.dialogs == []
    context.close()


def test_outside_values_are_shown_as_text(browser, server, tmp_path):
    hostile_host = "<img/src=x/onerror=alert(1)>"
    accounts(server).add_modality("hostile", "<b>AE</b>", hostile_host, 11112)
    try:
        context, page = open_admin(browser, server)
        tab(page, "Peers")
        expect(cell(page, "<b>AE</b>")).to_be_visible(timeout=30_000)
        row(page, "hostile").click()
        click_button(page, "Echo")
        notice(page, f"<b>AE</b>@{hostile_host}:11112")
        assert page.locator(".tabulator-cell img, .pd-error img, .pd-ok img").count() == 0
        assert page.dialogs == []
        context.close()
    finally:
        accounts(server).remove_modality("hostile")


def test_settings_and_action_records(browser, server, tmp_path):
    context, page = open_admin(browser, server)
    tab(page, "Settings")
    settings = page.locator("table.pd-settings")
    expect(settings).to_contain_text("accept_unknown_store")
    expect(settings).to_contain_text("CONFIGURED")
    assert "cookie_secret" not in page.content() and "token" not in settings.inner_text()
    tab(page, "Log")
    tab(page, "Actions on studies")
    # the other tests' user_change entries come first, newest first: only anonymizations, then
    field(page, "Action").select_option("anonymize")
    expect(cell(page, "anonymize").first).to_be_visible(timeout=30_000)
    expect(page.locator(".tabulator-cell", has_text=server.study_uid).first).to_be_visible()
    field(page, "User").fill("nobody")
    field(page, "User").press("Enter")
    expect(cell(page, "anonymize")).to_have_count(0, timeout=30_000)
    context.close()


def test_a_viewer_is_refused_and_a_stranger_sent_to_login(browser, server, tmp_path):
    context, page = open_page(browser, server, "viewer")
    page.wait_for_selector("text=This page is for administrators", timeout=60_000)
    content = page.content()
    assert "fromconfig" not in content and "admin-password" not in content and page.locator(".tabulator").count() == 0
    page.screenshot(path=tmp_path / "viewer-refused.png")
    context.close()
    context, page = open_page(browser, server, None)
    page.wait_for_selector("#username", timeout=30_000)
    assert "/login" in page.url and "fromconfig" not in page.content()
    context.close()


def overlaps(a: dict, b: dict) -> bool:
    return not (a["x"] + a["width"] <= b["x"] or b["x"] + b["width"] <= a["x"]
                or a["y"] + a["height"] <= b["y"] or b["y"] + b["height"] <= a["y"])


@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
def test_layout_fits(browser, server, tmp_path, size):
    """Every tab at the common screen sizes: nothing wider than the window, no part over another."""
    context, page = open_admin(browser, server, size)
    for name in ("Users", "Peers", "Settings", "Log"):
        tab(page, name)
        page.wait_for_timeout(500)
        path = tmp_path / f"admin-{name.lower()}-{size[0]}x{size[1]}.png"
        page.screenshot(path=path, full_page=True)
        assert page.evaluate("document.documentElement.scrollWidth") <= size[0], f"{name} is wider than the window"
        parts = [page.locator(f"{sel}:visible").first.bounding_box()
                 for sel in (".tabulator", ".card", "table.pd-settings") if page.locator(f"{sel}:visible").count()]
        if len(parts) == 2:
            assert not overlaps(*parts), f"{name}: the table and the form overlap"
        for box in parts:
            assert box["x"] >= 0 and box["x"] + box["width"] <= size[0], f"{name}: a part is cut at the side"
    print(f"screenshots in {tmp_path}")
    context.close()


def test_an_admin_demoted_while_the_page_is_open_changes_nothing(browser, server, tmp_path):
    accounts(server).add_user("boss", "admin", "boss-password")
    try:
        context, page = open_page(browser, server, "boss", "boss-password")
        page.wait_for_selector("text=Administration", timeout=60_000)
        expect(row(page, "viewer")).to_be_visible(timeout=30_000)
        accounts(server).set_role("boss", "viewer")  # from elsewhere (the CLI, another admin)
        field(page, "Name", "Add a user").fill("mallory")
        field(page, "Password", "Add a user").fill("mallory-password")
        field(page, "Password again", "Add a user").fill("mallory-password")
        click_button(page, "Add user")
        notice(page, "you are no longer an admin: nothing was changed")
        assert accounts(server).credential_stamp("mallory") is None
        expect(row(page, "viewer")).to_have_count(0)  # the list is gone too
        page.screenshot(path=tmp_path / "demoted.png")
        context.close()
    finally:
        accounts(server).remove_user("boss")
