"""DICOM over TLS (PS3.15 B.1, ``[server] dicom_tls_port``) with real peers:
dcmtk's echoscu, storescu and findscu with their TLS options, and a
pynetdicom SCU, against ``pacsdash serve`` with DICOM worker processes and
with ``dicom_workers = 0`` (the node in the server process)."""

from __future__ import annotations

import datetime as dt
import json
import re
import socket
import ssl
import subprocess
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from pydicom import dcmread

from pacsdash.config import set_server_option
from tests.helpers import (
    VALID, ServerProcess, dataset_bytes, dcmtk_tool, free_port, pacsdash_cmd, run_cli, sent_bytes, wait_until,
)

pytestmark = pytest.mark.usefixtures("dcmtk")

#: The AE title registered as a peer (store and find) at 127.0.0.1.
PEER = "TLSSCU"
#: Quick to test a silent peer; the default is 5 s.
ACSE_TIMEOUT = 2


def dcmtk_has_tls() -> bool:
    """Whether this dcmtk was built with OpenSSL (its tools then list ``+tls``)."""
    tool = dcmtk_tool("echoscu")
    if tool is None:
        return False
    helptext = subprocess.run([tool, "--help"], capture_output=True, text=True, timeout=30).stdout
    return "--enable-tls" in helptext


@pytest.fixture(scope="module", autouse=True)
def _dcmtk_tls():
    if not dcmtk_has_tls():
        pytest.skip("dcmtk is built without OpenSSL: its tools have no +tls option")


# -- certificates ---------------------------------------------------------------
@dataclass(frozen=True)
class Pki:
    """A CA for peers, a client certificate it signed, and one signed by another CA."""

    folder: Path
    ca: Path
    client_cert: Path
    client_key: Path
    stranger_cert: Path
    stranger_key: Path


def _name(common_name: str):
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(key, path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))


def _make_ca(common_name: str):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(_name(common_name)).issuer_name(_name(common_name))
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _make_client(ca_cert, ca_key, common_name: str, cert_path: Path, key_path: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID

    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(_name(common_name)).issuer_name(ca_cert.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key, key_path)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    from cryptography.hazmat.primitives import serialization

    folder = tmp_path_factory.mktemp("pki")
    ca_cert, ca_key = _make_ca("pacsdash test peers CA")
    (folder / "ca.pem").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    _make_client(ca_cert, ca_key, "modality-1", folder / "client.pem", folder / "client-key.pem")
    other_cert, other_key = _make_ca("some other CA")
    _make_client(other_cert, other_key, "stranger", folder / "stranger.pem", folder / "stranger-key.pem")
    return Pki(folder, folder / "ca.pem", folder / "client.pem", folder / "client-key.pem",
               folder / "stranger.pem", folder / "stranger-key.pem")


# -- servers ----------------------------------------------------------------------
@dataclass
class TlsServer:
    """A ``pacsdash serve`` subprocess with DICOM over TLS."""

    server: ServerProcess
    tls_port: int
    cert: Path
    log: Path

    @property
    def home(self) -> Path:
        return self.server.home

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def _make_home(home: Path, workers: int, client_ca: Path | None) -> int:
    """A home with a self-signed certificate, DICOM over TLS on a free port, the
    peer :data:`PEER` registered; returns the TLS port."""
    assert run_cli("tls", "selfsigned", "--home", str(home)).returncode == 0
    port = free_port()
    for key, value in (("tls_cert", "tls/cert.pem"), ("tls_key", "tls/key.pem"), ("dicom_workers", workers),
                       ("acse_timeout", ACSE_TIMEOUT), ("accept_unknown_store", False)):
        set_server_option(home, key, value)
    if client_ca is not None:
        set_server_option(home, "tls_client_ca", str(client_ca))
    added = run_cli("modalities", "add", "tlspeer", "--aet", PEER, "--host", "127.0.0.1", "--port", "11112",
                    "--allow", "store,find", "--home", str(home))
    assert added.returncode == 0, added.stderr
    return port


def _start(home: Path, tls_port: int, check_health: bool = True) -> TlsServer:
    """Serve ``home``; without ``check_health`` (HTTPS asks for a client
    certificate) wait for ``run/server.json`` alone, written once all listen."""
    if check_health:
        server = ServerProcess.start(home, "--dicom-tls-port", str(tls_port), accept_unknown_store=False)
    else:
        (home / "run" / "server.json").unlink(missing_ok=True)
        log = open(home.parent / f"{home.name}-server.log", "ab")
        process = subprocess.Popen(pacsdash_cmd("serve", "--home", str(home), "--http-port", "0", "--dicom-port", "0",
                                                "--dicom-tls-port", str(tls_port)), stdout=log, stderr=subprocess.STDOUT)
        server = ServerProcess(home, process)

        def written():
            assert process.poll() is None, f"server exited with {process.returncode}; see {log.name}"
            path = home / "run" / "server.json"
            return json.loads(path.read_text()) if path.exists() else None

        info = wait_until(written, 60, interval=0.1, what="run/server.json")
        server.http_port, server.dicom_port, server.aet = info["http_port"], info["dicom_port"], info["aet"]
    info = json.loads((home / "run" / "server.json").read_text())
    assert info["dicom_tls_port"] == tls_port  # published for scripts
    return TlsServer(server, tls_port, home / "tls" / "cert.pem", home.parent / f"{home.name}-server.log")


@pytest.fixture(scope="module", params=[1, 0], ids=["workers", "in-process"])
def tls_server(request, tmp_path_factory):
    home = tmp_path_factory.mktemp(f"dicomtls{request.param}") / "home"
    port = _make_home(home, request.param, None)
    running = _start(home, port)
    yield running
    assert running.server.stop() == 0


@pytest.fixture(scope="module", params=[1, 0], ids=["workers", "in-process"])
def mtls_server(request, tmp_path_factory, pki):
    home = tmp_path_factory.mktemp(f"dicommtls{request.param}") / "home"
    port = _make_home(home, request.param, pki.ca)
    running = _start(home, port, check_health=False)
    yield running
    assert running.server.stop() == 0


# -- peers ----------------------------------------------------------------------
def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout)


def tls_options(server: TlsServer, client: tuple[Path, Path] | None = None) -> list[str]:
    """dcmtk's options: TLS trusting the server's certificate; anonymous, or with ``client`` (cert, key)."""
    who = ["+tls", str(client[1]), str(client[0])] if client else ["+tla"]
    return [*who, "+cf", str(server.cert)]


def echo(server: TlsServer, *options: str, port: int | None = None, aet: str = PEER) -> subprocess.CompletedProcess:
    return run(dcmtk_tool("echoscu"), *options, "-to", "10", "-aet", aet, "-aec", server.server.aet, "127.0.0.1",
               str(port or server.tls_port))


def stored_files(home: Path) -> dict[str, Path]:
    """Files in the home's store by SOPInstanceUID."""
    found = {}
    for path in (home / "store").rglob("*"):
        if path.is_file():
            try:
                found[str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)] = path
            except Exception:
                continue
    return found


def plain_samples() -> list[Path]:
    """Samples storescu proposes by default: uncompressed, not Segmentation."""
    chosen = []
    for path in VALID:
        ds = dcmread(path, stop_before_pixels=True)
        if ds.file_meta.TransferSyntaxUID in ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1") \
                and ds.SOPClassUID != "1.2.840.10008.5.1.4.1.1.66.4":
            chosen.append(path)
    return chosen[:3]


# -- tests ----------------------------------------------------------------------
def test_echo_store_and_find_over_tls(tls_server):
    assert echo(tls_server, *tls_options(tls_server)).returncode == 0
    files = plain_samples()
    assert files
    stored = run(dcmtk_tool("storescu"), *tls_options(tls_server), "-aet", PEER, "-aec", tls_server.server.aet,
                 "127.0.0.1", tls_server.tls_port, *files)
    assert stored.returncode == 0, stored.stdout + stored.stderr
    on_disk = stored_files(tls_server.home)
    for path in files:  # storescu re-encodes some (drops padding, chooses explicit VR): the pixels arrived
        sent = dcmread(path)
        assert dcmread(on_disk[str(sent.SOPInstanceUID)]).PixelData == sent.PixelData, path.name
    study = str(dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
    found = run(dcmtk_tool("findscu"), *tls_options(tls_server), "-S", "-aet", PEER, "-aec", tls_server.server.aet,
                "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study}", "127.0.0.1",
                tls_server.tls_port)
    assert found.returncode == 0, found.stderr
    assert study in found.stdout + found.stderr


def test_every_sample_sent_over_tls_is_stored_byte_for_byte(tls_server):
    from pacsdash.dimse.scu import send_files

    context = ssl.create_default_context(cafile=str(tls_server.cert))
    results = send_files("127.0.0.1", tls_server.tls_port, VALID, tls_server.server.aet, PEER,
                         tls_args=(context, "localhost"))
    assert [r.path.name for r in results if not r.ok] == []
    on_disk = stored_files(tls_server.home)
    for path in VALID:
        uid = str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)
        if path in plain_samples():
            continue  # stored first by storescu, re-encoded: the first copy is kept
        assert dataset_bytes(on_disk[uid]) == sent_bytes(path), path.name


def test_the_tls_port_checks_peers_as_the_plain_port_does(tls_server):
    # An unregistered AE title may only echo: a C-FIND association is rejected.
    refused = run(dcmtk_tool("findscu"), *tls_options(tls_server), "-S", "-aet", "STRANGER", "-aec",
                  tls_server.server.aet, "-k", "QueryRetrieveLevel=STUDY", "127.0.0.1", tls_server.tls_port)
    assert refused.returncode != 0
    assert re.search(r"reject|Calling AE Title Not Recognized", refused.stdout + refused.stderr, re.I), refused.stderr
    assert echo(tls_server, *tls_options(tls_server), aet="STRANGER").returncode == 0
    # ... and may not store (accept_unknown_store = false).
    stored = run(dcmtk_tool("storescu"), *tls_options(tls_server), "-aet", "STRANGER", "-aec", tls_server.server.aet,
                 "127.0.0.1", tls_server.tls_port, plain_samples()[0])
    assert stored.returncode != 0 or "Refused" in stored.stderr or "0x0124" in stored.stderr


def test_plain_dicom_on_the_tls_port_fails_and_both_ports_keep_serving(tls_server):
    plain = echo(tls_server)  # no TLS, to the TLS port
    assert plain.returncode != 0
    assert echo(tls_server, *tls_options(tls_server)).returncode == 0
    assert echo(tls_server, port=tls_server.server.dicom_port).returncode == 0  # the plain port, in clear
    assert echo(tls_server, *tls_options(tls_server), port=tls_server.server.dicom_port).returncode != 0
    wait_until(lambda: "DICOM TLS handshake with 127.0.0.1" in tls_server.log_text(), 10, what="the failure logged")


def test_a_silent_peer_does_not_hold_up_others_and_is_closed(tls_server):
    silent = socket.create_connection(("127.0.0.1", tls_server.tls_port))
    try:
        started = time.monotonic()
        assert echo(tls_server, *tls_options(tls_server)).returncode == 0  # while the silent one waits
        assert time.monotonic() - started < ACSE_TIMEOUT + 5
        silent.settimeout(ACSE_TIMEOUT + 10)
        assert silent.recv(1) == b""  # closed by the server after the ACSE time-out
        assert time.monotonic() - started < ACSE_TIMEOUT + 10
    finally:
        silent.close()
    wait_until(lambda: "no handshake within the ACSE time-out" in tls_server.log_text(), 10, what="the time-out logged")


def test_a_pynetdicom_scu_over_tls(tls_server):
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification

    context = ssl.create_default_context(cafile=str(tls_server.cert))
    ae = AE(ae_title=PEER)
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", tls_server.tls_port, ae_title=tls_server.server.aet,
                         tls_args=(context, "localhost"))
    assert assoc.is_established
    try:
        assert isinstance(assoc.dul.socket.socket, ssl.SSLSocket)
        assert assoc.dul.socket.socket.version() in ("TLSv1.2", "TLSv1.3")
        assert assoc.send_c_echo().Status == 0
    finally:
        assoc.release()
    old = ssl.create_default_context(cafile=str(tls_server.cert))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # so it is: TLS 1.1 is refused
        old.minimum_version = old.maximum_version = ssl.TLSVersion.TLSv1_1
    old.set_ciphers("DEFAULT:@SECLEVEL=0")  # this client would speak TLS 1.1; the server answers with an alert
    with socket.create_connection(("127.0.0.1", tls_server.tls_port), timeout=10) as raw:
        with pytest.raises(ssl.SSLError, match="PROTOCOL_VERSION"):
            old.wrap_socket(raw, server_hostname="localhost")


def test_client_certificates_are_demanded_when_tls_client_ca_is_set(mtls_server, pki):
    server = mtls_server
    anonymous = echo(server, *tls_options(server))
    assert anonymous.returncode != 0
    stranger = echo(server, *tls_options(server, (pki.stranger_cert, pki.stranger_key)))
    assert stranger.returncode != 0
    assert echo(server, *tls_options(server, (pki.client_cert, pki.client_key))).returncode == 0
    files = plain_samples()[:1]
    stored = run(dcmtk_tool("storescu"), *tls_options(server, (pki.client_cert, pki.client_key)), "-aet", PEER,
                 "-aec", server.server.aet, "127.0.0.1", server.tls_port, *files)
    assert stored.returncode == 0, stored.stderr
    uid = str(dcmread(files[0], stop_before_pixels=True).SOPInstanceUID)
    assert uid in stored_files(server.home)
    assert echo(server, port=server.server.dicom_port).returncode == 0  # the plain port stays open
    wait_until(lambda: "client commonName=modality-1" in server.log_text(), 10, what="the client certificate logged")
    # HTTPS asks for a client certificate signed by the same CA.
    url = f"https://127.0.0.1:{server.server.http_port}/api/health"
    with pytest.raises(requests.exceptions.ConnectionError):  # an SSLError, or a reset under TLS 1.3
        requests.get(url, verify=str(server.cert), timeout=10)
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(url, verify=str(server.cert), cert=(str(pki.stranger_cert), str(pki.stranger_key)), timeout=10)
    answer = requests.get(url, verify=str(server.cert), cert=(str(pki.client_cert), str(pki.client_key)), timeout=10)
    assert answer.status_code == 200
