"""The patient view without a browser."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from pacsdash.archive import Archive
from pacsdash.dashboard.patient import PatientView, dicom_date, patient_html
from tests.factories import make_instance


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    folder = tmp_path_factory.mktemp("patients")
    archive = Archive.open_home(folder / "store", folder / "index.duckdb")
    for date, description in (("20240105", "CT HEAD"), ("20230301", "MR KNEE"), ("20250720", "CT CHEST")):
        archive.store_bytes(make_instance(PatientID="PAT-7", PatientName="DOE^JANE", PatientBirthDate="19800131",
                                          PatientSex="F", StudyDate=date, StudyDescription=description))
    archive.store_bytes(make_instance(PatientID="PAT-8", PatientName="ROE^RICHARD", StudyDate="20240105"))
    archive.store_bytes(make_instance(PatientID="PAT-?", PatientName="<script>alert(1)</script>^Q", StudyDate="20240106"))
    yield archive
    archive.close()


def test_a_patients_studies_together_newest_first(archive):
    view = PatientView(archive=archive, patient_id="PAT-7")
    assert list(view._table.value["Description"]) == ["CT CHEST", "CT HEAD", "MR KNEE"]
    assert list(view._table.value["Date"]) == ["2025-07-20", "2024-01-05", "2023-03-01"]
    assert list(view._table.value["Age then"]) == ["45", "43", "43"]  # born 1980-01-31
    info = view._info.object
    assert "DOE, JANE" in info and "1980-01-31" in info and "<dd>F</dd>" in info and "<dd>3</dd>" in info
    view.patient_id = "PAT-8"
    assert len(view._table.value) == 1 and "ROE, RICHARD" in view._info.object


def test_an_id_with_wildcards_matches_only_itself_and_is_escaped(archive):
    view = PatientView(archive=archive, patient_id="PAT-?")  # "?" would match PAT-7 and PAT-8 as a wildcard
    assert len(view._table.value) == 1
    assert "<script>" not in view._info.object and "&lt;script&gt;" in view._info.object
    assert "No patient" in patient_html(None, "<b>x</b>") and "&lt;b&gt;x" in patient_html(None, "<b>x</b>")
    empty = PatientView(archive=archive, patient_id="")
    assert len(empty._table.value) == 0 and "Choose a patient" in empty._info.object


def test_clicking_a_study_opens_it(archive):
    view = PatientView(archive=archive, patient_id="PAT-7")
    opened = []
    view.param.watch(lambda e: opened.append(e.new), "selected")
    view._on_click(SimpleNamespace(row=1, column="Description"))
    view._on_click(SimpleNamespace(row=1, column="Date"))  # again: heard again
    assert opened == [view._table.value.iloc[1]["StudyInstanceUID"]] * 2
    assert dicom_date("2024") == "2024"
