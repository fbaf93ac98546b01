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
from panel.auth import BasicAuthProvider, BasicLoginHandler, LogoutHandler, _validate_next_url
from tornado.escape import url_escape
from tornado.ioloop import IOLoop

from pacsdash.access import Accounts
from pacsdash.access.throttle import PASSWORD_CHECKS, TooManyAttempts, throttle_for

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

    throttle = throttle_for(accounts)

    class LoginHandler(BasicLoginHandler):
        _login_template = _ENV.get_template("login.html")

        async def post(self) -> None:
            """Check the password off the event loop (a bounded pool), unless this
            name or address failed too often lately: then 429 and Retry-After."""
            username = self.get_argument("username", "")[:256]
            password = self.get_argument("password", "")[:1024]
            address = self.request.remote_ip or ""
            try:
                throttle.check(username, address)
            except TooManyAttempts as exc:
                self.set_status(429)
                self.set_header("Retry-After", str(exc.retry_after))
                self.write(self._login_template.render(login_endpoint=self._login_endpoint, errormessage=str(exc)))
                return
            user = await IOLoop.current().run_in_executor(PASSWORD_CHECKS, accounts.authenticate, username, password)
            if user is None:
                throttle.failed(username, address)
                self.redirect(self._login_endpoint + "?error=" + url_escape("Invalid username or password!"))
                return
            throttle.succeeded(username)
            self.set_current_user(username)
            self.redirect(_validate_next_url(self.get_cookie("next_url", "/")))

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
