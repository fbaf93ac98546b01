"""What every HTTP handler shares: the app context, JSON replies, errors."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from tornado.web import RequestHandler

from pacsdash.access import Accounts
from pacsdash.archive import Archive
from pacsdash.config import Settings

LOGGER = logging.getLogger(__name__)


@dataclass
class AppContext:
    """Everything a handler may use, handed to it at construction."""

    settings: Settings
    archive: Archive
    accounts: Accounts
    #: Token of local command-line calls (see :mod:`pacsdash.runtime`).
    local_token: str
    dicom_port: int = 0
    ready: bool = False


class BaseHandler(RequestHandler):
    """A handler with the app context and JSON helpers."""

    def initialize(self, app: AppContext) -> None:
        self.app = app

    def write_json(self, value: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json.dumps(value, ensure_ascii=False))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        # Never echo request bytes into the status line; a short JSON body.
        message = self._reason if self._reason and status_code < 500 else "internal error"
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json.dumps({"error": message, "status": status_code}))
