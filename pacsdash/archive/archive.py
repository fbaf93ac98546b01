"""The archive facade every door calls: store, find, open, delete.

Ingest order, which makes an acknowledgement mean "durable":

1. parse and check the header (in the caller's thread);
2. write the bytes to a temporary file, fsync, rename (in the caller's thread);
3. hand the record to the single writer thread, which commits whole batches
   of records in one index transaction and then wakes the callers;
4. the caller acknowledges (C-STORE success, STOW-RS 200) only after 3.

A crash between 2 and 3 leaves a complete file the index does not know;
:meth:`Archive.reconcile` (run at every start) indexes such files, so the index
and the file store agree again.
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
    """The one thread that writes to the index, a batch per transaction."""

    def __init__(self, index: Index, store: Store, on_commit: Callable[[list[InstanceRecord]], None]) -> None:
        super().__init__(name="pacsdash-index-writer", daemon=True)
        self.index = index
        self.store = store
        self.on_commit = on_commit
        self.jobs: queue.Queue[tuple[InstanceRecord, Future] | None] = queue.Queue()

    def submit(self, record: InstanceRecord) -> Future:
        future: Future = Future()
        self.jobs.put((record, future))
        return future

    def stop(self) -> None:
        self.jobs.put(None)
        self.join()

    def run(self) -> None:
        while True:
            first = self.jobs.get()
            if first is None:
                return
            batch = [first]
            stop = False
            while len(batch) < MAX_BATCH:
                try:
                    job = self.jobs.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    stop = True
                    break
                batch.append(job)
            self._commit(batch)
            if stop:
                return

    def _commit(self, batch: list[tuple[InstanceRecord, Future]]) -> None:
        records = [record for record, _ in batch]
        try:
            self.store.sync([r.file for r in records])
            added = self.index.add(records)
        except Exception as exc:  # the index refused: nothing is acknowledged
            LOGGER.exception("index commit of %d instances failed", len(records))
            for record, future in batch:
                self.store.delete(record.file)
                future.set_exception(exc)
            return
        for (record, future), was_added in zip(batch, added):
            if not was_added:
                self.store.delete(record.file)
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
        self._writer = _Writer(index, store, self._notify)
        self._writer.start()
        self._closed = False

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
    def store_bytes(self, raw: bytes, origin: str = "") -> StoreResult:
        """Archive one Part 10 instance; return once it is durable.

        Parameters
        ----------
        raw
            The instance as received: preamble, file meta and data set.
        origin
            Who sent it (``dicom:AET@host``, ``http:user``, ``import``).

        Raises
        ------
        InvalidInstance
            If ``raw`` is not an instance the archive can file; nothing is kept.
        """
        record = parse_instance(raw, origin)
        record.file = self.store.write(raw)
        outcome = self._writer.submit(record).result()
        return self._result(record, outcome)

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
        files = self.index.delete_study(study_uid)
        for key in files:
            self.store.delete(key)
        return len(files)

    # -- consistency -----------------------------------------------------------
    def reconcile(self, progress: Callable[[int], None] | None = None) -> dict[str, int]:
        """Make the index and the file store agree after a crash.

        Removes half-written temporary files, indexes complete files the index
        does not know (written, not yet committed, never acknowledged), and
        removes stored copies of instances the index already has.
        """
        report = {"temporary_removed": self.store.clean_temporary(), "indexed": 0, "removed": 0}
        indexed = self.index.files()
        orphans = [key for key in self.store.keys() if key not in indexed]
        for key in orphans:
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
                report["removed"] += 1
            if progress:
                progress(1)
        missing = [f for f in indexed if not self.store.exists(f)]
        if missing:
            LOGGER.error("%d indexed files are missing from the store", len(missing))
        report["missing"] = len(missing)
        return report

    def close(self) -> None:
        """Finish pending writes and close the index."""
        if self._closed:
            return
        self._closed = True
        self._writer.stop()
        self.index.close()

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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
