"""C-FIND response identifiers: the pre-encoded fast path writes what pydicom would."""

from __future__ import annotations

from io import BytesIO

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom.dsutils import decode, encode

from pacsdash.archive import Level
from pacsdash.dimse import identifiers
from pacsdash.dimse.identifiers import EncodedIdentifier, ResponseBuilder

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
    assert isinstance(fast, EncodedIdentifier) and not isinstance(slow, EncodedIdentifier)
    fast_bytes = fast.encoded
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


IMAGE_KEYS = {"SOPInstanceUID": "UI", "Rows": "US", "Columns": "US", "NumberOfFrames": "IS", "InstanceNumber": "IS",
              "ImageType": "CS"}
IMAGE_ROWS = [
    {"SOPInstanceUID": "1.2.3", "Rows": "512", "Columns": "256", "NumberOfFrames": "1", "InstanceNumber": "7",
     "ImageType": "ORIGINAL\\PRIMARY\\AXIAL"},
    {"SOPInstanceUID": "1.2.33", "Rows": "5x", "Columns": None, "NumberOfFrames": None, "InstanceNumber": ""},
]


@pytest.mark.parametrize("syntax", [ImplicitVRLittleEndian, ExplicitVRLittleEndian])
@pytest.mark.parametrize("row", IMAGE_ROWS)
def test_fast_path_encodes_numbers_like_pydicom(syntax, row) -> None:
    ds = Dataset()
    ds.QueryRetrieveLevel = "IMAGE"
    for keyword in IMAGE_KEYS:
        setattr(ds, keyword, None)
    fast = ResponseBuilder(ds, Level.IMAGE, "PACSDASH", implicit_vr=syntax.is_implicit_VR).build(row)
    slow = ResponseBuilder(ds, Level.IMAGE, "PACSDASH").build(row)
    assert fast.encoded == encode(slow, syntax.is_implicit_VR, True)
    back = decode(BytesIO(fast.encoded), syntax.is_implicit_VR, True)
    if row["Rows"] == "512":
        assert (back.Rows, back.Columns) == (512, 256)
    else:
        assert back["Rows"].value is None  # not a number: returned empty


def test_pynetdicom_sends_the_encoded_bytes() -> None:
    identifiers.install()
    import pynetdicom.service_class

    fast = ResponseBuilder(request(), Level.STUDY, "PACSDASH", implicit_vr=True).build(ROWS[0])
    assert pynetdicom.service_class.encode(fast, True, True, False) is fast.encoded
    plain = Dataset()
    plain.PatientID = "P1"
    assert pynetdicom.service_class.encode(plain, True, True, False) == encode(plain, True, True)

