"""Loopback HTTP servers for the OHIF tests: OHIF's static build, and a proxy.

:class:`ViewerServer` serves OHIF's ``dist/`` folder the way OHIF's own
``serve.json`` asks: any path that is not a file gets ``index.html`` (single
page app routes such as ``/viewer?StudyInstanceUIDs=...``), and
``/app-config.js`` is the configuration the test wrote. Given an ``upstream``
it is also a reverse proxy: ``/dicom-web/...`` goes to pacsdash, with the
``Host`` header rewritten to the upstream and the browser's host passed on in
``Forwarded`` (RFC 7239, quoted because of the port) and ``X-Forwarded-*``,
as nginx or Apache set up for a PACS behind them would.
"""

from __future__ import annotations

import http.client
import mimetypes
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

#: Types Python's table may lack; browsers refuse to stream-compile WASM
#: served as anything but application/wasm.
EXTRA_TYPES = {".wasm": "application/wasm", ".js": "text/javascript", ".mjs": "text/javascript", ".json": "application/json"}

#: Hop-by-hop headers a proxy must not forward (RFC 9110 7.6.1).
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
              "transfer-encoding", "upgrade"}


def content_type(path: Path) -> str:
    return EXTRA_TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args) -> None:  # quiet: the test records what matters
        pass

    # -- dispatch ---------------------------------------------------------------
    def do_GET(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_OPTIONS(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        path = urlsplit(self.path).path
        owner = self.server.owner
        if owner.upstream and (path == "/dicom-web" or path.startswith("/dicom-web/")):
            self._proxy(owner.upstream)
        elif self.command in ("GET", "HEAD"):
            self._static(path)
        else:
            self._send(405, b"method not allowed\n", "text/plain")

    # -- static files -----------------------------------------------------------
    def _static(self, path: str) -> None:
        owner = self.server.owner
        if path == "/app-config.js":
            self._send(200, owner.app_config.encode(), "text/javascript", cache=False)
            return
        root = owner.root
        target = (root / path.lstrip("/")).resolve()
        if not target.is_relative_to(root) or not target.is_file():
            # A single-page-app route (or a missing asset): OHIF's router decides.
            target = root / "index.html"
        self._send(200, target.read_bytes(), content_type(target), cache=target.name != "index.html")

    def _send(self, status: int, body: bytes, ctype: str, cache: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "max-age=3600" if cache else "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    # -- reverse proxy ----------------------------------------------------------
    def _proxy(self, upstream: tuple[str, int]) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        front_host = self.headers.get("Host", "")
        headers = {k: v for k, v in self.headers.items()
                   if k.lower() not in HOP_BY_HOP and k.lower() not in ("host", "forwarded")
                   and not k.lower().startswith("x-forwarded-")}
        headers["Host"] = f"{upstream[0]}:{upstream[1]}"
        headers["Forwarded"] = f'for="{self.client_address[0]}";host="{front_host}";proto=http'
        headers["X-Forwarded-Host"] = front_host
        headers["X-Forwarded-Proto"] = "http"
        headers["X-Forwarded-For"] = self.client_address[0]
        connection = http.client.HTTPConnection(*upstream, timeout=60)
        try:
            connection.request(self.command, self.path, body=body, headers=headers)
            response = connection.getresponse()
            payload = response.read()
        except OSError as exc:
            self._send(502, f"upstream failed: {exc}\n".encode(), "text/plain")
            return
        finally:
            connection.close()
        self.send_response(response.status, response.reason)
        for key, value in response.getheaders():
            if key.lower() not in HOP_BY_HOP and key.lower() != "content-length":
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)
        self.server.owner.proxied.append((self.command, self.path, response.status))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: ViewerServer

    def handle_error(self, request, client_address) -> None:
        # The browser drops connections when a page navigates away: not an error.
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class ViewerServer:
    """OHIF's ``dist/`` on a loopback port chosen by the OS, optionally proxying
    ``/dicom-web`` to ``upstream`` (host, port)."""

    def __init__(self, root: Path, app_config: str = "", upstream: tuple[str, int] | None = None) -> None:
        self.root = root.resolve()
        self.app_config = app_config
        self.upstream = upstream
        #: (method, path, status) of every proxied request.
        self.proxied: list[tuple[str, str, int]] = []
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self._thread = threading.Thread(target=self._server.serve_forever, name="ohif-static", daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ViewerServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():  # shutdown() would wait forever on a server never started
            self._server.shutdown()
            self._thread.join(10)
        self._server.server_close()
