"""Traffic events from a DICOM worker process to the server process.

A worker's :class:`TrafficForwarder` is its traffic sink: recording appends
to a bounded list and never waits. A thread of its own sends what has
gathered, one pickled batch at a time, over a pipe of its own (never the
index's pipe, which carries the DICOM data's records). When the server
process reads too slowly, the list fills and further events are dropped and
counted (the count travels with the next batch); DICOM data never waits for
an event. The server process's :class:`TrafficReceiver` reads the batches
into the :class:`~pacsdash.traffic.recorder.TrafficRecorder`.
"""

from __future__ import annotations

import logging
import threading
from multiprocessing.connection import Connection
from typing import Any

from pacsdash.traffic.events import Event

LOGGER = logging.getLogger(__name__)
#: Events a worker holds while its batch is on the way; more are dropped.
PENDING_KEPT = 20000
#: Seconds between batches (an event waits at most this long).
BATCH_PERIOD = 0.2


class TrafficForwarder:
    """A worker process's traffic sink (see the module docstring)."""

    def __init__(self, connection: Connection, pending_kept: int = PENDING_KEPT,
                 period: float = BATCH_PERIOD) -> None:
        self.connection = connection
        self.pending_kept = pending_kept
        self.period = period
        self._pending: list[Event] = []
        self._lock = threading.Lock()
        #: Events dropped and not yet reported to the server process.
        self._dropped = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pacsdash-traffic-forwarder", daemon=True)

    def start(self) -> TrafficForwarder:
        self._thread.start()
        return self

    def record(self, event: Event) -> None:
        """Keep ``event`` for the next batch, or count it dropped; never waits for I/O."""
        with self._lock:
            if len(self._pending) < self.pending_kept:
                self._pending.append(event)
            else:
                self._dropped += 1

    def _take(self) -> tuple[list[Event], int]:
        with self._lock:
            batch, self._pending = self._pending, []
            dropped, self._dropped = self._dropped, 0
        return batch, dropped

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            if not self._send():
                return
        self._send()

    def _send(self) -> bool:
        """Send what gathered; False once the server process is gone."""
        batch, dropped = self._take()
        if not batch and not dropped:
            return True
        try:
            self.connection.send((batch, dropped))  # may wait for the reader: only this thread waits
        except (OSError, ValueError, EOFError):
            return False
        return True

    def stop(self, timeout: float = 2) -> None:
        """Send what is left and stop."""
        self._stop.set()
        self._thread.join(timeout)
        try:
            self.connection.close()
        except OSError:
            pass


class TrafficReceiver:
    """Reads one worker's batches into a recorder, in a thread of its own."""

    def __init__(self, connection: Connection, recorder: Any, name: str) -> None:
        self.connection = connection
        self.recorder = recorder
        self._thread = threading.Thread(target=self._run, name=f"pacsdash-traffic-{name}", daemon=True)

    def start(self) -> TrafficReceiver:
        self._thread.start()
        return self

    def _run(self) -> None:
        while True:
            try:
                batch, dropped = self.connection.recv()
            except (EOFError, OSError):
                break
            except Exception:  # a batch that cannot be read: lost, said once
                LOGGER.exception("unreadable traffic batch from a DICOM worker")
                continue
            self.recorder.extend(batch, dropped)
        try:
            self.connection.close()
        except OSError:
            pass

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)
