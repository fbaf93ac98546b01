"""The DICOM node as served by worker processes of a real `pacsdash serve`."""

from __future__ import annotations

import os
import threading

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pynetdicom import AE, build_role, evt
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind, StudyRootQueryRetrieveInformationModelGet

from pacsdash.dimse.scu import send_files
from tests.helpers import VALID, ServerProcess, run_cli, sent_bytes, wait_until


@pytest.fixture
def server(tmp_path):
    home = tmp_path / "home"
    assert run_cli("modalities", "add", "t", "--home", str(home), "--aet", "TESTSCU", "--host", "127.0.0.1", "--port", "11112").returncode == 0
    server = ServerProcess.start(home)
    yield server
    server.stop()


def children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry))
    return out


def test_store_find_and_get_through_workers(server):
    sample = next(p for p in VALID if p.name == "CT_small.dcm")
    errors = []

    def send(k):
        results = send_files("127.0.0.1", server.dicom_port, VALID[k::4], "PACSDASH", "TESTSCU")
        errors.extend(r for r in results if not r.ok)

    threads = [threading.Thread(target=send, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors

    ae = AE(ae_title="TESTSCU")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    ds = dcmread(sample, stop_before_pixels=True)
    ae.add_requested_context(ds.SOPClassUID, [ds.file_meta.TransferSyntaxUID])
    received = []

    def on_store(event):
        received.append(event.encoded_dataset(include_meta=False))
        return 0

    assoc = ae.associate("127.0.0.1", server.dicom_port, ae_title="PACSDASH",
                         ext_neg=[build_role(ds.SOPClassUID, scp_role=True)], evt_handlers=[(evt.EVT_C_STORE, on_store)])
    assert assoc.is_established
    query = Dataset()
    query.QueryRetrieveLevel = "IMAGE"
    query.SOPInstanceUID = ""
    query.StudyInstanceUID = ""
    found = [i for s, i in assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind) if s.Status == 0xFF00]
    assert len(found) == len(VALID)
    query = Dataset()
    query.QueryRetrieveLevel = "IMAGE"
    query.StudyInstanceUID = ds.StudyInstanceUID
    query.SeriesInstanceUID = ds.SeriesInstanceUID
    query.SOPInstanceUID = ds.SOPInstanceUID
    final = list(assoc.send_c_get(query, StudyRootQueryRetrieveInformationModelGet))[-1][0]
    assoc.release()
    assert final.Status == 0
    assert received == [sent_bytes(sample)]


def test_workers_stop_with_the_server(server):
    workers = children(server.process.pid)
    assert len(workers) >= 2
    server.kill()
    wait_until(lambda: not any(alive(pid) for pid in workers), 20, what="workers to exit after the server was killed")


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, exited but not yet reaped, does not)."""
    try:
        state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
