"""The archive facade every door calls: store, find, open, delete.

Ingest, which makes an acknowledgement mean "durable":

1. parse and check the header, while another thread writes the bytes to a
   temporary file, fsyncs it, renames it into place and syncs its folder;
2. hand the record to the single writer thread, which commits whole batches
   of records in one index transaction (group commit) and wakes the callers;
3. the caller acknowledges (C-STORE success, STOW-RS 200) only once both the
   file and the index row are durable.

The file write and the index commit run side by side, so a crash can leave
either one without the other, never acknowledged. :meth:`Archive.reconcile`
runs at every start after an unclean stop: it removes half-written
temporary files, indexes complete files the index does not know and drops
index rows whose file never arrived, so the index and the file store agree.
"""

from __future__ import annotations

import enum
import logging
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, as_completed, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from pacsdash.archive.attributes import Level
from pacsdash.archive.index import DuckDBIndex, Index, InstanceLocation
from pacsdash.archive.parsing import InstanceRecord, InvalidInstance, parse_instance
from pacsdash.archive.query import Query
from pacsdash.archive.store import LocalStore, Store

LOGGER = logging.getLogger(__name__)
#: Most records committed in one index transaction.
MAX_BATCH = 512
#: Threads writing files (they mostly wait for the disk).
FILE_WRITERS = 8


class StudyMismatch(InvalidInstance):
    """The instance belongs to another study than the one it was sent to."""


class Outcome(enum.Enum):
    """What became of one instance handed to :meth:`Archive.store`."""

    STORED = "stored"
    #: Already archived under this SOP Instance UID; the first copy is kept.
    DUPLICATE = "duplicate"


@dataclass(frozen=True)
class StoreResult:
    """The result of storing one instance."""

    outcome: Outcome
    SOPInstanceUID: str
    SOPClassUID: str
    StudyInstanceUID: str
    SeriesInstanceUID: str


class _Writer(threading.Thread):
    """The one thread that writes to the index.

    Records are committed a batch per transaction; other changes (deletes,
    repairs) run as single jobs in between, so DuckDB sees exactly one writer.
    """

    def __init__(self, index: Index, on_commit: Callable[[list[InstanceRecord]], None]) -> None:
        super().__init__(name="pacsdash-index-writer", daemon=True)
        self.index = index
        self.on_commit = on_commit
        self.jobs: queue.Queue[tuple[Any, Future] | None] = queue.Queue()

    def submit(self, record: InstanceRecord) -> Future:
        """Queue a record; the future gives its :class:`Outcome`."""
        future: Future = Future()
        self.jobs.put((record, future))
        return future

    def call(self, function: Callable[[], Any]) -> Any:
        """Run ``function`` in the writer thread and return its result."""
        future: Future = Future()
        self.jobs.put((function, future))
        return future.result()

    def stop(self) -> None:
        self.jobs.put(None)
        self.join()

    def run(self) -> None:
        while True:
            first = self.jobs.get()
            if first is None:
                return
            if callable(first[0]):
                self._call(*first)
                continue
            batch = [first]
            pending_call = None
            stop = False
            while len(batch) < MAX_BATCH:
                try:
                    job = self.jobs.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    stop = True
                    break
                if callable(job[0]):
                    pending_call = job
                    break
                batch.append(job)
            self._commit(batch)
            if pending_call is not None:
                self._call(*pending_call)
            if stop:
                return

    @staticmethod
    def _call(function: Callable[[], Any], future: Future) -> None:
        try:
            future.set_result(function())
        except BaseException as exc:  # handed to the caller
            future.set_exception(exc)

    def _commit(self, batch: list[tuple[InstanceRecord, Future]]) -> None:
        records = [record for record, _ in batch]
        try:
            added = self.index.add(records)
        except Exception as exc:  # the index refused: nothing is acknowledged
            LOGGER.exception("index commit of %d instances failed", len(records))
            for _, future in batch:
                future.set_exception(exc)
            return
        for (_, future), was_added in zip(batch, added):
            future.set_result(Outcome.STORED if was_added else Outcome.DUPLICATE)
        try:
            self.on_commit([r for r, a in zip(records, added) if a])
        except Exception:  # listeners must not break ingest
            LOGGER.exception("a commit listener failed")


class Archive:
    """Original files plus their metadata index, behind one small interface."""

    def __init__(self, store: Store, index: Index) -> None:
        self.store = store
        self.index = index
        self._listeners: list[Callable[[list[InstanceRecord]], None]] = []
        self._writer = _Writer(index, self._notify)
        self._writer.start()
        self._files = ThreadPoolExecutor(FILE_WRITERS, thread_name_prefix="pacsdash-file-writer")
        self._closed = False
        self.was_clean = self._writer.call(lambda: self.index.mark_open())
        #: Set when something (a crashed worker) may have left files unindexed:
        #: the next start then reconciles.
        self.dirty = False

    @classmethod
    def open_home(cls, store_path: Path, index_path: Path) -> Archive:
        """Open the local file store and DuckDB index of a home folder."""
        index_path.parent.mkdir(parents=True, exist_ok=True)
        return cls(LocalStore(store_path), DuckDBIndex(index_path))

    # -- events ----------------------------------------------------------------
    def subscribe(self, listener: Callable[[list[InstanceRecord]], None]) -> None:
        """Call ``listener`` (in the writer thread) with each committed batch."""
        self._listeners.append(listener)

    def _notify(self, records: list[InstanceRecord]) -> None:
        if records:
            for listener in list(self._listeners):
                listener(records)

    # -- ingest ------------------------------------------------------------------
    def store_bytes(self, raw: bytes, origin: str = "", expect_study: str | None = None) -> StoreResult:
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

        Raises
        ------
        InvalidInstance
            If ``raw`` is not an instance the archive can file; nothing is kept.
        """
        key = self.store.new_key()
        writing = self._files.submit(self.store.write, raw, key)
        try:
            record = parse_instance(raw, origin)
            if expect_study is not None and record.StudyInstanceUID != expect_study:
                raise StudyMismatch(
                    f"StudyInstanceUID {record.StudyInstanceUID} is not the study {expect_study} it was sent to"
                )
        except InvalidInstance:
            self._discard(writing, key)
            raise
        record.file = key
        committing = self._writer.submit(record)
        try:
            writing.result()
        except OSError:
            # No file: take back the row if it was committed, then report.
            if _outcome(committing) is Outcome.STORED:
                self._writer.call(lambda: self.index.remove_files([key]))
            raise
        try:
            outcome = committing.result()
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
        """Entities matching ``query`` (see :mod:`pacsdash.archive.query`)."""
        return self.index.find(query)

    def count(self, query: Query) -> int:
        """How many entities match ``query``."""
        return self.index.count(query)

    def locate(self, level: Level, uid: str | None = None, **keys: str) -> list[InstanceLocation]:
        """Instances of an entity, with their file keys and encodings."""
        return self.index.locate(level, uid, **keys)

    def locate_matching(self, query: Query) -> list[InstanceLocation]:
        """Instances matching an IMAGE-level query, with their files."""
        return self.index.locate_matching(query)

    def open(self, location: InstanceLocation) -> BinaryIO:
        """The stored bytes of an instance, as received."""
        return self.store.open(location.file)

    def local_path(self, location: InstanceLocation) -> Path:
        """A local file holding the instance's stored bytes."""
        return self.store.local_path(location.file)

    # -- removal ---------------------------------------------------------------
    def delete_study(self, study_uid: str) -> int:
        """Remove a study from the index, then its files; return how many."""
        files = self._writer.call(lambda: self.index.delete_study(study_uid))
        for key in files:
            self.store.delete(key)
        return len(files)

    # -- consistency -----------------------------------------------------------
    def reconcile(self, full: bool = False, progress: Callable[[int], None] | None = None) -> dict[str, int]:
        """Make the index and the file store agree after an unclean stop.

        After a clean stop (or with nothing to do) it returns at once; ``full``
        checks anyway. It removes half-written temporary files, indexes
        complete files the index does not know (written, never acknowledged),
        removes files of instances the index already has, and drops index
        rows whose file is missing (committed, never acknowledged).
        """
        report = {"temporary_removed": 0, "indexed": 0, "removed": 0, "missing": 0}
        if self.was_clean and not full:
            return report
        report["temporary_removed"] = self.store.clean_temporary()
        indexed = self.index.files()
        for key in (k for k in self.store.keys() if k not in indexed):
            raw = self.store.local_path(key).read_bytes()
            try:
                record = parse_instance(raw, "recovered")
            except InvalidInstance:
                LOGGER.warning("removing unreadable orphan file %s", key)
                self.store.delete(key)
                report["removed"] += 1
                continue
            record.file = key
            if self._writer.submit(record).result() is Outcome.STORED:
                report["indexed"] += 1
            else:
                self.store.delete(key)
                report["removed"] += 1
            if progress:
                progress(1)
        missing = [f for f in indexed if not self.store.exists(f)]
        if missing:
            LOGGER.warning("dropping %d index rows whose files never arrived", len(missing))
            self._writer.call(lambda: self.index.remove_files(missing))
        report["missing"] = len(missing)
        return report

    def close(self) -> None:
        """Finish pending writes and close the index."""
        if self._closed:
            return
        self._closed = True
        self._files.shutdown(wait=True)
        if not self.dirty:
            self._writer.call(lambda: self.index.mark_closed())
        self._writer.stop()
        self.index.close()

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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
