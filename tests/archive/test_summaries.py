"""Stored study and series summaries (counts, ModalitiesInStudy) stay true to the rows."""

from __future__ import annotations

import duckdb
import pytest
from pydicom.uid import MRImageStorage, generate_uid

from pacsdash.archive import Archive, Level, Query
from pacsdash.archive.summaries import SUMMARY_COLUMNS
from tests.factories import make_instance
from tests.pg import index_cursor


def _study(archive: Archive, uid: str) -> dict:
    [row] = archive.find(Query(Level.STUDY, {"StudyInstanceUID": uid}, fields=["SOPClassesInStudy"]))
    return row


def _series_counts(archive: Archive, study: str) -> dict[str, str]:
    rows = archive.find(Query(Level.SERIES, {"StudyInstanceUID": study}))
    return {r["SeriesInstanceUID"]: r["NumberOfSeriesRelatedInstances"] for r in rows}


@pytest.fixture
def archive(backend_archive):
    """An empty archive on the module's index backend (DuckDB, PostgreSQL: tests/archive/conftest.py)."""
    return backend_archive


def _fill(archive: Archive) -> tuple[str, str, str]:
    """One study: a CT series of 3 instances and an MR series of 1; returns (study, ct, mr)."""
    first = archive.store_bytes(make_instance(Modality="CT"))
    study, ct = first.StudyInstanceUID, first.SeriesInstanceUID
    for _ in range(2):
        archive.store_bytes(make_instance(Modality="CT", StudyInstanceUID=study, SeriesInstanceUID=ct))
    mr = archive.store_bytes(make_instance(Modality="MR", SOPClassUID=MRImageStorage, StudyInstanceUID=study))
    return study, ct, mr.SeriesInstanceUID


def test_summaries_follow_each_ingest(archive):
    study, ct, mr = _fill(archive)
    row = _study(archive, study)
    assert row["ModalitiesInStudy"] == "CT\\MR"
    assert row["NumberOfStudyRelatedSeries"] == "2"
    assert row["NumberOfStudyRelatedInstances"] == "4"
    assert row["SOPClassesInStudy"] == "1.2.840.10008.5.1.4.1.1.2\\1.2.840.10008.5.1.4.1.1.4"
    assert _series_counts(archive, study) == {ct: "3", mr: "1"}
    # A duplicate changes nothing.
    [location] = archive.locate(Level.SERIES, mr)
    archive.store_bytes(archive.store.read(location.file))
    assert _study(archive, study)["NumberOfStudyRelatedInstances"] == "4"


def test_summaries_follow_removed_files(archive):
    study, ct, mr = _fill(archive)
    [mr_instance] = archive.locate(Level.SERIES, mr)
    archive.store.delete(mr_instance.file)
    archive.reconcile(full=True)  # drops the row whose file is gone
    row = _study(archive, study)
    assert row["ModalitiesInStudy"] == "CT"
    assert row["NumberOfStudyRelatedSeries"] == "1"
    assert row["NumberOfStudyRelatedInstances"] == "3"
    assert archive.find(Query(Level.STUDY, {"ModalitiesInStudy": "MR"})) == []


def test_modalities_in_study_matches_value_by_value(archive):
    study, _, _ = _fill(archive)
    other = archive.store_bytes(make_instance(Modality="US")).StudyInstanceUID

    def matching(value: str) -> set[str]:
        return {r["StudyInstanceUID"] for r in archive.find(Query(Level.STUDY, {"ModalitiesInStudy": value}))}

    assert matching("MR") == {study}
    assert matching("US\\MR") == {study, other}
    assert matching("?R") == {study}
    assert matching("CT\\MR") == {study}  # a list: any of its values, never the joined text
    assert matching("C*") == {study}
    assert matching("XA") == set()
    # Patient level still matches through the patient's series.
    assert len(archive.find(Query(Level.PATIENT, {"ModalitiesInStudy": "MR"}))) == 1


def test_an_older_index_gets_its_summaries_filled(tmp_path):  # DuckDB's migration (PostgreSQL's: test_pg_index)
    store, index_path = tmp_path / "store", tmp_path / "index.duckdb"
    with Archive.open_home(store, index_path) as archive:
        study, ct, mr = _fill(archive)
    con = duckdb.connect(str(index_path))  # as an index written before summaries were stored
    for level, columns in SUMMARY_COLUMNS.items():
        for name in columns:
            con.execute(f'ALTER TABLE {level.table} DROP COLUMN "{name}"')
    con.close()
    with Archive.open_home(store, index_path) as archive:
        row = _study(archive, study)
        assert row["ModalitiesInStudy"] == "CT\\MR"
        assert row["NumberOfStudyRelatedInstances"] == "4"
        assert _series_counts(archive, study) == {ct: "3", mr: "1"}


def test_incremental_summaries_equal_a_full_recount(tmp_path, home):
    """Batches of new instances, series and studies, counted as they come, agree with a recount."""
    from pacsdash.archive.archive import store_many
    from pacsdash.archive.summaries import refresh

    files = []
    studies = [make_instance(Modality="CT") for _ in range(3)]
    for number, raw in enumerate(studies):
        path = tmp_path / f"first{number}.dcm"
        path.write_bytes(raw)
        files.append(path)
    with home.open() as archive:
        first = [archive.store_file(p) for p in files]
        more = []
        for number in range(40):
            base = first[number % 3]
            same_series = number % 2 == 0
            raw = make_instance(
                Modality="CT" if same_series else ("MR", "US", "SR")[number % 3],
                StudyInstanceUID=base.StudyInstanceUID,
                SeriesInstanceUID=base.SeriesInstanceUID if same_series else generate_uid(),
            )
            path = tmp_path / f"more{number}.dcm"
            path.write_bytes(raw)
            more.append(path)
        more.append(more[0])  # a copy: counted once
        results = list(store_many(archive, more, workers=4))
        assert all(not isinstance(result, Exception) for _, result in results)
        query = Query(Level.STUDY, fields=["SOPClassesInStudy"])
        series_query = Query(Level.SERIES)
        counted = sorted(map(sorted, (r.items() for r in archive.find(query))))
        counted_series = sorted(map(sorted, (r.items() for r in archive.find(series_query))))
        with index_cursor(archive) as cursor:  # recount in place
            refresh(cursor, None, None, archive.index.dialect)
        assert sorted(map(sorted, (r.items() for r in archive.find(query)))) == counted
        assert sorted(map(sorted, (r.items() for r in archive.find(series_query)))) == counted_series
        assert sum(int(r["NumberOfStudyRelatedInstances"]) for r in archive.find(query)) == 3 + 40
