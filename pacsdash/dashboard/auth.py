"""Dashboard login: Panel's login flow, checked against the pacsdash users.

Panel's basic login compares plain-text passwords and its pages load styles
from a CDN; this provider checks the salted hashes of
:class:`~pacsdash.access.Accounts` and serves its own pages, which need
nothing from outside (a closed hospital network).
"""

from __future__ import annotations

import secrets
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from panel.auth import BasicAuthProvider, BasicLoginHandler, LogoutHandler

from pacsdash.access import Accounts

TEMPLATES = Path(__file__).parent / "templates"
_ENV = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]))


def cookie_secret(run_path: Path) -> str:
    """The secret signing login cookies, kept in the home (owner-only) so
    that logins survive a restart."""
    path = Path(run_path) / "cookie_secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(48))
    return path.read_text().strip()


def make_auth_provider(accounts: Accounts) -> BasicAuthProvider:
    """An auth provider whose login checks pacsdash users."""

    class LoginHandler(BasicLoginHandler):
        _login_template = _ENV.get_template("login.html")

        def _validate(self, username: str, password: str) -> bool:
            return accounts.authenticate(username, password) is not None

    class Logout(LogoutHandler):
        _logout_template = _ENV.get_template("logout.html")

    class Provider(BasicAuthProvider):
        @property
        def login_handler(self):  # type: ignore[override]
            LoginHandler._login_endpoint = self._login_endpoint
            return LoginHandler

        @property
        def logout_handler(self):  # type: ignore[override]
            Logout._login_endpoint = self._login_endpoint
            return Logout

    return Provider(login_endpoint="/login", logout_endpoint="/logout")
