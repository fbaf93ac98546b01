"""The traffic recorder: bounded whatever arrives, events in order, counts per second."""

from __future__ import annotations

import threading
import time

from pacsdash.traffic.events import (
    AssociationClosed,
    AssociationOpened,
    DimseMessage,
    HttpRequest,
    InstancesArchived,
)
from pacsdash.traffic.recorder import FIRST_MESSAGES_KEPT, LAST_MESSAGES_KEPT, TrafficRecorder

CT = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"


def opened(key: str, port: int = 5000, moment: float | None = None) -> AssociationOpened:
    return AssociationOpened(moment or time.time(), key, "STORESCU", "PACSDASH", "127.0.0.1", port,
                             ((1, CT, (EXPLICIT,)),), ((1, CT, EXPLICIT, "Accepted"),))


def store(key: str, message_id: int, status: int | None = None) -> DimseMessage:
    if status is None:
        return DimseMessage(time.time(), key, "received", "C-STORE-RQ", message_id, 1, CT, None, 3, 1000)
    return DimseMessage(time.time(), key, "sent", "C-STORE-RSP", message_id, 1, CT, status)


def test_an_association_keeps_its_first_and_last_messages_and_counts_all():
    recorder = TrafficRecorder()
    recorder.record(opened("a"))
    for number in range(1, 501):
        recorder.record(store("a", number))
        recorder.record(store("a", number, 0x0000))
    recorder.record(AssociationClosed(time.time(), "a", "released"))
    [record] = recorder.snapshot().associations
    assert record.ended == "released" and record.peer == "STORESCU@127.0.0.1:5000"
    assert record.messages == 1000 and record.pdus == 500 * 3 and record.size == 500 * 1000
    assert record.counts == {("C-STORE-RQ", None): 500, ("C-STORE-RSP", 0): 500}
    assert [m.message_id for m in record.first] == [1, 1, 2, 2, 3, 3, 4, 4][:FIRST_MESSAGES_KEPT]
    assert len(record.last) == LAST_MESSAGES_KEPT and record.last[-1].message_id == 500


def test_memory_is_bounded_whatever_peers_do():
    recorder = TrafficRecorder(events_kept=100, associations_kept=10, http_kept=20)
    for number in range(1000):
        recorder.record(opened(f"k{number}", port=number))
        recorder.record(store(f"k{number}", 1))
        recorder.record(HttpRequest(time.time(), "GET", "/api/health", 200, 0.001))
    snapshot = recorder.snapshot()
    assert len(recorder.events()) == 100
    assert len(snapshot.associations) == 10 and len(snapshot.http) == 20
    assert snapshot.totals == {"associations": 1000, "messages": 1000, "http": 1000}
    assert [r.key for r in snapshot.associations][0] == "k999"  # newest first
    assert len(recorder._by_peer) <= 10  # noqa: SLF001


def test_live_associations_are_evicted_last():
    recorder = TrafficRecorder(associations_kept=3)
    recorder.record(opened("live", port=1))
    for number in range(10):
        recorder.record(opened(f"done{number}", port=100 + number))
        recorder.record(AssociationClosed(time.time(), f"done{number}", "released"))
    keys = {r.key for r in recorder.snapshot().associations}
    assert "live" in keys and len(keys) == 3


def test_events_are_kept_in_order_from_many_threads():
    recorder = TrafficRecorder(events_kept=100_000)

    def send(key: str) -> None:
        for number in range(2000):
            recorder.record(store(key, number))

    threads = [threading.Thread(target=send, args=(f"t{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    events = recorder.events()
    assert len(events) == 8000
    for key in ("t0", "t1", "t2", "t3"):
        assert [e.message_id for e in events if e.key == key] == list(range(2000))


def test_instances_archived_are_attributed_to_their_association_by_origin():
    recorder = TrafficRecorder()
    recorder.record(opened("a", port=4242))
    recorder.record(InstancesArchived(time.time(), "dicom:STORESCU@127.0.0.1:4242", "1.2.3", "DOE^JANE", "P1", 2))
    recorder.record(InstancesArchived(time.time(), "dicom:STORESCU@127.0.0.1:4242", "1.2.3", "DOE^JANE", "P1", 1))
    recorder.record(InstancesArchived(time.time(), "dicom:OTHER@127.0.0.1:1", "1.2.4", "X^Y", "P2", 1))
    [record] = recorder.snapshot().associations
    assert record.studies == {"1.2.3": ["DOE^JANE", "P1", 3]}


def test_a_release_after_the_connection_closed_still_names_the_end():
    recorder = TrafficRecorder()
    recorder.record(opened("a"))
    recorder.record(AssociationClosed(time.time(), "a", "closed"))
    recorder.record(AssociationClosed(time.time(), "a", "released"))
    assert recorder.snapshot().associations[0].ended == "released"


def test_counts_per_second():
    recorder = TrafficRecorder()
    now = int(time.time())
    recorder.record(opened("a", moment=now - 2.5))
    for moment in (now - 2.4, now - 2.3, now - 0.5):
        recorder.record(DimseMessage(moment, "a", "received", "C-ECHO-RQ", 1, 1, "1.2.840.10008.1.1"))
    recorder.record(HttpRequest(now - 0.2, "GET", "/", 200, 0.01))
    counts = recorder.snapshot().counts
    assert counts == [(now - 3, 1, 2, 0), (now - 1, 0, 1, 1)]
