"""``/admin`` and ``/activity`` answer 403 to a logged-in user who is not an admin.

Panel renders those pages for anyone logged in, and the page itself then
shows only a refusal (:func:`pacsdash.dashboard.app.only_admins`); by
CONTRACT.md a role that may not gets 403, as on every other route, so a
script or a proxy's log tells a refusal from a page. This Tornado output
transform sets that status from the request's signed session cookies
(:func:`pacsdash.web.auth.session_user`); the refusal page stays the body.
"""

from __future__ import annotations

from typing import Any

from tornado.httputil import HTTPHeaders, HTTPServerRequest
from tornado.web import OutputTransform, decode_signed_value

from pacsdash.access import Accounts, Role
from pacsdash.web.auth import session_user

#: Pages of the admin role alone.
ADMIN_PAGES = ("/admin", "/activity")


def admin_pages_transform(accounts: Accounts, cookie_secret: str) -> type[OutputTransform]:
    """An output transform class answering 403 on :data:`ADMIN_PAGES` for a logged-in non-admin."""

    class AdminPagesOnly(OutputTransform):
        def __init__(self, request: HTTPServerRequest) -> None:
            self.request = request

        def transform_first_chunk(self, status_code: int, headers: HTTPHeaders, chunk: bytes,
                                  finishing: bool) -> tuple[int, HTTPHeaders, bytes]:
            if status_code == 200 and self.request.path.rstrip("/") in ADMIN_PAGES and not self._admin():
                status_code = 403
            return status_code, headers, chunk

        def transform_chunk(self, chunk: bytes, finishing: bool) -> bytes:
            return chunk

        def _admin(self) -> bool:
            def signed(name: str, **options: Any) -> bytes | None:
                morsel = self.request.cookies.get(name)
                return decode_signed_value(cookie_secret, name, morsel.value if morsel else None, **options)

            name = session_user(signed, accounts)
            stamp = accounts.credential_stamp(name) if name else None
            return stamp is not None and Role(stamp[0]) is Role.ADMIN

    return AdminPagesOnly
