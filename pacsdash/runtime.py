"""Who owns a home folder right now: the lock and the running server's address.

The DuckDB index accepts one writing process. Whatever opens it (the server,
or an offline ``pacsdash import``) first takes an exclusive lock on
``HOME/run/owner.lock``. A running server also writes ``HOME/run/server.json``
(its ports and a random token readable only by the owner of the home), so
that the command line can hand work to it instead of opening the index. When
its HTTPS listener demands client certificates (``[server] tls_client_ca``),
the server also writes ``HOME/run/local-client.pem`` (0600), a client
certificate and key of its own made at each start
(:func:`pacsdash.tls.write_local_client`), which the command line presents.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from pacsdash.tls import LOCAL_CLIENT_NAME


class HomeBusy(RuntimeError):
    """Another process owns the home's index."""


@dataclass(frozen=True)
class ServerInfo:
    """How to reach the server that owns a home."""

    pid: int
    host: str
    http_port: int
    dicom_port: int
    aet: str
    token: str
    #: The HTTPS certificate when the listener serves HTTPS ("" for HTTP).
    certificate: str = ""
    #: The DICOM over TLS port (PS3.15 B.1), 0 when there is none.
    dicom_tls_port: int = 0
    #: The command line's client certificate and key (one PEM file, 0600) when
    #: the HTTPS listener demands client certificates ("" otherwise).
    client_certificate: str = ""

    @property
    def base_url(self) -> str:
        """``http(s)://host:port`` of the HTTP listener."""
        host = self.host
        if host in ("0.0.0.0", ""):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        if ":" in host:
            host = f"[{host}]"
        return f"{'https' if self.certificate else 'http'}://{host}:{self.http_port}"

    def ssl_context(self) -> Any:
        """What ``urlopen`` needs to call this server (None over HTTP): its own
        certificate pinned (see :func:`pacsdash.tls.pinned_context`), and the
        local client certificate when the server demands one."""
        if not self.certificate:
            return None
        from pacsdash.tls import pinned_context

        context = pinned_context(self.certificate)
        if self.client_certificate:
            context.load_cert_chain(self.client_certificate)
        return context


class HomeLock:
    """An exclusive, process-lifetime lock on a home folder."""

    def __init__(self, run_path: Path) -> None:
        self.run_path = Path(run_path)
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        """Take the lock or raise :class:`HomeBusy` at once."""
        self.run_path.mkdir(parents=True, exist_ok=True)
        handle = open(self.run_path / "owner.lock", "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise HomeBusy(f"another pacsdash process is using {self.run_path.parent}") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._file = handle

    def release(self) -> None:
        """Give the lock back (also happens when the process exits)."""
        if self._file is not None:
            (self.run_path / "server.json").unlink(missing_ok=True)
            (self.run_path / LOCAL_CLIENT_NAME).unlink(missing_ok=True)
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None

    def __enter__(self) -> HomeLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def is_locked(run_path: Path) -> bool:
    """Whether some process holds the home's lock."""
    path = Path(run_path) / "owner.lock"
    if not path.exists():
        return False
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def new_token() -> str:
    """A random token for local command-line calls to the server."""
    return secrets.token_urlsafe(32)


def write_server_info(run_path: Path, info: ServerInfo) -> None:
    """Publish the running server's address, readable by the home's owner only."""
    path = Path(run_path) / "server.json"
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(asdict(info), handle)
    os.replace(tmp, path)


def running_server(run_path: Path) -> ServerInfo | None:
    """The server owning the home, or None if no server runs there."""
    path = Path(run_path) / "server.json"
    if not is_locked(run_path) or not path.exists():
        return None
    try:
        return ServerInfo(**json.loads(path.read_text()))
    except (ValueError, TypeError, OSError):
        return None
