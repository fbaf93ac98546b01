"""The event-driven association threads keep pynetdicom's behaviour."""

from __future__ import annotations

import os
import threading
import time

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ImplicitVRLittleEndian
from pynetdicom import AE, evt
from pynetdicom.sop_class import CTImageStorage, Verification

from pacsdash.dimse import reactor

from tests.helpers import wait_until


@pytest.fixture(scope="module")
def echo_server():
    reactor.install()
    ae = AE(ae_title="REACTOR")
    ae.add_supported_context(Verification)
    ae.add_supported_context(CTImageStorage)
    ae.network_timeout = 1.0
    received: list[str] = []

    def on_store(event):
        received.append(event.dataset.SOPInstanceUID)
        return 0x0000

    server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)])
    yield ae, server.server_address[1], received
    server.shutdown()


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _requestor() -> AE:
    ae = AE(ae_title="CLIENT")
    ae.add_requested_context(Verification)
    ae.add_requested_context(CTImageStorage)
    return ae


def test_both_sides_use_the_event_driven_classes(echo_server) -> None:
    _, port, _ = echo_server
    assoc = _requestor().associate("127.0.0.1", port, ae_title="REACTOR")
    try:
        assert assoc.is_established
        assert isinstance(assoc, reactor.EventDrivenAssociation)
        assert isinstance(assoc.dul, reactor.EventDrivenDUL)
        acceptors = [t for t in threading.enumerate() if isinstance(t, reactor.EventDrivenAssociation) and t is not assoc]
        assert acceptors, "the accepted association should be event-driven too"
    finally:
        assoc.release()


def test_many_exchanges_then_release_leave_no_threads_or_descriptors(echo_server) -> None:
    _, port, received = echo_server
    fds_before = _open_fds()
    threads_before = threading.active_count()
    for round_ in range(5):
        assoc = _requestor().associate("127.0.0.1", port, ae_title="REACTOR")
        assert assoc.is_established
        for _ in range(200):  # each response must reach the caller, not the reactor
            assert assoc.send_c_echo().Status == 0x0000
        ds = Dataset()
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = f"1.2.3.{round_}"
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
        assert assoc.send_c_store(ds).Status == 0x0000
        assoc.release()
        assert assoc.is_released
    assert received[-5:] == [f"1.2.3.{k}" for k in range(5)]
    wait_until(lambda: threading.active_count() <= threads_before, timeout=10, what="association threads to end")
    wait_until(lambda: _open_fds() <= fds_before, timeout=10, what="wake-up pipes to be closed")


def test_peer_abort_is_noticed(echo_server) -> None:
    ae, port, _ = echo_server
    aborted = threading.Event()
    server_assocs_before = set(ae.active_associations)
    assoc = _requestor().associate("127.0.0.1", port, ae_title="REACTOR")
    assert assoc.is_established
    accepted = [a for a in ae.active_associations if a not in server_assocs_before]
    assert len(accepted) == 1
    accepted[0].bind(evt.EVT_ABORTED, lambda event: aborted.set())
    assoc.abort()
    assert aborted.wait(5), "the acceptor did not notice the peer's A-ABORT"
    wait_until(lambda: not accepted[0].is_alive(), timeout=5, what="the acceptor thread to end")


def test_network_timeout_still_fires(echo_server) -> None:
    _, port, _ = echo_server
    assoc = _requestor().associate("127.0.0.1", port, ae_title="REACTOR")
    assert assoc.is_established
    started = time.monotonic()
    # The server's network timeout is 1 s: it ends the idle association.
    wait_until(lambda: not assoc.is_established, timeout=10, what="the idle association to be ended")
    assert time.monotonic() - started >= 0.9


def test_recv_reads_exactly_what_was_asked() -> None:
    import socket

    from pynetdicom.transport import AssociationSocket

    left, right = socket.socketpair()
    try:
        holder = AssociationSocket.__new__(AssociationSocket)
        holder.socket = left
        payload = os.urandom(3 * reactor.RECV_CHUNK // 2)
        sender = threading.Thread(target=right.sendall, args=(payload + b"tail",))
        sender.start()
        assert bytes(reactor._recv(holder, len(payload))) == payload
        sender.join()
        right.close()
        assert bytes(reactor._recv(holder, 10)) == b"tail"  # short read at EOF, as pynetdicom
    finally:
        left.close()
