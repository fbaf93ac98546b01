"""Dashboard login: Panel's login flow, checked against the pacsdash users.

Panel's basic login compares plain-text passwords and its pages load styles
from a CDN; this provider checks the salted hashes of
:class:`~pacsdash.access.Accounts` and serves its own pages, which need
nothing from outside (a closed hospital network).
"""

from __future__ import annotations

import secrets
from pathlib import Path

from typing import Any, Callable

from jinja2 import Environment, FileSystemLoader, select_autoescape
from panel.auth import BasicAuthProvider, BasicLoginHandler, LogoutHandler, _validate_next_url
from panel.io.state import state
from tornado.escape import url_escape
from tornado.ioloop import IOLoop
from tornado.web import RequestHandler
from tornado.websocket import WebSocketHandler

from pacsdash.access import Accounts
from pacsdash.access.throttle import PASSWORD_CHECKS, TooManyAttempts, throttle_for
from pacsdash.web.auth import SESSION_COOKIE, SESSION_DAYS, session_user, session_value

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


def cookie_options(handler: RequestHandler) -> dict[str, Any]:
    """Attributes of every login cookie: HttpOnly, SameSite=Lax (RFC 6265bis
    5.4.7: not sent with another site's subrequests or form posts), Secure
    when served over HTTPS, for the whole site, :data:`SESSION_DAYS` long."""
    return {"expires_days": SESSION_DAYS, "httponly": True, "samesite": "Lax", "path": "/",
            "secure": handler.request.protocol == "https"}


def clear_login_cookies(handler: RequestHandler) -> None:
    """Forget every cookie that names a user, Panel's and ours."""
    for name in ("user", "id_token", "is_guest", SESSION_COOKIE, "access_token", "refresh_token", "oauth_expiry"):
        handler.clear_cookie(name, path="/")


def dashboard_user(accounts: Accounts) -> Callable[[RequestHandler], str | None]:
    """Panel's check of every dashboard page and websocket: the user named by
    the signed cookies whose session stamp is current (:func:`session_user`),
    else None (Panel then sends the browser to the login page). The unsigned
    ``is_guest`` cookie is dropped from the request first, so Panel never
    turns the session into "guest" (``pn.state.user`` reads it)."""

    def get_user(handler: RequestHandler) -> str | None:
        handler.request.cookies.pop("is_guest", None)
        name = session_user(handler.get_secure_cookie, accounts)
        if name and isinstance(handler, WebSocketHandler):
            state._active_users[name] += 1  # noqa: SLF001 - as Panel's own provider counts them
        return name

    return get_user


def make_auth_provider(accounts: Accounts, on_login: Callable[[str, str, bool], None] | None = None
                       ) -> BasicAuthProvider:
    """An auth provider whose login checks pacsdash users and whose sessions
    can be revoked (logout, password, role or user change); ``on_login(user,
    address, succeeded)`` hears of every login tried (the audit trail)."""

    throttle = throttle_for(accounts)
    heard = on_login or (lambda *_: None)

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
            heard(username, address, user is not None)
            if user is None:
                throttle.failed(username, address)
                self.redirect(self._login_endpoint + "?error=" + url_escape("Invalid username or password!"))
                return
            throttle.succeeded(username)
            self.set_current_user(user.name)
            self.redirect(_validate_next_url(self.get_cookie("next_url", "/")))

        def set_current_user(self, user: str) -> None:
            """Panel's signed ``user`` cookie and ours, naming the session's stamp."""
            clear_login_cookies(self)
            if not user:
                return
            stamp = accounts.session_stamp(user)
            if stamp is None:
                return
            options = cookie_options(self)
            self.set_secure_cookie("user", user, **options)
            self.set_secure_cookie(SESSION_COOKIE, session_value(user, stamp), **options)

    class Logout(LogoutHandler):
        _logout_template = _ENV.get_template("logout.html")

        def get(self) -> None:
            """End this user's sessions everywhere (a new stamp), then forget the cookies."""
            name = session_user(self.get_secure_cookie, accounts)
            if name:
                accounts.revoke_sessions(name)
            clear_login_cookies(self)
            super().get()

    class Provider(BasicAuthProvider):
        @property
        def get_user(self):  # type: ignore[override]
            return dashboard_user(accounts)

        @property
        def login_handler(self):  # type: ignore[override]
            LoginHandler._login_endpoint = self._login_endpoint
            return LoginHandler

        @property
        def logout_handler(self):  # type: ignore[override]
            Logout._login_endpoint = self._login_endpoint
            return Logout

    return Provider(login_endpoint="/login", logout_endpoint="/logout")
