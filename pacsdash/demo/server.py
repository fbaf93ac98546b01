"""A pacsdash server of one's own, started from Python: for notebooks, teaching and scripts.

>>> from pacsdash.demo.server import LocalServer
>>> with LocalServer.start() as server:          # a demo home in a temporary folder, free ports
...     client = server.client("viewer")
...     client.studies()

It runs ``pacsdash serve`` as a child process on loopback (127.0.0.1), on
ports the system picks, and stops it (and removes a temporary home) at the end.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pacsdash.demo import DEMO_USERS  # users of a demo home and their passwords

__all__ = ["DEMO_USERS", "LocalServer"]


@dataclass
class LocalServer:
    """A running ``pacsdash serve`` child process."""

    home: Path
    process: subprocess.Popen
    http_port: int = 0
    dicom_port: int = 0
    aet: str = "PACSDASH"
    users: dict[str, str] = field(default_factory=dict)
    temporary: bool = False

    @classmethod
    def start(cls, home: Path | str | None = None, demo: bool = True, timeout: float = 120) -> LocalServer:
        """Start a server on ``home`` (default: a new temporary folder),
        filled with the demo studies and users first when ``demo``."""
        temporary = home is None
        home = Path(tempfile.mkdtemp(prefix="pacsdash-")) / "home" if home is None else Path(home)
        command = [sys.executable, "-m", "pacsdash"]
        if demo:
            subprocess.run([*command, "demo", "--home", str(home), "--no-serve"], check=True, capture_output=True,
                           timeout=600)
        (home / "run" / "server.json").unlink(missing_ok=True)
        home.mkdir(parents=True, exist_ok=True)
        log = open(home / "server-output.log", "ab")
        process = subprocess.Popen([*command, "serve", "--home", str(home), "--host", "127.0.0.1",
                                    "--http-port", "0", "--dicom-port", "0"], stdout=log, stderr=subprocess.STDOUT)
        server = cls(home, process, users=dict(DEMO_USERS) if demo else {}, temporary=temporary)
        server._wait(timeout)
        return server

    def _wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        info_path = self.home / "run" / "server.json"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"pacsdash serve exited with {self.process.returncode}; "
                                   f"see {self.home / 'server-output.log'}")
            if info_path.exists():
                try:
                    info = json.loads(info_path.read_text())
                    with urllib.request.urlopen(f"http://127.0.0.1:{info['http_port']}/api/health", timeout=2) as r:
                        if r.status == 200:
                            self.http_port, self.dicom_port, self.aet = info["http_port"], info["dicom_port"], info["aet"]
                            return
                except (OSError, ValueError, KeyError):
                    pass
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"pacsdash serve did not answer within {timeout:.0f} s")

    @property
    def url(self) -> str:
        """The dashboard and API root, ``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb(self) -> str:
        """The DICOMweb root, ``http://127.0.0.1:PORT/dicom-web``."""
        return f"{self.url}/dicom-web"

    def client(self, user: str = "viewer") -> Any:
        """A :class:`pacsdash.client.Client` of this server, logged in as a demo user."""
        from pacsdash.client import connect

        return connect(self.dicomweb, user=user, password=self.users.get(user))

    def stop(self) -> None:
        """Stop the server (cleanly, then by force), and remove a temporary home."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        if self.temporary:
            shutil.rmtree(self.home.parent, ignore_errors=True)

    def __enter__(self) -> LocalServer:
        return self

    def __exit__(self, *_: Any) -> None:
        self.stop()
