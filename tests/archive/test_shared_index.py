"""Two servers on one PostgreSQL index (issue 16, several servers): what one stores the
other finds at once, what one deletes the other no longer finds (nothing remembered
from a shared index outlives a request), and the same instance arriving at both keeps
one copy."""

from __future__ import annotations

import threading

import pytest
from pydicom.uid import generate_uid

from pacsdash.archive import Archive, Level, Outcome, Query
from pacsdash.archive.pg_index import PostgresIndex
from pacsdash.archive.store import LocalStore
from tests.factories import PREFIX, make_instance


@pytest.fixture
def two_servers(postgres_server, tmp_path):
    """Two archives as two servers would open them: one database, one store, a journal each."""
    url = postgres_server.new_database()
    archives = [Archive.open_index(LocalStore(tmp_path / "store"), PostgresIndex(url), tmp_path / f"{name}.journal")
                for name in ("a", "b")]
    yield archives
    for archive in archives:
        archive.close()


def test_what_one_stores_the_other_finds_and_what_one_deletes_the_other_forgets(two_servers):
    a, b = two_servers
    study = generate_uid(PREFIX)
    raw = make_instance(StudyInstanceUID=study, PatientID="SHARED")
    stored = a.store_bytes(raw)
    assert b.count(Query(Level.STUDY, {"StudyInstanceUID": study})) == 1
    location = b.locate_instance(stored.SOPInstanceUID)
    with b.open(location) as stream:
        assert stream.read() == raw
    assert a.delete_study(study) == 1
    assert b.locate_instance(stored.SOPInstanceUID) is None  # not remembered from before the delete
    assert b.count(Query(Level.STUDY, {"StudyInstanceUID": study})) == 0


def test_the_same_instance_at_both_servers_at_once_is_kept_once(two_servers, tmp_path):
    a, b = two_servers
    raws = [make_instance(StudyInstanceUID=generate_uid(PREFIX), PatientID="RACE") for _ in range(20)]
    outcomes: dict[str, list[Outcome]] = {}
    start = threading.Barrier(2)

    def send(archive: Archive, name: str) -> None:
        start.wait()
        outcomes[name] = [archive.store_bytes(raw).outcome for raw in raws]

    threads = [threading.Thread(target=send, args=(archive, name)) for archive, name in zip(two_servers, "ab")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for k in range(len(raws)):  # one of them keeps it (the other's answer is a duplicate, a success too)
        assert sorted(o.value for o in (outcomes["a"][k], outcomes["b"][k])) == ["duplicate", "stored"]
    assert a.count(Query(Level.IMAGE, {"PatientID": "RACE"})) == len(raws)
    files = [p for p in (tmp_path / "store").rglob("*") if p.is_file()]
    assert len(files) == len(raws)  # the second copy's file is gone
    for location in b.locate(Level.PATIENT, "RACE"):
        with b.open(location) as stream:
            assert stream.read() in raws


def test_each_server_keeps_its_own_journal_position_and_clean_stop(postgres_server, tmp_path):
    """Each server journals in its own home: the shared index keeps each one's position and
    open/closed state apart, so a server's recovery never starts from another's position."""
    from pacsdash.archive.factory import home_id
    from pacsdash.archive.parsing import parse_instance

    url = postgres_server.new_database()
    first, second = home_id(tmp_path / "a"), home_id(tmp_path / "b")
    assert first != second and home_id(tmp_path / "a") == first  # made once, then kept
    a, b = PostgresIndex(url, owner=first), PostgresIndex(url, owner=second)
    try:
        a.mark_open()
        b.mark_open()
        record = parse_instance(make_instance())
        record.file = "0" * 32
        a.add([record], journal_position=7)
        assert a.journal_position() == 7 and b.journal_position() == 0
        a.mark_closed()
    finally:
        a.close()
        b.close()
    again_a, again_b = PostgresIndex(url, owner=first), PostgresIndex(url, owner=second)
    try:
        assert again_a.mark_open() is True  # a stopped cleanly
        assert again_b.mark_open() is False  # b did not: its recovery runs, a's does not
    finally:
        again_a.close()
        again_b.close()
