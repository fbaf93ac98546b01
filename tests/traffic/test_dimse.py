"""Associations as the recorder sees them: real peers (dcmtk, pynetdicom) on
loopback, in the server process and through DICOM worker processes."""

from __future__ import annotations

import subprocess

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind, Verification

from pacsdash.archive import Archive
from pacsdash.config import ServerSettings, load_settings, init_home
from pacsdash.dimse.scp import DicomNode
from pacsdash.dimse.workers import DicomWorkers
from pacsdash.traffic.events import AssociationOpened, AssociationRejected, DimseMessage
from pacsdash.traffic.recorder import TrafficRecorder
from tests.conftest import SCU_AET
from tests.helpers import DCMTK, VALID, wait_until

CT_SAMPLE = next(p for p in VALID if p.name == "CT_small.dcm")
EXPLICIT = "1.2.840.10008.1.2.1"
IMPLICIT = "1.2.840.10008.1.2"


@pytest.fixture
def recorded(archive, accounts):
    recorder = TrafficRecorder()
    archive.subscribe(recorder.on_commit)
    node = DicomNode(archive, accounts, ServerSettings(host="127.0.0.1", dicom_port=0), traffic=recorder)
    node.start()
    yield node, recorder
    node.stop()


def storescu(port: int, *files, aet: str = SCU_AET) -> None:
    result = subprocess.run([str(DCMTK / "storescu"), "-aet", aet, "-aec", "PACSDASH", "127.0.0.1", str(port),
                             *map(str, files)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def ended(recorder, count: int = 1):
    def done():
        records = [r for r in recorder.snapshot().associations if r.ended]
        return records if len(records) >= count else None

    return wait_until(done, 10, what=f"{count} associations to end")


def test_storescu_association_with_contexts_messages_and_release(dcmtk, recorded):
    node, recorder = recorded
    storescu(node.port, CT_SAMPLE)
    [record] = ended(recorder)
    opened = record.opened
    assert isinstance(opened, AssociationOpened)
    assert (opened.calling_aet, opened.called_aet, opened.address) == (SCU_AET, "PACSDASH", "127.0.0.1")
    ct = dcmread(CT_SAMPLE, stop_before_pixels=True)
    proposed = {context_id: (abstract, syntaxes) for context_id, abstract, syntaxes in opened.proposed}
    assert len(opened.proposed) > 50  # storescu proposes every storage class
    accepted = [cx for cx in opened.accepted if cx[1] == ct.SOPClassUID and cx[3] == "Accepted"]
    assert accepted and all(proposed[cx[0]][0] == ct.SOPClassUID and cx[2] in proposed[cx[0]][1] for cx in accepted)
    assert len(opened.accepted) == len(opened.proposed)  # an answer to each
    assert opened.implementation_class_uid  # dcmtk's
    request, response = record.first[:2]
    assert (request.command, request.message_id, request.sop_class) == ("C-STORE-RQ", 1, ct.SOPClassUID)
    assert dict(request.values)["AffectedSOPInstanceUID"] == ct.SOPInstanceUID and request.pdus >= 1 and request.size > 0
    assert (response.command, response.message_id, response.status) == ("C-STORE-RSP", 1, 0x0000)
    assert record.ended == "released"
    studies = wait_until(lambda: recorder.association(record.key).studies, 10, what="the commit")  # the index commits later
    assert studies == {ct.StudyInstanceUID: [str(ct.PatientName), ct.PatientID, 1]}


def test_echo_and_find_through_pynetdicom_are_recorded_with_status_and_keys(recorded):
    node, recorder = recorded
    ae = AE(ae_title=SCU_AET)
    ae.add_requested_context(Verification)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind, [IMPLICIT])
    assoc = ae.associate("127.0.0.1", node.port, ae_title="PACSDASH")
    assert assoc.is_established
    assert assoc.send_c_echo().Status == 0
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.PatientName = "NOBODY*"
    query.StudyInstanceUID = ""
    assert [status.Status for status, _ in assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind)] == [0]
    assoc.abort()
    [record] = ended(recorder)
    names = [(m.command, m.direction, m.status) for m in record.first]
    assert names == [("C-ECHO-RQ", "received", None), ("C-ECHO-RSP", "sent", 0),
                     ("C-FIND-RQ", "received", None), ("C-FIND-RSP", "sent", 0)]
    find = record.first[2]
    assert ("PatientName", "NOBODY*") in find.values and ("QueryRetrieveLevel", "STUDY") in find.values
    assert record.ended == "aborted"
    assert [cx[2] for cx in record.opened.accepted if cx[1] == str(StudyRootQueryRetrieveInformationModelFind)] == [IMPLICIT]


def test_an_unknown_peer_rejected_is_recorded(dcmtk, recorded):
    node, recorder = recorded
    ae = AE(ae_title="STRANGER")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    assoc = ae.associate("127.0.0.1", node.port, ae_title="PACSDASH")
    assert assoc.is_rejected
    [record] = ended(recorder)
    assert isinstance(record.opened, AssociationRejected) and record.opened.calling_aet == "STRANGER"
    assert record.ended == "rejected"


def test_worker_processes_send_their_events_to_the_server_process(dcmtk, tmp_path):
    home = tmp_path / "home"
    init_home(home)
    (home / "pacsdash.toml").write_text("[server]\naccept_unknown_store = true\n")
    settings = load_settings(home, host="127.0.0.1", dicom_port=0)
    archive = Archive.open_home(settings.store_path, settings.index_path)
    recorder = TrafficRecorder()
    archive.subscribe(recorder.on_commit)
    workers = DicomWorkers(settings, archive, 2, traffic=recorder)
    port = workers.start()
    try:
        files = [p for p in VALID if dcmread(p, stop_before_pixels=True).file_meta.TransferSyntaxUID
                 in (EXPLICIT, IMPLICIT)][:6]  # what storescu proposes by default
        assert len(files) == 6
        for half in (files[:3], files[3:]):
            storescu(port, *half, aet="ANYSCU")
        records = ended(recorder, 2)
        assert len(records) == 2
        assert {r.key.split("-")[0] for r in records} == {"w0", "w1"}  # one association per worker
        messages = [m for r in records for m in r.first + list(r.last)]
        statuses = [m.status for m in messages if m.command == "C-STORE-RSP"]
        assert len(statuses) == 6 and set(statuses) <= {0x0000, 0xB000, 0xB006, 0xB007}
        wait_until(lambda: sum(count for r in records for (_, _, count) in recorder.association(r.key).studies.values()) == 6,
                   10, what="the instances committed")
        events = recorder.events()
        for record in records:  # in each association, events arrive in the order they happened
            own = [e for e in events if isinstance(e, DimseMessage) and e.key == record.key]
            assert [e.time for e in own] == sorted(e.time for e in own)
        assert recorder.dropped == 0
    finally:
        workers.stop()
        archive.close()
