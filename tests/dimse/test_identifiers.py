"""C-FIND response identifiers: the pre-encoded fast path writes what pydicom would."""

from __future__ import annotations

from io import BytesIO

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom.dsutils import decode, encode

from pacsdash.archive import Level
from pacsdash.dimse.identifiers import ResponseBuilder

KEYS = ["PatientName", "PatientID", "StudyInstanceUID", "StudyDate", "StudyTime", "StudyDescription",
        "AccessionNumber", "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances", "ModalitiesInStudy",
        "PatientSex", "ReferencedStudySequence"]

ROWS = [
    {"PatientName": "SMITH^JOHN", "PatientID": "P1", "StudyInstanceUID": "1.2.3.4", "StudyDate": "20200101",
     "StudyTime": "101010", "StudyDescription": "CT HEAD", "AccessionNumber": "A12",
     "NumberOfStudyRelatedSeries": "3", "NumberOfStudyRelatedInstances": "120", "ModalitiesInStudy": "CT\\SR",
     "PatientSex": "M"},
    {"PatientName": "Müller^Jürgen=山田^太郎", "PatientID": "Ö1", "StudyInstanceUID": "1.2.3.45",
     "StudyDescription": "Tête <b>", "ModalitiesInStudy": "MR"},
    {"PatientName": None, "PatientID": "", "StudyInstanceUID": "1.2"},
]


def request() -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    for keyword in KEYS:
        setattr(ds, keyword, [] if keyword.endswith("Sequence") else "")
    ds.RetrieveAETitle = ""
    return ds


@pytest.mark.parametrize("syntax", [ImplicitVRLittleEndian, ExplicitVRLittleEndian])
@pytest.mark.parametrize("row", ROWS)
def test_fast_path_encodes_like_pydicom(syntax, row) -> None:
    fast = ResponseBuilder(request(), Level.STUDY, "PACSDASH", implicit_vr=syntax.is_implicit_VR).build(row)
    slow = ResponseBuilder(request(), Level.STUDY, "PACSDASH").build(row)
    assert fast.original_character_set == fast._character_set  # noqa: SLF001 - else pydicom re-encodes
    fast_bytes = encode(fast, syntax.is_implicit_VR, True)
    assert fast_bytes == encode(slow, syntax.is_implicit_VR, True)
    back = decode(BytesIO(fast_bytes), syntax.is_implicit_VR, True)
    for keyword in KEYS:
        if keyword.endswith("Sequence"):
            assert back[keyword].value == []
            continue
        expected = row.get(keyword)
        got = back[keyword].value
        if expected in (None, ""):
            assert got in (None, "", [])
        elif keyword.startswith("NumberOf"):
            assert str(got) == expected
        elif keyword == "ModalitiesInStudy" and "\\" in expected:
            assert list(got) == expected.split("\\")
        else:
            assert str(got) == expected
    assert back.RetrieveAETitle == "PACSDASH"
    assert back.QueryRetrieveLevel == "STUDY"
