"""The traffic recorder: a bounded record of what the DICOM and HTTP doors did.

Everything is kept in memory, in structures of fixed size whatever peers do:
a ring of the latest events, the latest associations (each with its first
and latest DIMSE messages and counts of the rest), the latest HTTP requests
and per-second counts over the last minutes. Recording an event is a lock,
a few appends and counter increments: cheap enough for every C-STORE.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from pacsdash.traffic.events import (
    AssociationClosed,
    AssociationOpened,
    AssociationRejected,
    DimseMessage,
    Event,
    HttpRequest,
    InstancesArchived,
)

#: Latest events of any kind kept in order.
EVENTS_KEPT = 5000
#: Associations kept (live ones are evicted last).
ASSOCIATIONS_KEPT = 100
#: First DIMSE messages kept per association (the step-by-step view).
FIRST_MESSAGES_KEPT = 8
#: Latest DIMSE messages kept per association.
LAST_MESSAGES_KEPT = 30
#: Studies remembered per association.
STUDIES_KEPT = 8
#: Latest HTTP requests kept.
HTTP_KEPT = 200
#: Seconds of per-second counts kept.
SECONDS_KEPT = 900


class TrafficSink(Protocol):
    """Anything events can be recorded into (the recorder, or a worker's forwarder)."""

    def record(self, event: Event) -> None: ...


@dataclass
class AssociationRecord:
    """What is known of one association."""

    opened: AssociationOpened | AssociationRejected
    #: ``released``, ``aborted``, ``closed``, ``rejected`` or None while live.
    ended: str | None = None
    ended_at: float | None = None
    first: list[DimseMessage] = field(default_factory=list)
    last: deque[DimseMessage] = field(default_factory=lambda: deque(maxlen=LAST_MESSAGES_KEPT))
    messages: int = 0
    pdus: int = 0
    size: int = 0
    #: (message name, status or None) -> how many.
    counts: dict[tuple[str, int | None], int] = field(default_factory=dict)
    #: StudyInstanceUID -> [PatientName, PatientID, instances archived].
    studies: dict[str, list[Any]] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return self.opened.key

    @property
    def peer(self) -> str:
        """``AET@host:port``, as the archive names the instances' origin."""
        return f"{self.opened.calling_aet}@{self.opened.address}:{self.opened.port}"

    @property
    def live(self) -> bool:
        return self.ended is None

    def copy(self) -> AssociationRecord:
        """A copy the page may read while recording goes on."""
        return AssociationRecord(
            self.opened, self.ended, self.ended_at, list(self.first), deque(self.last, maxlen=LAST_MESSAGES_KEPT),
            self.messages, self.pdus, self.size, dict(self.counts),
            {uid: list(values) for uid, values in self.studies.items()},
        )


@dataclass
class Snapshot:
    """A consistent copy of the recorder's state, newest association first."""

    associations: list[AssociationRecord]
    http: list[HttpRequest]
    #: (second, associations opened, DIMSE messages, HTTP requests), oldest first.
    counts: list[tuple[int, int, int, int]]
    totals: dict[str, int]
    dropped: int
    version: int


class TrafficRecorder:
    """The server process's record of traffic (see the module docstring)."""

    def __init__(self, events_kept: int = EVENTS_KEPT, associations_kept: int = ASSOCIATIONS_KEPT,
                 http_kept: int = HTTP_KEPT, seconds_kept: int = SECONDS_KEPT) -> None:
        self._lock = threading.Lock()
        self._events: deque[Event] = deque(maxlen=events_kept)
        self._associations: OrderedDict[str, AssociationRecord] = OrderedDict()
        self._associations_kept = associations_kept
        self._by_peer: dict[str, AssociationRecord] = {}
        self._http: deque[HttpRequest] = deque(maxlen=http_kept)
        self._seconds: deque[list[int]] = deque(maxlen=seconds_kept)
        self._totals = {"associations": 0, "messages": 0, "http": 0}
        #: Events lost on the way here (a worker's forwarder was full).
        self.dropped = 0
        #: Grows with every event: a page redraws only when it changed.
        self.version = 0
        #: Hears of each association refused (the audit trail's peer refusals).
        self.on_rejected: Callable[[AssociationRejected], None] | None = None

    # -- recording -------------------------------------------------------------------
    def record(self, event: Event) -> None:
        """Record one event (any thread)."""
        with self._lock:
            self._record(event)

    def extend(self, events: Iterable[Event], dropped: int = 0) -> None:
        """Record a batch (from a worker process), and the events it dropped."""
        with self._lock:
            for event in events:
                self._record(event)
            self.dropped += dropped

    def _record(self, event: Event) -> None:
        self.version += 1
        self._events.append(event)
        kind = type(event)
        if kind is DimseMessage:
            self._count(event.time, 2)
            self._totals["messages"] += 1
            record = self._associations.get(event.key)
            if record is not None:
                record.messages += 1
                record.pdus += event.pdus
                record.size += event.size
                if len(record.first) < FIRST_MESSAGES_KEPT:
                    record.first.append(event)
                else:
                    record.last.append(event)
                counted = (event.command, event.status)
                record.counts[counted] = record.counts.get(counted, 0) + 1
        elif kind is HttpRequest:
            self._count(event.time, 3)
            self._totals["http"] += 1
            self._http.append(event)
        elif kind is AssociationOpened or kind is AssociationRejected:
            self._count(event.time, 1)
            self._totals["associations"] += 1
            record = AssociationRecord(event)
            if kind is AssociationRejected:
                record.ended, record.ended_at = "rejected", event.time
                if self.on_rejected is not None:
                    self.on_rejected(event)
            else:
                self._by_peer[record.peer] = record
            self._associations[event.key] = record
            self._evict()
        elif kind is AssociationClosed:
            record = self._associations.get(event.key)
            if record is not None and (record.ended is None or (record.ended == "closed" and event.how != "closed")):
                if record.ended is None:
                    record.ended_at = event.time
                record.ended = event.how  # a release seen after the connection closed still names the end
        elif kind is InstancesArchived:
            record = self._by_peer.get(event.origin.removeprefix("dicom:"))
            if record is not None:
                study = record.studies.get(event.StudyInstanceUID)
                if study is not None:
                    study[2] += event.count
                elif len(record.studies) < STUDIES_KEPT:
                    record.studies[event.StudyInstanceUID] = [event.PatientName, event.PatientID, event.count]

    def _count(self, moment: float, column: int) -> None:
        second = int(moment)
        seconds = self._seconds
        if seconds and seconds[-1][0] == second:
            seconds[-1][column] += 1
            return
        for bucket in reversed(seconds):  # a late event (a worker's batch): its own second
            if bucket[0] == second:
                bucket[column] += 1
                return
            if bucket[0] < second:
                break
        if seconds and second < seconds[-1][0]:
            return  # older than any second still kept apart: counted in the totals only
        bucket = [second, 0, 0, 0]
        bucket[column] = 1
        seconds.append(bucket)

    def _evict(self) -> None:
        """Forget the oldest ended association (else the oldest) beyond the bound."""
        while len(self._associations) > self._associations_kept:
            victim = next((k for k, r in self._associations.items() if r.ended is not None),
                          next(iter(self._associations)))
            record = self._associations.pop(victim)
            if self._by_peer.get(record.peer) is record:
                del self._by_peer[record.peer]

    # -- archive ----------------------------------------------------------------------
    def on_commit(self, records: list[Any]) -> None:
        """:meth:`Archive.subscribe` listener: attribute instances received over
        DICOM to their association, by origin (``dicom:AET@host:port``; the
        index may commit them after the association ended)."""
        groups: dict[tuple[str, str], list[Any]] = {}
        for record in records:
            origin = getattr(record, "origin", "")
            if origin.startswith("dicom:"):
                group = groups.get((origin, record.StudyInstanceUID))
                if group is None:
                    groups[(origin, record.StudyInstanceUID)] = [_patient_value(record, "PatientName"),
                                                                 _patient_value(record, "PatientID"), 1]
                else:
                    group[2] += 1
        now = time.time()
        for (origin, study), (name, patient_id, count) in groups.items():
            self.record(InstancesArchived(now, origin, study, name, patient_id, count))

    # -- reading -------------------------------------------------------------------
    def events(self) -> list[Event]:
        """The latest events, oldest first."""
        with self._lock:
            return list(self._events)

    def association(self, key: str) -> AssociationRecord | None:
        with self._lock:
            record = self._associations.get(key)
            return record.copy() if record is not None else None

    def snapshot(self, seconds: int = SECONDS_KEPT, associations: int | None = None) -> Snapshot:
        """A copy of the state for a page: counts of the last ``seconds``, the
        live associations and the newest ended ones, ``associations`` in all
        (default: every one kept)."""
        with self._lock:
            newest = list(reversed(self._associations.values()))
            if associations is not None:
                live = [record for record in newest if record.ended is None]
                ended = [record for record in newest if record.ended is not None]
                kept = {id(record) for record in (live + ended)[:associations]}
                newest = [record for record in newest if id(record) in kept]
            copies = [record.copy() for record in newest]
            since = int(time.time()) - seconds
            counts = [tuple(bucket) for bucket in self._seconds if bucket[0] >= since]
            return Snapshot(copies, list(self._http), counts, dict(self._totals),  # type: ignore[arg-type]
                            self.dropped, self.version)


def _patient_value(record: Any, keyword: str) -> str:
    """A patient-level column value of an archive record, or ""."""
    for values in getattr(record, "columns", {}).values():
        if keyword in values:
            return values[keyword] or ""
    return ""
