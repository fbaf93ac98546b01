"""DICOM over TLS: the Basic TLS Secure Transport Connection Profile (PS3.15 B.1).

With ``[server] dicom_tls_port`` the node also listens there; a connection
accepted on that port speaks TLS (1.2 at least, the certificate of
``tls_cert``/``tls_key``; with ``tls_client_ca``, the peer's certificate must
be signed by one of those CAs: :func:`pacsdash.tls.server_context`). Once the
handshake is done it is served like one on the plain port: the same peer
checks (AE title and address), allow lists and limits.

pynetdicom does the handshake in its accepting thread
(``AssociationServer.get_request``): one peer that connects and sends
nothing would hold every other caller back. Here the handshake happens in
the connection's own thread (:meth:`TlsListener.handshake`, called by
:class:`~pacsdash.dimse.scp.DicomNode`'s server, in the DICOM worker that
took the connection: the server process does no cryptography), bounded by
the ACSE time-out (PS3.8 9.1.5 ARTIM); a handshake that fails or times out
is logged and its connection closed. Handshakes in progress are bounded per
address and in all, as pending connections are (:mod:`.admission`).

An :class:`ssl.SSLSocket` may hold decrypted bytes that ``poll`` cannot see:
the DUL's waits look at ``pending()`` (:meth:`.reactor.EventDrivenDUL.idle_wait`,
pynetdicom's ``AssociationSocket.ready``); the C-STORE lane, which peeks at
the socket, is not attached to TLS associations (:mod:`.storelane`).
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from collections import Counter
from dataclasses import dataclass, field

from pacsdash import tls
from pacsdash.config import ServerSettings

LOGGER = logging.getLogger(__name__)


@dataclass
class HandshakeSlots:
    """Handshakes in progress: at most ``per_address`` from one address and ``total`` in all."""

    per_address: int
    total: int
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _open: Counter[str] = field(default_factory=Counter, repr=False)

    def take(self, address: str) -> bool:
        """Take a slot for ``address``; False when none is free."""
        with self._lock:
            if self._open[address] >= self.per_address or sum(self._open.values()) >= self.total:
                return False
            self._open[address] += 1
            return True

    def give_back(self, address: str) -> None:
        """Free a slot taken by :meth:`take`."""
        with self._lock:
            self._open[address] -= 1
            if self._open[address] <= 0:
                del self._open[address]


@dataclass
class TlsListener:
    """The TLS port of a DICOM node: which connections speak TLS, and their handshake."""

    context: ssl.SSLContext
    #: The local port whose connections speak TLS.
    port: int
    #: Longest handshake [s] (the ACSE time-out).
    timeout: float
    slots: HandshakeSlots

    @classmethod
    def from_settings(cls, server: ServerSettings, port: int | None = None) -> TlsListener | None:
        """The TLS listener ``[server]`` asks for (``dicom_tls_port``), or None;
        ``port``: the port actually listened on, when it differs from the setting."""
        if not server.dicom_tls_port:
            return None
        context = tls.server_context(server.tls_cert, server.tls_key, server.tls_client_ca)
        # As many as pending connections may be (admission.Limits).
        slots = HandshakeSlots(2 * server.max_associations_per_address, 4 * server.max_associations)
        return cls(context, port or server.dicom_tls_port, float(server.acse_timeout), slots)

    def speaks_tls(self, sock: socket.socket) -> bool:
        """Whether ``sock`` was accepted on this TLS port."""
        try:
            return int(sock.getsockname()[1]) == self.port
        except OSError:
            return False

    def handshake(self, sock: socket.socket, peer: str) -> ssl.SSLSocket | None:
        """Do the server side TLS handshake on an accepted ``sock`` within
        :attr:`timeout`; the TLS socket (blocking), or None, the connection
        closed and the reason logged, when it fails."""
        address = peer.rsplit(":", 1)[0]
        if not self.slots.take(address):
            LOGGER.warning("DICOM TLS connection from %s closed: too many handshakes in progress", peer)
            _close(sock)
            return None
        secure: ssl.SSLSocket | None = None
        try:
            sock.settimeout(self.timeout)
            secure = self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
            secure.do_handshake()
            secure.settimeout(None)
        except (OSError, ValueError) as exc:  # ssl.SSLError, a time-out, a reset
            reason = "no handshake within the ACSE time-out" if isinstance(exc, TimeoutError) else exc
            LOGGER.warning("DICOM TLS handshake with %s failed: %s", peer, reason)
            _close(secure if secure is not None else sock)
            return None
        finally:
            self.slots.give_back(address)
        LOGGER.info("DICOM TLS connection from %s: %s, %s%s", peer, secure.version(), secure.cipher()[0],
                    _client_subject(secure))
        return secure


def _client_subject(sock: ssl.SSLSocket) -> str:
    """``, client <subject>`` when the peer presented a (verified) certificate."""
    cert = sock.getpeercert()
    if not cert:
        return ""
    subject = ", ".join(f"{k}={v}" for rdn in cert.get("subject", ()) for k, v in rdn)
    return f", client {subject}"


def _close(sock: socket.socket) -> None:
    try:
        sock.close()
    except OSError:
        pass
