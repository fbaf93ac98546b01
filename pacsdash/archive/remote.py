"""The index, served to other processes over a pipe.

DuckDB allows one process to open the index. DICOM receiving runs in worker
processes (so that decoding PDUs and parsing headers use every core); each
worker's :class:`Archive` gets a :class:`RemoteIndex`, whose calls travel to
the server process, where :class:`IndexService` answers them: reads from the
index directly, records through the archive's single writer (and so in its
group commits).
"""

from __future__ import annotations

import itertools
import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from multiprocessing.connection import Connection
from typing import Any

from pacsdash.archive.parsing import InstanceRecord

LOGGER = logging.getLogger(__name__)

#: Index methods a worker may call: reads run directly, changes go through
#: the server's writer thread.
READS = frozenset({"find", "count", "known", "locate", "locate_matching", "files", "totals", "labels_of"})
CHANGES = frozenset({"delete_study", "remove_files", "add_record"})


class RemoteError(RuntimeError):
    """The server process could not answer (it stopped, or the call failed)."""


class RemoteIndex:
    """An :class:`~pacsdash.archive.index.Index` living in another process."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._send_lock = threading.Lock()
        self._pending: dict[int, Future] = {}
        self._ids = itertools.count()
        self._closed = threading.Event()
        self._reader = threading.Thread(target=self._read_replies, name="pacsdash-index-client", daemon=True)
        self._reader.start()

    def _read_replies(self) -> None:
        while True:
            try:
                message = self._connection.recv()
            except (EOFError, OSError):
                break
            if message is None:  # the server asks this worker to stop
                break
            request_id, ok, value = message
            future = self._pending.pop(request_id, None)
            if future is None:
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value if isinstance(value, Exception) else RemoteError(str(value)))
        self._closed.set()
        for future in list(self._pending.values()):
            future.set_exception(RemoteError("the pacsdash server process is gone"))
        self._pending.clear()

    def _send(self, method: str, *args: Any) -> Future:
        """Send one call; the future gets its answer."""
        if self._closed.is_set():
            raise RemoteError("the pacsdash server process is gone")
        request_id = next(self._ids)
        future: Future = Future()
        self._pending[request_id] = future
        try:
            with self._send_lock:
                self._connection.send((request_id, method, args))
        except (OSError, ValueError) as exc:
            self._pending.pop(request_id, None)
            raise RemoteError(f"cannot reach the pacsdash server process: {exc}") from None
        return future

    def _call(self, method: str, *args: Any) -> Any:
        return self._send(method, *args).result()

    @property
    def gone(self) -> threading.Event:
        """Set when the server process closed the pipe."""
        return self._closed

    def add(self, records: list[InstanceRecord]) -> list[bool]:
        return self._call("add", records)

    def submit(self, records: list[InstanceRecord]) -> Future:
        """Hand ``records`` to the server's writer without waiting; the future
        gets, per record, whether it was stored (False: a copy of an archived
        instance), once durable."""
        return self._send("add", records)

    def __getattr__(self, name: str) -> Any:
        if name in READS or name in CHANGES:
            return lambda *args: self._call(name, *args)
        raise AttributeError(name)

    def mark_open(self) -> bool:
        return True  # the server process reconciles; workers never do

    def mark_closed(self) -> None:
        return None

    def close(self) -> None:
        try:
            self._connection.close()
        except OSError:
            pass


class IndexService:
    """Answers one worker's :class:`RemoteIndex` calls in the server process."""

    def __init__(self, archive: Any, connection: Connection, name: str) -> None:
        self.archive = archive
        self.connection = connection
        self._send_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix=f"pacsdash-{name}-rpc")
        self._thread = threading.Thread(target=self._serve, name=f"pacsdash-{name}-index", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Ask the worker to stop; it closes the pipe, which ends this service."""
        try:
            with self._send_lock:
                self.connection.send(None)
        except (OSError, ValueError):
            pass

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)
        try:
            self.connection.close()
        except OSError:
            pass

    def _serve(self) -> None:
        while True:
            try:
                request_id, method, args = self.connection.recv()
            except (EOFError, OSError):
                break
            if method == "add":
                self._add(request_id, args[0])  # answered when the writer resolves it: no thread waits
            else:
                self._pool.submit(self._answer, request_id, method, args)
        self._pool.shutdown(wait=False)

    def _add(self, request_id: int, records: list[InstanceRecord]) -> None:
        """Queue records with the archive's writer; reply once all are durable."""
        futures = [self.archive.submit(record) for record in records]
        if not futures:
            self._reply((request_id, True, []))
            return
        remaining = [len(futures)]
        lock = threading.Lock()

        def done(_: Future) -> None:
            with lock:
                remaining[0] -= 1
                if remaining[0]:
                    return
            try:
                reply = (request_id, True, [future.result().value == "stored" for future in futures])
            except Exception as exc:  # sent back to the caller
                reply = (request_id, False, exc)
            self._reply(reply)

        for future in futures:
            future.add_done_callback(done)

    def _answer(self, request_id: int, method: str, args: tuple) -> None:
        try:
            value = self._dispatch(method, args)
            reply = (request_id, True, value)
        except Exception as exc:  # sent back to the caller
            reply = (request_id, False, exc)
        self._reply(reply)

    def _reply(self, reply: tuple) -> None:
        request_id = reply[0]
        try:
            with self._send_lock:
                self.connection.send(reply)
        except (OSError, ValueError):
            pass
        except Exception as exc:  # an exception that cannot be pickled
            with self._send_lock:
                self.connection.send((request_id, False, RemoteError(str(exc))))

    def _dispatch(self, method: str, args: tuple) -> Any:
        archive = self.archive
        if method == "add":
            futures = [archive.submit(record) for record in args[0]]
            return [future.result().value == "stored" for future in futures]
        if method in READS:
            return getattr(archive.index, method)(*args)
        if method == "add_record":  # an audit entry of a worker's DIMSE service: the server's own path
            return archive.record(args[0])
        if method in CHANGES:
            return archive.change_index(method, *args)
        raise RemoteError(f"unknown index call {method!r}")
