"""The index journal: acknowledged records survive a crash before the index commit."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from pacsdash.archive import Archive, Level, Query
from pacsdash.archive.archive import Outcome
from pacsdash.archive.journal import HEADER, Journal, UidFilter, decode_record, encode_record
from pacsdash.archive.parsing import parse_instance
from tests.factories import make_instance

PROJECT = Path(__file__).resolve().parents[2]


def _record(**attributes):
    record = parse_instance(make_instance(**attributes), "test")
    record.file = "20260101/00/" + "a" * 32 + ".dcm"
    return record


def test_record_round_trip() -> None:
    record = _record(PatientName="Müller^Jürgen", StudyDescription="<b>head</b>")
    again = decode_record(encode_record(record))
    assert again == record
    assert again.columns[Level.PATIENT]["PatientName"] == "Müller^Jürgen"


def test_torn_tail_is_cut_and_earlier_entries_kept(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j")
    records = [_record() for _ in range(3)]
    journal.append([(1, records[0]), (2, records[1])])
    journal.append([(3, records[2])])
    journal.close()
    full = (tmp_path / "j").read_bytes()
    (tmp_path / "j").write_bytes(full[:-10])  # the last write never finished
    journal = Journal(tmp_path / "j")
    assert [(seq, r.SOPInstanceUID) for seq, r in journal.replay()] == [
        (1, records[0].SOPInstanceUID), (2, records[1].SOPInstanceUID)]
    assert (tmp_path / "j").stat().st_size < len(full) - 10  # the torn entry is gone from the file
    journal.append([(3, records[2])])
    assert [seq for seq, _ in journal.replay()] == [1, 2, 3]
    journal.close()


def test_corrupt_entry_ends_the_journal(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j")
    journal.append([(1, _record()), (2, _record())])
    journal.close()
    data = bytearray((tmp_path / "j").read_bytes())
    data[HEADER.size + 5] ^= 0xFF  # a flipped bit in the first payload
    (tmp_path / "j").write_bytes(bytes(data))
    assert Journal(tmp_path / "j").replay() == []


def test_uid_filter_never_forgets() -> None:
    uids = [f"1.2.3.{k}" for k in range(300)]
    seen = UidFilter(uids[:100])
    seen.MERGE_AT = 16  # exercise the merge into the sorted array
    for uid in uids[100:]:
        seen.add(uid)
    assert all(uid in seen for uid in uids)
    assert sum(f"9.9.{k}" in seen for k in range(1000)) == 0


def test_every_acknowledged_instance_is_found_at_once(tmp_path: Path) -> None:
    with Archive.open_home(tmp_path / "store", tmp_path / "index.duckdb") as archive:
        for k in range(30):
            result = archive.store_bytes(make_instance(PatientID=f"RAW{k}"))
            assert result.outcome is Outcome.STORED
            found = archive.find(Query(Level.IMAGE, {"SOPInstanceUID": result.SOPInstanceUID}))
            assert [row["SOPInstanceUID"] for row in found] == [result.SOPInstanceUID]


def test_copies_arriving_together_keep_one_row_and_one_file(tmp_path: Path) -> None:
    raw = make_instance()
    outcomes: list[Outcome] = []
    with Archive.open_home(tmp_path / "store", tmp_path / "index.duckdb") as archive:
        threads = [threading.Thread(target=lambda: outcomes.append(archive.store_bytes(raw).outcome)) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(o.value for o in outcomes) == ["duplicate"] * 7 + ["stored"]
        assert archive.index.totals()["instances"] == 1
        assert archive.store_bytes(raw).outcome is Outcome.DUPLICATE  # once applied, too
    assert len(list((tmp_path / "store").rglob("*.dcm"))) == 1


CRASHER = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from pacsdash.archive import Archive
    from tests.factories import make_instance
    archive = Archive.open_home(Path(sys.argv[1], "store"), Path(sys.argv[1], "index.duckdb"))
    for k in range(40):
        result = archive.store_bytes(make_instance(PatientID="CRASH"))
        print(result.SOPInstanceUID, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # before the index has applied the last records
    """
)


def test_kill_before_the_index_commit_loses_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    done = subprocess.run([sys.executable, "-c", CRASHER, str(home)], cwd=PROJECT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == -9, done.stderr
    acknowledged = done.stdout.split()
    assert len(acknowledged) == 40
    with Archive.open_home(home / "store", home / "index.duckdb") as archive:
        assert archive.replayed > 0, "the index should have lacked the last records"
        rows = archive.find(Query(Level.IMAGE, {"PatientID": "CRASH"}))
        assert sorted(r["SOPInstanceUID"] for r in rows) == sorted(acknowledged)
        assert archive.reconcile(full=True)["missing"] == 0
    # A clean stop empties the journal; the next start replays nothing.
    with Archive.open_home(home / "store", home / "index.duckdb") as archive:
        assert archive.replayed == 0
        assert archive.index.totals()["instances"] == 40
    assert (home / "index.duckdb.journal").stat().st_size == 0


@pytest.mark.parametrize("applied", [True, False])
def test_replay_skips_what_the_index_already_has(tmp_path: Path, applied: bool) -> None:
    with Archive.open_home(tmp_path / "store", tmp_path / "index.duckdb") as archive:
        first = archive.store_bytes(make_instance())
    records = []
    with Archive.open_home(tmp_path / "store", tmp_path / "index.duckdb") as archive:
        location = archive.locate(Level.IMAGE, first.SOPInstanceUID)[0]
        raw = archive.open(location).read()
        record = parse_instance(raw, "test")
        record.file = location.file
        records.append(record)
        position = archive._index.journal_position()  # noqa: SLF001
    journal = Journal(tmp_path / "index.duckdb.journal")
    journal.append([(position if applied else position + 1, records[0])])
    journal.close()
    with Archive.open_home(tmp_path / "store", tmp_path / "index.duckdb") as archive:
        assert archive.replayed == (0 if applied else 1)
        assert archive.index.totals()["instances"] == 1
        assert archive.store.exists(location.file), "replaying a record must not drop its own file"

