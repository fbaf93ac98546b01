"""The command line against its own server when ``[server] tls_client_ca``
makes the HTTPS listener demand client certificates: the server makes a
client certificate of its own for the command line at each start
(``HOME/run/local-client.pem``, 0600) and trusts it on HTTPS besides the
peers' CA; peers without a certificate of that CA are still refused, and the
DICOM TLS port does not take the local one."""

from __future__ import annotations

import csv
import io
import json
import shutil
import socket
import ssl
import stat
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from pydicom import dcmread

from pacsdash.config import set_server_option
from pacsdash.tls import LOCAL_CLIENT_NAME, pinned_context
from tests.dimse.test_dicom_tls import _make_ca, _make_client
from tests.helpers import VALID, ServerProcess, free_port, run_cli


@dataclass
class Peers:
    """The peers' CA, a client certificate it signed, and one from another CA."""

    ca: Path
    client: tuple[Path, Path]
    stranger: tuple[Path, Path]


@dataclass
class Served:
    home: Path
    peers: Peers
    dicom_tls_port: int
    server: ServerProcess

    @property
    def cert(self) -> Path:
        return self.home / "tls" / "cert.pem"

    @property
    def local_client(self) -> Path:
        return self.home / "run" / LOCAL_CLIENT_NAME

    def start(self) -> None:
        self.server = ServerProcess.start(self.home, "--dicom-tls-port", str(self.dicom_tls_port),
                                          accept_unknown_store=False)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mtlscli")
    ca_cert, ca_key = _make_ca("pacsdash test peers CA")
    (folder / "ca.pem").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    _make_client(ca_cert, ca_key, "modality-1", folder / "client.pem", folder / "client-key.pem")
    other_cert, other_key = _make_ca("some other CA")
    _make_client(other_cert, other_key, "stranger", folder / "stranger.pem", folder / "stranger-key.pem")
    peers = Peers(folder / "ca.pem", (folder / "client.pem", folder / "client-key.pem"),
                  (folder / "stranger.pem", folder / "stranger-key.pem"))
    home = folder / "home"
    made = run_cli("tls", "selfsigned", "--home", str(home))
    assert made.returncode == 0, made.stderr
    for key, value in (("tls_cert", "tls/cert.pem"), ("tls_key", "tls/key.pem"), ("tls_client_ca", str(peers.ca)),
                       ("dicom_workers", 0)):
        set_server_option(home, key, value)
    running = Served(home, peers, free_port(), None)  # type: ignore[arg-type]
    running.start()  # ServerProcess.start itself passes /api/health only with the local certificate
    yield running
    assert running.server.stop() == 0


def handshake(port: int, cert: Path, client: tuple[Path, Path] | None = None) -> str:
    """A TLS 1.2 handshake with the listener on ``port`` (TLS 1.2: a refused
    client certificate fails the handshake itself); the protocol agreed."""
    context = pinned_context(str(cert))
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    if client is not None:
        context.load_cert_chain(str(client[0]), str(client[1]))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw) as secure:
            return secure.version()


def test_the_local_client_certificate_is_the_home_owners_alone(served):
    info = json.loads((served.home / "run" / "server.json").read_text())
    assert info["client_certificate"] == str(served.local_client)
    mode = stat.S_IMODE(served.local_client.stat().st_mode)
    assert mode == 0o600, oct(mode)
    text = served.local_client.read_text()
    assert "PRIVATE KEY" in text and "CERTIFICATE" in text
    assert not any(p.name == LOCAL_CLIENT_NAME for p in (served.home / "tls").iterdir())


def test_the_command_line_works_through_the_running_server(served):
    home = str(served.home)
    imported = run_cli("import", str(VALID[0]), "--home", home)  # the server holds the home: no offline fallback
    assert imported.returncode == 0, imported.stdout + imported.stderr
    study = str(dcmread(VALID[0], stop_before_pixels=True).StudyInstanceUID)
    added = run_cli("labels", "add", study, "teaching", "--home", home)
    assert added.returncode == 0, added.stdout + added.stderr
    listed = run_cli("labels", "list", study, "--home", home)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert "teaching" in listed.stdout
    audit = run_cli("audit", "--csv", "--home", home)
    assert audit.returncode == 0, audit.stdout + audit.stderr
    rows = list(csv.DictReader(io.StringIO(audit.stdout)))
    assert rows and any(study in json.dumps(row) for row in rows), audit.stdout
    checked = run_cli("check", "--home", home)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_outside_clients_without_a_peer_certificate_are_refused(served):
    port = served.server.http_port
    with pytest.raises(ssl.SSLError):
        handshake(port, served.cert)
    with pytest.raises(ssl.SSLError):
        handshake(port, served.cert, served.peers.stranger)
    assert handshake(port, served.cert, served.peers.client) == "TLSv1.2"  # the peers' CA still opens it
    url = f"https://127.0.0.1:{port}/api/health"
    with pytest.raises(requests.exceptions.ConnectionError):  # TLS 1.3: an SSLError or a reset
        requests.get(url, verify=str(served.cert), timeout=10)
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(url, verify=str(served.cert), cert=tuple(map(str, served.peers.stranger)), timeout=10)
    # The local certificate opens HTTPS only, where the command line goes; not the DICOM TLS port.
    assert handshake(port, served.cert, (served.local_client, served.local_client)) == "TLSv1.2"
    with pytest.raises(ssl.SSLError):
        handshake(served.dicom_tls_port, served.cert, (served.local_client, served.local_client))
    assert handshake(served.dicom_tls_port, served.cert, served.peers.client) == "TLSv1.2"


def test_a_copy_of_an_earlier_local_certificate_is_refused_after_a_restart(served, tmp_path):
    old = tmp_path / "old-local-client.pem"
    shutil.copyfile(served.local_client, old)
    assert served.server.stop() == 0
    assert not served.local_client.exists()  # removed at a clean stop
    served.start()
    assert served.local_client.read_bytes() != old.read_bytes()
    with pytest.raises(ssl.SSLError):
        handshake(served.server.http_port, served.cert, (old, old))
    listed = run_cli("audit", "--csv", "--home", str(served.home))
    assert listed.returncode == 0, listed.stdout + listed.stderr
