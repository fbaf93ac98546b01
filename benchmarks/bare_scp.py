"""The Python floor: a pynetdicom Storage SCP that only writes what it receives.

Run as ``python -m benchmarks.bare_scp --out DIR --port-file FILE``. It listens
on 127.0.0.1 (port 0 unless ``--port``), writes its port to ``--port-file``
once listening, and runs until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import threading
import uuid
from pathlib import Path

from pydicom.uid import AllTransferSyntaxes
from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.events import Event
from pynetdicom.sop_class import Verification


def _nodelay(event: Event) -> None:
    """EVT_CONN_OPEN: turn Nagle's algorithm off on the association's socket."""
    sock = getattr(getattr(event.assoc.dul, "socket", None), "socket", None)
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass


def make_store_handler(out: Path):
    """An EVT_C_STORE handler writing each data set, as received, to ``out``."""

    def handle_store(event: Event) -> int:
        with open(out / f"{uuid.uuid4().hex}.dcm", "wb") as handle:
            handle.write(event.encoded_dataset())
        return 0x0000

    return handle_store


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--port-file", type=Path, required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--aet", default="BARE")
    args = parser.parse_args(argv)
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    args.out.mkdir(parents=True, exist_ok=True)

    ae = AE(ae_title=args.aet)
    ae.maximum_pdu_size = 0  # as pacsdash: no limit on what the peer sends
    ae.maximum_associations = 16
    ae.network_timeout = 60
    transfer_syntaxes = [str(uid) for uid in AllTransferSyntaxes]
    ae.add_supported_context(Verification, transfer_syntaxes)
    for cx in AllStoragePresentationContexts:
        ae.add_supported_context(cx.abstract_syntax, transfer_syntaxes)
    handlers = [(evt.EVT_CONN_OPEN, _nodelay), (evt.EVT_C_STORE, make_store_handler(args.out))]
    server = ae.start_server(("127.0.0.1", args.port), block=False, evt_handlers=handlers)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    tmp = args.port_file.with_suffix(".tmp")
    tmp.write_text(str(server.server_address[1]))
    tmp.replace(args.port_file)
    try:
        while not stop.wait(1.0):
            pass
    finally:
        server.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
