"""The DICOM node against pynetdicom as a real SCU, in-process, on loopback."""

from __future__ import annotations

import socket
import struct
import threading
import time

import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE, build_role, evt
from pynetdicom.presentation import StoragePresentationContexts
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from pacsdash.archive import Level
from pacsdash.dimse.scu import send_files
from tests.conftest import SCU_AET, make_node
from tests.factories import make_dataset, make_instance
from tests.helpers import VALID, dataset_bytes, sent_bytes, archive_dataset_bytes


def associate(node, contexts, aet=SCU_AET, **kwargs):
    ae = AE(ae_title=aet)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    for cx in contexts:
        ae.add_requested_context(getattr(cx, "abstract_syntax", cx))
    return ae.associate("127.0.0.1", node.port, ae_title="PACSDASH", **kwargs)


def find(node, identifier, model=StudyRootQueryRetrieveInformationModelFind, aet=SCU_AET):
    assoc = associate(node, [model], aet=aet)
    assert assoc.is_established
    try:
        responses = list(assoc.send_c_find(identifier, model))
    finally:
        assoc.release()
    return responses


def stored_dataset_bytes(archive, sop_uid: str) -> bytes:
    [location] = archive.locate(Level.IMAGE, sop_uid)
    return archive_dataset_bytes(archive, location)


def test_echo(node):
    assoc = associate(node, [Verification])
    assert assoc.is_established
    assert assoc.send_c_echo().Status == 0x0000
    assoc.release()


def test_sockets_have_nagle_off(node):
    from pacsdash.dimse.sockets import NODELAY_HANDLERS

    def nodelay(sock) -> int:
        return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)

    assoc = associate(node, [Verification], evt_handlers=NODELAY_HANDLERS)
    assert assoc.is_established
    try:
        [server_side] = wait_for_acceptors(node)
        assert nodelay(server_side.dul.socket.socket) == 1
        assert nodelay(assoc.dul.socket.socket) == 1
    finally:
        assoc.release()


def wait_for_acceptors(node):
    from tests.helpers import wait_until

    return wait_until(lambda: [a for a in node.ae.active_associations if a.is_acceptor], 5, what="an acceptor")


def test_store_every_valid_sample_keeps_the_data_set_bytes(node, archive):
    results = send_files("127.0.0.1", node.port, VALID, "PACSDASH", SCU_AET)
    assert [r.path for r in results if not r.ok] == []
    for path in VALID:
        sop_uid = str(make_uid_of(path))
        assert stored_dataset_bytes(archive, sop_uid) == sent_bytes(path), path.name


def make_uid_of(path):
    from pydicom import dcmread

    return dcmread(path, stop_before_pixels=True).SOPInstanceUID


def test_store_refuses_what_it_cannot_file(node, archive, tmp_path):
    bad = tmp_path / "no-sop.dcm"
    ds = make_dataset(SOPInstanceUID=None)
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4.5"
    ds.save_as(bad, enforce_file_format=True)
    traversal = tmp_path / "traversal.dcm"
    ds = make_dataset()
    ds.SOPInstanceUID = "1.2.3/../../etc"
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4.6"
    ds.save_as(traversal, enforce_file_format=True)
    results = send_files("127.0.0.1", node.port, [bad, traversal], "PACSDASH", SCU_AET)
    assert [r.status for r in results] == [0xC000, 0xC000]
    assert "SOPInstanceUID" in results[0].error
    assert archive.index.totals()["instances"] == 0
    assert list(archive.store.keys()) == []


def test_duplicate_store_answers_success_and_keeps_first(node, archive, tmp_path):
    first = tmp_path / "first.dcm"
    ds = make_dataset(PatientName="FIRST")
    ds.save_as(first, enforce_file_format=True)
    second = tmp_path / "second.dcm"
    ds.PatientName = "SECOND"
    ds.save_as(second, enforce_file_format=True)
    results = send_files("127.0.0.1", node.port, [first, second], "PACSDASH", SCU_AET)
    assert [r.status for r in results] == [0, 0]
    assert stored_dataset_bytes(archive, ds.SOPInstanceUID) == dataset_bytes(first)


@pytest.fixture
def studies(node, archive):
    """Two patients, three studies, four series."""
    a = make_dataset(PatientID="P1", PatientName="DOE^JANE", StudyDate="20240110", AccessionNumber="ACC1", StudyDescription="CT CHEST")
    archive.store_bytes(make_instance(**{k: a.get(k) for k in ("PatientID", "PatientName", "StudyDate", "AccessionNumber", "StudyDescription", "StudyInstanceUID", "SeriesInstanceUID")}, SOPInstanceUID=a.SOPInstanceUID))
    archive.store_bytes(make_instance(PatientID="P1", PatientName="DOE^JANE", StudyInstanceUID=a.StudyInstanceUID, StudyDate="20240110", Modality="MR"))
    b = archive.store_bytes(make_instance(PatientID="P1", PatientName="DOE^JANE", StudyDate="20240301", Modality="MR", AccessionNumber="ACC2"))
    c = archive.store_bytes(make_instance(PatientID="P2", PatientName="ROE^RICHARD", StudyDate="20230505", Modality="US", AccessionNumber="ACC3"))
    return {"a": a.StudyInstanceUID, "b": b.StudyInstanceUID, "c": c.StudyInstanceUID}


def study_query(**keys) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    for keyword in ("StudyInstanceUID", "PatientName", "PatientID", "StudyDate", "ModalitiesInStudy", "NumberOfStudyRelatedInstances", "AccessionNumber"):
        setattr(ds, keyword, "")
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


def matches(responses) -> list[Dataset]:
    assert responses[-1][0].Status == 0x0000, responses[-1][0]
    assert all(status.Status == 0xFF00 for status, _ in responses[:-1])
    return [identifier for _, identifier in responses[:-1]]


def test_find_study_root(studies, node):
    found = matches(find(node, study_query(PatientName="doe*")))
    assert {d.StudyInstanceUID for d in found} == {studies["a"], studies["b"]}
    a = next(d for d in found if d.StudyInstanceUID == studies["a"])
    assert a.ModalitiesInStudy == ["CT", "MR"]
    assert a.NumberOfStudyRelatedInstances == 2
    assert a.PatientName == "DOE^JANE"
    assert a.QueryRetrieveLevel == "STUDY"
    assert "StudyDescription" not in a  # only the keys asked for come back


@pytest.mark.parametrize(
    "keys, expected",
    [
        ({"StudyDate": "20240101-20241231"}, {"a", "b"}),
        ({"ModalitiesInStudy": "US"}, {"c"}),
        ({"AccessionNumber": "ACC?"}, {"a", "b", "c"}),
        ({"PatientID": "P2"}, {"c"}),
    ],
)
def test_find_matching(studies, node, keys, expected):
    found = matches(find(node, study_query(**keys)))
    assert {d.StudyInstanceUID for d in found} == {studies[k] for k in expected}


def test_find_uid_list(studies, node):
    found = matches(find(node, study_query(StudyInstanceUID=[studies["a"], studies["c"]])))
    assert {d.StudyInstanceUID for d in found} == {studies["a"], studies["c"]}


def test_find_patient_root_every_level(studies, node):
    model = PatientRootQueryRetrieveInformationModelFind
    query = Dataset()
    query.QueryRetrieveLevel = "PATIENT"
    query.PatientID = ""
    query.PatientName = ""
    query.NumberOfPatientRelatedStudies = ""
    patients = matches(find(node, query, model))
    assert {(d.PatientID, d.NumberOfPatientRelatedStudies) for d in patients} == {("P1", 2), ("P2", 1)}

    query = Dataset()
    query.QueryRetrieveLevel = "SERIES"
    query.PatientID = "P1"
    query.StudyInstanceUID = studies["a"]
    query.SeriesInstanceUID = ""
    query.Modality = ""
    series = matches(find(node, query, model))
    assert sorted(d.Modality for d in series) == ["CT", "MR"]

    query = Dataset()
    query.QueryRetrieveLevel = "IMAGE"
    query.StudyInstanceUID = studies["b"]
    query.SeriesInstanceUID = ""
    query.SOPInstanceUID = ""
    query.SOPClassUID = ""
    query.Rows = ""
    images = matches(find(node, query, model))
    assert len(images) == 1
    assert images[0].Rows == 2


def test_find_bad_identifier_is_a_failure_status(studies, node):
    responses = find(node, study_query(StudyDate="not-a-date"))
    assert len(responses) == 1
    assert responses[0][0].Status == 0xA900
    query = Dataset()
    query.QueryRetrieveLevel = "NONSENSE"
    assert find(node, query)[0][0].Status == 0xA900


def test_unknown_peer_is_rejected_for_find_but_may_store(node, archive):
    assoc = associate(node, [StudyRootQueryRetrieveInformationModelFind], aet="STRANGER")
    assert assoc.is_rejected
    # Storage from an unknown scanner is accepted by default...
    assoc = associate(node, StoragePresentationContexts[:5], aet="SCANNER")
    assert assoc.is_established
    assoc.release()
    # ... but a find over such an association is refused.
    contexts = [Verification, StudyRootQueryRetrieveInformationModelFind]
    assoc = associate(node, contexts, aet="SCANNER")
    assert assoc.is_established
    [(status, _)] = list(assoc.send_c_find(study_query(), StudyRootQueryRetrieveInformationModelFind))
    assert status.Status == 0x0124
    assoc.release()


def test_unknown_store_can_be_refused_by_config(archive, accounts, tmp_path):
    node = make_node(archive, accounts, accept_unknown_store=False)
    try:
        assoc = associate(node, StoragePresentationContexts[:5], aet="SCANNER")
        assert assoc.is_rejected
        path = tmp_path / "x.dcm"
        make_dataset().save_as(path, enforce_file_format=True)
        assert send_files("127.0.0.1", node.port, [path], "PACSDASH", SCU_AET)[0].status == 0
    finally:
        node.stop()


def test_peer_permissions_are_checked(node, accounts, tmp_path, archive):
    accounts.add_modality("storeonly", "STOREONLY", "127.0.0.1", 11113, "store")
    path = tmp_path / "x.dcm"
    make_dataset().save_as(path, enforce_file_format=True)
    assert send_files("127.0.0.1", node.port, [path], "PACSDASH", "STOREONLY")[0].status == 0
    [(status, _)] = find(node, study_query(), aet="STOREONLY")
    assert status.Status == 0x0124


def test_move_to_unknown_destination_is_a801(studies, node):
    assoc = associate(node, [StudyRootQueryRetrieveInformationModelMove])
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = studies["a"]
    responses = list(assoc.send_c_move(query, "NOWHERE", StudyRootQueryRetrieveInformationModelMove))
    assoc.release()
    assert responses[-1][0].Status == 0xA801


def test_move_sends_to_the_registered_address(studies, node, accounts, archive):
    received = []

    def on_store(event):
        received.append(event.encoded_dataset(include_meta=False))
        return 0

    receiver = AE(ae_title="MOVEDEST")
    receiver.supported_contexts = StoragePresentationContexts
    server = receiver.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)])
    try:
        accounts.add_modality("dest", "MOVEDEST", "127.0.0.1", server.server_address[1])
        assoc = associate(node, [StudyRootQueryRetrieveInformationModelMove])
        query = Dataset()
        query.QueryRetrieveLevel = "STUDY"
        query.StudyInstanceUID = studies["a"]
        responses = list(assoc.send_c_move(query, "MOVEDEST", StudyRootQueryRetrieveInformationModelMove))
        assoc.release()
    finally:
        server.shutdown()
    final = responses[-1][0]
    assert final.Status == 0x0000
    assert final.NumberOfCompletedSuboperations == 2
    expected = sorted(stored_dataset_bytes(archive, loc.SOPInstanceUID) for loc in archive.locate(Level.STUDY, studies["a"]))
    assert sorted(received) == expected


def test_get_returns_every_valid_sample_byte_for_byte(node, archive):
    send_files("127.0.0.1", node.port, VALID, "PACSDASH", SCU_AET)
    received: dict[str, bytes] = {}

    def on_store(event):
        received[event.request.AffectedSOPInstanceUID] = event.encoded_dataset(include_meta=False)
        return 0

    from pydicom import dcmread

    pairs = {}
    for path in VALID:
        ds = dcmread(path, stop_before_pixels=True)
        pairs.setdefault(str(ds.SOPClassUID), set()).add(str(ds.file_meta.TransferSyntaxUID))
    ae = AE(ae_title=SCU_AET)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 20
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    roles = []
    for sop_class, syntaxes in pairs.items():
        for syntax in sorted(syntaxes):  # one context per encoding: each is accepted
            ae.add_requested_context(sop_class, [syntax])
        roles.append(build_role(sop_class, scp_role=True))
    for path in VALID:
        ds = dcmread(path, stop_before_pixels=True)
        received.clear()
        assoc = ae.associate("127.0.0.1", node.port, ae_title="PACSDASH", ext_neg=roles,
                             evt_handlers=[(evt.EVT_C_STORE, on_store)])
        assert assoc.is_established
        query = Dataset()
        query.QueryRetrieveLevel = "IMAGE"
        query.StudyInstanceUID = ds.StudyInstanceUID
        query.SeriesInstanceUID = ds.SeriesInstanceUID
        query.SOPInstanceUID = ds.SOPInstanceUID
        responses = list(assoc.send_c_get(query, StudyRootQueryRetrieveInformationModelGet))
        assoc.release()
        assert responses[-1][0].Status == 0x0000, path.name
        # (rtdose/rtplan carry a MediaStorageSOPInstanceUID that differs from
        # their SOPInstanceUID; the sub-operation names the file meta's.)
        assert list(received.values()) == [sent_bytes(path)], path.name


def test_garbage_and_truncated_pdus_do_not_stop_the_node(node):
    with socket.create_connection(("127.0.0.1", node.port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + bytes(range(256)))
        sock.settimeout(5)
        try:
            sock.recv(1024)  # an A-ABORT or a closed connection
        except (ConnectionResetError, TimeoutError, socket.timeout):
            pass
    with socket.create_connection(("127.0.0.1", node.port), timeout=5) as sock:
        # An A-ASSOCIATE-RQ header announcing 1 MB, then silence and a close.
        sock.sendall(struct.pack(">BBL", 0x01, 0x00, 1_000_000) + b"\x00\x01")
    with socket.create_connection(("127.0.0.1", node.port), timeout=5) as sock:
        # A mangled A-ASSOCIATE-RQ: valid header, nonsense items.
        body = b"\x00\x01\x00\x00" + b"PACSDASH".ljust(16) + b"TESTSCU".ljust(16) + b"\x00" * 32 + b"\xff\xff\x00\x04abcd"
        sock.sendall(struct.pack(">BBL", 0x01, 0x00, len(body)) + body)
        sock.settimeout(5)
        try:
            reply = sock.recv(16)
            assert reply == b"" or reply[0] in (0x03, 0x07)  # A-ASSOCIATE-RJ, A-ABORT or closed
        except (ConnectionResetError, TimeoutError, socket.timeout):
            pass
    assoc = associate(node, [Verification])
    assert assoc.is_established
    assert assoc.send_c_echo().Status == 0
    assoc.release()


def test_several_associations_at_once(node, archive, tmp_path):
    errors = []

    def sender(k: int) -> None:
        paths = []
        for j in range(10):
            path = tmp_path / f"{k}-{j}.dcm"
            make_dataset(PatientID=f"PAR{k}").save_as(path, enforce_file_format=True)
            paths.append(path)
        results = send_files("127.0.0.1", node.port, paths, "PACSDASH", SCU_AET)
        errors.extend(r for r in results if not r.ok)

    threads = [threading.Thread(target=sender, args=(k,)) for k in range(6)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert archive.index.totals()["instances"] == 60
    assert time.monotonic() - start < 60


def test_the_requestors_first_transfer_syntax_is_accepted_in_each_association(node):
    """Each association accepts, per context, the syntax its requestor lists first; one
    association's order does not leak into the next (each has its own copy of the contexts)."""
    from pydicom.uid import (
        CTImageStorage,
        ExplicitVRLittleEndian,
        ImplicitVRLittleEndian,
        JPEG2000Lossless,
        MRImageStorage,
    )

    def accepted(proposals):
        ae = AE(ae_title=SCU_AET)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
        for sop_class, syntaxes in proposals:
            ae.add_requested_context(sop_class, syntaxes)
        assoc = ae.associate("127.0.0.1", node.port, ae_title="PACSDASH")
        assert assoc.is_established
        try:
            return {str(cx.abstract_syntax): str(cx.transfer_syntax[0]) for cx in assoc.accepted_contexts}
        finally:
            assoc.release()

    first = accepted([(CTImageStorage, [JPEG2000Lossless, ExplicitVRLittleEndian]),
                      (MRImageStorage, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])])
    assert first == {CTImageStorage: JPEG2000Lossless, MRImageStorage: ExplicitVRLittleEndian}
    second = accepted([(CTImageStorage, [ExplicitVRLittleEndian, JPEG2000Lossless]),
                       (MRImageStorage, [ImplicitVRLittleEndian, ExplicitVRLittleEndian])])
    assert second == {CTImageStorage: ExplicitVRLittleEndian, MRImageStorage: ImplicitVRLittleEndian}
    # The node's own contexts keep their order and their UIDs.
    [ct] = [cx for cx in node.ae.supported_contexts if cx.abstract_syntax == CTImageStorage]
    assert str(ct.transfer_syntax[0]) == ImplicitVRLittleEndian


def test_a_copied_context_owns_its_lists_and_shares_its_uids():
    import copy

    from pynetdicom.presentation import build_context

    from pacsdash.dimse import contexts

    contexts.install()
    original = build_context("1.2.840.10008.5.1.4.1.1.2", ["1.2.840.10008.1.2", "1.2.840.10008.1.2.1"])
    original.context_id = 3
    [copied] = copy.deepcopy([original])
    assert copied is not original and copied == original
    assert copied.context_id == 3 and copied.transfer_syntax == original.transfer_syntax
    copied.transfer_syntax.reverse()
    assert [str(ts) for ts in original.transfer_syntax] == ["1.2.840.10008.1.2", "1.2.840.10008.1.2.1"]
    assert copied.transfer_syntax[0] is original.transfer_syntax[1]  # the same immutable UID object


def test_a_peer_registered_without_store_is_refused_each_c_store(node, accounts, archive):
    """A registered peer not allowed to store gets 0124 (Not Authorized) for every C-STORE of its association."""
    accounts.add_modality("findonly", "FINDONLY", "127.0.0.1", 11114, "find")
    ds = make_dataset()
    assoc = associate(node, [ds.SOPClassUID], aet="FINDONLY")
    assert assoc.is_established
    try:
        for _ in range(2):
            status = assoc.send_c_store(ds)
            assert status.Status == 0x0124
            assert "may not store" in str(status.ErrorComment)
    finally:
        assoc.release()
    assert archive.index.totals()["instances"] == 0


def test_a_store_the_disk_cannot_take_is_answered_out_of_resources(node, archive, monkeypatch):
    """A700 (Refused: Out of Resources) when the file cannot be written; nothing is kept,
    and the same instance stores once there is room again."""
    import errno

    def full_disk(data, key=None):
        raise OSError(errno.ENOSPC, "No space left on device")

    ds = make_dataset(PatientID="DISKFULL")
    assoc = associate(node, [ds.SOPClassUID])
    assert assoc.is_established
    try:
        monkeypatch.setattr(archive.store, "write", full_disk)
        status = assoc.send_c_store(ds)
        assert status.Status == 0xA700
        monkeypatch.undo()
        assert archive.index.totals()["instances"] == 0
        assert assoc.send_c_store(ds).Status == 0x0000
    finally:
        assoc.release()
    assert archive.index.totals()["instances"] == 1


def test_stopping_the_node_aborts_open_associations_at_once(archive, accounts):
    """A stopping node (a DICOM worker whose server process died, or a clean stop) sends
    A-ABORT to the peers it still has, so a scanner in the middle of an association learns
    it at once instead of waiting for its own time-out (here 60 s)."""
    from pynetdicom import AE

    node = make_node(archive, accounts)
    ae = AE(ae_title=SCU_AET)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 60
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", node.port, ae_title="PACSDASH")
    assert assoc.is_established
    node.stop()
    for _ in range(200):  # polled, so a missing A-ABORT fails in 20 s rather than after the 60 s time-out
        if assoc.is_aborted:
            break
        time.sleep(0.1)
    assert assoc.is_aborted, "the peer was not told"
