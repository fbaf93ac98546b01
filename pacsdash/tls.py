"""TLS for the HTTP and DICOM listeners: a self-signed certificate for a
home, the server side context both listeners use, and the client context the
command line uses to call its own server over HTTPS.

``pacsdash tls selfsigned`` writes ``HOME/tls/cert.pem`` and ``key.pem``
(0600) naming localhost, 127.0.0.1, ::1, the configured host and this
machine's name, with the `cryptography` library. Point ``[server] tls_cert``
and ``tls_key`` at them (or at a site's own certificate) to serve HTTPS, and
DICOM over TLS on ``dicom_tls_port`` (PS3.15 B.1); ``tls_client_ca`` makes
both demand a client certificate signed by those CAs.

The command line presents none of a site's client certificates: when the
HTTPS listener demands one, the server makes at each start a certificate of
its own for the command line (:func:`write_local_client`, in ``HOME/run/``,
0600, readable by the home's owner only, like the local token there), and
that listener trusts it for clients besides ``tls_client_ca``. The DICOM TLS
port does not: peers there face ``tls_client_ca`` alone.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import socket
import ssl
from pathlib import Path

#: How long a self-signed certificate is valid.
VALID_DAYS = 825
CERT_NAME, KEY_NAME = "cert.pem", "key.pem"
#: The command line's client certificate and key (one PEM file) in ``HOME/run/``.
LOCAL_CLIENT_NAME = "local-client.pem"
#: How long the command line's client certificate is valid (a new one at each start).
LOCAL_CLIENT_DAYS = 3650


class CertificateExists(FileExistsError):
    """The home already has a certificate (``--force`` replaces it)."""


def subject_names(host: str) -> list[str]:
    """The names a self-signed certificate of this machine covers: loopback,
    ``host`` (the configured listening address) and the machine's name."""
    names = ["localhost", "127.0.0.1", "::1", socket.gethostname(), socket.getfqdn()]
    if host and host not in ("0.0.0.0", "::"):
        names.append(host)
    return list(dict.fromkeys(n for n in names if n))


def write_selfsigned(folder: Path, host: str = "", force: bool = False) -> tuple[Path, Path]:
    """Write a new key (EC P-256) and a self-signed certificate for
    :func:`subject_names` into ``folder``; return their paths.

    Raises
    ------
    CertificateExists
        When either file exists and ``force`` is false.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.x509.oid import ExtendedKeyUsageOID

    cert_path, key_path = folder / CERT_NAME, folder / KEY_NAME
    if not force and (cert_path.exists() or key_path.exists()):
        raise CertificateExists(f"{cert_path} exists already (--force replaces it)")
    names = subject_names(host)
    alternatives: list[x509.GeneralName] = []
    for name in names:
        try:
            alternatives.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alternatives.append(x509.DNSName(name))
    key, certificate = _self_signed(
        names[3] if len(names) > 3 else "localhost", "pacsdash (self-signed)", VALID_DAYS,
        [(x509.SubjectAlternativeName(alternatives), False),
         (x509.BasicConstraints(ca=True, path_length=0), True),
         (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)])
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    _write_private(key_path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    _write_private(cert_path, certificate.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def write_local_client(folder: Path) -> tuple[Path, bytes]:
    """Write a new key (EC P-256) and a self-signed client certificate for the
    command line calling its own server into ``folder``/:data:`LOCAL_CLIENT_NAME`
    (key then certificate, one file, 0600), replacing any earlier one; return
    the file's path and the certificate (PEM) for the server to trust.

    Not a CA (``BasicConstraints ca=False``), for client authentication only
    (``ExtendedKeyUsage clientAuth``): trusted as itself, it vouches for
    nothing else. A new key at each start, so a copy of an earlier file opens
    nothing once the server has restarted.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.x509.oid import ExtendedKeyUsageOID

    key, certificate = _self_signed(
        "pacsdash local command line", "pacsdash (this home only)", LOCAL_CLIENT_DAYS,
        [(x509.BasicConstraints(ca=False, path_length=None), True),
         (x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                        data_encipherment=False, key_agreement=False, key_cert_sign=False,
                        crl_sign=False, encipher_only=False, decipher_only=False), True),
         (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)])
    pem = certificate.public_bytes(serialization.Encoding.PEM)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = folder / LOCAL_CLIENT_NAME
    _write_private(path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()) + pem)
    return path, pem


def _self_signed(common_name: str, organization: str, days: int, extensions: list) -> tuple:
    """A new EC P-256 key and a certificate it signs itself, valid from five
    minutes ago for ``days``, with ``extensions`` as ``(extension, critical)``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization)])
    now = dt.datetime.now(dt.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days)))
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return key, builder.sign(key, hashes.SHA256())


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` readable by its owner only (0600), atomically."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


def server_context(certificate: str, key: str, client_ca: str = "", local_client: bytes = b"") -> ssl.SSLContext:
    """The server side context of the HTTPS and DICOM TLS listeners.

    TLS 1.2 at least (PS3.15 B.1 and its BCP 195 profiles). With
    ``client_ca`` (a PEM file of CA certificates) a client must present a
    certificate signed by one of them, or the handshake fails
    (``ssl.CERT_REQUIRED``); the system's CAs are never trusted for clients
    (``ssl.create_default_context`` would load them). ``local_client`` (the
    PEM certificate of :func:`write_local_client`; the HTTPS listener only) is
    trusted for clients too, when ``client_ca`` is set.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certificate, key)
    if client_ca:
        context.load_verify_locations(cafile=client_ca)
        if local_client:
            context.load_verify_locations(cadata=local_client.decode("ascii"))
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def pinned_context(certificate: str) -> ssl.SSLContext:
    """A client context that trusts exactly ``certificate`` (the server's own,
    a leaf or self-signed), for the command line calling its own server on
    loopback: no host name check, the certificate is the identity."""
    context = ssl.create_default_context(cafile=certificate)
    context.check_hostname = False
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    return context
