"""The index's one writer: the group commit behind every acknowledgement.

Records reach the index through :class:`IndexWriter`: its journal thread
decides whether each is new or a copy of an archived instance, appends the
new ones to the index journal (:mod:`pacsdash.archive.journal`) a group at a
time with one fdatasync and resolves their futures; its index thread commits
journaled records in batches with the journal position in the same
transaction, and runs the other changes (deletes, repairs, records) as jobs,
in order. In a DICOM worker process, whose index lives in the server
process, records go straight to the server's writer (:meth:`submit`).
"""

from __future__ import annotations

import enum
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from pacsdash.archive.index import Index
from pacsdash.archive.journal import Journal, UidFilter
from pacsdash.archive.parsing import InstanceRecord

LOGGER = logging.getLogger(__name__)
#: Most records committed in one index transaction.
MAX_BATCH = 512
#: How long the index thread gathers journaled records into one commit [s].
#: Readers never wait for it (a read first applies what is journaled), and
#: each DuckDB commit costs several statements of fixed CPU: at 200 instances
#: a second, 1 s instead of 0.25 s saves a third of the server's CPU per instance.
APPLY_DELAY = 1.0
#: The journal is emptied, once all of it is in the index, when it grows past this.
JOURNAL_RESET_BYTES = 16 << 20


class Outcome(enum.Enum):
    """What became of one instance handed to :meth:`Archive.store`."""

    STORED = "stored"
    #: Already archived under this SOP Instance UID; the first copy is kept.
    DUPLICATE = "duplicate"


_FLUSH = object()  # a barrier's request to apply now
_NOTHING = object()


class _Applied:
    """A group of journaled records for the index writer to apply."""

    def __init__(self, entries: list[tuple[int, InstanceRecord]]) -> None:
        self.entries = entries


class IndexWriter:
    """The one writer of the index, with an optional journal in front of it.

    Without a journal, a record's future resolves once its batch is
    committed; in a worker process, whose index lives in the server (an
    index with ``submit``), each record goes straight to the server's
    writer. With a journal, a journal thread decides each record's outcome (stored, or a duplicate of
    an indexed or pending instance), appends the stored ones to the journal
    in groups and resolves their futures once the journal is durable; the
    index thread then commits them in batches. On an index other servers
    share (PostgreSQL), futures resolve once the record is committed, with
    no gathering delay, so that whatever one server acknowledged every other
    finds. :meth:`barrier` lets readers
    wait until every acknowledged record is in the index. Other changes
    (deletes, repairs) run as jobs of the index thread, in order.
    """

    def __init__(
        self,
        index: Index,
        on_commit: Callable[[list[InstanceRecord]], None],
        on_duplicate: Callable[[InstanceRecord], None],
        journal: Journal | None = None,
    ) -> None:
        self.index = index
        self.on_commit = on_commit
        self.on_duplicate = on_duplicate
        self.journal = journal
        #: The server's writer, reached without a thread of ours (a RemoteIndex).
        self._remote_submit: Callable[[list[InstanceRecord]], Future] | None = (
            getattr(index, "submit", None) if journal is None else None
        )
        self.jobs: queue.Queue[Any] = queue.Queue()
        self.incoming: queue.Queue[tuple[InstanceRecord, Future] | None] = queue.Queue()
        #: SOP Instance UID -> store key of journaled records not yet in the index.
        self._pending: dict[str, str] = {}
        self._state = threading.Condition()
        self._journaled = 0
        self._applied = 0
        self._next_sequence = 1
        #: Set when an index commit of journaled records failed: the journal
        #: is then kept for the next start to replay.
        self.failed = False
        #: SOP Instance UIDs of the index and the journal (journal thread only).
        self._seen: UidFilter | None = None
        #: A shared index (other servers read it): a record is acknowledged once it is
        #: in the index, not once it is journaled, so every server finds what we acknowledged.
        self._ack_after_commit = bool(getattr(index, "shared", False))
        #: Journal sequence -> the future acknowledged when that entry is committed.
        self._waiting: dict[int, Future] = {}
        self._flush_asked = False
        self._index_thread = threading.Thread(target=self._run_index, name="pacsdash-index-writer", daemon=True)
        self._journal_thread = threading.Thread(target=self._run_journal, name="pacsdash-index-journal", daemon=True)

    def start(self) -> None:
        self._index_thread.start()

    def replay(self) -> int:
        """Apply journal entries the index lacks (after a crash); return how many."""
        if self.journal is None:
            return 0
        applied = self.call(self.index.journal_position)
        todo = self.journal.replay(after=applied)  # only the entries the index lacks are decoded
        last = max(applied, self.journal.last)
        self._journaled = self._applied = last
        self._next_sequence = last + 1
        if todo:
            LOGGER.warning("replaying %d journaled instances from the index journal (%s)", len(todo),
                           "not yet acknowledged: the index is shared" if self._ack_after_commit else "acknowledged")
            self._applied = min(sequence for sequence, _ in todo) - 1
            for start in range(0, len(todo), MAX_BATCH):
                self.jobs.put(_Applied(todo[start : start + MAX_BATCH]))
            self.barrier()
        if not self.failed:
            self.journal.reset()
        self._seen = UidFilter(self.index.all_sop_uids())
        self._journal_thread.start()
        return len(todo)

    # -- callers -------------------------------------------------------------
    def submit(self, record: InstanceRecord) -> Future:
        """Queue a record; the future gives its :class:`Outcome` once durable."""
        future: Future = Future()
        if self._remote_submit is not None:
            self._remote_submit([record]).add_done_callback(lambda done: self._relay(record, done, future))
            return future
        (self.incoming if self.journal is not None else self.jobs).put((record, future))
        return future

    def _relay(self, record: InstanceRecord, remote: Future, future: Future) -> None:
        """Give ``future`` the outcome the server's writer gave ``record``."""
        try:
            [stored] = remote.result()
        except BaseException as exc:  # handed to the caller
            future.set_exception(exc)
            return
        future.set_result(Outcome.STORED if stored else Outcome.DUPLICATE)
        if stored:
            self._notify([record])

    def call(self, function: Callable[[], Any]) -> Any:
        """Run ``function`` in the index thread (after what is queued) and return its result."""
        future: Future = Future()
        self.jobs.put((function, future))
        return future.result()

    def barrier(self) -> None:
        """Wait until every acknowledged record is in the index."""
        if self._applied >= self._journaled or threading.current_thread() is self._index_thread:
            return
        with self._state:
            target = self._journaled
            if self._applied >= target:
                return
            self._flush_asked = True
        self.jobs.put(_FLUSH)  # wakes the index thread if it is gathering a batch
        with self._state:
            self._state.wait_for(lambda: self._applied >= target)

    def stop(self) -> None:
        """Finish what is queued, then end both threads."""
        if self._journal_thread.is_alive():
            self.incoming.put(None)
            self._journal_thread.join()
        self.jobs.put(None)
        self._index_thread.join()

    # -- journal thread --------------------------------------------------------
    def _run_journal(self) -> None:
        assert self.journal is not None
        while True:
            first = self.incoming.get()
            if first is None:
                return
            batch = [first]
            stop = False
            while len(batch) < MAX_BATCH:
                try:
                    item = self.incoming.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            self._journal_batch(batch)
            if stop:
                return

    def _journal_batch(self, batch: list[tuple[InstanceRecord, Future]]) -> None:
        assert self.journal is not None
        try:
            fresh, duplicates = self._split_duplicates(batch)
        except Exception as exc:  # the index could not be read: nothing is acknowledged
            LOGGER.exception("duplicate check of %d instances failed", len(batch))
            for _, future in batch:
                future.set_exception(exc)
            return
        entries = []
        for record, _ in fresh:
            entries.append((self._next_sequence, record))
            self._next_sequence += 1
        if entries:
            if self._applied >= self._journaled and not self.failed and self.journal.size() > JOURNAL_RESET_BYTES:
                self.journal.reset()  # everything in it is in the index
            try:
                self.journal.append(entries)
            except OSError as exc:
                LOGGER.exception("index journal write of %d instances failed", len(entries))
                self._next_sequence = entries[0][0]
                for _, future in fresh:
                    future.set_exception(exc)
                fresh = []
                entries = []
        if entries:
            with self._state:
                for _, record in entries:
                    self._pending[record.SOPInstanceUID] = record.file
                    self._seen.add(record.SOPInstanceUID)  # type: ignore[union-attr]
                self._journaled = entries[-1][0]
                if self._ack_after_commit:
                    self._waiting.update((sequence, future) for (sequence, _), (_, future) in zip(entries, fresh))
            self.jobs.put(_Applied(entries))  # queued before any job a caller submits after its ack
        if not self._ack_after_commit:
            for _, future in fresh:
                future.set_result(Outcome.STORED)
        for _, future in duplicates:
            future.set_result(Outcome.DUPLICATE)

    def _split_duplicates(self, batch: list[tuple[InstanceRecord, Future]]) -> tuple[list, list]:
        """Records new to the archive, and those already indexed, pending or earlier in the batch."""
        assert self._seen is not None  # loaded by replay()
        with self._state:
            pending = {r.SOPInstanceUID for r, _ in batch if r.SOPInstanceUID in self._pending}
        # Pending first, then the index: a record leaves ``pending`` only after its commit.
        # The index is asked only about UIDs the filter has seen (real duplicates, mostly).
        maybe = [r.SOPInstanceUID for r, _ in batch if r.SOPInstanceUID not in pending and r.SOPInstanceUID in self._seen]
        indexed = self.index.known(maybe) if maybe else set()
        seen: set[str] = set()
        fresh, duplicates = [], []
        for item in batch:
            uid = item[0].SOPInstanceUID
            if uid in seen or uid in pending or uid in indexed:
                duplicates.append(item)
            else:
                seen.add(uid)
                fresh.append(item)
        return fresh, duplicates

    # -- index thread ------------------------------------------------------------
    def _run_index(self) -> None:
        while True:
            first = self.jobs.get()
            if first is None:
                return
            if first is _FLUSH:
                continue
            if isinstance(first, _Applied):
                if self._gather_and_apply(first.entries):
                    return
                continue
            if callable(first[0]):
                self._call(*first)
                continue
            batch = [first]
            pending_job = None
            stop = False
            while len(batch) < MAX_BATCH:
                try:
                    job = self.jobs.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    stop = True
                    break
                if job is _FLUSH:
                    continue
                if isinstance(job, _Applied) or callable(job[0]):
                    pending_job = job
                    break
                batch.append(job)
            self._commit(batch)
            if isinstance(pending_job, _Applied):
                stop = self._gather_and_apply(pending_job.entries) or stop
            elif pending_job is not None:
                self._call(*pending_job)
            if stop:
                return

    def _gather_and_apply(self, entries: list[tuple[int, InstanceRecord]]) -> bool:
        """Apply ``entries`` with whatever else is journaled within APPLY_DELAY.

        Acknowledgements do not wait for this, so a short wait turns many
        one-record commits into one. A reader's barrier, any other job or a
        full batch ends the wait. Returns True if the writer is to stop.
        """
        entries = list(entries)
        # Acknowledgements wait for the index when it is shared: then gather only what is there already
        # (what arrives during a commit makes the next one).
        deadline = time.monotonic() + (0.0 if self._ack_after_commit else APPLY_DELAY)
        follow: Any = _NOTHING
        while len(entries) < MAX_BATCH and not self._flush_asked:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                job = self.jobs.get(timeout=remaining)
            except queue.Empty:
                break
            if isinstance(job, _Applied):
                entries.extend(job.entries)
            elif job is not _FLUSH:
                follow = job
                break
        self._flush_asked = False
        self._apply(entries)
        return False if follow is _NOTHING else self._run_job(follow)

    def _run_job(self, job: Any) -> bool:
        """Run one queued job other than journaled records; True means stop."""
        if job is None:
            return True
        if callable(job[0]):
            self._call(*job)
        else:
            self._commit([job])
        return False

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
        self._notify([r for r, a in zip(records, added) if a])

    def _apply(self, entries: list[tuple[int, InstanceRecord]]) -> None:
        """Commit journaled records (already acknowledged) to the index."""
        records = [record for _, record in entries]
        added: list[bool] = []
        try:
            added = self.index.add(records, journal_position=entries[-1][0])
            for record, was_added in zip(records, added):
                if not was_added and self.index.file_of(record.SOPInstanceUID) != record.file:
                    self.on_duplicate(record)  # a copy that raced the first, or replayed twice
        except Exception:
            LOGGER.exception("index commit of %d journaled instances failed; the journal keeps them", len(records))
            self.failed = True
        with self._state:
            for record in records:
                if self._pending.get(record.SOPInstanceUID) == record.file:
                    del self._pending[record.SOPInstanceUID]
            self._applied = max(self._applied, entries[-1][0])
            self._state.notify_all()
            waiting = [self._waiting.pop(sequence, None) for sequence, _ in entries] if self._waiting else []
        for k, future in enumerate(waiting):
            if future is not None:  # durable in the journal either way; in the index unless it failed
                future.set_result(Outcome.DUPLICATE if k < len(added) and not added[k] else Outcome.STORED)
        self._notify([r for r, a in zip(records, added) if a])

    def _notify(self, records: list[InstanceRecord]) -> None:
        try:
            self.on_commit(records)
        except Exception:  # listeners must not break ingest
            LOGGER.exception("a commit listener failed")
