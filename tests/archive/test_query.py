"""PS3.4 C.2.2.2 matching, through the one Query implementation."""

from __future__ import annotations

import pytest

from pacsdash.archive import InvalidQuery, Level, Query
from tests.factories import make_instance
from tests.pg import archive_home

STUDIES = {
    "a": dict(PatientName="DOE^JANE", PatientID="P1", StudyDate="20240115", StudyTime="093000", AccessionNumber="A1", StudyDescription="CT CHEST", Modality="CT", ImageType=["ORIGINAL", "PRIMARY", "AXIAL"]),
    "b": dict(PatientName="Müller^Jürgen", PatientID="P2", StudyDate="20240301", StudyTime="120000.5", AccessionNumber="A2", StudyDescription="MR HEAD", Modality="MR", ImageType=["DERIVED", "SECONDARY"]),
    "c": dict(PatientName="Last Name^First Name", PatientID="P3", StudyDate="20231231", StudyTime="235959", AccessionNumber="A_3", StudyDescription="100% done", Modality="US", ImageType=["ORIGINAL", "PRIMARY"]),
    "d": dict(PatientName="O'Brien^Pat", PatientID="P4", StudyDate="20240301", StudyTime="080000", AccessionNumber="A4", StudyDescription="x'); DROP TABLE studies; --", Modality="CT", ImageType=["ORIGINAL"]),
}


@pytest.fixture
def archive(backend_archive):
    """An empty archive on the module's index backend (DuckDB, PostgreSQL)."""
    return backend_archive


@pytest.fixture(scope="module")
def filled(tmp_path_factory, index_backend, request):
    archive = archive_home(index_backend, tmp_path_factory.mktemp("query"), request).open()
    uids = {}
    for key, attrs in STUDIES.items():
        raw = make_instance(**attrs, SliceThickness="2.5" if key == "a" else "5")
        uids[key] = archive.store_bytes(raw).StudyInstanceUID
    # A second series (MR) in study "a" makes it a CT+MR study.
    archive.store_bytes(make_instance(**{**STUDIES["a"], "Modality": "MR"}, StudyInstanceUID=uids["a"]))
    yield archive, uids
    archive.close()


def match(filled, level=Level.STUDY, **filters) -> set[str]:
    archive, uids = filled
    rows = archive.find(Query(level, filters))
    found = {r["StudyInstanceUID"] for r in rows}
    return {k for k, v in uids.items() if v in found}


@pytest.mark.parametrize(
    "filters, expected",
    [
        ({}, {"a", "b", "c", "d"}),
        ({"PatientID": "P1"}, {"a"}),
        ({"PatientID": "p1"}, set()),  # single value matching is case-sensitive for LO
        ({"PatientID": "*"}, {"a", "b", "c", "d"}),
        ({"PatientID": ""}, {"a", "b", "c", "d"}),
        ({"PatientID": "P?"}, {"a", "b", "c", "d"}),
        ({"PatientName": "doe^jane"}, {"a"}),  # PN: case-insensitive
        ({"PatientName": "MULLER*"}, {"b"}),  # PN: accent-insensitive
        ({"PatientName": "*Last Name*"}, {"c"}),  # a typed space matches ^ and spaces
        ({"PatientName": "*name first*"}, {"c"}),
        ({"PatientName": "O'Brien*"}, {"d"}),
        ({"StudyDate": "20240301"}, {"b", "d"}),
        ({"StudyDate": "20240101-20240228"}, {"a"}),
        ({"StudyDate": "-20231231"}, {"c"}),
        ({"StudyDate": "20240201-"}, {"b", "d"}),
        ({"StudyTime": "0900-1200"}, {"a", "b"}),  # 120000.5 is within "up to 12:00"'s span
        ({"StudyTime": "2359-"}, {"c"}),
        ({"AccessionNumber": "A_3"}, {"c"}),  # _ is not a wildcard
        ({"AccessionNumber": "A_*"}, {"c"}),
        ({"StudyDescription": "100%*"}, {"c"}),  # % is not a wildcard
        ({"StudyDescription": "x'); DROP TABLE studies; --"}, {"d"}),
        ({"ModalitiesInStudy": "MR"}, {"a", "b"}),
        ({"ModalitiesInStudy": "US\\MR"}, {"a", "b", "c"}),
        ({"ModalitiesInStudy": "C*"}, {"a", "d"}),
        ({"Modality": "US"}, {"c"}),  # a series attribute at study level
        ({"ImageType": "PRIMARY"}, {"a", "c"}),  # any value of a multi-valued CS
        ({"ImageType": "SEC*"}, {"b"}),
        ({"SliceThickness": "2.5"}, {"a"}),  # any tag, from the attribute JSON
        ({"00180050": "5"}, {"b", "c", "d"}),  # by tag
    ],
)
def test_study_matching(filled, filters, expected):
    assert match(filled, **filters) == expected


def test_uid_list_matching(filled):
    archive, uids = filled
    value = "\\".join([uids["a"], uids["c"]])
    assert match(filled, StudyInstanceUID=value) == {"a", "c"}


def test_counts_and_modalities_are_derived(filled):
    archive, uids = filled
    [row] = archive.find(Query(Level.STUDY, {"StudyInstanceUID": uids["a"]}))
    assert row["ModalitiesInStudy"] == "CT\\MR"
    assert row["NumberOfStudyRelatedSeries"] == "2"
    assert row["NumberOfStudyRelatedInstances"] == "2"
    [patient] = archive.find(Query(Level.PATIENT, {"PatientID": "P1"}))
    assert patient["NumberOfPatientRelatedStudies"] == "1"
    assert patient["NumberOfPatientRelatedInstances"] == "2"


def test_levels(filled):
    archive, uids = filled
    assert len(archive.find(Query(Level.PATIENT))) == 4
    series = archive.find(Query(Level.SERIES, {"StudyInstanceUID": uids["a"]}))
    assert sorted(r["Modality"] for r in series) == ["CT", "MR"]
    images = archive.find(Query(Level.IMAGE, {"StudyInstanceUID": uids["a"], "Modality": "MR"}))
    assert len(images) == 1


def test_paging_is_stable(filled):
    archive, _ = filled
    seen = []
    for offset in range(0, 4):
        seen += [r["StudyInstanceUID"] for r in archive.find(Query(Level.STUDY, limit=1, offset=offset))]
    assert len(seen) == len(set(seen)) == 4
    assert archive.find(Query(Level.STUDY, limit=10, offset=10)) == []
    assert archive.count(Query(Level.STUDY, {"ModalitiesInStudy": "CT"})) == 2


@pytest.mark.parametrize(
    "filters, message",
    [
        ({"StudyDate": "20200230x"}, "StudyDate"),
        ({"StudyDate": "2024-01-01-2024"}, "StudyDate"),
        ({"StudyDate": "20240301-20240101"}, "ends before"),
        ({"StudyInstanceUID": "1.2.*"}, "wildcards"),
        ({"StudyInstanceUID": "1.2.3/../x"}, "not a valid UID"),
        ({"PatientName": "x" * 5000}, "characters long"),
        ({"NotAKeyword": "x"}, "neither a DICOM keyword"),
        ({"PatientID": "a\x00b"}, "control characters"),
    ],
)
def test_invalid_values_name_the_attribute(filled, filters, message):
    archive, _ = filled
    with pytest.raises(InvalidQuery, match=message):
        archive.find(Query(Level.STUDY, filters))


def test_negative_paging_is_refused():
    with pytest.raises(InvalidQuery, match="limit"):
        Query(Level.STUDY, limit=-1)
    with pytest.raises(InvalidQuery, match="offset"):
        Query(Level.STUDY, offset=-5)


def test_numeric_comparisons_extend_single_value_matching(archive):
    """``<=1``, ``>1.5``, ``!=0`` compare numerically on numeric VRs (a pacsdash
    extension: DICOM matches numbers by single value only)."""
    from tests.factories import make_instance

    for thickness in ("0.625", "1", "1.5", "5.000000"):
        archive.store_bytes(make_instance(PatientID="NUM", SliceThickness=thickness))
    archive.store_bytes(make_instance(PatientID="NUM"))  # no SliceThickness: never matches a comparison

    def found(value: str, level: Level = Level.IMAGE) -> list[str]:
        rows = archive.find(Query(level, {"PatientID": "NUM", "SliceThickness": value}, ["SliceThickness"]))
        return sorted(str(r.get("SliceThickness")) for r in rows)

    assert found("<=1") == ["0.625", "1"]
    assert found("<1") == ["0.625"]
    assert found(">1.5") == ["5.000000"]
    assert found(">=1.5") == ["1.5", "5.000000"]
    assert found("!=1") == ["0.625", "1.5", "5.000000"]
    assert found("1") == ["1"] and found("1.0") == ["1"]  # a number matches by value
    assert found("5") == ["5.000000"] and found("0.6250") == ["0.625"]
    assert len(archive.find(Query(Level.SERIES, {"PatientID": "NUM", "SliceThickness": "<=1"}))) == 2
    with pytest.raises(InvalidQuery):  # not a number for a date
        archive.find(Query(Level.STUDY, {"StudyDate": "<=1"}))


@pytest.mark.parametrize("level", [Level.IMAGE, Level.SERIES, Level.STUDY])
def test_a_numeric_comparison_matches_when_any_value_does(archive, level):
    """Multi-valued numbers (PixelSpacing 0.5\\0.5): a comparison holds when one
    of the values meets it, as the client's own filter decides for servers
    that cannot compare (pacsdash.client.conditions)."""
    from pacsdash.client.conditions import Condition, matches
    from tests.factories import make_instance

    for spacing in (["0.5", "0.5"], ["2", "0.3"], ["1.2", "1.2"], "0.8"):
        archive.store_bytes(make_instance(PatientID="SPACING", PixelSpacing=spacing))

    def found(value: str) -> int:
        return len(archive.find(Query(level, {"PatientID": "SPACING", "PixelSpacing": value})))

    def expected(value: str) -> int:
        return sum(matches(Condition("PixelSpacing", value, "DS"), s)  # one study and series each
                   for s in (["0.5", "0.5"], ["2", "0.3"], ["1.2", "1.2"], "0.8"))

    for value in ("<1", ">1.5", "!=0.5", "<=0.3", ">=1.2"):
        assert found(value) == expected(value), value
    assert found("<1") >= 1 and found("<0.1") == 0
