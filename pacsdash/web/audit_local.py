"""``POST /api/local/audit``: the command line's user and peer changes into the audit trail.

While the server runs, only its process may write the index; ``pacsdash
users ...`` and ``pacsdash modalities ...`` change the accounts file
themselves and hand the audit entry of the change here
(:mod:`pacsdash.access.changes`). Only the local command line's token is
accepted (as ``POST /api/local/import``), never a user's credentials, and
only entries of action ``user_change`` by a ``cli:`` actor.
"""

from __future__ import annotations

import hmac
import json

from tornado.ioloop import IOLoop

from pacsdash.access import changes
from pacsdash.web.base import ApiError, BaseHandler, bad_request


class LocalAuditHandler(BaseHandler):
    """``POST /api/local/audit`` with :func:`pacsdash.access.changes.as_json`'s body;
    answers ``{"id": N}`` once the entry is in the index."""

    async def post(self) -> None:
        header = self.request.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ").strip().encode()
        if not header.startswith("Bearer ") or not hmac.compare_digest(token, self.app.local_token.encode()):
            raise ApiError(401, "this route is for the command line on the server's machine")
        try:
            record = changes.from_json(json.loads(self.request.body or b"{}"), self.request.remote_ip or "")
        except ValueError as exc:  # BadChange, or not JSON
            raise bad_request(str(exc) if isinstance(exc, changes.BadChange) else "the body must be JSON") from None
        number = await IOLoop.current().run_in_executor(None, self.app.archive.record, record)
        self.write_json({"id": number})
