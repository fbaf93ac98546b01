"""Socket tuning for every DICOM association, accepted or requested."""

from __future__ import annotations

import logging
import socket

from pynetdicom import evt
from pynetdicom.events import Event

LOGGER = logging.getLogger(__name__)


def handle_connection_open(event: Event) -> None:
    """Turn off Nagle's algorithm (TCP_NODELAY) on the association's socket.

    pynetdicom leaves Nagle on; each small PDU (a C-ECHO, a C-STORE response)
    then waits for the peer's delayed ACK, ~40 ms an exchange.
    """
    sock = getattr(getattr(event.assoc.dul, "socket", None), "socket", None)
    if sock is None:
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError as exc:  # e.g. a socket closed in between
        LOGGER.debug("could not set TCP_NODELAY: %s", exc)


NODELAY_HANDLERS = [(evt.EVT_CONN_OPEN, handle_connection_open)]
