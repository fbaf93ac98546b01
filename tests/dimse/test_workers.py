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


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def _inode_of_connection_to(local_port: int, server_port: int) -> str | None:
    """The inode of the server-side TCP socket whose peer is our ``local_port``."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in open(table).read().splitlines()[1:]:
            fields = line.split()
            local, remote, inode = fields[1], fields[2], fields[9]
            if int(local.rsplit(":", 1)[1], 16) == server_port and int(remote.rsplit(":", 1)[1], 16) == local_port:
                return inode
    return None


def test_associations_are_spread_evenly_over_the_workers(server):
    workers = children(server.process.pid)
    workers = [pid for pid in workers if "spawn_main" in open(f"/proc/{pid}/cmdline").read() and
               "resource_tracker" not in open(f"/proc/{pid}/cmdline").read()]
    assert len(workers) == 2
    ae = AE(ae_title="TESTSCU")
    ae.add_requested_context("1.2.840.10008.1.1")
    assocs = [ae.associate("127.0.0.1", server.dicom_port, ae_title="PACSDASH") for _ in range(4)]
    try:
        assert all(a.is_established for a in assocs)
        ports = [a.dul.socket.socket.getsockname()[1] for a in assocs]
        inodes = [_inode_of_connection_to(port, server.dicom_port) for port in ports]
        assert all(inodes)
        per_worker = [sum(inode in _socket_inodes(pid) for inode in inodes) for pid in workers]
        assert sorted(per_worker) == [2, 2], per_worker
        assert all(a.send_c_echo().Status == 0 for a in assocs)
    finally:
        for a in assocs:
            a.release()
