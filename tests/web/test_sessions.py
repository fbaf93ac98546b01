"""Dashboard logins can be revoked: a logout, a new password, a new role or a
removed user ends every session of that user, for the API and for the
dashboard's own pages; the unsigned ``is_guest`` cookie names nobody."""

from __future__ import annotations

import re

import pytest
import requests
from bokeh.util.token import get_token_payload

from pacsdash.access import Accounts
from tests.helpers import ServerProcess, run_cli

PASSWORD = "a-long-password-1"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("sessions") / "home"
    for name, role in (("admin", "admin"), ("ann", "viewer"), ("bob", "editor")):
        added = run_cli("users", "add", name, "--role", role, "--password-stdin", "--home", str(home),
                        input=PASSWORD + "\n")
        assert added.returncode == 0, added.stderr
    running = ServerProcess.start(home)
    running.base = f"http://127.0.0.1:{running.http_port}"
    yield running
    running.stop()


def login(server, name: str) -> dict[str, str]:
    """The cookies a browser keeps after logging in as ``name``."""
    page = requests.post(f"{server.base}/login", data={"username": name, "password": PASSWORD},
                         allow_redirects=False, timeout=30)
    assert page.status_code == 302, page.text[:200]
    return dict(page.cookies)


def api_allows(server, cookies: dict[str, str]) -> bool:
    answer = requests.get(f"{server.base}/api/studies", cookies=cookies, timeout=30)
    assert answer.status_code in (200, 401), answer.text[:200]
    return answer.status_code == 200


def dashboard_allows(server, cookies: dict[str, str]) -> bool:
    """Whether Panel serves the dashboard page (else it sends the browser to /login)."""
    page = requests.get(f"{server.base}/", cookies=cookies, allow_redirects=False, timeout=60)
    assert page.status_code in (200, 302), page.status_code
    return page.status_code == 200


def test_login_cookies_are_lax_httponly(server):
    page = requests.post(f"{server.base}/login", data={"username": "ann", "password": PASSWORD},
                         allow_redirects=False, timeout=30)
    set_cookie = page.raw.headers.getlist("Set-Cookie")
    for name in ("user", "pacsdash_session"):
        line = next(c for c in set_cookie if c.startswith(name + "=") and "expires=Thu, 01 Jan 1970" not in c)
        assert "SameSite=Lax" in line and "HttpOnly" in line and "Path=/" in line, line
        assert "Secure" not in line  # plain HTTP here; Secure under HTTPS


def test_logout_ends_the_session_for_api_and_dashboard(server):
    kept = login(server, "ann")
    other_browser = login(server, "ann")
    assert api_allows(server, kept) and dashboard_allows(server, kept)
    requests.get(f"{server.base}/logout", cookies=kept, timeout=30)
    assert not api_allows(server, kept), "a cookie kept after logout still opens the API"
    assert not dashboard_allows(server, kept), "a cookie kept after logout still opens the dashboard"
    assert not api_allows(server, other_browser)  # logout ends every session of that user
    assert api_allows(server, login(server, "ann"))


@pytest.mark.parametrize("change", ["passwd", "role", "remove"])
def test_a_password_role_or_user_change_ends_the_sessions(server, change):
    cookies = login(server, "bob")
    assert api_allows(server, cookies) and dashboard_allows(server, cookies)
    home = str(server.home)
    if change == "passwd":
        done = run_cli("users", "passwd", "bob", "--password-stdin", "--home", home, input=PASSWORD + "\n")
    elif change == "role":  # as the admin page does it (no CLI command for it)
        Accounts(server.home / "accounts.sqlite").set_role("bob", "viewer")
        done = run_cli("users", "list", "--home", home)
    else:
        done = run_cli("users", "remove", "bob", "--home", home)
        assert done.returncode == 0, done.stderr
        done = run_cli("users", "add", "bob", "--role", "editor", "--password-stdin", "--home", home,
                       input=PASSWORD + "\n")
    assert done.returncode == 0, done.stderr
    assert not api_allows(server, cookies), change
    assert not dashboard_allows(server, cookies), change


def test_a_forged_or_mixed_cookie_is_refused(server):
    ann = login(server, "ann")
    admin = login(server, "admin")
    assert not api_allows(server, {"user": admin["user"], "pacsdash_session": ann["pacsdash_session"]})
    assert not api_allows(server, {"user": ann["user"]})  # Panel's cookie alone is not a session
    assert not api_allows(server, {**ann, "pacsdash_session": "ann:" + "0" * 32})


def test_is_guest_changes_nobody(server):
    assert not dashboard_allows(server, {"is_guest": "1"})
    cookies = login(server, "ann")
    page = requests.get(f"{server.base}/", cookies={**cookies, "is_guest": "1"}, allow_redirects=False, timeout=60)
    assert page.status_code == 200
    token = re.search(r'"token":\s*"([^"]+)"', page.text) or re.search(r"token=([A-Za-z0-9_.\-]+)", page.text)
    assert token, "no session token in the page"
    payload = get_token_payload(token.group(1))
    # pn.state.user reads the cookies of this payload: "is_guest" would make it "guest".
    assert "user" in payload["cookies"]
    assert "is_guest" not in payload["cookies"], payload["cookies"]
    assert api_allows(server, {**cookies, "is_guest": "1"})


def test_cookies_never_authorise_another_origin(server):
    cookies = login(server, "ann")
    assert api_allows(server, cookies)
    for headers in ({"Origin": "http://evil.example"}, {"Sec-Fetch-Site": "cross-site"},
                    {"Sec-Fetch-Site": "same-site", "Origin": "http://127.0.0.1:1"}):
        answer = requests.get(f"{server.base}/api/studies", cookies=cookies, headers=headers, timeout=30)
        assert answer.status_code == 401, headers
    same = requests.get(f"{server.base}/api/studies", cookies=cookies, timeout=30,
                        headers={"Origin": server.base, "Sec-Fetch-Site": "same-origin"})
    assert same.status_code == 200
