"""A restart after an unclean stop serves first and finishes its reconcile after.

What must be settled before serving (temporary files, index rows whose file
never arrived, the journal's acknowledged instances) is; the orphan files
(written, never indexed) are indexed by a thread while the server already
answers. These tests make that thread wait on an event (no timing asserted)
and check the ordering and what a file arriving meanwhile becomes.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest
from pynetdicom import AE
from pynetdicom.presentation import build_context

from pacsdash.archive import Archive, Level, Query
from pacsdash.archive import archive as archive_module
from pacsdash.archive.check import check_archive
from pacsdash.archive.journal import Journal
from pacsdash.archive.parsing import parse_instance
from tests.factories import make_dataset, make_instance

N_INDEXED = 40
N_ORPHANS = 6
N_MISSING = 3


def crash(archive: Archive) -> None:
    """Stop an archive the way a kill would: no clean-stop mark."""
    archive._files.shutdown()
    archive._writer.stop()
    archive._index.close()


def crashed_home(home: Path) -> dict:
    """A home as a kill leaves it: indexed files, orphan files (one a second copy
    of an indexed instance), rows without files and a half-written file."""
    archive = Archive.open_home(home / "store", home / "index.duckdb")
    indexed = [archive.store_bytes(make_instance(PatientID="KEPT", InstanceNumber=i)) for i in range(N_INDEXED)]
    orphans = {}
    for i in range(N_ORPHANS):
        ds = make_dataset(PatientID="ORPHAN", InstanceNumber=i)
        orphans[ds.SOPInstanceUID] = archive.store.write(_bytes(ds))
    copy_of = indexed[0].SOPInstanceUID
    copy_key = archive.store.write(make_instance(PatientID="KEPT", SOPInstanceUID=copy_of))
    missing = []
    for i in range(N_MISSING):
        record = parse_instance(make_instance(PatientID="NOFILE", InstanceNumber=i))
        record.file = archive.store.new_key()
        archive._writer.submit(record).result()
        missing.append(record.file)
    partial = archive.store.local_path(copy_key).with_name("0" * 32 + ".dcm.tmp")
    partial.write_bytes(b"DICM" * 10)
    archive.wait_indexed()
    crash(archive)
    return {"indexed": indexed, "orphans": orphans, "copy_key": copy_key, "missing": missing, "partial": partial}


def _bytes(ds) -> bytes:
    import io

    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


class Gate:
    """Holds the background reconcile at its first orphan until released."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.reached = threading.Event()
        self.release = threading.Event()
        self.parsed: list[str] = []
        real = archive_module.parse_instance

        def parse(raw, origin="", *args, **kwargs):
            if origin == "recovered":
                self.reached.set()
                assert self.release.wait(120), "the test never released the reconcile"
            record = real(raw, origin, *args, **kwargs)
            if origin == "recovered":
                self.parsed.append(record.SOPInstanceUID)
            return record

        monkeypatch.setattr(archive_module, "parse_instance", parse)
        monkeypatch.setattr(archive_module, "ORPHAN_SETTLE_SECONDS", 0.0)


def c_echo_and_store(port: int, files: list[bytes]) -> tuple[int, list[int]]:
    """C-ECHO, then C-STORE each Part 10 file, over one association; the statuses."""
    import io

    from pydicom import dcmread

    ae = AE(ae_title="RECOVERYSCU")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    contexts = [build_context("1.2.840.10008.1.1"),
                build_context("1.2.840.10008.5.1.4.1.1.2", ["1.2.840.10008.1.2.1"])]
    assoc = ae.associate("127.0.0.1", port, ae_title="PACSDASH", contexts=contexts)
    assert assoc.is_established
    try:
        echo = assoc.send_c_echo().Status
        stored = [assoc.send_c_store(dcmread(io.BytesIO(raw))).Status for raw in files]
    finally:
        assoc.release()
    return echo, stored


@pytest.mark.parametrize("workers", [0, 2], ids=["in-process", "worker-processes"])
def test_server_serves_before_the_background_reconcile_ends(tmp_path, monkeypatch, workers):
    from pacsdash.config import load_settings
    from pacsdash.server import start_server

    home = tmp_path / "home"
    state = crashed_home(home)
    gate = Gate(monkeypatch)
    settings = load_settings(home, http_port=0, dicom_port=0, dicom_workers=workers, accept_unknown_store=True)
    running = start_server(settings)
    try:
        archive = running.app.archive
        assert gate.reached.wait(60), "no background reconcile started"
        # Settled before serving: the half-written file and the rows without files.
        assert not state["partial"].exists()
        assert archive.count(Query(Level.IMAGE, {"PatientID": "NOFILE"})) == 0
        assert not archive.wait_reconciled(0)

        # While the reconcile waits: a C-ECHO, a new instance and a resend of an orphan's instance.
        new = make_instance(PatientID="NEW")
        resent_uid = sorted(state["orphans"])[-1]  # not indexed yet: the reconcile waits at its first orphan
        resent = _bytes(make_dataset(PatientID="ORPHAN", SOPInstanceUID=resent_uid))
        echo, stored = c_echo_and_store(running.node.port, [new, resent])
        assert echo == 0x0000 and stored == [0x0000, 0x0000]
        assert not archive.wait_reconciled(0), "the server answered only after the reconcile"
        new_uid = parse_instance(new).SOPInstanceUID
        archive.wait_indexed()
        resent_key = archive.index.file_of(resent_uid)
        assert resent_key and resent_key != state["orphans"][resent_uid]

        gate.release.set()
        assert archive.wait_reconciled(120)
        job = archive._reconciliation
        assert job.complete
        # Every orphan but the resent one indexed; the resent one's old file and the copy removed.
        assert job.report == {"temporary_removed": 1, "indexed": N_ORPHANS - 1, "removed": 2, "missing": N_MISSING}
        found = {r["SOPInstanceUID"]: r for r in archive.find(Query(Level.IMAGE, {}, ["PatientID"]))}
        assert set(state["orphans"]) <= set(found)
        assert {r.SOPInstanceUID for r in state["indexed"]} <= set(found)
        assert len(found) == N_INDEXED + N_ORPHANS + 1
        for uid in (new_uid, resent_uid):
            [location] = archive.locate(Level.IMAGE, None, SOPInstanceUID=uid)  # stored exactly once
            assert archive.local_path(location).stat().st_size == location.size  # and its file kept
        assert archive.index.file_of(resent_uid) == resent_key
        assert not archive.store.exists(state["orphans"][resent_uid])
        assert not archive.store.exists(state["copy_key"])
        assert archive.index.files() == set(archive.store.keys())
    finally:
        gate.release.set()
        running.stop()
    with Archive.open_home(home / "store", home / "index.duckdb") as archive:
        assert archive.was_clean  # the reconcile ended before the clean stop


def test_clean_stop_during_the_background_reconcile_leaves_the_home_unclean(tmp_path, monkeypatch):
    home = tmp_path / "home"
    state = crashed_home(home)
    gate = Gate(monkeypatch)
    archive = Archive.open_home(home / "store", home / "index.duckdb")
    job = archive.reconcile_in_background()
    assert job is not None and gate.reached.wait(60)
    closing = threading.Thread(target=archive.close)
    closing.start()
    while not job._stop.is_set():
        job._stop.wait(0.01)
    gate.release.set()  # the orphan in hand is finished, no other
    closing.join(60)
    assert not closing.is_alive()
    assert not job.complete and job.report["indexed"] + job.report["removed"] == 1
    first = dict(job.report)

    monkeypatch.undo()
    with Archive.open_home(home / "store", home / "index.duckdb") as archive:
        assert archive.was_clean is False  # the next start reconciles again
        report = archive.reconcile()
        assert report["indexed"] + first["indexed"] == N_ORPHANS and report["removed"] + first["removed"] == 1
        assert archive.index.files() == set(archive.store.keys())
        assert set(state["orphans"]) <= {r["SOPInstanceUID"] for r in archive.find(Query(Level.IMAGE))}
    with Archive.open_home(home / "store", home / "index.duckdb") as archive:
        assert archive.was_clean


KILLED_DURING_RECONCILE = """
import os, sys, threading
from pacsdash.archive import archive as archive_module
from pacsdash.archive import Archive
real = archive_module.parse_instance
count = 0
def parse(raw, origin="", *args, **kwargs):
    global count
    if origin == "recovered":
        count += 1
        if count == 3:
            os._exit(9)  # killed in the middle of the background reconcile
    return real(raw, origin, *args, **kwargs)
archive_module.parse_instance = parse
archive_module.ORPHAN_SETTLE_SECONDS = 0.0
archive = Archive.open_home(*map(__import__("pathlib").Path, sys.argv[1:3]))
assert archive.reconcile_in_background() is not None
threading.Event().wait(120)
"""


def test_a_kill_during_the_background_reconcile_leaves_the_home_unclean(tmp_path):
    home = tmp_path / "home"
    state = crashed_home(home)
    killed = subprocess.run([sys.executable, "-c", KILLED_DURING_RECONCILE, str(home / "store"),
                             str(home / "index.duckdb")], capture_output=True, text=True, timeout=120)
    assert killed.returncode == 9, killed.stderr
    with Archive.open_home(home / "store", home / "index.duckdb") as archive:
        assert archive.was_clean is False
        report = archive.reconcile()
        assert archive.index.files() == set(archive.store.keys())
        assert set(state["orphans"]) <= {r["SOPInstanceUID"] for r in archive.find(Query(Level.IMAGE))}
        assert report["missing"] == 0  # dropped before the kill, before serving
    with Archive.open_home(home / "store", home / "index.duckdb") as archive:
        assert archive.was_clean


def test_check_waits_for_the_background_reconcile(tmp_path, monkeypatch):
    home = tmp_path / "home"
    crashed_home(home)
    gate = Gate(monkeypatch)
    with Archive.open_home(home / "store", home / "index.duckdb") as archive:
        archive.reconcile_in_background()
        assert gate.reached.wait(60)
        reports = []
        checking = threading.Thread(target=lambda: reports.append(
            check_archive(archive, repair=True, quarantine=tmp_path / "quarantine", live=True)))
        checking.start()
        checking.join(0.5)
        assert checking.is_alive() and not reports  # waiting for the reconcile
        gate.release.set()
        checking.join(120)
        [report] = reports
        assert report.ok and not report.problems
        assert not (tmp_path / "quarantine").exists()
        assert archive.index.files() == set(archive.store.keys())


def test_an_orphan_indexed_meanwhile_is_not_deleted(tmp_path, monkeypatch):
    """An orphan whose instance got indexed under that very file (a repair, say)
    between the listing and its turn is a duplicate of itself: kept."""
    home = tmp_path / "home"
    state = crashed_home(home)
    gate = Gate(monkeypatch)
    with Archive.open_home(home / "store", home / "index.duckdb") as archive:
        job = archive.reconcile_in_background()
        assert gate.reached.wait(60)
        uid = sorted(state["orphans"])[-1]
        key = state["orphans"][uid]
        record = parse_instance(archive.store.local_path(key).read_bytes())
        record.file = key
        archive._writer.submit(record).result()  # indexed with its own file before the reconcile reaches it
        gate.release.set()
        assert archive.wait_reconciled(120)
        assert archive.store.exists(key) and archive.index.file_of(uid) == key
        assert job.report["indexed"] == N_ORPHANS - 1 and job.report["removed"] == 1  # the copy only
        assert archive.index.files() == set(archive.store.keys())


def test_journal_replay_decodes_only_what_the_index_lacks(tmp_path, monkeypatch):
    from pacsdash.archive import journal as journal_module

    journal = Journal(tmp_path / "j")
    records = [parse_instance(make_instance(InstanceNumber=i)) for i in range(5)]
    journal.append(list(enumerate(records, start=1)))
    decoded = []
    real = journal_module.decode_record
    monkeypatch.setattr(journal_module, "decode_record", lambda payload: decoded.append(1) or real(payload))
    entries = journal.replay(after=3)
    assert [(s, r.SOPInstanceUID) for s, r in entries] == [(4, records[3].SOPInstanceUID),
                                                          (5, records[4].SOPInstanceUID)]
    assert len(decoded) == 2 and journal.last == 5
    assert [s for s, _ in journal.replay()] == [1, 2, 3, 4, 5]
    journal.close()
