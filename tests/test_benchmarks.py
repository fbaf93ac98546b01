"""Pure logic of the benchmarks (no timing): answers parsed and checked, expected counts, targets."""

from __future__ import annotations

import datetime as dt

import pytest

from benchmarks import dashboard, dicomweb, notebook, research
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


def _zip(entries: dict[str, bytes], compression: int) -> bytes:
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as bundle:
        for name, data in entries.items():
            bundle.writestr(name, data)
    return buffer.getvalue()


def test_research_counts_dicom_files_in_a_zip_and_checks_jobs():
    import zipfile

    dicom = b"\0" * 128 + b"DICM" + b"rest"
    stored = _zip({"a/1.dcm": dicom, "a/2": dicom, "manifest.csv": b"subject,study\n" * 20, "tiny": b"x"},
                  zipfile.ZIP_STORED)
    assert research.dicom_entries(stored) == ["a/1.dcm", "a/2"]
    assert research.zip_compression(stored) == "stored"
    assert research.zip_compression(_zip({"x": dicom}, zipfile.ZIP_DEFLATED)) == "deflated"
    assert research._check_zip(stored, 2, "x")["dicom_files"] == 2
    with pytest.raises(BenchError):
        research._check_zip(stored, 3, "x")
    assert not research.job_finished({"state": "running"}) and research.job_finished({"state": "done"})
    with pytest.raises(BenchError, match="no space"):
        research.job_finished({"state": "failed", "error": "no space"})
    with pytest.raises(BenchError):
        research._check_export({"summary": {"instances": 20, "left_out": 1, "files": 20}}, 20, "zip")
    assert research.median_rate(100, [2.0, 1.0, 4.0]) == 50.0


def test_research_memory_verdict_and_target():
    flat = research.memory_verdict([(0.0, 100 * 1024), (1.0, 118 * 1024), (2.0, 110 * 1024)])
    assert flat["flat"] and flat["growth"] == 0.1 and flat["peak_mib"] == 118.0
    assert not research.memory_verdict([(0.0, 100 * 1024), (1.0, 125 * 1024), (2.0, 105 * 1024)])["flat"]  # the peak
    assert not research.memory_verdict([(0.0, 100 * 1024), (2.0, 121 * 1024)])["flat"]
    assert research.ratio_target_note(10.0, 10.0) == "meets target"
    assert research.ratio_target_note(9.9, 10.0) == "MISSES target"


def test_research_phase_is_planned_with_quick_counts():
    from benchmarks import run
    from benchmarks.phases import PHASE_FUNCTIONS, PHASES

    assert "research" in PHASES and "research" in PHASE_FUNCTIONS
    plan, _ = run.parse_args(["--quick", "--only", "research"])
    assert plan.phases == ("research",)
    assert (plan.research_instances, plan.research_cohort, plan.research_repetitions) == (20, 200, 2)
    plan, _ = run.parse_args([])
    assert (plan.research_instances, plan.research_cohort, plan.research_repetitions) == (100, 2000, 3)
    results = Results(meta={})
    research._rows(results, 20, 2, 200)
    assert results.metrics["research_nifti"].applies == ("pacsdash",)  # Orthanc has no NIfTI: no ratio
    assert results.metrics["research_anonymize"].applies == ("pacsdash", "orthanc")


def test_notebook_index_holds_what_pacsdash_would_store_and_the_cohort_the_generator_says(tmp_path):
    import json

    import duckdb

    from pacsdash.archive.index import DuckDBIndex
    from pacsdash.archive.parsing import COLUMN_TAGS

    plan = notebook.CohortIndexPlan(1450, per_series=100)  # 15 series, the last one short
    assert (plan.series, plan.size_of(14), plan.modality(3), plan.expected()) == (15, 50, "MR", 2)
    notebook.check_against_parser(plan)  # pacsdash's parser stores a CT and an MR instance's JSON as generated
    attributes = json.loads(notebook.attribute_json(notebook.ct_attributes(plan, 0, 0)))
    assert 40 <= len(attributes) <= 50 and not {int(t, 16) for t in attributes} & COLUMN_TAGS
    path = tmp_path / "index.duckdb"
    notebook.write_index(path, plan)
    con = duckdb.connect(str(path))
    try:
        rows = con.execute('SELECT "SOPInstanceUID", attributes FROM instances').fetchall()
    finally:
        con.close()
    assert len(rows) == 1450
    for uid, text in rows[::37] + rows[-1:]:  # the SQL writes what the Python reference writes
        s, k = (int(v) for v in uid.rsplit(".", 2)[1:])
        assert text == notebook.attribute_json(notebook.ct_attributes(plan, s, k - 1)), uid
    index = DuckDBIndex(path)
    try:
        found = [r["SeriesInstanceUID"] for q in notebook.page_queries(plan.expected()) for r in index.find(q)]
    finally:
        index.close()
    assert sorted(found) == sorted(plan.matching())


def test_notebook_plain_volume_sorts_along_the_normal_and_rescales():
    import numpy as np
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    def slice_(z: float, value: int) -> Dataset:
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.ImagePositionPatient, ds.ImageOrientationPatient = [0, 0, z], [1, 0, 0, 0, 1, 0]
        ds.Rows = ds.Columns = 2
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.RescaleSlope, ds.RescaleIntercept = 2, -1024
        ds.PixelData = np.full((2, 2), value, dtype="<u2").tobytes()
        return ds

    volume = notebook.plain_volume([slice_(-5.0, 3), slice_(-10.0, 1), slice_(0.0, 5)])
    assert volume.dtype == np.float32 and volume.shape == (3, 2, 2)
    assert list(volume[:, 0, 0]) == [-1022.0, -1018.0, -1014.0]  # z -10, -5, 0
    assert notebook.same_array(volume, volume.copy()) == ""
    other = volume.copy()
    other[1, 1, 1] += 1
    assert notebook.same_array(volume, other).startswith("1 voxels differ")
    assert "shapes differ" in notebook.same_array(volume, volume[:2])


def test_notebook_phase_is_planned_with_quick_counts_and_targets():
    from benchmarks import run
    from benchmarks.phases import PHASE_FUNCTIONS, PHASES

    assert "notebook" in PHASES and "notebook" in PHASE_FUNCTIONS
    plan, _ = run.parse_args(["--quick", "--only", "notebook"])
    assert (plan.notebook_slices, plan.cohort_sizes, plan.notebook_parts) == (30, (2000, 20000), ("volume", "cohort"))
    plan, _ = run.parse_args(["--only", "notebook", "--notebook-parts", "cohort", "--cohort-sizes", "1_000_000"])
    assert (plan.notebook_slices, plan.cohort_sizes, plan.notebook_parts) == (100, (1_000_000,), ("cohort",))
    assert run.parse_args([])[0].cohort_sizes == (20_000, 1_000_000)
    results = Results(meta={})
    notebook._rows(results, plan)
    assert list(results.metrics) == notebook.cohort_ids(1_000_000)
    assert results.metrics["notebook_cohort_1000000"].applies == ("pacsdash",)
    assert "1,144 match" in results.metrics["notebook_cohort_1000000"].label
    assert [notebook.ratio_note(0.5), notebook.ratio_note(0.51)] == ["meets target", "MISSES target"]
    assert [notebook.cohort_note(999.9), notebook.cohort_note(1000.0)] == ["meets target", "MISSES target"]
    from pacsdash.client.client import PAGE

    # Every page, then the request whose empty answer ends the search.
    assert [q.offset for q in notebook.page_queries(PAGE - 1)] == [0, PAGE - 1]
    assert [q.offset for q in notebook.page_queries(PAGE)] == [0, PAGE]
    assert [q.offset for q in notebook.page_queries(0)] == [0]


def test_activity_cost_is_the_share_of_the_rate_lost_with_the_page_open():
    from benchmarks import ingest

    assert ingest.activity_cost(95.0, 100.0) == pytest.approx(0.05)
    assert ingest.activity_cost(110.0, 100.0) == pytest.approx(-0.10)  # faster with the page: a negative cost
    with pytest.raises(ValueError):
        ingest.activity_cost(1.0, 0.0)
    rounds = [{"plain": 200.0, "activity": 190.0}, {"plain": 220.0, "activity": 150.0, "traffic_off": 230.0},
              {"plain": 210.0, "activity": 200.0}]
    assert ingest.median_rates(rounds) == {"plain": 210.0, "activity": 190.0, "traffic_off": 230.0}


def test_activity_rounds_are_planned_and_noted():
    from benchmarks import run

    plan, _ = run.parse_args(["--quick", "--only", "ingest"])
    assert plan.activity_rounds == 1
    assert any("PACSDASH_TRAFFIC=off" in note for note in run.notes(plan))
    plan, _ = run.parse_args(["--only", "ingest", "--activity-rounds", "0"])
    assert plan.activity_rounds == 0 and not any("/activity" in note for note in run.notes(plan))
    assert run.parse_args([])[0].activity_rounds == 3
    with pytest.raises(SystemExit):
        run.parse_args(["--activity-rounds", "-1"])


def test_the_study_link_has_a_target_and_a_row_and_its_marks_start_with_the_page():
    assert dashboard.TARGETS["link"] == ("<", 1500.0)
    assert dashboard.meets(dashboard.TARGETS["link"], 1499.0) and not dashboard.meets(dashboard.TARGETS["link"], 1500.0)
    assert "window.__deepAll = " in dashboard.LINK_MARKS_JS and "window.__linkMarks" in dashboard.LINK_MARKS_JS
    assert not dashboard.LINK_MARKS_JS.lstrip().startswith("() =>")  # a script, not a function expression


def test_scale_phase_and_pg_servers_are_planned():
    from benchmarks import run
    from benchmarks.phases import PHASE_FUNCTIONS, PHASES
    from benchmarks.servers import SERVERS

    assert "scale" in PHASES and "scale" in PHASE_FUNCTIONS
    assert {"pacsdash-pg", "orthanc-pg"} <= set(SERVERS)
    plan, _ = run.parse_args(["--quick", "--only", "scale", "--servers", "pacsdash,pacsdash-pg"])
    assert (plan.find.count, plan.scale_instances, plan.servers) == (2000, 20_000, ("pacsdash", "pacsdash-pg"))
    plan, _ = run.parse_args([])
    assert plan.scale_instances == 1_000_000 and {"pacsdash-pg", "orthanc-pg", "bare"} <= set(plan.servers)
    assert any("moto" in note and "lower bound" in note for note in run.notes(plan))
    with pytest.raises(SystemExit):
        run.parse_args(["--only", "scale", "--scale-instances", "20000"])  # not larger than the C-FIND index
    with pytest.raises(SystemExit):
        run.parse_args(["--servers", "pacsdash,nope"])


def test_generated_scale_rows_go_in_through_the_index_and_match_no_query(tmp_path):
    from pacsdash.archive import Level, Query
    from pacsdash.archive.index import DuckDBIndex

    from benchmarks import cfind, scale

    extra = scale.ExtraPlan(1005)  # the last study short
    assert extra.studies == 101 and extra.study_size(100) == 5
    records = list(scale.generated_records(extra))
    assert len(records) == 1005 and len({r.SOPInstanceUID for r in records}) == 1005
    index = DuckDBIndex(tmp_path / "index.duckdb")
    try:
        assert sum(index.add(records)) == 1005
        assert index.totals() == {"patients": 51, "studies": 101, "series": 121, "instances": 1005}
        studies = index.find(Query(Level.STUDY, {"StudyInstanceUID": f"{scale.UID_ROOT}.1.4"},
                                   ["NumberOfStudyRelatedInstances", "ModalitiesInStudy", "NumberOfStudyRelatedSeries"]))
        assert [(s["NumberOfStudyRelatedInstances"], s["ModalitiesInStudy"], s["NumberOfStudyRelatedSeries"])
                for s in studies] == [("10", "CR\\MR", "2")]
        for query in cfind.queries(datasets_plan()):  # the C-FIND phase's queries find none of them
            assert index.count(Query(Level.STUDY, query.filters)) == 0, query.name
    finally:
        index.close()


def datasets_plan():
    from benchmarks.datasets import FindIndexPlan

    return FindIndexPlan(2000, 10, 200)


def test_ratios_and_report_columns():
    from benchmarks import report, scale
    from benchmarks.phases import pg_ingest_ratios

    assert scale.ratio(15.0, 10.0) == 1.5
    with pytest.raises(ValueError):
        scale.ratio(1.0, 0.0)
    results = Results(meta={})
    for n in (1, 4):
        results.metric(f"ingest_{n}", "ingest", "instances/s", "higher")
    results.metrics["ingest_1"].values.update({"pacsdash": 100.0, "pacsdash-pg": 85.0, "orthanc-pg": 50.0})
    results.metrics["ingest_4"].values.update({"pacsdash": 200.0, "pacsdash-pg": 150.0})
    pg_ingest_ratios(results, ("pacsdash", "pacsdash-pg"))
    assert results.metrics["ingest_1_pg_ratio"].values == {"pacsdash-pg": 0.85}
    assert results.metrics["ingest_1_pg_ratio"].notes["pacsdash-pg"] == "meets target"
    assert results.metrics["ingest_4_pg_ratio"].notes["pacsdash-pg"] == "MISSES target"
    assert [s for s, _ in report.columns(results)] == ["pacsdash", "orthanc", "bare", "pacsdash-pg", "orthanc-pg"]
    assert "pacsdash PG+S3 / Orthanc PG" in report.table(results)
    assert results.metrics["ingest_1"].as_dict()["ratio_pacsdash_pg_over_orthanc_pg"] == 1.7
    plain = Results(meta={})
    plain.metric("x", "x", "ms", "lower").values["pacsdash"] = 1.0
    assert [s for s, _ in report.columns(plain)] == ["pacsdash", "orthanc", "bare"]
    assert "Orthanc PG" not in report.table(plain)
