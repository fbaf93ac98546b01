"""pacsdash check: each disagreement between index and store, made by hand, is found, named and repaired."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import pytest

from pacsdash.archive import Archive, DamagedFile, Level, MissingFile
from pacsdash.archive.check import ProblemKind, check_archive
from pacsdash.archive.records import ActionRecord
from tests.factories import make_instance


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def open_archive(home: Path) -> Archive:
    return Archive.open_home(home / "store", home / "index.duckdb")


def fill(home: Path, count: int = 4) -> dict[str, str]:
    """Store ``count`` instances of one series; SOP Instance UID -> store key."""
    study, series = make_instance_uids()
    with open_archive(home) as archive:
        for number in range(count):
            archive.store_bytes(make_instance(StudyInstanceUID=study, SeriesInstanceUID=series, InstanceNumber=number))
        return {loc.SOPInstanceUID: loc.file for loc in archive.locate(Level.STUDY, study)}


def make_instance_uids() -> tuple[str, str]:
    from pydicom.uid import generate_uid

    return generate_uid(), generate_uid()


def run_check(home: Path, repair: bool = False, **kwargs):
    with open_archive(home) as archive:
        return check_archive(archive, repair=repair, quarantine=home / "quarantine", **kwargs)


def only(report, kind: ProblemKind):
    assert [p.kind for p in report.problems] == [kind], [p.line() for p in report.problems]
    return report.problems[0]


def indexed(home: Path) -> dict[str, str]:
    with open_archive(home) as archive:
        return {loc.SOPInstanceUID: loc.file for loc in archive.locate(Level.IMAGE)}


def test_a_clean_archive_is_clean_and_its_hashes_are_kept_then_verified(home):
    files = fill(home)
    first = run_check(home)
    assert first.ok and first.problems == []
    assert (first.rows, first.files, first.first_hashed, first.hash_verified) == (4, 4, 4, 0)
    second = run_check(home)
    assert second.ok and (second.first_hashed, second.hash_verified) == (0, 4)
    assert "no problems" in second.summary()
    assert indexed(home) == files


def test_a_deleted_file_is_a_missing_file_and_repair_drops_its_row(home):
    files = fill(home)
    sop, key = next(iter(files.items()))
    (home / "store" / key).unlink()
    problem = only(run_check(home), ProblemKind.MISSING_FILE)
    assert (problem.SOPInstanceUID, problem.file) == (sop, key)
    assert sop in problem.line() and key in problem.line()
    assert sop in indexed(home)  # a check alone changes nothing
    repaired = run_check(home, repair=True)
    assert "row dropped" in only(repaired, ProblemKind.MISSING_FILE).repaired
    assert sop not in indexed(home) and len(indexed(home)) == 3
    assert run_check(home).ok


def test_a_truncated_file_is_a_size_mismatch_and_repair_quarantines_it(home):
    files = fill(home)
    sop, key = next(iter(files.items()))
    path = home / "store" / key
    raw = path.read_bytes()
    path.write_bytes(raw[:-10])
    problem = only(run_check(home), ProblemKind.SIZE_MISMATCH)
    assert (problem.SOPInstanceUID, problem.file) == (sop, key)
    repaired = only(run_check(home, repair=True), ProblemKind.SIZE_MISMATCH)
    moved = home / "quarantine" / key
    assert str(moved) in repaired.repaired
    assert moved.read_bytes() == raw[:-10] and not path.exists()
    note = json.loads(moved.with_name(moved.name + ".json").read_text())
    assert note["SOPInstanceUID"] == sop and note["kind"] == "size mismatch"
    assert sop not in indexed(home)
    assert run_check(home).ok


def test_flipped_pixel_bytes_are_a_hash_mismatch_after_the_first_check(home):
    files = fill(home)
    assert run_check(home).ok  # first seen
    sop, key = next(iter(files.items()))
    path = home / "store" / key
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0xFF  # the last pixel byte: structure, size and identity unchanged
    path.write_bytes(bytes(raw))
    problem = only(run_check(home), ProblemKind.HASH_MISMATCH)
    assert (problem.SOPInstanceUID, problem.file) == (sop, key)
    run_check(home, repair=True)
    assert (home / "quarantine" / key).read_bytes() == bytes(raw)
    assert sop not in indexed(home)
    assert run_check(home).ok


def test_the_first_check_cannot_see_a_change_made_before_it(home):
    files = fill(home, 1)
    [key] = files.values()
    path = home / "store" / key
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0xFF
    path.write_bytes(bytes(raw))
    report = run_check(home)
    assert report.ok and report.first_hashed == 1  # documented: first seen is what is there


def test_flipped_header_bytes_make_an_unreadable_file(home):
    files = fill(home)
    sop, key = next(iter(files.items()))
    path = home / "store" / key
    raw = bytearray(path.read_bytes())
    raw[128:132] = b"XXXX"  # the DICM prefix
    path.write_bytes(bytes(raw))
    problem = only(run_check(home), ProblemKind.UNREADABLE_FILE)
    assert (problem.SOPInstanceUID, problem.file) == (sop, key)
    run_check(home, repair=True)
    assert (home / "quarantine" / key).exists() and sop not in indexed(home)


def test_a_stray_copy_in_the_store_is_an_orphan_and_repair_indexes_it(home, tmp_path):
    fill(home)
    raw = make_instance(InstanceNumber=7)
    stray = "20200101/00/" + "ab" * 16 + ".dcm"
    (home / "store" / stray).parent.mkdir(parents=True)
    (home / "store" / stray).write_bytes(raw)
    problem = only(run_check(home), ProblemKind.ORPHAN_FILE)
    assert problem.file == stray and problem.SOPInstanceUID  # named by the instance it holds
    repaired = only(run_check(home, repair=True), ProblemKind.ORPHAN_FILE)
    assert repaired.repaired.startswith("indexed")
    assert indexed(home)[problem.SOPInstanceUID] == stray
    assert run_check(home).ok


def test_a_second_copy_and_garbage_in_the_store_are_quarantined_never_deleted(home):
    files = fill(home)
    sop, key = next(iter(files.items()))
    copy = "20200101/00/" + "cd" * 16 + ".dcm"
    garbage = "20200101/00/" + "ef" * 16 + ".dcm"
    (home / "store" / copy).parent.mkdir(parents=True)
    shutil.copy(home / "store" / key, home / "store" / copy)
    (home / "store" / garbage).write_bytes(b"not dicom at all")
    report = run_check(home)
    named = {p.file: p for p in report.problems}
    assert set(named) == {copy, garbage}
    assert named[copy].SOPInstanceUID == sop and named[garbage].SOPInstanceUID == ""
    run_check(home, repair=True)
    assert (home / "quarantine" / copy).exists() and (home / "quarantine" / garbage).exists()
    assert indexed(home)[sop] == key
    assert run_check(home).ok


def test_an_edited_row_is_an_identity_mismatch_and_repair_reindexes_the_file(home):
    files = fill(home)
    sop, key = next(iter(files.items()))
    con = duckdb.connect(str(home / "index.duckdb"))
    con.execute('UPDATE instances SET "SeriesInstanceUID" = ? WHERE "SOPInstanceUID" = ?', ["1.2.3.4", sop])
    con.close()
    problem = only(run_check(home), ProblemKind.IDENTITY_MISMATCH)
    assert (problem.SOPInstanceUID, problem.file) == (sop, key)
    assert "SeriesInstanceUID" in problem.detail and "1.2.3.4" in problem.detail
    assert "indexed as" in only(run_check(home, repair=True), ProblemKind.IDENTITY_MISMATCH).repaired
    with open_archive(home) as archive:
        [location] = archive.locate(Level.IMAGE, sop)
        assert location.file == key and location.SeriesInstanceUID != "1.2.3.4"
    assert run_check(home).ok


def test_a_row_naming_no_store_file_is_reported_not_followed(home):
    files = fill(home)
    sop = next(iter(files))
    con = duckdb.connect(str(home / "index.duckdb"))
    con.execute('UPDATE instances SET file = ? WHERE "SOPInstanceUID" = ?', ["../../etc/passwd", sop])
    con.close()
    report = run_check(home)
    named = {p.kind: p for p in report.problems}
    assert set(named) == {ProblemKind.MISSING_FILE, ProblemKind.ORPHAN_FILE}
    assert named[ProblemKind.MISSING_FILE].file == "../../etc/passwd"
    assert "no store file" in named[ProblemKind.MISSING_FILE].detail
    assert (named[ProblemKind.ORPHAN_FILE].file, named[ProblemKind.ORPHAN_FILE].SOPInstanceUID) == (files[sop], sop)
    run_check(home, repair=True)  # the row goes, the file it lost is indexed again
    assert indexed(home)[sop] == files[sop]
    assert run_check(home).ok


def test_repair_leaves_a_record_naming_what_was_done(home):
    files = fill(home)
    sop, key = next(iter(files.items()))
    (home / "store" / key).unlink()
    run_check(home, repair=True, actor="cli:tester")
    with open_archive(home) as archive:
        [record] = archive.records(action="repair")
    assert isinstance(record, ActionRecord) and record.actor == "cli:tester"
    assert record.details["problems"][0]["SOPInstanceUID"] == sop


def test_progress_counts_every_file(home):
    fill(home, 3)
    seen = []
    run_check(home, progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (3, 3)


def test_a_live_check_leaves_out_files_still_arriving(home):
    fill(home, 2)
    stray = "20200101/00/" + "ab" * 16 + ".dcm"
    (home / "store" / stray).parent.mkdir(parents=True)
    (home / "store" / stray).write_bytes(make_instance())
    report = run_check(home, live=True)
    assert report.ok and report.in_flight == 1


def test_open_and_read_raise_typed_errors_for_missing_and_damaged_files(home):
    files = fill(home, 2)
    (sop1, key1), (sop2, key2) = files.items()
    (home / "store" / key1).unlink()
    path2 = home / "store" / key2
    path2.write_bytes(path2.read_bytes()[:-4])
    with open_archive(home) as archive:
        [gone] = archive.locate(Level.IMAGE, sop1)
        [cut] = archive.locate(Level.IMAGE, sop2)
        for call in (archive.open, archive.read_dataset, archive.verified_path):
            with pytest.raises(MissingFile) as missing:
                call(gone)
            assert (missing.value.SOPInstanceUID, missing.value.file) == (sop1, key1)
            with pytest.raises(DamagedFile) as damaged:
                call(cut)
            assert damaged.value.SOPInstanceUID == sop2
    assert issubclass(MissingFile, FileNotFoundError)  # callers catching OSError keep working
