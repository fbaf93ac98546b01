"""HTTPS: ``pacsdash tls selfsigned`` and ``[server] tls_cert``/``tls_key``
(issue 15): the HTTP port then speaks HTTPS only, login cookies are Secure,
and the command line reaches its own server over it."""

from __future__ import annotations

import ipaddress
import stat
import subprocess

import pytest
import requests
from cryptography import x509

from pacsdash.config import ConfigError, load_settings, set_server_option
from tests.helpers import VALID, ServerProcess, run_cli


def test_selfsigned_writes_a_private_key_and_a_certificate_naming_loopback(tmp_path):
    home = tmp_path / "home"
    result = run_cli("tls", "selfsigned", "--home", str(home))
    assert result.returncode == 0, result.stderr
    cert, key = home / "tls" / "cert.pem", home / "tls" / "key.pem"
    assert result.stdout.splitlines()[-2:] == [str(cert), str(key)]  # both paths, last
    for path in (cert, key):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    names = x509.load_pem_x509_certificate(cert.read_bytes()).extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    assert ipaddress.ip_address("127.0.0.1") in names.get_values_for_type(x509.IPAddress)
    again = run_cli("tls", "selfsigned", "--home", str(home))
    assert again.returncode == 1 and "--force" in again.stderr
    before = cert.read_bytes()
    assert run_cli("tls", "selfsigned", "--force", "--home", str(home)).returncode == 0
    assert cert.read_bytes() != before


def test_a_certificate_without_its_key_is_refused(tmp_path):
    set_server_option(tmp_path, "tls_cert", "tls/cert.pem")
    with pytest.raises(ConfigError, match="tls_cert and tls_key go together"):
        load_settings(tmp_path)
    set_server_option(tmp_path, "tls_key", "tls/key.pem")
    with pytest.raises(ConfigError, match="selfsigned"):  # the files are missing
        load_settings(tmp_path)


@pytest.fixture(scope="module")
def https_server(tmp_path_factory):
    home = tmp_path_factory.mktemp("tls") / "home"
    assert run_cli("tls", "selfsigned", "--home", str(home)).returncode == 0
    set_server_option(home, "tls_cert", "tls/cert.pem")
    set_server_option(home, "tls_key", "tls/key.pem")
    assert run_cli("users", "add", "alice", "--role", "editor", "--password-stdin", "--home", str(home),
                   input="alice-password-1\n").returncode == 0
    server = ServerProcess.start(home)
    yield server, home / "tls" / "cert.pem"
    server.stop()


def test_the_http_port_speaks_https_only(https_server):
    server, cert = https_server
    answer = requests.get(f"https://127.0.0.1:{server.http_port}/api/health", verify=str(cert), timeout=10)
    assert answer.status_code == 200 and answer.json()["status"] == "ok"
    with pytest.raises(requests.exceptions.SSLError):  # not trusted without the certificate
        requests.get(f"https://127.0.0.1:{server.http_port}/api/health", timeout=10)
    with pytest.raises(requests.exceptions.ConnectionError):  # nothing in clear
        requests.get(f"http://127.0.0.1:{server.http_port}/api/health", timeout=10)


def test_login_cookies_are_secure_over_https(https_server):
    server, cert = https_server
    login = requests.post(f"https://127.0.0.1:{server.http_port}/login", verify=str(cert), allow_redirects=False,
                          data={"username": "alice", "password": "alice-password-1"}, timeout=30)
    assert login.status_code == 302
    cookies = [c for c in login.raw.headers.getlist("Set-Cookie") if c.startswith(("user=", "pacsdash_session="))]
    assert cookies and all("Secure" in c and "HttpOnly" in c for c in cookies), cookies


def test_dicomweb_and_the_command_line_work_over_https(https_server):
    from pacsdash.client import connect

    server, cert = https_server
    imported = run_cli("import", str(VALID[1]), "--home", str(server.home))  # through the running server
    assert imported.returncode == 0, imported.stdout + imported.stderr
    client = connect(f"https://127.0.0.1:{server.http_port}/dicom-web", user="alice", password="alice-password-1",
                     verify=str(cert))
    assert len(client.studies()) == 1
    openssl = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{server.http_port}", "-brief"],
                             input="", capture_output=True, text=True, timeout=30)
    assert "TLSv1.3" in openssl.stdout + openssl.stderr or "TLSv1.2" in openssl.stdout + openssl.stderr
