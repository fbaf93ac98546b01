"""The search's whole result as a DataFrame, CSV and Parquet, and the attribute filter, without a browser."""

from __future__ import annotations

import io

import pandas as pd
import pytest

from pacsdash.archive import Archive, Level, Query
from pacsdash.dashboard.results_out import LEVELS, MAX_BYTES, result_query, to_csv, to_parquet
from pacsdash.dashboard.search import StudySearch, matchable_keywords
from tests.factories import make_instance

STUDIES = 40


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    folder = tmp_path_factory.mktemp("results")
    archive = Archive.open_home(folder / "store", folder / "index.duckdb")
    for k in range(STUDIES):
        first = make_instance(PatientName=f"OUT^{k:02d}", PatientID=f"OUT{k:02d}", StudyDate=f"2019{1 + k % 12:02d}03",
                              Modality="CT", SliceThickness="1.0" if k % 2 else "5", SeriesNumber=1,
                              InstanceNumber=1, ConvolutionKernel="B30f" if k % 4 == 0 else "B70f")
        archive.store_bytes(first)
        if k < 3:  # a second series in the first studies
            from pydicom import dcmread

            from pydicom.uid import generate_uid

            study, series = dcmread(io.BytesIO(first)).StudyInstanceUID, generate_uid()
            for number in (1, 2):
                archive.store_bytes(make_instance(PatientName=f"OUT^{k:02d}", PatientID=f"OUT{k:02d}",
                                                  StudyInstanceUID=study, SeriesInstanceUID=series, StudyDate=f"2019{1 + k % 12:02d}03",
                                                  Modality="MR", SeriesNumber=2, InstanceNumber=number,
                                                  SliceThickness="0.5"))
    archive.store_bytes(make_instance(PatientName="ODD^DATE", PatientID="ODD", StudyDate="1997.04.24",
                                      SliceThickness="2\\3"))
    yield archive
    archive.close()


def test_the_whole_result_not_the_page(archive):
    search = StudySearch(archive=archive, page_size=25)
    search.patient_name = "out"
    assert len(search._table.value) == 25 and search.total == STUDIES
    frame = search.results.frame()
    assert len(frame) == STUDIES and frame["StudyInstanceUID"].is_unique
    assert set(frame["PatientID"]) == {f"OUT{k:02d}" for k in range(STUDIES)}
    # In the search's order (newest first), typed: dates are dates, counts are integers.
    assert list(frame["StudyDate"]) == sorted(frame["StudyDate"], reverse=True)
    assert str(frame["StudyDate"].dtype).startswith("datetime64")
    assert str(frame["NumberOfStudyRelatedInstances"].dtype) == "Int64"
    assert frame.set_index("PatientID").loc["OUT01", "NumberOfStudyRelatedInstances"] == 3
    search.results.level = "series"
    series = search.results.frame()
    assert len(series) == STUDIES + 3 and set(series["Modality"]) == {"CT", "MR"}
    assert str(series["SeriesNumber"].dtype) == "Int64"
    search.results.level = "instances"
    instances = search.results.frame()
    assert len(instances) == STUDIES + 6 and instances["SOPInstanceUID"].is_unique


def test_an_attribute_filter_on_any_keyword(archive):
    search = StudySearch(archive=archive)
    search._keyword.value = "ConvolutionKernel"  # not an index column: read from the attributes JSON
    search._value.value = "b30F"  # text matches as people type it
    search.add_where()
    assert search.where == ["ConvolutionKernel=b30F"] and search.total == STUDIES // 4
    search._keyword.value, search._value.value = "SliceThickness", "<=1"
    search.add_where()
    assert search.where == ["ConvolutionKernel=b30F", "SliceThickness=<=1"]
    assert search.total == 1  # OUT00 has a 0.5 mm series; every other B30f study is 5 mm
    search.results.level = "series"
    assert search.results.frame().empty  # a series must match both: none does (the CT is 5 mm, the MR not B30f)
    search._keyword.value, search._value.value = "NotAKeyword", "1"
    search.add_where()
    assert "not a DICOM keyword" in search._where_hint.object and len(search.where) == 2
    search._where_list.value = ["SliceThickness=<=1"]  # removed with its ×
    assert search.where == ["SliceThickness=<=1"] and search.total == STUDIES // 2 + 2  # odd k, OUT00 and OUT02
    frame = search.results.frame()
    assert len(frame) == STUDIES // 2 + 3 and str(frame["SliceThickness"].dtype) == "Float64"
    assert set(frame["SliceThickness"]) == {0.5, 1.0}
    search._keyword.value, search._value.value = "StudyDate", "2019-01"
    search.add_where()
    assert "not a valid DA" in search.error and search.total == 0
    assert "SliceThickness" in matchable_keywords() and "PixelData" not in matchable_keywords()


def test_csv_and_parquet_hold_the_same_rows(archive):
    query = Query(Level.STUDY, {"PatientName": "*"}, order_by=[("PatientID", False)], limit=10, fold_text=True)
    from pacsdash.dashboard.results_out import result_frame

    frame = result_frame(archive, result_query(query, LEVELS["studies"]))
    assert len(frame) == STUDIES + 1  # every page
    from_csv = pd.read_csv(io.BytesIO(to_csv(frame)), dtype=str, keep_default_na=False)
    from_parquet = pd.read_parquet(io.BytesIO(to_parquet(frame)))
    assert list(from_csv.columns) == list(frame.columns) == list(from_parquet.columns)
    assert list(from_csv["StudyInstanceUID"]) == list(from_parquet["StudyInstanceUID"])
    pd.testing.assert_frame_equal(from_parquet, frame, check_dtype=False)
    # A column with a value that is no date keeps the DICOM text, in both.
    assert "1997.04.24" in set(from_csv["StudyDate"]) and "1997.04.24" in set(from_parquet["StudyDate"])
    assert MAX_BYTES < 20 * 2**20 * 3 / 4  # base64 of it fits Bokeh's 20 MB websocket message


def test_multi_valued_numbers_stay_text(archive):
    from pacsdash.dashboard.results_out import result_frame

    query = Query(Level.IMAGE, {"PatientID": "ODD"}, fields=["SliceThickness"])
    frame = result_frame(archive, query)
    assert list(frame["SliceThickness"]) == ["2\\3"]
