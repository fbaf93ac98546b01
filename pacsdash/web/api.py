"""The JSON API under ``/api`` (CONTRACT.md, "JSON API")."""

from __future__ import annotations

import hmac
import json
from pathlib import Path

from tornado.ioloop import IOLoop
from tornado.web import HTTPError

from pacsdash import __version__
from pacsdash.archive import store_many
from pacsdash.web.base import BaseHandler

#: Most paths one import request may name.
MAX_IMPORT_PATHS = 1000


class HealthHandler(BaseHandler):
    """``GET /api/health``: 200 once every listener is up (no login needed)."""

    def get(self) -> None:
        if not self.app.ready:
            self.write_json({"status": "starting"}, status=503)
            return
        self.write_json(
            {
                "status": "ok",
                "version": __version__,
                "aet": self.app.settings.server.aet,
                "dicom_port": self.app.dicom_port,
            }
        )


class LocalImportHandler(BaseHandler):
    """``POST /api/local/import``: the command line's ``import`` while the server runs.

    Only the owner of the home can read the token this needs; the files are
    read from this machine's disk, so nothing but their paths crosses HTTP.
    """

    def check_xsrf_cookie(self) -> None:  # token-authenticated, not a browser form
        return

    async def post(self) -> None:
        header = self.request.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ").strip()
        if not header.startswith("Bearer ") or not hmac.compare_digest(token, self.app.local_token):
            raise HTTPError(401, reason="a local token is required")
        try:
            body = json.loads(self.request.body or b"{}")
            paths = [Path(p) for p in body["paths"]]
        except (ValueError, KeyError, TypeError):
            raise HTTPError(400, reason='the body must be {"paths": [...]}') from None
        if len(paths) > MAX_IMPORT_PATHS:
            raise HTTPError(400, reason=f"at most {MAX_IMPORT_PATHS} paths per request")
        done = await IOLoop.current().run_in_executor(None, lambda: list(store_many(self.app.archive, paths)))
        results = [
            {"path": str(path), "error": str(result)}
            if isinstance(result, Exception)
            else {"path": str(path), "outcome": result.outcome.value}
            for path, result in done
        ]
        self.write_json({"results": results})


def api_routes(app) -> list:
    """Tornado routes of the JSON API."""
    return [
        (r"/api/health", HealthHandler, {"app": app}),
        (r"/api/local/import", LocalImportHandler, {"app": app}),
    ]

