"""Shared test helpers: the sample corpus, dcmtk, servers on loopback."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from pynetdicom.dsutils import split_dataset

from pacsdash.config import set_server_option
from pacsdash.runtime import ServerInfo

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "data" / "dicom-samples"
VALID = sorted((SAMPLES / "valid").glob("*.dcm"))
BROKEN = sorted((SAMPLES / "broken").glob("*.dcm"))
DCMTK = Path("/usr/bin")


def manifest() -> dict[str, dict[str, str]]:
    """MANIFEST.tsv rows keyed by file name."""
    with open(SAMPLES / "MANIFEST.tsv", newline="") as handle:
        return {row["file"]: row for row in csv.DictReader(handle, delimiter="\t")}


def dataset_bytes(path: Path) -> bytes:
    """The encoded data set of a Part 10 file, without preamble and file meta."""
    _, offset = split_dataset(path)
    return path.read_bytes()[offset:]


def archive_dataset_bytes(archive, location) -> bytes:
    """The encoded data set of a stored instance, read through the archive (any store)."""
    import tempfile

    with archive.open(location) as stream, tempfile.NamedTemporaryFile(suffix=".dcm") as copy:
        copy.write(stream.read())
        copy.flush()
        return dataset_bytes(Path(copy.name))


def sent_bytes(path: Path) -> bytes:
    """A file's data set bytes as they go over DIMSE: unchanged, except that a
    deflated data set of odd length gets the NUL pad PS3.5 A.5 asks for."""
    data = dataset_bytes(path)
    meta, _ = split_dataset(path)
    deflated = str(meta.get("TransferSyntaxUID", "")) == "1.2.840.10008.1.2.1.99"
    return data + b"\x00" if deflated and len(data) % 2 else data


def dcmtk_tool(name: str) -> str | None:
    """Full path of a dcmtk tool, or None if dcmtk is not installed."""
    path = DCMTK / name
    return str(path) if path.exists() else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.05, what: str = "condition"):
    """Poll ``predicate`` until it returns a true value; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    def open_() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            return False

    wait_until(open_, timeout, what=f"port {port}")


def pacsdash_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "pacsdash", *args]


def run_cli(*args: str, input: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run the pacsdash command line and capture its output."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run(pacsdash_cmd(*args), input=input, capture_output=True, text=True, timeout=timeout, env=env)


@dataclass
class ServerProcess:
    """A ``pacsdash serve`` subprocess on loopback ports chosen by the OS."""

    home: Path
    process: subprocess.Popen
    http_port: int = 0
    dicom_port: int = 0
    aet: str = "PACSDASH"

    @classmethod
    def start(cls, home: Path, *extra: str, timeout: float = 60, accept_unknown_store: bool = True,
              env: dict[str, str] | None = None) -> ServerProcess:
        """Serve ``home``; unregistered peers may C-STORE, as in the demo,
        unless ``accept_unknown_store`` is False (then the home's config decides).
        ``env``: variables set for the server over this process's environment."""
        (home / "run" / "server.json").unlink(missing_ok=True)
        if accept_unknown_store:
            home.mkdir(parents=True, exist_ok=True)
            set_server_option(home, "accept_unknown_store", True)
        log = open(home.parent / f"{home.name}-server.log", "ab")
        process = subprocess.Popen(
            pacsdash_cmd("serve", "--home", str(home), "--http-port", "0", "--dicom-port", "0", *extra),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(os.environ, **env) if env else None,
        )
        server = cls(home, process)

        def ready():
            if process.poll() is not None:
                raise RuntimeError(f"server exited with {process.returncode}; see {log.name}")
            info_path = home / "run" / "server.json"
            if not info_path.exists():
                return None
            info = json.loads(info_path.read_text())
            # As the command line calls it: its certificate pinned, and the home's local client
            # certificate when the server demands client certificates (tls_client_ca).
            context = ServerInfo(**info).ssl_context()
            scheme = "https" if context is not None else "http"
            try:
                with urllib.request.urlopen(f"{scheme}://127.0.0.1:{info['http_port']}/api/health", timeout=2,
                                            context=context) as r:
                    return info if r.status == 200 else None
            except OSError:
                return None

        try:
            info = wait_until(ready, timeout, interval=0.1, what="pacsdash health")
        except BaseException:  # never leave a server running behind a failed start
            server.kill()
            raise
        server.http_port, server.dicom_port, server.aet = info["http_port"], info["dicom_port"], info["aet"]
        return server

    def stop(self, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()


@dataclass
class StoreSCP:
    """dcmtk's storescp writing what it receives, bit for bit, into a folder."""

    folder: Path
    port: int
    aet: str
    process: subprocess.Popen

    @classmethod
    def start(cls, folder: Path, aet: str = "STORESCP") -> StoreSCP:
        folder.mkdir(parents=True, exist_ok=True)
        port = free_port()
        process = subprocess.Popen(
            [str(DCMTK / "storescp"), "+xa", "+B", "-aet", aet, "-od", str(folder), str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(port)
        return cls(folder, port, aet, process)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def have_dcmtk() -> bool:
    return shutil.which(str(DCMTK / "echoscu")) is not None


ORTHANC = Path("/usr/sbin/Orthanc")
ORTHANC_DICOMWEB = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")


@dataclass
class OrthancProcess:
    """Debian's Orthanc with its DICOMweb plugin, own config, loopback clients only."""

    folder: Path
    http_port: int
    dicom_port: int
    process: subprocess.Popen

    @classmethod
    def start(cls, folder: Path, dicomweb_servers: dict | None = None) -> OrthancProcess:
        """Start Orthanc; ``dicomweb_servers`` registers DICOMweb servers it may
        reach as a client (its ``DicomWeb.Servers`` setting)."""
        folder.mkdir(parents=True, exist_ok=True)
        http_port, dicom_port = free_port(), free_port()
        config = {
            "Name": "interop",
            "StorageDirectory": str(folder / "storage"),
            "IndexDirectory": str(folder / "index"),
            "HttpPort": http_port,
            "DicomPort": dicom_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "Plugins": [str(ORTHANC_DICOMWEB)],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "Servers": dict(dicomweb_servers or {})},
        }
        (folder / "orthanc.json").write_text(json.dumps(config))
        log = open(folder / "orthanc.log", "ab")
        process = subprocess.Popen([str(ORTHANC), str(folder / "orthanc.json")], stdout=log, stderr=subprocess.STDOUT,
                                   env=dict(os.environ, TCP_NODELAY="1"))
        orthanc = cls(folder, http_port, dicom_port, process)

        def ready() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"Orthanc exited with {process.returncode}; see {folder / 'orthanc.log'}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/system", timeout=2) as r:
                    return r.status == 200
            except OSError:
                return False

        wait_until(ready, 60, interval=0.2, what="Orthanc")
        return orthanc

    def upload(self, path: Path) -> None:
        request = urllib.request.Request(f"http://127.0.0.1:{self.http_port}/instances", data=path.read_bytes(), method="POST")
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 200

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()


def have_orthanc() -> bool:
    return ORTHANC.exists() and ORTHANC_DICOMWEB.exists()
