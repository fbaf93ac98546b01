"""Pure logic of the benchmarks (no timing): answers parsed and checked, expected counts, targets."""

from __future__ import annotations

import datetime as dt

import pytest

from benchmarks import dashboard, dicomweb
from benchmarks.common import BenchError
from benchmarks.report import Results


def test_multipart_parts_and_boundary():
    body = (b"preamble\r\n--abc\r\nContent-Type: application/dicom\r\n\r\nfirst\r\n--abc\r\n"
            b"Content-Type: application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1\r\n\r\n\r\n--x\r\n"
            b"\r\n--abc--\r\nepilogue")
    parts = dicomweb.split_multipart(body, 'multipart/related; type="application/dicom"; boundary="abc"')
    assert [p for _, p in parts] == [b"first", b"\r\n--x\r\n"]  # CRLF before a delimiter belongs to it
    assert parts[1][0]["content-type"].startswith("application/octet-stream")
    assert dicomweb.boundary_of("multipart/related; boundary=xyz; type=a") == "xyz"
    assert dicomweb.split_multipart(b"--b\r\n\r\nonly\r\n--b--", "multipart/related; boundary=b")[0][1] == b"only"
    with pytest.raises(ValueError):
        dicomweb.boundary_of("multipart/related")


def test_the_extra_study_counts_where_it_matches():
    ct = {"PatientName": "DOE^JANE", "PatientID": "PD0001", "StudyDate": "20260101", "ModalitiesInStudy": "CT"}
    assert dicomweb.extra_study_matches({"ModalitiesInStudy": "CT"}, ct)
    assert not dicomweb.extra_study_matches({"ModalitiesInStudy": "MR"}, ct)
    assert dicomweb.extra_study_matches({"PatientName": "*doe*"}, ct)
    assert not dicomweb.extra_study_matches({"PatientName": "*SMITH*"}, ct)
    assert not dicomweb.extra_study_matches({"StudyDate": "20200101-20200131"}, ct)
    assert dicomweb.extra_study_matches({"StudyDate": "20251201-"}, ct)
    assert not dicomweb.extra_study_matches({"PatientID": "BP00042"}, ct)
    plan = dicomweb.FindIndexPlan(200, 10, 20)
    expected = {q.name: q.expected for q in dicomweb.find_queries(plan)}
    with_ct = {q.name: q.expected for q in dicomweb.qido_queries(plan, ct)}
    assert with_ct == {**expected, "modality": expected["modality"] + 1}


def test_wildcards_stay_literal_in_the_query_string():
    assert dicomweb.query_string({"PatientName": "*SMITH*"}) == "PatientName=*SMITH*"
    assert dicomweb.query_string({"StudyDate": "20200101-20200131", "X": "a b&c"}) == \
        "StudyDate=20200101-20200131&X=a+b%26c"


def test_scroll_stats_count_distinct_slices_drawn():
    # slice 0 redrawn, then 1, 1 (redraw), 3 (2 skipped), 4
    draws = [[0.0, 0], [5.0, 0], [20.0, 1], [30.0, 1], [40.0, 3], [60.0, 4]]
    stats = dashboard.scroll_stats(draws, 0, 4)
    assert stats["slices_drawn"] == 3 and stats["slices_skipped"] == 1
    assert stats["fps"] == pytest.approx(2 / 0.040, rel=1e-3)
    with pytest.raises(BenchError):
        dashboard.scroll_stats([[0.0, 0], [10.0, 1]], 0, 4)
    back = dashboard.scroll_stats([[0.0, 4], [10.0, 3], [20.0, 2], [30.0, 1], [40.0, 0]], 4, 0)
    assert back["slices_drawn"] == 4 and back["slices_skipped"] == 0 and back["fps"] == pytest.approx(100.0)


def test_targets():
    assert dashboard.meets(("<", 200.0), 199.9) and not dashboard.meets(("<", 200.0), 200.0)
    assert dashboard.meets((">=", 20.0), 20.0)
    assert dashboard.target_text(("<", 1000.0), "ms") == "target < 1000 ms"
    results = Results(meta={})
    results.metric("x", "x", "fps", "higher", ("pacsdash",))
    dashboard._set(results, "x", 12.5, (">=", 20.0))
    assert results.metrics["x"].notes["pacsdash"] == "MISSES target"


def test_generated_index_answers_what_the_generator_says(tmp_path):
    from pacsdash.archive import Archive, Level, Query

    plan = dashboard.DashIndexPlan(studies=400, per_study=3)
    path = tmp_path / "index.duckdb"
    dashboard._write_index(path, plan)
    archive = Archive.open_home(tmp_path / "store", path)
    try:
        assert archive.was_clean  # the server must not reconcile generated rows away
        lo, hi = (d.strftime("%Y%m%d") for d in dashboard.SEARCH_DATES)
        filters = {"all": {}, "name": {"PatientName": "*smith*"}, "date": {"StudyDate": f"{lo}-{hi}"},
                   "modality": {"ModalitiesInStudy": "CT"}}
        for case in dashboard.search_cases(plan):
            assert archive.count(Query(Level.STUDY, filters[case.name])) == case.expected, case.name
        rows = archive.find(Query(Level.STUDY, {"PatientName": "*smith*"}, ["NumberOfStudyRelatedInstances"]))
        assert rows and {r["NumberOfStudyRelatedInstances"] for r in rows} == {"3"}
    finally:
        archive.close()
    assert dt.date(2020, 1, 1) in dashboard.SEARCH_DATES
