"""A DICOM listener that bad peers cannot bring down (issue 15, DIMSE findings).

Real peers where they exist (dcmtk, pynetdicom as a client) and raw sockets
for what no well-behaved peer sends; every address is a loopback address
(127.0.0.2 stands for "another host").
"""

from __future__ import annotations

import socket
import struct
import subprocess
import time

import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import (
    CTImageStorage,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    Verification,
)

from pacsdash.access import Accounts
from pacsdash.dimse.status import Status
from tests.conftest import SCU_AET, make_node, require_tool
from tests.factories import make_dataset, make_instance
from tests.helpers import have_dcmtk

OTHER_HOST = "127.0.0.2"
A_ASSOCIATE_AC, A_ASSOCIATE_RJ, A_ABORT = 0x02, 0x03, 0x07


# -- helpers ------------------------------------------------------------------
def client(aet: str = SCU_AET, timeout: float = 10) -> AE:
    ae = AE(ae_title=aet)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    return ae


def associate(node, contexts, aet=SCU_AET, called="PACSDASH", source=None, **kwargs):
    ae = client(aet)
    for cx in contexts:
        ae.add_requested_context(cx)
    if source is not None:
        kwargs["bind_address"] = (source, 0)
    return ae.associate("127.0.0.1", node.port, ae_title=called, **kwargs)


def study_query() -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.StudyInstanceUID = ""
    return ds


def store_one(node, data: Dataset, aet=SCU_AET, source=None) -> int | None:
    """C-STORE ``data``; its status, or None if the association was refused."""
    assoc = associate(node, [CTImageStorage], aet=aet, source=source)
    if not assoc.is_established:
        return None
    try:
        status = assoc.send_c_store(data)
        return int(status.Status) if "Status" in status else None
    finally:
        assoc.release()


def ct(pixels: int = 0, **attributes) -> Dataset:
    """A CT data set with ``pixels`` bytes of pixel data (as sent: implicit VR little endian)."""
    ds = make_dataset(SOPClassUID=str(CTImageStorage), **attributes)
    if pixels:
        side = int((pixels // 2) ** 0.5)
        ds.Rows = ds.Columns = side
        ds.PixelData = bytes(side * side * 2)
    return ds


@pytest.fixture
def elsewhere(tmp_path) -> Accounts:
    """TESTSCU registered at 127.0.0.2, not at 127.0.0.1 where the tests call from."""
    accounts = Accounts(tmp_path / "elsewhere.sqlite")
    accounts.add_modality("test", SCU_AET, OTHER_HOST, 11112)
    return accounts


# -- 1. a registered peer is its AE title AND its address ----------------------
def test_a_registered_title_from_another_address_may_not_find_or_get(archive, elsewhere):
    node = make_node(archive, elsewhere, accept_unknown_store=False)
    try:
        archive.store_bytes(make_instance())
        assoc = associate(node, [Verification, StudyRootQueryRetrieveInformationModelFind,
                                 StudyRootQueryRetrieveInformationModelGet])
        assert assoc.is_established  # it may echo, as anyone may
        try:
            assert assoc.send_c_echo().Status == 0
            statuses = [int(status.Status) for status, _ in assoc.send_c_find(study_query(), StudyRootQueryRetrieveInformationModelFind)]
            assert statuses == [Status.NOT_AUTHORIZED]
            got = [(int(status.Status), ident) for status, ident in assoc.send_c_get(study_query(), StudyRootQueryRetrieveInformationModelGet)]
            assert got and all(status != 0 and status != 0xFF00 for status, _ in got)
        finally:
            assoc.release()
        # The same title from its registered address is the peer, and finds the study.
        assoc = associate(node, [StudyRootQueryRetrieveInformationModelFind], source=OTHER_HOST)
        assert assoc.is_established
        try:
            found = [int(s.Status) for s, _ in assoc.send_c_find(study_query(), StudyRootQueryRetrieveInformationModelFind)]
        finally:
            assoc.release()
        assert found == [0xFF00, 0x0000]
    finally:
        node.stop()


def test_a_registered_title_from_another_address_stores_only_if_unknown_stores_are_accepted(archive, elsewhere):
    node = make_node(archive, elsewhere, accept_unknown_store=False)
    try:
        assert store_one(node, ct()) in (None, Status.NOT_AUTHORIZED)  # refused, one way or the other
        assert archive.index.totals()["instances"] == 0
        assert store_one(node, ct(), source=OTHER_HOST) == 0  # from its registered host it stores
        assert archive.index.totals()["instances"] == 1
    finally:
        node.stop()
    node = make_node(archive, elsewhere, accept_unknown_store=True)
    try:
        assert store_one(node, ct()) == 0
        assert archive.index.totals()["instances"] == 2
    finally:
        node.stop()


def test_a_registered_host_name_is_resolved(archive, tmp_path):
    accounts = Accounts(tmp_path / "named.sqlite")
    accounts.add_modality("test", SCU_AET, "localhost", 11112)
    node = make_node(archive, accounts, accept_unknown_store=False)
    try:
        assoc = associate(node, [StudyRootQueryRetrieveInformationModelFind])
        assert assoc.is_established
        try:
            statuses = [int(s.Status) for s, _ in assoc.send_c_find(study_query(), StudyRootQueryRetrieveInformationModelFind)]
        finally:
            assoc.release()
        assert statuses == [0x0000]
    finally:
        node.stop()


def test_the_address_check_can_be_turned_off_for_peers_behind_nat(archive, elsewhere):
    node = make_node(archive, elsewhere, accept_unknown_store=False, check_peer_address=False)
    try:
        assert store_one(node, ct()) == 0
    finally:
        node.stop()


@pytest.mark.skipif(not have_dcmtk(), reason="dcmtk is not installed")
def test_dcmtk_findscu_and_movescu_with_a_borrowed_title_are_refused(archive, elsewhere):
    require_tool(have_dcmtk(), "dcmtk")
    node = make_node(archive, elsewhere, accept_unknown_store=False)
    try:
        archive.store_bytes(make_instance(PatientID="P1"))
        find = subprocess.run(["/usr/bin/findscu", "-S", "-aet", SCU_AET, "-aec", "PACSDASH", "-k", "QueryRetrieveLevel=STUDY",
                               "-k", "StudyInstanceUID", "127.0.0.1", str(node.port)], capture_output=True, text=True, timeout=60)
        assert find.returncode != 0
        assert "Calling AE Title Not Recognized" in find.stdout + find.stderr
        move = subprocess.run(["/usr/bin/movescu", "-S", "-aet", SCU_AET, "-aec", "PACSDASH", "-aem", SCU_AET,
                               "-k", "QueryRetrieveLevel=PATIENT", "-k", "PatientID=P1", "127.0.0.1", str(node.port)],
                              capture_output=True, text=True, timeout=60)
        assert move.returncode != 0
        assert "Calling AE Title Not Recognized" in move.stdout + move.stderr
    finally:
        node.stop()


# -- 2. the called AE title must be ours ----------------------------------------
def test_a_wrong_called_ae_title_is_rejected(node):
    assoc = associate(node, [Verification], called="NOT-PACSDASH")
    assert assoc.is_rejected
    rj = assoc.acceptor.primitive
    assert (rj.result, rj.result_source, rj.diagnostic) == (0x01, 0x01, 0x07)  # PS3.8 7.1.1.3, 9.3.4


@pytest.mark.skipif(not have_dcmtk(), reason="dcmtk is not installed")
def test_echoscu_to_a_wrong_called_ae_title_is_told_so(node):
    done = subprocess.run(["/usr/bin/echoscu", "-aet", SCU_AET, "-aec", "SOMEONE", "127.0.0.1", str(node.port)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "Called AE Title Not Recognized" in done.stdout + done.stderr


# -- 3. nobody can take every slot ------------------------------------------------
def silent_connections(port: int, count: int, source: str) -> list[socket.socket]:
    sockets = []
    for _ in range(count):
        sock = socket.socket()
        sock.bind((source, 0))
        sock.connect(("127.0.0.1", port))
        sockets.append(sock)
    return sockets


@pytest.mark.parametrize("source", [OTHER_HOST, "127.0.0.1"], ids=["other-address", "same-address"])
def test_200_silent_connections_do_not_lock_a_registered_peer_out(node, archive, source):
    sockets = silent_connections(node.port, 200, source)
    try:
        started = time.monotonic()
        assert store_one(node, ct()) == 0
        assert time.monotonic() - started < 3
        assert archive.index.totals()["instances"] == 1
    finally:
        for sock in sockets:
            sock.close()


def test_silent_connections_are_closed_after_the_acse_timeout(archive, accounts):
    node = make_node(archive, accounts, acse_timeout=1)
    try:
        [sock] = silent_connections(node.port, 1, "127.0.0.1")
        sock.settimeout(5)
        started = time.monotonic()
        assert sock.recv(100) == b""  # closed, not left waiting
        assert time.monotonic() - started < 3
        sock.close()
    finally:
        node.stop()


@pytest.mark.parametrize("source", [OTHER_HOST, "127.0.0.1"], ids=["other-address", "same-address"])
def test_64_idle_associations_do_not_lock_a_registered_peer_out(node, archive, source):
    """Beyond its share an idle caller is refused with an A-ASSOCIATE-RJ as soon as it asks
    (each refusal sooner than the node's ACSE time-out, which a refusal by time-out would
    take: no wall-clock budget, so a loaded machine does not fail it), and a registered
    peer still stores."""
    idle, refused = [], 0
    acse_timeout = node.ae.acse_timeout
    for _ in range(64):
        started = time.monotonic()
        assoc = associate(node, [Verification], aet="IDLER", source=source)
        if assoc.is_established:
            idle.append(assoc)
        else:
            assert assoc.is_rejected, "neither accepted nor rejected: no answer came"
            rj = assoc.acceptor.primitive
            assert (rj.result, rj.result_source, rj.diagnostic) == (0x02, 0x03, 0x02)  # transient, local limit
            assert time.monotonic() - started < acse_timeout  # answered, not timed out
            refused += 1
    try:
        assert len(idle) <= 8 and refused >= 56  # [server] max_associations_per_address
        assert store_one(node, ct()) == 0
    finally:
        for assoc in idle:
            assoc.release()


def test_unregistered_callers_from_many_addresses_leave_the_reserved_slots(archive, accounts):
    node = make_node(archive, accounts, max_associations=6, reserved_associations=2, max_associations_per_address=8)
    idle = []
    try:
        for n in range(8):
            assoc = associate(node, [Verification], aet="IDLER", source=f"127.0.1.{n + 1}")
            if assoc.is_established:
                idle.append(assoc)
        assert len(idle) == 4  # 6 slots, 2 kept for registered peers
        assert store_one(node, ct()) == 0
    finally:
        for assoc in idle:
            assoc.release()
        node.stop()


# -- 4. mutated PDUs are answered at once ----------------------------------------
def _item(kind: int, body: bytes) -> bytes:
    return struct.pack(">BBH", kind, 0, len(body)) + body


def associate_rq(contexts=((1, "1.2.840.10008.1.1", ("1.2.840.10008.1.2",)),), called=b"PACSDASH",
                 calling=SCU_AET.encode()) -> bytes:
    """An A-ASSOCIATE-RQ PDU (PS3.8 9.3.2) built by hand, so that it can be wrong."""
    body = struct.pack(">HH", 1, 0) + called.ljust(16) + calling.ljust(16) + bytes(32)
    body += _item(0x10, b"1.2.840.10008.3.1.1.1")
    for cid, abstract, syntaxes in contexts:
        sub = _item(0x30, abstract.encode()) + b"".join(_item(0x40, ts.encode()) for ts in syntaxes)
        body += _item(0x20, bytes([cid, 0, 0, 0]) + sub)
    body += _item(0x50, _item(0x51, struct.pack(">L", 16384)) + _item(0x52, b"1.2.3.4"))
    return struct.pack(">BBL", 0x01, 0, len(body)) + body


def p_data(context_id: int, control: int, data: bytes) -> bytes:
    """A P-DATA-TF PDU with one PDV (PS3.8 9.3.5)."""
    pdv = struct.pack(">LBB", 2 + len(data), context_id, control) + data
    return struct.pack(">BBL", 0x04, 0, len(pdv)) + pdv


def echo_command() -> bytes:
    """An encoded C-ECHO-RQ command set (PS3.7 9.3.5)."""
    from pynetdicom.dimse_primitives import C_ECHO
    from pynetdicom.dimse_messages import C_ECHO_RQ

    primitive = C_ECHO()
    primitive.MessageID = 1
    primitive.AffectedSOPClassUID = Verification
    message = C_ECHO_RQ()
    message.primitive_to_message(primitive)
    return b"".join(item[1][1:] for pdata in message.encode_msg(1, 16382) for item in pdata.presentation_data_value_list)


MUTATED_RQ = {
    "no transfer syntax": associate_rq(contexts=((1, "1.2.840.10008.1.1", ()),)),
    "even context id": associate_rq(contexts=((2, "1.2.840.10008.1.1", ("1.2.840.10008.1.2",)),)),
    "no abstract syntax": associate_rq(contexts=((1, "", ("1.2.840.10008.1.2",)),)),
    "duplicate context id": associate_rq(contexts=((1, "1.2.840.10008.1.1", ("1.2.840.10008.1.2",)),) * 2),
    "blank called title": associate_rq(called=b" " * 16),
    "garbage body": struct.pack(">BBL", 0x01, 0, 16) + bytes(16),
    "unknown PDU type": b"\x09\x00\x00\x00\x00\x04abcd",
    "P-DATA before association": p_data(1, 0x03, b"\x00" * 12),
    "A-RELEASE-RP unasked": b"\x06\x00\x00\x00\x00\x04\x00\x00\x00\x00",
    "announces 4 GiB": b"\x01\x00\xff\xff\xff\xff" + bytes(64),
}
MUTATED_PDATA = {
    "data fragment first": lambda: p_data(1, 0x00, b"\x00" * 20),
    "data, last, first": lambda: p_data(1, 0x02, b"\x00" * 20),
    "command flipped to not last": lambda: p_data(1, 0x01, echo_command()),
    "command flipped to data": lambda: p_data(1, 0x02, echo_command()),
    "even context id": lambda: p_data(2, 0x03, echo_command()),
    "unaccepted context id": lambda: p_data(3, 0x03, echo_command()),
    "no PDV": lambda: struct.pack(">BBL", 0x04, 0, 0),
    "PDV without header": lambda: struct.pack(">BBLLB", 0x04, 0, 5, 1, 1),
    "garbage command": lambda: p_data(1, 0x03, b"\x01" * 20),
    "command of another group": lambda: p_data(1, 0x01, b"\x08\x00" + bytes(30)),
    "unknown PDU type": lambda: b"\x09\x00\x00\x00\x00\x04abcd",
    "A-ASSOCIATE-RQ again": lambda: associate_rq(),
}


def answer_to(port: int, payload: bytes, associated: bool, wait: float = 2.0) -> tuple[int | None, float]:
    """Send ``payload`` (after a good A-ASSOCIATE-RQ if ``associated``): the
    PDU type answered (None: the connection closed) and how long it took."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(wait + 3)
        if associated:
            sock.sendall(associate_rq())
            assert sock.recv(65536)[0] == A_ASSOCIATE_AC
        started = time.monotonic()
        try:
            sock.sendall(payload)
        except OSError:
            return None, time.monotonic() - started  # already closed on us
        try:
            answer = sock.recv(65536)
        except ConnectionResetError:
            answer = b""
        except socket.timeout:
            pytest.fail(f"no answer within {wait + 3} s")
        return (answer[0] if answer else None), time.monotonic() - started


def echo_works(node) -> bool:
    assoc = associate(node, [Verification])
    try:
        return assoc.is_established and assoc.send_c_echo().Status == 0
    finally:
        if assoc.is_established:
            assoc.release()


@pytest.mark.parametrize("name", list(MUTATED_RQ))
def test_a_mutated_association_request_is_answered_at_once(node, name):
    kind, took = answer_to(node.port, MUTATED_RQ[name], associated=False)
    assert kind in (A_ASSOCIATE_RJ, A_ABORT, None), kind
    assert took < 2, took
    assert echo_works(node)


@pytest.mark.parametrize("name", list(MUTATED_PDATA))
def test_a_mutated_p_data_pdu_is_answered_at_once(node, name):
    kind, took = answer_to(node.port, MUTATED_PDATA[name](), associated=True)
    assert kind in (A_ABORT, None), kind
    assert took < 2, took
    assert echo_works(node)


def test_a_well_formed_echo_by_hand_is_answered(node):
    """The raw-PDU helpers themselves are right: unmutated, they get a C-ECHO-RSP."""
    kind, _ = answer_to(node.port, p_data(1, 0x03, echo_command()), associated=True)
    assert kind == 0x04  # P-DATA-TF with the response


def test_a_truncated_pdu_is_closed_after_the_acse_timeout(archive, accounts):
    node = make_node(archive, accounts, acse_timeout=1)
    try:
        kind, took = answer_to(node.port, associate_rq()[:-10], associated=False, wait=3)
        assert kind in (A_ABORT, None)
        assert took < 3
        assert echo_works(node)
    finally:
        node.stop()


# -- 5. C-STORE size limit and quota ------------------------------------------------
def test_a_c_store_above_the_size_limit_is_refused_and_nothing_kept(archive, accounts):
    node = make_node(archive, accounts, max_store_mb=1)
    try:
        assert store_one(node, ct(pixels=1_200_000)) == Status.STORE_OUT_OF_RESOURCES
        assert archive.index.totals()["instances"] == 0
        assert list(archive.store.keys()) == []
        assert store_one(node, ct(pixels=500_000)) == 0  # the association's peer may still store smaller ones
        assert archive.index.totals()["instances"] == 1
    finally:
        node.stop()


def test_an_unregistered_peer_has_a_smaller_limit_and_a_quota(archive, accounts):
    node = make_node(archive, accounts, accept_unknown_store=True, unknown_store_max_mb=1, unknown_store_quota_mb=2)
    try:
        assert store_one(node, ct(pixels=1_200_000), aet="STRANGER") == Status.STORE_OUT_OF_RESOURCES
        assert store_one(node, ct(pixels=1_200_000)) == 0  # the registered peer is not bound by it
        statuses = [store_one(node, ct(pixels=600_000), aet="STRANGER") for _ in range(5)]
        assert statuses[:3] == [0, 0, 0]
        assert statuses[3:] == [Status.STORE_OUT_OF_RESOURCES] * 2  # 2 MB stored: over its quota
        assert archive.index.totals()["instances"] == 4
        assert store_one(node, ct(pixels=600_000)) == 0  # registered peers have no quota
    finally:
        node.stop()


def test_a_pdu_larger_than_any_allowed_data_set_is_not_read(archive, accounts):
    """A P-DATA-TF PDU announcing more than the largest data set: the connection closes at once."""
    node = make_node(archive, accounts, max_store_mb=1)
    try:
        kind, took = answer_to(node.port, b"\x04\x00" + struct.pack(">L", 64 << 20) + bytes(1024), associated=True)
        assert kind in (A_ABORT, None)
        assert took < 2
    finally:
        node.stop()


# -- the same through `pacsdash serve` and its worker processes --------------------
@pytest.mark.skipif(not have_dcmtk(), reason="dcmtk is not installed")
def test_through_the_worker_processes_a_flood_does_not_lock_storescu_out(tmp_path):
    from tests.helpers import VALID, ServerProcess, run_cli

    home = tmp_path / "home"
    assert run_cli("modalities", "add", "scanner", "--aet", "SCANNER", "--host", "127.0.0.1", "--port", "11112",
                   "--home", str(home)).returncode == 0
    server = ServerProcess.start(home, accept_unknown_store=False)
    sockets, idle = [], []
    try:
        class Port:
            port = server.dicom_port

        sockets = silent_connections(server.dicom_port, 200, OTHER_HOST)
        for _ in range(64):
            assoc = associate(Port, [Verification], aet="IDLER", source=OTHER_HOST)
            if assoc.is_established:
                idle.append(assoc)
        assert len(idle) <= 16  # 8 per address in each of the 2 workers
        started = time.monotonic()
        done = subprocess.run(["/usr/bin/storescu", "-aet", "SCANNER", "-aec", "PACSDASH", "127.0.0.1",
                               str(server.dicom_port), str(VALID[1])], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
        assert time.monotonic() - started < 5
        echo = subprocess.run(["/usr/bin/echoscu", "-aet", "SCANNER", "-aec", "WRONG", "127.0.0.1",
                               str(server.dicom_port)], capture_output=True, text=True, timeout=60)
        assert echo.returncode != 0 and "Called AE Title Not Recognized" in echo.stdout + echo.stderr
    finally:
        for assoc in idle:
            assoc.release()
        for sock in sockets:
            sock.close()
        server.stop()
