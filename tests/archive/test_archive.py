"""The archive keeps originals byte for byte and its index consistent."""

from __future__ import annotations

import threading

import pytest

from pacsdash.archive import Archive, InvalidInstance, Level, Outcome, Query
from tests.factories import make_instance
from tests.helpers import BROKEN, VALID, manifest

#: Broken samples the archive accepts and keeps whole (complete, identified
#: data sets whose damage is inside a value: a bad IS, a wrong VR mode, RLE).
READABLE_BROKEN = {"SC_rgb_jpeg.dcm", "badVR.uidfix.dcm", "rtdose_rle.uidfix.dcm"}


@pytest.fixture
def archive(backend_archive):
    """An empty archive on the module's index backend (DuckDB, PostgreSQL: tests/archive/conftest.py)."""
    return backend_archive


def stored_bytes(archive: Archive, sop_uid: str) -> bytes:
    [location] = archive.locate(Level.IMAGE, sop_uid)
    with archive.open(location) as handle:
        return handle.read()


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
def test_every_valid_sample_is_kept_byte_for_byte(archive, path):
    raw = path.read_bytes()
    result = archive.store_bytes(raw)
    assert result.outcome is Outcome.STORED
    assert result.SOPInstanceUID == manifest()[path.name]["sop_instance_uid"]
    assert stored_bytes(archive, result.SOPInstanceUID) == raw


@pytest.mark.parametrize("path", BROKEN, ids=lambda p: p.name)
def test_broken_samples_are_refused_or_kept_whole(archive, path):
    raw = path.read_bytes()
    if path.name in READABLE_BROKEN:
        result = archive.store_bytes(raw)
        assert stored_bytes(archive, result.SOPInstanceUID) == raw
        return
    with pytest.raises(InvalidInstance) as error:
        archive.store_bytes(raw)
    assert str(error.value)  # a reason a person can read
    assert archive.index.totals()["instances"] == 0
    assert list(archive.store.keys()) == []


def test_path_traversal_uid_never_reaches_the_store(archive, tmp_path):
    sample = next(p for p in BROKEN if p.name == "path_traversal_uid.dcm")
    with pytest.raises(InvalidInstance, match="not a valid UID"):
        archive.store_bytes(sample.read_bytes())
    assert not any(tmp_path.rglob("passwd"))


def test_duplicate_keeps_the_first_copy(archive):
    first = make_instance(PatientName="FIRST^COPY")
    result = archive.store_bytes(first)
    second = make_instance(SOPInstanceUID=result.SOPInstanceUID, StudyInstanceUID=result.StudyInstanceUID,
                           SeriesInstanceUID=result.SeriesInstanceUID, PatientName="SECOND^COPY")
    again = archive.store_bytes(second)
    assert again.outcome is Outcome.DUPLICATE
    assert stored_bytes(archive, result.SOPInstanceUID) == first
    assert archive.index.totals()["instances"] == 1
    assert len(list(archive.store.keys())) == 1


def test_concurrent_duplicates_leave_one_row_and_one_file(archive):
    template = make_instance()
    results = []
    barrier = threading.Barrier(8)

    def store():
        barrier.wait()
        results.append(archive.store_bytes(template).outcome)

    threads = [threading.Thread(target=store) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(Outcome.STORED) == 1
    assert results.count(Outcome.DUPLICATE) == 7
    assert archive.index.totals()["instances"] == 1
    assert len(list(archive.store.keys())) == 1


@pytest.mark.parametrize(
    "attrs, reason",
    [
        ({"SOPInstanceUID": None}, "SOPInstanceUID is missing"),
        ({"StudyInstanceUID": None}, "StudyInstanceUID is missing"),
        ({"SeriesInstanceUID": "1.2.abc"}, "not a valid UID"),
        ({"StudyInstanceUID": "1." + "2" * 70}, "not a valid UID"),
    ],
)
def test_instances_without_identity_are_refused(archive, attrs, reason):
    with pytest.raises(InvalidInstance, match=reason):
        archive.store_bytes(make_instance(**attrs))
    assert archive.index.totals()["instances"] == 0


def crash(archive: Archive) -> None:
    """Stop an archive the way a kill would: no clean-stop mark."""
    archive._files.shutdown()
    archive._writer.stop()
    archive.index.close()


def test_reconcile_after_a_crash(home):
    from pacsdash.archive.parsing import parse_instance

    archive = home.open()
    kept = archive.store_bytes(make_instance())
    # A file written, its row not yet committed:
    orphan_key = archive.store.write(make_instance(PatientID="ORPHAN"))
    # A file half written:
    partial = archive.store.local_path(orphan_key).with_name("0" * 32 + ".dcm.tmp")
    partial.write_bytes(b"DICM" * 10)
    # A row committed, its file not yet renamed into place:
    record = parse_instance(make_instance(PatientID="NOFILE"))
    record.file = archive.store.new_key()
    archive._writer.submit(record).result()
    crash(archive)

    archive = home.open()
    assert archive.was_clean is False
    report = archive.reconcile()
    assert report == {"temporary_removed": 1, "indexed": 1, "removed": 0, "missing": 1}
    assert not partial.exists()
    assert {r["PatientID"] for r in archive.find(Query(Level.IMAGE, {}, ["PatientID"]))} == {"P1", "ORPHAN"}
    assert [r["PatientID"] for r in archive.find(Query(Level.PATIENT))] == ["ORPHAN", "P1"]
    assert archive.index.files() == set(archive.store.keys())
    assert len(archive.locate(Level.IMAGE, kept.SOPInstanceUID)) == 1
    archive.close()

    archive = home.open()
    assert archive.was_clean is True
    assert archive.reconcile() == {"temporary_removed": 0, "indexed": 0, "removed": 0, "missing": 0}
    archive.close()


def test_delete_study_removes_rows_and_files(archive):
    a = archive.store_bytes(make_instance(PatientID="KEEP"))
    b = archive.store_bytes(make_instance(PatientID="GONE"))
    archive.store_bytes(make_instance(PatientID="GONE", StudyInstanceUID=b.StudyInstanceUID))
    assert archive.delete_study(b.StudyInstanceUID) == 2
    assert archive.find(Query(Level.STUDY, {"StudyInstanceUID": b.StudyInstanceUID})) == []
    assert [r["PatientID"] for r in archive.find(Query(Level.PATIENT))] == ["KEEP"]
    assert archive.index.files() == set(archive.store.keys())
    assert len(archive.locate(Level.STUDY, a.StudyInstanceUID)) == 1
    # The same study may arrive again afterwards.
    again = archive.store_bytes(make_instance(PatientID="GONE", StudyInstanceUID=b.StudyInstanceUID))
    assert again.outcome is Outcome.STORED


def test_large_pixel_data_cut_short_is_refused(archive):
    raw = make_instance(Rows=256, Columns=256, PixelData=b"\x01\x02" * 256 * 256)
    with pytest.raises(InvalidInstance, match="truncated"):
        archive.store_bytes(raw[:-1000])
    assert archive.store_bytes(raw).outcome is Outcome.STORED


def test_remembered_locations_are_forgotten_on_removal(home) -> None:
    with home.open() as archive:
        stored = archive.store_bytes(make_instance())
        location = archive.locate_instance(stored.SOPInstanceUID)
        assert location is not None and location.StudyInstanceUID == stored.StudyInstanceUID
        again = archive.locate_instance(stored.SOPInstanceUID)
        if archive.index.shared:  # other servers may delete: asked of the index each time
            assert again == location and again is not location
        else:
            assert again is location  # remembered
        assert archive.locate_instance("1.2.3.999") is None
        archive.delete_study(stored.StudyInstanceUID)
        assert archive.locate_instance(stored.SOPInstanceUID) is None


def test_a_file_that_cannot_be_written_leaves_no_row_and_no_file(archive, monkeypatch):
    import errno

    raw = make_instance(PatientID="DISKFULL")

    def full_disk(data, key=None):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(archive.store, "write", full_disk)
    with pytest.raises(OSError):
        archive.store_bytes(raw, "test")
    monkeypatch.undo()
    assert archive.index.totals()["instances"] == 0
    assert list(archive.store.keys()) == []
    # The same instance stores once the disk has room again.
    assert archive.store_bytes(raw, "test").outcome is Outcome.STORED
    assert archive.index.totals()["instances"] == 1


class _GoneServer:
    """A worker's index whose server process died with the record in flight: its outcome is unknown."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def submit(self, records):
        from concurrent.futures import Future

        future: Future = Future()
        future.set_exception(self.error)
        return future

    def mark_open(self) -> bool:
        return True

    def mark_closed(self) -> None:
        return None

    def close(self) -> None:
        return None


def test_a_worker_keeps_the_file_when_the_server_died_with_its_record_in_flight(tmp_path):
    """The server may have journaled or committed the row before it died: deleting the file
    could leave a row without its file (shown by a shared index to other servers). The restart
    finds the row, or indexes the file as an orphan; a known refusal still takes the file back."""
    from pacsdash.archive.remote import RemoteError
    from pacsdash.archive.store import LocalStore

    store = LocalStore(tmp_path / "store")
    worker = Archive(store, _GoneServer(RemoteError("the pacsdash server process is gone")))
    with pytest.raises(RemoteError):
        worker.store_bytes(make_instance(PatientID="INFLIGHT"), "dicom:CT@127.0.0.1:1")
    assert len(list(store.keys())) == 1  # kept for the restart
    refused = Archive(store, _GoneServer(ValueError("the index refused it")))
    with pytest.raises(ValueError):
        refused.store_bytes(make_instance(PatientID="REFUSED"), "dicom:CT@127.0.0.1:1")
    assert len(list(store.keys())) == 1  # taken back
