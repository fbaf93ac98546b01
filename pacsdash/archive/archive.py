"""The archive facade every door calls: store, find, open, delete.

Ingest, which makes an acknowledgement mean "durable":

1. parse and check the header, while another thread writes the bytes to a
   temporary file, fsyncs it, renames it into place and syncs its folder;
2. hand the record to the writer: its journal thread decides whether it is
   new or a copy of an archived instance, appends new records to the index
   journal (:mod:`pacsdash.archive.journal`) a group at a time with one
   fdatasync, and wakes the callers;
3. the caller acknowledges (C-STORE success, STOW-RS 200) only once both the
   file and the journaled index row are durable;
4. the index thread commits journaled records to DuckDB in batches, with the
   journal position in the same transaction. Every read through
   :attr:`Archive.index` first waits for acknowledged records to be there,
   so a query right after an acknowledgement finds the instance.

After a crash the journal gives back the records the index lacks. The file
write and the journal run side by side, so a crash can leave either one
without the other, never acknowledged. :meth:`Archive.reconcile` runs at
every start after an unclean stop: it removes half-written temporary files,
indexes complete files the index does not know and drops index rows whose
file never arrived, so the index and the file store agree. The server uses
:meth:`Archive.reconcile_in_background`: the listing, the temporary files and
the rows are settled before it serves, the orphan files indexed while it serves.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, as_completed, wait
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, BinaryIO

from pydicom import dcmread
from pydicom.dataset import Dataset

from pacsdash.archive.attributes import Level
from pacsdash.archive.index import DuckDBIndex, Index, InstanceLocation
from pacsdash.archive.journal import Journal
from pacsdash.archive.parsing import InstanceRecord, InvalidInstance, parse_instance
from pacsdash.archive import labels
from pacsdash.archive.query import Query, Scope
from pacsdash.archive.records import ActionRecord
from pacsdash.archive.remote import RemoteError
from pacsdash.archive.store import LocalStore, Store, is_key
from pacsdash.archive.writer import IndexWriter, Outcome

__all__ = ["Archive", "DamagedFile", "MissingFile", "Outcome", "StoreResult", "StoredFileError", "store_many"]

LOGGER = logging.getLogger(__name__)
#: Threads writing files (they mostly wait for the disk).
FILE_WRITERS = 8
#: Instance locations remembered by :meth:`Archive.locate_instance` (then forgotten at once).
LOCATIONS_REMEMBERED = 100_000


class StudyMismatch(InvalidInstance):
    """The instance belongs to another study than the one it was sent to."""


class StoredFileError(OSError):
    """An indexed instance's stored file cannot be served as it was received.

    Doors map it to a client-facing status, never a 500: the index knows the
    instance, its bytes are not there (HTTP 410 Gone; a failed C-GET/C-MOVE
    sub-operation). ``pacsdash check`` names and repairs the cause.
    """

    def __init__(self, message: str, SOPInstanceUID: str = "", file: str = "") -> None:  # noqa: N803 - DICOM keyword
        super().__init__(message)
        self.SOPInstanceUID = SOPInstanceUID
        self.file = file

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class MissingFile(StoredFileError, FileNotFoundError):
    """The index has the instance; its file is gone from the store."""


class DamagedFile(StoredFileError):
    """The stored file is not the one received: another size, or not readable as DICOM."""


@dataclass(frozen=True)
class StoreResult:
    """The result of storing one instance."""

    outcome: Outcome
    SOPInstanceUID: str
    SOPClassUID: str
    StudyInstanceUID: str
    SeriesInstanceUID: str


class _ReadAfterWrite:
    """An index whose every method first waits for acknowledged records to be applied."""

    def __init__(self, index: Index, archive: Archive) -> None:
        self._index = index
        self._archive = archive

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._index, name)
        if not callable(value):
            return value
        barrier = self._archive.wait_indexed

        def call(*args: Any, **kwargs: Any) -> Any:
            barrier()
            return value(*args, **kwargs)

        return call


class Archive:
    """Original files plus their metadata index, behind one small interface."""

    def __init__(self, store: Store, index: Index, journal: Journal | None = None) -> None:
        self.store = store
        self._index = index
        #: The index for reading: every call first waits for acknowledged records.
        self.index: Index = _ReadAfterWrite(index, self)  # type: ignore[assignment]
        self._listeners: list[Callable[[list[InstanceRecord]], None]] = []
        self._located: dict[str, InstanceLocation] = {}
        self._writer = IndexWriter(index, self._notify, self._drop_copy, journal)
        self._writer.start()
        self._files = ThreadPoolExecutor(FILE_WRITERS, thread_name_prefix="pacsdash-file-writer")
        self._closed = False
        self.was_clean = self._writer.call(index.mark_open)
        #: How many acknowledged instances the journal gave back after a crash.
        self.replayed = self._writer.replay()
        #: Set when something (a crashed worker) may have left files unindexed:
        #: the next start then reconciles.
        self.dirty = False

    @classmethod
    def open_home(cls, store_path: Path, index_path: Path, label_rules: Iterable[Any] = (),
                  store: Store | None = None) -> Archive:
        """Open the local file store, DuckDB index and index journal of a home folder;
        ``label_rules`` (``[[label_rules]]``) label new studies as they are indexed;
        ``store`` replaces the local file store (an object store: ``[storage] url``)."""
        index_path.parent.mkdir(parents=True, exist_ok=True)
        journal = Journal(index_path.with_name(index_path.name + ".journal"))
        index = DuckDBIndex(index_path)
        index.label_rules = labels.compile_rules(label_rules)  # before the journal's replay
        return cls(store if store is not None else LocalStore(store_path), index, journal)

    @classmethod
    def open_index(cls, store: Store, index: Index, journal_path: Path, label_rules: Iterable[Any] = ()) -> Archive:
        """Open an archive on an index already opened (a PostgreSQL one: ``[index] url``),
        with its journal at ``journal_path``; ``label_rules`` are compiled in the index's SQL."""
        journal_path.parent.mkdir(parents=True, exist_ok=True)
        index.label_rules = labels.compile_rules(label_rules, index.dialect)  # before the journal's replay
        return cls(store, index, Journal(journal_path))

    def submit(self, record: InstanceRecord) -> Future:
        """Hand a record whose file is written and durable to the index writer;
        the future gets its :class:`Outcome` once acknowledged (a DICOM
        worker's C-STORE, through :class:`~pacsdash.archive.remote.IndexService`)."""
        return self._writer.submit(record)

    def change_index(self, method: str, *args: Any) -> Any:
        """Run the index change ``method`` (``delete_study``, ``remove_files``...)
        in the writer, in order with the commits, and forget remembered locations."""
        result = self._writer.call(lambda: getattr(self._index, method)(*args))
        self.forget_locations()
        return result

    def wait_indexed(self) -> None:
        """Wait until every acknowledged instance can be found in the index."""
        self._writer.barrier()

    def _drop_copy(self, record: InstanceRecord) -> None:
        """Remove the file of a second copy found when its record reached the index."""
        if record.file and self.store.exists(record.file):
            self.store.delete(record.file)

    # -- events ----------------------------------------------------------------
    def subscribe(self, listener: Callable[[list[InstanceRecord]], None]) -> None:
        """Call ``listener`` (in the writer thread) with each committed batch."""
        self._listeners.append(listener)

    def _notify(self, records: list[InstanceRecord]) -> None:
        if records:
            for listener in list(self._listeners):
                listener(records)

    # -- ingest ------------------------------------------------------------------
    def store_bytes(self, raw: bytes, origin: str = "", expect_study: str | None = None,
                    data_set: tuple[str, int] | None = None, record: InstanceRecord | None = None,
                    labels: tuple[str, ...] = ()) -> StoreResult:
        """Archive one Part 10 instance; return once it is durable.

        Parameters
        ----------
        raw
            The instance as received: preamble, file meta and data set.
        origin
            Who sent it (``dicom:AET@host``, ``http:user``, ``import``).
        expect_study
            Refuse the instance unless it belongs to this study (STOW-RS to
            ``/studies/{study}``).
        data_set
            The data set's transfer syntax and offset in ``raw``, when the
            caller wrote the file meta itself (the C-STORE lane).
        record
            The index record of exactly these bytes, when the caller parsed
            them already (:func:`~pacsdash.archive.parsing.parse_instance`, in
            a worker process that made them); ``raw`` is then not read again.
        labels
            Labels the instance's study gets if this instance creates it (the
            labels of a restricted uploader, so that they see what they stored).

        Raises
        ------
        InvalidInstance
            If ``raw`` is not an instance the archive can file; nothing is kept.
        """
        key = self.store.new_key()
        writing = self._files.submit(self.store.write, raw, key)
        try:
            if record is None or record.size != len(raw):
                record = parse_instance(raw, origin, data_set)
            if expect_study is not None and record.StudyInstanceUID != expect_study:
                raise StudyMismatch(
                    f"StudyInstanceUID {record.StudyInstanceUID} is not the study {expect_study} it was sent to"
                )
        except InvalidInstance:
            self._discard(writing, key)
            raise
        record.file = key
        record.labels = tuple(labels)
        committing = self._writer.submit(record)
        try:
            writing.result()
        except OSError:
            # No file: take back the row if it was committed, then report.
            if _outcome(committing) is Outcome.STORED:
                self._writer.call(lambda: self._index.remove_files([key]))
                self.forget_locations()
            raise
        try:
            outcome = committing.result()
        except RemoteError:
            # The server process is gone (a worker's store): it may have journaled or even committed
            # the row before it died. The file stays: the server's restart finds its row or indexes
            # it as an orphan. Deleting it could leave a committed row without its file, which a
            # shared index shows to other servers (and a copy resent to them would be dropped).
            raise
        except Exception:
            self.store.delete(key)
            raise
        if outcome is Outcome.DUPLICATE:
            self.store.delete(key)
        return self._result(record, outcome)

    def _discard(self, writing: Future, key: str) -> None:
        try:
            writing.result()
        except OSError:
            return
        self.store.delete(key)

    def store_file(self, path: Path, origin: str = "import") -> StoreResult:
        """Archive a Part 10 file from disk, byte for byte."""
        return self.store_bytes(Path(path).read_bytes(), origin)

    @staticmethod
    def _result(record: InstanceRecord, outcome: Outcome) -> StoreResult:
        return StoreResult(
            outcome,
            record.SOPInstanceUID,
            record.columns[Level.IMAGE]["SOPClassUID"] or "",
            record.StudyInstanceUID,
            record.SeriesInstanceUID,
        )

    # -- reading ---------------------------------------------------------------
    def find(self, query: Query) -> list[dict[str, Any]]:
        """Entities matching ``query`` (see :mod:`pacsdash.archive.query`), within its scope."""
        return self.index.find(query)

    def count(self, query: Query) -> int:
        """How many entities match ``query``, within its scope."""
        return self.index.count(query)

    def locate(self, level: Level, uid: str | None = None, scope: Scope | None = None,
               **keys: str) -> list[InstanceLocation]:
        """Instances of an entity that ``scope`` may see, with their file keys and encodings."""
        return self.index.locate(level, uid, scope, **keys)

    def locate_instance(self, sop_uid: str, scope: Scope | None = None) -> InstanceLocation | None:
        """One instance's file and encoding, or None (also when ``scope`` may
        not see its study); remembered until a removal.

        Viewers ask for the frames of the same instances again and again
        (WADO-RS frames, rendered, WADO-URI), and an index query costs more
        than the rest of such a request.
        """
        if scope is not None:
            location = self.locate_instance(sop_uid)
            if location is None or not scope.sees(self.labels_of(location.StudyInstanceUID)):
                return None
            return location
        location = self._located.get(sop_uid)
        if location is None:
            found = self.index.locate(Level.IMAGE, None, SOPInstanceUID=sop_uid)
            if not found:
                return None
            location = found[0]
            if getattr(self._index, "shared", False):
                # Other servers delete from a shared index: what they removed must not stay findable here.
                return location
            if len(self._located) >= LOCATIONS_REMEMBERED:
                self._located.clear()
            self._located[sop_uid] = location
        return location

    def forget_locations(self) -> None:
        """Drop remembered locations (after anything was removed from the index)."""
        self._located.clear()

    def locate_matching(self, query: Query) -> list[InstanceLocation]:
        """Instances matching an IMAGE-level query, with their files."""
        return self.index.locate_matching(query)

    def open(self, location: InstanceLocation) -> BinaryIO:
        """The stored bytes of an instance, as received.

        Raises
        ------
        MissingFile
            If the file is gone (or the row names no store file).
        DamagedFile
            If the file's size is not the size received.
        """
        try:
            handle = self.store.open(location.file)
        except (FileNotFoundError, KeyError):
            raise _missing(location) from None
        try:
            _check_size(location, handle.seek(0, os.SEEK_END))  # any store's stream: no fileno needed
            handle.seek(0)
        except BaseException:
            handle.close()
            raise
        return handle

    def verified_path(self, location: InstanceLocation) -> Path:
        """:meth:`local_path`, once the file is there with the size received.

        Raises
        ------
        MissingFile, DamagedFile
            As :meth:`open`.
        """
        try:
            path = self.store.local_path(location.file)
            size = path.stat().st_size
        except (FileNotFoundError, KeyError):
            raise _missing(location) from None
        _check_size(location, size)
        return path

    def read_dataset(self, location: InstanceLocation, stop_before_pixels: bool = False) -> Dataset:
        """The stored instance, read by pydicom.

        Raises
        ------
        MissingFile, DamagedFile
            As :meth:`open`; DamagedFile also when pydicom cannot read it.
        """
        with self.open(location) as handle:
            try:
                return dcmread(handle, stop_before_pixels=stop_before_pixels)
            except Exception as exc:  # pydicom raises many types for broken files
                raise DamagedFile(f"the stored file {location.file} of {location.SOPInstanceUID} cannot be read: "
                                  f"{exc}", location.SOPInstanceUID, location.file) from None

    def verify(self, location: InstanceLocation) -> None:
        """Check, without opening it, that the stored file is there with the
        size received (a door answering many instances checks them all before
        its first byte, then opens one at a time).

        Raises
        ------
        MissingFile, DamagedFile
            As :meth:`open`.
        """
        try:
            size = self.store.size(location.file)
        except (FileNotFoundError, KeyError):
            raise _missing(location) from None
        _check_size(location, size)

    def read_range(self, location: InstanceLocation, offset: int, length: int) -> bytes:
        """``length`` stored bytes of an instance from ``offset`` (a frame, its
        pixel data), read without the rest of the file where the store can.

        Raises
        ------
        ValueError
            If the range is not within the size received.
        MissingFile
            As :meth:`open`.
        DamagedFile
            If the file holds fewer bytes than the range needs.
        """
        if offset < 0 or length < 0 or (location.size is not None and offset + length > location.size):
            raise ValueError(f"bytes {offset}+{length} are not within the {location.size} of {location.SOPInstanceUID}")
        try:
            data = self.store.read_range(location.file, offset, length)
        except (FileNotFoundError, KeyError):
            raise _missing(location) from None
        if len(data) != length:
            raise DamagedFile(f"the stored file {location.file} of {location.SOPInstanceUID} ends before byte "
                              f"{offset + length}", location.SOPInstanceUID, location.file)
        return data

    def summary(self, scope: Scope | None = None) -> dict[str, Any]:
        """Totals, studies per modality and studies per month (for an overview) of what ``scope`` may see."""
        return self.index.summary(scope)

    # -- who sees what (see :mod:`pacsdash.archive.scoped`) -----------------------
    def scoped(self, scope: Scope | None, audit: Callable[..., None] | None = None) -> Any:
        """This archive as someone restricted to ``scope`` sees it, its reads
        put in the audit trail through ``audit`` (itself when neither is given);
        see :mod:`pacsdash.archive.scoped`."""
        from pacsdash.archive.scoped import ScopedArchive

        return self if scope is None and audit is None else ScopedArchive(self, scope, audit)

    def sees(self, study_uid: str) -> bool:
        """Whether the study is indexed (every study is visible to the unscoped archive)."""
        return bool(self.count(Query(Level.STUDY, {"StudyInstanceUID": study_uid})))

    # -- study labels (see :mod:`pacsdash.archive.labels`) ------------------------
    def labels_of(self, study_uid: str) -> list[str]:
        """The labels of a study, sorted."""
        return self.index.labels_of([study_uid]).get(study_uid, [])

    def add_label(self, study_uid: str, label: str) -> bool:
        """Give an indexed study a label; False if it had it.

        Raises
        ------
        KeyError
            If no such study is indexed.
        """
        return self._writer.call(lambda: self._index.add_label(study_uid, label))

    def remove_label(self, study_uid: str, label: str) -> bool:
        """Take a label from a study; False if it did not have it."""
        return self._writer.call(lambda: self._index.remove_label(study_uid, label))

    def local_path(self, location: InstanceLocation) -> Path:
        """A local file holding the instance's stored bytes."""
        return self.store.local_path(location.file)

    # -- removal ---------------------------------------------------------------
    def delete_study(self, study_uid: str) -> int:
        """Remove a study from the index, then its files; return how many."""
        files = self._writer.call(lambda: self._index.delete_study(study_uid))
        self.forget_locations()
        for key in files:
            self.store.delete(key)
        return len(files)

    # -- repairs (pacsdash check) ---------------------------------------------------
    def adopt(self, key: str, origin: str = "check") -> StoreResult:
        """Index a file already in the store under ``key``, from its own header.

        A DUPLICATE outcome means its SOP Instance UID is indexed with
        another file; this file is then left where it is, for the caller.

        Raises
        ------
        InvalidInstance
            If the file is not an instance the archive can file.
        """
        raw = self.store.read(key)
        record = parse_instance(raw, origin)
        record.file = key
        outcome = self._writer.submit(record).result()
        return self._result(record, outcome)

    def drop_rows(self, keys: list[str]) -> None:
        """Remove the index rows of the instances stored under ``keys`` (files untouched)."""
        if keys:
            self._writer.call(lambda: self._index.remove_files(list(keys)))
            self.forget_locations()

    def in_writer(self, function: Callable[[Index], Any]) -> Any:
        """Run ``function(index)`` in the index's writer thread, in order with
        ingest, and return its result (for side tables kept in the index)."""
        return self._writer.call(lambda: function(self._index))

    # -- records of actions ------------------------------------------------------
    #: Called with each action record once kept (see :meth:`on_record`).
    _record_listeners: tuple[Callable[[ActionRecord], None], ...] = ()

    def on_record(self, listener: Callable[[ActionRecord], None]) -> None:
        """Call ``listener`` with each action record once kept (id and time set), in the
        recording thread: it must not block (the syslog forwarder only queues)."""
        self._record_listeners = (*self._record_listeners, listener)

    def record(self, record: ActionRecord) -> int:
        """Keep a record of an action on studies (append-only); return its id."""
        number = self._writer.call(lambda: self._index.add_record(record))
        for listener in self._record_listeners:
            try:
                listener(replace(record, id=number, time=record.time or dt.datetime.now(dt.timezone.utc)))
            except Exception:  # a listener never fails the recording
                LOGGER.exception("a listener of action records failed")
        return number

    def records(self, action: str | None = None, actor: str | None = None, study: str | None = None,
                limit: int = 100, offset: int = 0, since: dt.datetime | None = None,
                until: dt.datetime | None = None) -> list[ActionRecord]:
        """Records of actions, newest first (``since`` included, ``until`` excluded)."""
        return self.index.records(action=action, actor=actor, study=study, limit=limit, offset=offset,
                                  since=since, until=until)

    def remember_subjects(self, subjects: list[tuple[str, str, str]]) -> None:
        """Keep whom each ``(pseudonym, PatientID, IssuerOfPatientID)`` stands for."""
        self._writer.call(lambda: self._index.remember_subjects(subjects))

    def subject(self, pseudonym: str) -> dict[str, str] | None:
        """Whom a pseudonym stands for, or None."""
        return self.index.subject(pseudonym)

    # -- consistency (after an unclean stop) ---------------------------------------
    #: The reconcile finishing in the background, if one was started (see :meth:`reconcile_in_background`).
    _reconciliation: Reconciliation | None = None

    def reconcile(self, full: bool = False, progress: Callable[[int], None] | None = None) -> dict[str, int]:
        """Make the index and the file store agree after an unclean stop, all of it now.

        After a clean stop (or with nothing to do) it returns at once; ``full``
        checks anyway. It removes half-written temporary files, drops index
        rows whose file is missing (committed, never acknowledged), indexes
        complete files the index does not know (written, never acknowledged)
        and removes files of instances the index already has.
        """
        job = self._begin_reconcile(full)
        if job is None:
            return _empty_report()
        job.run(progress)
        return job.report

    def reconcile_in_background(self) -> Reconciliation | None:
        """Reconcile after an unclean stop, the slow part while the archive serves.

        Before returning (before anything is served) it lists the store and
        the index's files, removes temporary files and drops the rows whose
        file is missing: a peer resending such an instance must find it new,
        not a duplicate of a row about to go. The orphan files (listed now,
        unknown to the index now) are then indexed, or removed as copies, by
        a thread; new files arrive under new keys, never among them. Until it
        is done the home stays marked unclean, so a kill meanwhile means a
        reconcile at the next start; :meth:`close` stops it. Returns it, or
        None when there is nothing to do in the background.
        """
        job = self._begin_reconcile(full=False)
        if job is None:
            return None
        if job.complete:
            job.log()
            return None
        self._reconciliation = job
        job.start()
        return job

    def wait_reconciled(self, timeout: float | None = None) -> bool:
        """Wait for a reconcile running in the background (see :meth:`reconcile_in_background`);
        return whether none is running any more."""
        job = self._reconciliation
        return job is None or job.wait(timeout)

    def _begin_reconcile(self, full: bool) -> Reconciliation | None:
        """List what the unclean stop left and settle what must be settled before serving."""
        if self.was_clean and not full:
            return None
        started = time.monotonic()
        report = _empty_report()
        keys, temporary = self.store.listing()
        indexed = self.index.files()
        for path in temporary:
            path.unlink(missing_ok=True)
        report["temporary_removed"] = len(temporary)
        stored = set(keys)
        missing = sorted(f for f in indexed if f not in stored)
        if missing:
            # No file appears under one of these keys any more (new files get new keys): checked once more.
            missing = [f for f in missing if not (is_key(f) and self.store.exists(f))]
            LOGGER.warning("dropping %d index rows whose files never arrived", len(missing))
            self._writer.call(lambda: self._index.remove_files(missing))
            self.forget_locations()
        report["missing"] = len(missing)
        orphans = sorted(k for k in keys if k not in indexed)
        return Reconciliation(self, orphans, report, started)

    def _adopt_orphan(self, key: str) -> str:
        """Index the orphan file ``key`` listed before serving; return ``"indexed"``,
        ``"removed"`` (unreadable, or a copy of an indexed instance) or ``"gone"``."""
        try:
            raw = self.store.read(key)
        except FileNotFoundError:
            return "gone"
        try:
            record = parse_instance(raw, "recovered")
        except InvalidInstance:
            LOGGER.warning("removing unreadable orphan file %s", key)
            self.store.delete(key)  # nothing can index it: adopting parses too
            return "removed"
        record.file = key
        if self._writer.submit(record).result() is Outcome.STORED:
            return "indexed"
        # A copy: its SOP Instance UID is indexed (or journaled) with another file, one a
        # peer sent again meanwhile, say. Removed in the index thread, unless that file is this one.
        return "removed" if self._writer.call(lambda: self._remove_unreferenced(record)) else "gone"

    def _remove_unreferenced(self, record: InstanceRecord) -> bool:
        """Delete ``record.file`` unless the index or the journal refers to it (index thread)."""
        with self._writer._state:  # noqa: SLF001 - the writer's record of journaled, unindexed files
            pending = self._writer._pending.get(record.SOPInstanceUID)  # noqa: SLF001
        if record.file in (pending, self._index.file_of(record.SOPInstanceUID)):
            return False
        self.store.delete(record.file)
        return True

    def close(self) -> None:
        """Finish pending writes and close the index."""
        if self._closed:
            return
        self._closed = True
        reconciling = self._reconciliation
        if reconciling is not None:
            reconciling.stop()  # between two files; unfinished, the next start reconciles again
        self._files.shutdown(wait=True)
        self._writer.stop()
        if not self.dirty and not self._writer.failed and (reconciling is None or reconciling.complete):
            self._index.mark_closed()
            if self._writer.journal is not None:
                self._writer.journal.reset()
        if self._writer.journal is not None:
            self._writer.journal.close()
        self._index.close()

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _empty_report() -> dict[str, int]:
    return {"temporary_removed": 0, "indexed": 0, "removed": 0, "missing": 0}


#: An orphan file modified less than this long ago [s] is handled last, once
#: this old: a DICOM worker of the killed server may still be finishing it
#: (and then deletes it, its C-STORE having failed).
ORPHAN_SETTLE_SECONDS = 2.0


class Reconciliation:
    """The orphan files an unclean stop left, indexed while the archive serves.

    Only files listed before the archive served are handled, each once more
    checked against the index before it is indexed or removed. :meth:`stop`
    ends it between two files; the home then stays marked unclean.
    """

    def __init__(self, archive: Archive, orphans: list[str], report: dict[str, int], started: float) -> None:
        self.archive = archive
        self.orphans = orphans
        #: ``temporary_removed``, ``indexed``, ``removed`` (orphans), ``missing`` (rows dropped).
        self.report = report
        self.started = started
        #: Set once every orphan was handled.
        self.complete = not orphans
        self._stop = threading.Event()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        if self.complete:
            self._done.set()

    def start(self) -> None:
        """Handle the orphans in a thread of their own."""
        self._thread = threading.Thread(target=self._run, name="pacsdash-reconcile", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.run(settle=True)
        except Exception:  # the home stays unclean: the next start tries again
            LOGGER.exception("reconciling the index with the store after an unclean stop failed")
        finally:
            self._done.set()
        if self.complete:
            self.log()

    def run(self, progress: Callable[[int], None] | None = None, settle: bool = False) -> None:
        """Handle every orphan, unless stopped; with ``settle`` (a server that
        serves meanwhile), recent ones last, once :data:`ORPHAN_SETTLE_SECONDS` old."""
        later: list[str] = []
        for key in self.orphans:
            if settle and not self._settled(key):
                later.append(key)
                continue
            if not self._handle(key, progress):
                return
        for key in later:
            while not self._settled(key):
                if self._stop.wait(0.2):
                    return
            if not self._handle(key, progress):
                return
        self.complete = True

    def _settled(self, key: str) -> bool:
        try:
            modified = self.archive.store.modified(key)
        except (FileNotFoundError, KeyError):
            return True
        return time.time() - modified >= ORPHAN_SETTLE_SECONDS

    def _handle(self, key: str, progress: Callable[[int], None] | None) -> bool:
        if self._stop.is_set():
            return False
        outcome = self.archive._adopt_orphan(key)  # noqa: SLF001 - its archive's
        if outcome in self.report:
            self.report[outcome] += 1
        if progress:
            progress(1)
        return True

    def log(self) -> None:
        """Log what was done (a warning if anything was)."""
        seconds = time.monotonic() - self.started
        if any(self.report.values()):
            LOGGER.warning("recovered after an unclean stop: %s (%.2f s)", self.report, seconds)
        else:
            LOGGER.info("checked after an unclean stop: the index and the store agree (%.2f s)", seconds)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until it ended (done or stopped); return whether it did."""
        return self._done.wait(timeout)

    def stop(self) -> None:
        """End it after the file in hand, and wait."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def _missing(location: InstanceLocation) -> MissingFile:
    return MissingFile(f"the stored file {location.file} of {location.SOPInstanceUID} is missing",
                       location.SOPInstanceUID, location.file)


def _check_size(location: InstanceLocation, size: int) -> None:
    """Raise :class:`DamagedFile` unless ``size`` is the size the index recorded."""
    if location.size is not None and size != location.size:
        raise DamagedFile(f"the stored file {location.file} of {location.SOPInstanceUID} holds {size} bytes, "
                          f"{location.size} were received", location.SOPInstanceUID, location.file)


def _outcome(future: Future) -> Outcome | None:
    try:
        return future.result()
    except Exception:
        return None


def store_many(
    archive: Archive, paths: Iterable[Path], origin: str = "import", workers: int = 4
) -> Iterator[tuple[Path, StoreResult | Exception]]:
    """Store files with a few threads, so that their commits share batches.

    Yields each path with its result, or with the error that kept it out.
    """

    def one(path: Path) -> StoreResult | Exception:
        try:
            return archive.store_file(path, origin)
        except (InvalidInstance, OSError) as exc:
            return exc

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pacsdash-import") as pool:
        pending: dict[Future, Path] = {}
        for path in paths:
            pending[pool.submit(one, path)] = path
            if len(pending) >= workers * 4:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    yield pending.pop(future), future.result()
        for future in as_completed(pending):
            yield pending[future], future.result()
