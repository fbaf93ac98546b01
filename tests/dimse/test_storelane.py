"""The C-STORE lane: requests received in the DUL thread, everything else left to pynetdicom."""

from __future__ import annotations

import struct
from typing import Any
from io import BytesIO

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.dimse_messages import C_STORE_RQ
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.pdu import P_DATA_TF
from pynetdicom.presentation import build_context
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind, Verification

from pacsdash.archive import Level
from tests.conftest import SCU_AET, make_node
from tests.factories import make_dataset, make_instance
from tests.helpers import VALID, sent_bytes, archive_dataset_bytes, wait_until

CT = build_context(CTImageStorage, [ExplicitVRLittleEndian])


def lane_of(node):
    """The store lane of the node's one accepted association, once attached."""

    def attached():
        lanes = [a.dul.store_lane for a in node.ae.active_associations if a.is_acceptor]
        return lanes if lanes and all(lanes) else None

    [lane] = wait_until(attached, 5, what="the store lane to be attached")
    return lane


def associate(node, contexts, max_pdu: int = 16382):
    ae = AE(ae_title=SCU_AET)
    ae.maximum_pdu_size = max_pdu
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    for cx in contexts:
        ae.add_requested_context(getattr(cx, "abstract_syntax", cx), [str(t) for t in getattr(cx, "transfer_syntax", [])] or None)
    assoc = ae.associate("127.0.0.1", node.port, ae_title="PACSDASH")
    assert assoc.is_established
    return assoc


def stored(archive, sop_uid: str) -> bytes:
    [location] = archive.locate(Level.IMAGE, None, SOPInstanceUID=sop_uid)
    return archive_dataset_bytes(archive, location)


@pytest.mark.parametrize("server_max_pdu", [0, 4096])
def test_every_sample_through_the_lane_keeps_its_bytes(archive, accounts, server_max_pdu):
    """Each data set, in one PDU or in many, is archived byte for byte by the lane."""
    node = make_node(archive, accounts)
    node.ae.maximum_pdu_size = server_max_pdu  # 4096: every data set arrives in many PDUs
    try:
        contexts = {}
        datasets = [dcmread(path) for path in VALID]
        for ds in datasets:
            contexts.setdefault(str(ds.SOPClassUID), set()).add(str(ds.file_meta.TransferSyntaxUID))
        ae = AE(ae_title=SCU_AET)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 20
        for sop_class, syntaxes in list(contexts.items())[:120]:
            for syntax in syntaxes:
                ae.add_requested_context(sop_class, syntax)
        assoc = ae.associate("127.0.0.1", node.port, ae_title="PACSDASH")
        assert assoc.is_established
        lane = lane_of(node)
        try:
            for path in VALID:
                status = assoc.send_c_store(path)
                assert status.Status in (0x0000,), (path.name, status)
        finally:
            assoc.release()
        assert lane.received == len(VALID)  # every one through the lane
        for path, ds in zip(VALID, datasets):
            assert stored(archive, str(ds.SOPInstanceUID)) == sent_bytes(path), path.name
    finally:
        node.stop()


def test_other_messages_interleaved_go_to_pynetdicom(node, archive):
    """C-ECHO and C-FIND between C-STOREs on one association are answered as before."""
    first = archive.store_bytes(make_instance(PatientID="LANE"))
    assoc = associate(node, [Verification, StudyRootQueryRetrieveInformationModelFind, CT])
    lane = lane_of(node)
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.PatientID = "LANE"
    query.StudyInstanceUID = ""
    try:
        sent = []
        for number in range(3):
            assert assoc.send_c_echo().Status == 0x0000
            ds = make_dataset(PatientID="LANE", StudyInstanceUID=first.StudyInstanceUID, InstanceNumber=number)
            sent.append(ds)
            assert assoc.send_c_store(ds).Status == 0x0000
            responses = list(assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind))
            assert [r[0].Status for r in responses] == [0xFF00, 0x0000]
            assert responses[0][1].StudyInstanceUID == first.StudyInstanceUID
    finally:
        assoc.release()
    assert lane.received == 3
    assert len(archive.locate(Level.STUDY, first.StudyInstanceUID)) == 4


def test_refusals_and_duplicates_answer_as_through_pynetdicom(archive, accounts, tmp_path):
    node = make_node(archive, accounts)
    try:
        assoc = associate(node, [CT])
        lane = lane_of(node)
        ds = make_dataset(PatientName="FIRST")
        try:
            assert assoc.send_c_store(ds).Status == 0x0000
            ds.PatientName = "SECOND"
            assert assoc.send_c_store(ds).Status == 0x0000  # a copy: success, first kept
            broken = make_dataset(SOPInstanceUID=None)
            broken.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4.5"
            broken.save_as(tmp_path / "broken.dcm", enforce_file_format=True)
            status = assoc.send_c_store(tmp_path / "broken.dcm")  # as a file: pynetdicom sends it as it is
            assert status.Status == 0xC000
            assert "SOPInstanceUID" in str(status.ErrorComment)
        finally:
            assoc.release()
        assert lane.received == 3
        assert archive.index.totals()["instances"] == 1
        assert b"FIRST" in stored(archive, str(ds.SOPInstanceUID))
    finally:
        node.stop()


def _store_command_pdu(assoc, ds, message_id: int = 9) -> tuple[bytes, int]:
    """A C-STORE-RQ command PDU for ``ds`` on the association's CT context, and that context's ID."""
    context = next(cx for cx in assoc.accepted_contexts if cx.abstract_syntax == ds.SOPClassUID)
    request = C_STORE()
    request.MessageID = message_id
    request.AffectedSOPClassUID = ds.SOPClassUID
    request.AffectedSOPInstanceUID = ds.SOPInstanceUID
    request.DataSet = BytesIO(b"\x08\x00\x16\x00")
    message = C_STORE_RQ()
    message.primitive_to_message(request)
    [command_pdata, *_] = list(message.encode_msg(context.context_id, 0))
    pdu = P_DATA_TF()
    pdu.from_primitive(command_pdata)
    return pdu.encode(), context.context_id


def encoded(ds: Dataset) -> bytes:
    """``ds`` encoded as a C-STORE sends it on the CT context: explicit VR little endian."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, False
    write_dataset(buffer, ds)
    return buffer.getvalue()


def p_data(context_id: int, *items: tuple[int, bytes]) -> bytes:
    """A P-DATA-TF PDU of (message control header, fragment) PDV items."""
    body = b"".join(struct.pack(">LBB", 2 + len(data), context_id, control) + data for control, data in items)
    return struct.pack(">BBL", 0x04, 0, len(body)) + body


def exchange(assoc, send) -> Any:
    """Pause the requestor's reactor (as ``send_c_store`` does), let ``send``
    write raw bytes to its socket, and return the response that comes back."""
    assoc._reactor_checkpoint.clear()  # noqa: SLF001
    wait_until(lambda: assoc._is_paused, 5, what="the reactor to pause")  # noqa: SLF001
    try:
        send(assoc.dul.socket.socket)
        _, response = assoc.dimse.get_msg(block=True)
    finally:
        assoc._reactor_checkpoint.set()  # noqa: SLF001
    return response


def assert_still_serving(node, archive, instances: int) -> None:
    """Another association stores one more instance: the node kept serving."""
    other = associate(node, [CT])
    try:
        assert other.send_c_store(make_dataset()).Status == 0x0000
    finally:
        other.release()
    assert archive.index.totals()["instances"] == instances


def test_a_broken_pdu_mid_data_set_aborts_only_that_association(node, archive):
    assoc = associate(node, [CT])
    lane_of(node)
    command, context_id = _store_command_pdu(assoc, make_dataset())
    sock = assoc.dul.socket.socket
    sock.sendall(command)
    # A data fragment whose PDV item claims more bytes than its PDU holds.
    body = struct.pack(">LBB", 5000, context_id, 0x00) + b"\x00" * 16
    sock.sendall(struct.pack(">BBL", 0x04, 0, len(body)) + body)
    wait_until(lambda: assoc.is_aborted or not assoc.is_alive(), 10, what="the association to be aborted")
    assert archive.index.totals()["instances"] == 0
    assert list(archive.store.keys()) == []
    assert_still_serving(node, archive, 1)


def test_a_pdu_header_arriving_in_pieces_is_waited_for(node, archive):
    """A data PDU whose 6-byte header comes in two TCP segments is still the lane's."""
    import time

    assoc = associate(node, [CT])
    lane = lane_of(node)
    ds = make_dataset(PatientID="PIECES")
    data = encoded(ds)
    command, context_id = _store_command_pdu(assoc, ds)
    half = len(data) // 2
    last = p_data(context_id, (0x02, data[half:]))

    def send(sock):
        sock.sendall(command + p_data(context_id, (0x00, data[:half])))
        sock.sendall(last[:3])
        time.sleep(0.3)  # the lane sees 3 bytes of the header and must wait for the rest
        sock.sendall(last[3:])

    response = exchange(assoc, send)
    assert response is not None and response.Status == 0x0000
    assoc.release()
    assert lane.received == 1
    [location] = archive.locate(Level.IMAGE, None, SOPInstanceUID=str(ds.SOPInstanceUID))
    assert archive_dataset_bytes(archive, location) == data


def test_an_absurd_pdu_length_allocates_nothing_up_front(node, archive):
    """A P-DATA-TF header announcing ~2 GB, then a close: memory stays put, the node keeps serving."""
    assoc = associate(node, [CT])
    lane_of(node)

    def peak_kib() -> int:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))

    before = peak_kib()
    command, _ = _store_command_pdu(assoc, make_dataset())
    sock = assoc.dul.socket.socket
    sock.sendall(command)
    sock.sendall(struct.pack(">BBL", 0x04, 0, 2_000_000_000) + b"\x00" * 1000)
    sock.shutdown(2)
    wait_until(lambda: not [a for a in node.ae.active_associations if a.is_acceptor], 10,
               what="the association to end")
    assert peak_kib() - before < 200_000  # not the 2 GB announced
    assert_still_serving(node, archive, 1)


def test_a_slow_store_does_not_time_the_association_out(archive, accounts, monkeypatch):
    """The network idle timeout counts silence on the wire, not time spent storing."""
    import time

    node = make_node(archive, accounts, network_timeout=1)
    slow_store = archive.store_bytes

    def store_bytes(*args, **kwargs):
        time.sleep(1.5)  # longer than the network timeout
        return slow_store(*args, **kwargs)

    monkeypatch.setattr(archive, "store_bytes", store_bytes)
    try:
        assoc = associate(node, [CT])
        lane = lane_of(node)
        try:
            assert assoc.send_c_store(make_dataset()).Status == 0x0000
        finally:
            assoc.release()
        assert lane.received == 1
        assert archive.index.totals()["instances"] == 1
    finally:
        node.stop()


def test_command_set_is_read_without_decoding():
    from pynetdicom.dsutils import encode

    from pacsdash.dimse.storelane import _command_elements, _uid, _us

    command = Dataset()
    command.CommandGroupLength = 0
    command.AffectedSOPClassUID = CTImageStorage
    command.CommandField = 0x0001
    command.MessageID = 3
    command.CommandDataSetType = 0x0000
    command.AffectedSOPInstanceUID = "1.2.3.45"
    encoded = encode(command, True, True)
    fields = _command_elements(memoryview(encoded))
    assert _us(fields[0x00000100]) == 0x0001
    assert _us(fields[0x00000110]) == 3
    assert _us(fields[0x00000800]) == 0x0000
    assert _uid(fields[0x00000002]) == CTImageStorage
    assert _uid(fields[0x00001000]) == "1.2.3.45"  # its NUL padding stripped
    assert _command_elements(memoryview(encoded[:20])) is None  # cut short inside an element
    assert _uid(memoryview(b"1.2/../x")) is None
    assert _us(memoryview(b"\x01")) is None
    del command.CommandField
    assert 0x00000100 not in _command_elements(memoryview(encode(command, True, True)))



def test_a_request_with_a_malformed_affected_uid_is_left_to_pynetdicom(node, archive):
    """A C-STORE-RQ whose AffectedSOPInstanceUID is no UID is not the lane's: pynetdicom answers it as it does."""
    from pynetdicom.dsutils import encode

    assoc = associate(node, [CT])
    lane = lane_of(node)
    ds = make_dataset(PatientID="ODDUID")
    context = next(cx for cx in assoc.accepted_contexts if cx.abstract_syntax == ds.SOPClassUID)
    command = Dataset()
    command.CommandGroupLength = 0
    command.AffectedSOPClassUID = ds.SOPClassUID
    command.CommandField = 0x0001
    command.MessageID = 7
    command.Priority = 0
    command.CommandDataSetType = 0x0000
    command.AffectedSOPInstanceUID = "1.2.3.abc/../x"
    command.CommandGroupLength = len(encode(command, True, True)) - 12
    pdu = p_data(context.context_id, (0x03, encode(command, True, True)), (0x02, encoded(ds)))
    response = exchange(assoc, lambda sock: sock.sendall(pdu))
    assoc.release()
    assert lane.received == 0
    assert response is not None
    assert_still_serving(node, archive, archive.index.totals()["instances"] + 1)


def test_a_socket_with_a_timeout_still_stores_through_the_lane(node, archive):
    """An accepted socket with a timeout (Python then polls before each read)
    is read PDU by PDU, and the data set still arrives whole."""
    node.ae.maximum_pdu_size = 4096  # the data set comes in many PDUs
    assoc = associate(node, [CT])
    lane = lane_of(node)
    [accepted] = [a for a in node.ae.active_associations if a.is_acceptor]
    accepted.dul.socket.socket.settimeout(30)  # longer than the SCU's 10 s DIMSE timeout
    try:
        status = assoc.send_c_store(make_dataset(PatientID="TIMEOUT"))
        assert status and status.Status == 0x0000
    finally:
        assoc.release()
    assert lane.received == 1


def test_a_response_the_dul_thread_queues_itself_goes_out_without_a_wait(node, archive, monkeypatch):
    """The lane queues each C-STORE-RSP from the DUL thread, which then finds
    it before waiting: no wake-up needed, no IDLE_WAIT lost per instance."""
    import time

    from pacsdash.dimse import reactor

    monkeypatch.setattr(reactor, "IDLE_WAIT", 5.0)  # a missed response would wait this long
    assoc = associate(node, [CT])
    lane = lane_of(node)
    try:
        started = time.monotonic()
        for number in range(5):
            assert assoc.send_c_store(make_dataset(InstanceNumber=number)).Status == 0x0000
        assert time.monotonic() - started < 5.0  # each would have taken 5 s
    finally:
        assoc.release()
    assert lane.received == 5


def test_a_refusal_whose_reason_quotes_non_ascii_text_is_answered(node, archive):
    """The error comment of a refusal may quote what the peer sent (a UID with
    a non-ASCII byte): the response still goes out, in the default repertoire."""
    assoc = associate(node, [CT])
    lane = lane_of(node)
    ds = make_dataset(SOPInstanceUID="1.2.3.99")
    data = encoded(ds).replace(b"1.2.3.99", "1.2.3.\u00e9".encode("utf-8"))
    command, context_id = _store_command_pdu(assoc, ds)
    response = exchange(assoc, lambda sock: sock.sendall(command + p_data(context_id, (0x02, data))))
    assert response is not None and response.Status == 0xC000
    assert "SOPInstanceUID" in str(response.ErrorComment)
    assert assoc.is_established  # answered, not aborted
    assoc.release()
    assert lane.received == 1
    assert archive.index.totals()["instances"] == 0
