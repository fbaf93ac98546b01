"""Each option of PS3.15 E.3 does what its column of Table E.1-1 says, on a
few representative attributes, and the Basic Profile alone does not."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

from pacsdash.research.deidentify import DUMMY_TEXT, Deidentifier
from pacsdash.research.options import DEFAULT_OPTIONS, Option
from pacsdash.research.profile import confidentiality_table
from pacsdash.research.pseudonyms import Pseudonymizer
from tests.factories import PREFIX, make_dataset

SECRET = b"o" * 32
NAME = "DOEWRIGHT^JANE"


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def _run(options, **attributes) -> Dataset:
    ds = make_dataset(PatientName=NAME, PatientID="MRN-7", **attributes)
    raw = io.BytesIO()
    ds.save_as(raw, enforce_file_format=True)
    done = Deidentifier(Pseudonymizer(SECRET), options).deidentify_bytes(raw.getvalue())
    return dcmread(io.BytesIO(done.to_bytes()))


def _both(option: Option, **attributes) -> tuple[Dataset, Dataset]:
    """(with the option, with the Basic Profile alone)."""
    return _run({option}, **attributes), _run(set(), **attributes)


def test_retain_patient_characteristics():
    values = {"PatientSex": "F", "PatientAge": "045Y", "PatientWeight": "70.5", "PatientSize": "1.65",
              "SmokingStatus": "NO"}
    kept, basic = _both(Option.RETAIN_PATIENT_CHARACTERISTICS, **values)
    for keyword, value in values.items():
        assert kept[keyword].value == value
        assert keyword not in basic or basic[keyword].value in ("", None)
    assert kept.PatientName != NAME  # a characteristic, not the identity


def test_retain_device_identity():
    values = {"DeviceSerialNumber": "SN-99812", "StationName": "CTROOM7", "DetectorID": "DET-42"}
    kept, basic = _both(Option.RETAIN_DEVICE_IDENTITY, **values)
    for keyword, value in values.items():
        assert kept[keyword].value == value
        assert keyword not in basic or basic[keyword].value != value
    assert kept.DeviceSerialNumber and basic.get("DeviceSerialNumber", DUMMY_TEXT) in (DUMMY_TEXT, "")


def test_retain_institution_identity():
    code = _code("GH-01", "99LOCAL", "General Hospital North")
    kept, basic = _both(Option.RETAIN_INSTITUTION_IDENTITY, InstitutionName="General Hospital North",
                        InstitutionAddress="1 Main Street", InstitutionCodeSequence=Sequence([code]))
    assert kept.InstitutionName == "General Hospital North" and kept.InstitutionAddress == "1 Main Street"
    assert kept.InstitutionCodeSequence[0].CodeMeaning == "General Hospital North"
    assert basic.get("InstitutionName", "") != "General Hospital North"
    assert "InstitutionAddress" not in basic
    # X/Z/D on a sequence: its items' text must not stay behind the dummy.
    for item in basic.get("InstitutionCodeSequence", []):
        assert "GH-01" not in str(item.get("CodeValue", "")) and "Hospital" not in str(item.get("CodeMeaning", ""))


def test_retain_uids():
    uids = {k: generate_uid(PREFIX) for k in ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID",
                                              "FrameOfReferenceUID")}
    reference = Dataset()
    reference.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    reference.ReferencedSOPInstanceUID = generate_uid(PREFIX)
    kept, basic = _both(Option.RETAIN_UIDS, **uids, SourceImageSequence=Sequence([reference]))
    for keyword, value in uids.items():
        assert kept[keyword].value == value
        assert basic[keyword].value != value and basic[keyword].value.startswith("2.25.")
    assert kept.SourceImageSequence[0].ReferencedSOPInstanceUID == reference.ReferencedSOPInstanceUID
    assert basic.SourceImageSequence[0].ReferencedSOPInstanceUID != reference.ReferencedSOPInstanceUID
    assert kept.file_meta.MediaStorageSOPInstanceUID == uids["SOPInstanceUID"]


def test_retain_full_dates():
    values = {"StudyDate": "20190704", "StudyTime": "134501", "AcquisitionDateTime": "20190704134501.5",
              "TimezoneOffsetFromUTC": "+0200"}
    kept, basic = _both(Option.RETAIN_FULL_DATES, **values)
    for keyword, value in values.items():
        assert kept[keyword].value == value
    assert kept.LongitudinalTemporalInformationModified == "UNMODIFIED"
    assert basic.LongitudinalTemporalInformationModified == "REMOVED"
    assert basic.get("StudyDate", "") in ("", "19000101") and basic.get("StudyTime", "") in ("", "000000")
    assert basic.get("AcquisitionDateTime", "").startswith(("", "1900"))
    assert "TimezoneOffsetFromUTC" not in basic


def test_retain_modified_dates():
    values = {"StudyDate": "20190704", "StudyTime": "134501", "AcquisitionDateTime": "20190704134501.5+0200",
              "TimezoneOffsetFromUTC": "+0200", "PatientBirthDate": "19700101"}
    shifted = _run(DEFAULT_OPTIONS, **values)
    shift = Pseudonymizer(SECRET).subject("MRN-7").shift_days
    expected = (dt.date(2019, 7, 4) + dt.timedelta(days=shift)).strftime("%Y%m%d")
    assert shifted.StudyDate == expected
    assert shifted.StudyTime == "134501"
    assert shifted.AcquisitionDateTime == expected + "134501.5+0200"
    assert shifted.TimezoneOffsetFromUTC == "+0200"  # the zone of every DT offset, kept with them
    assert shifted.get("PatientBirthDate", "") == ""  # Z: the option does not keep it
    assert shifted.LongitudinalTemporalInformationModified == "MODIFIED"


def test_a_timezone_that_is_not_an_offset_is_cleaned_away():
    shifted = _run(DEFAULT_OPTIONS, TimezoneOffsetFromUTC="Europe/Paris")
    assert shifted.get("TimezoneOffsetFromUTC", "") == ""


def test_full_and_modified_dates_exclude_each_other():
    with pytest.raises(ValueError, match="one of"):
        Deidentifier(Pseudonymizer(SECRET), {Option.RETAIN_FULL_DATES, Option.RETAIN_MODIFIED_DATES})


def test_clean_descriptors_keeps_the_description_without_the_name():
    values = {"SeriesDescription": "Head CT for Doewright follow-up", "StudyDescription": "DOEWRIGHT JANE brain",
              "ImageComments": "seen by Jane Doewright"}
    kept, basic = _both(Option.CLEAN_DESCRIPTORS, **values)
    assert kept.SeriesDescription.startswith("Head CT for ") and kept.SeriesDescription.endswith(" follow-up")
    for keyword in values:
        assert "doewright" not in kept[keyword].value.lower()
        assert "jane" not in kept[keyword].value.lower()
        assert keyword not in basic
    assert "brain" in kept.StudyDescription


def test_clean_descriptors_scrubs_ids_and_dates_too():
    kept = _run({Option.CLEAN_DESCRIPTORS}, AccessionNumber="ACC123456", StudyDate="20190704",
                SeriesDescription="ACC123456 of 2019-07-04, MRN-7")
    assert "ACC123456" not in kept.SeriesDescription
    assert "2019-07-04" not in kept.SeriesDescription
    assert "MRN-7" not in kept.SeriesDescription


def test_retain_safe_private_keeps_a_listed_element_and_its_creator_only():
    table = confidentiality_table()
    assert table.is_safe_private(0x0019, 0x0C, "SIEMENS MR HEADER")
    assert not table.is_safe_private(0x0019, 0x99, "SIEMENS MR HEADER")
    ds = make_dataset(PatientName=NAME)
    siemens = ds.private_block(0x0019, "SIEMENS MR HEADER", create=True)
    siemens.add_new(0x0C, "IS", "1000")  # B Value: Table E.3.10-1 lists it
    siemens.add_new(0x99, "LO", "DOEWRIGHT JANE")  # same block, not listed
    other = ds.private_block(0x0019, "ACME PRIVATE", create=True)
    other.add_new(0x0C, "LO", "MRN-7")  # same element number, another creator: not listed
    outputs = {}
    for label, options in (("kept", {Option.RETAIN_SAFE_PRIVATE}), ("basic", set())):
        raw = io.BytesIO()
        ds.save_as(raw, enforce_file_format=True)
        done = Deidentifier(Pseudonymizer(SECRET), options).deidentify_bytes(raw.getvalue())
        outputs[label] = (dcmread(io.BytesIO(done.to_bytes())), done.to_bytes())
    kept, kept_raw = outputs["kept"]
    block = kept.private_block(0x0019, "SIEMENS MR HEADER")
    assert block[0x0C].value == 1000
    assert 0x99 not in block
    assert b"DOEWRIGHT" not in kept_raw and b"ACME PRIVATE" not in kept_raw and b"MRN-7" not in kept_raw
    basic, basic_raw = outputs["basic"]
    assert not any(elem.tag.is_private for elem in basic)
    assert b"SIEMENS MR HEADER" not in basic_raw


def test_clean_graphics_keeps_overlay_comments_cleaned():
    ds = make_dataset(PatientName=NAME)
    ds.add_new(0x60004000, "LT", "Marked by DOEWRIGHT")
    ds.add_new(0x60000010, "US", 2)
    ds.add_new(0x60003000, "OW", b"\x01\x00" * 2)
    outputs = {}
    for label, options in (("cleaned", {Option.CLEAN_GRAPHICS}), ("basic", set())):
        raw = io.BytesIO()
        ds.save_as(raw, enforce_file_format=True)
        done = Deidentifier(Pseudonymizer(SECRET), options).deidentify_bytes(raw.getvalue())
        outputs[label] = dcmread(io.BytesIO(done.to_bytes()))
    cleaned, basic = outputs["cleaned"], outputs["basic"]
    assert cleaned[0x60004000].value.startswith("Marked by ")
    assert "DOEWRIGHT" not in cleaned[0x60004000].value
    assert 0x60004000 not in basic and 0x60003000 not in basic
    assert 0x60000010 in basic  # not listed: kept


def _content(value_type: str, code: tuple[str, str, str], **value) -> Dataset:
    item = Dataset()
    item.RelationshipType = "CONTAINS"
    item.ValueType = value_type
    item.ConceptNameCodeSequence = Sequence([_code(*code)])
    for keyword, v in value.items():
        setattr(item, keyword, v)
    return item


def _report() -> dict:
    items = [
        _content("TEXT", ("121022", "DCM", "Accession Number"), TextValue="ACC77"),
        _content("PNAME", ("121008", "DCM", "Person Observer Name"), PersonName="SMITH^ANNA"),
        _content("DATE", ("111018", "DCM", "Content Date"), Date="20190704"),
        _content("TEXT", ("121071", "DCM", "Finding"), TextValue="Lesion, Doewright"),
        _content("TEXT", ("99X1", "99LOCAL", "Impression"), TextValue="No change since Doewright's last visit"),
        _content("CODE", ("121071", "DCM", "Finding"), ConceptCodeSequence=Sequence([_code("T-1", "SRT", "Mass")])),
    ]
    return {"SOPClassUID": "1.2.840.10008.5.1.4.1.1.88.33", "Modality": "SR", "ValueType": "CONTAINER",
            "ContentSequence": Sequence(items), "PixelData": None}


def test_clean_structured_content_follows_table_e_3_4_1():
    cleaned = _run({Option.CLEAN_STRUCTURED_CONTENT, Option.RETAIN_MODIFIED_DATES}, **_report())
    names = [item.ConceptNameCodeSequence[0].CodeMeaning for item in cleaned.ContentSequence]
    assert "Accession Number" not in names  # X: the content item goes
    by_name = {item.ConceptNameCodeSequence[0].CodeMeaning: item for item in cleaned.ContentSequence}
    assert by_name["Person Observer Name"].PersonName == DUMMY_TEXT  # D
    shift = Pseudonymizer(SECRET).subject("MRN-7").shift_days
    assert by_name["Content Date"].Date == (dt.date(2019, 7, 4) + dt.timedelta(days=shift)).strftime("%Y%m%d")
    finding = [i for i in cleaned.ContentSequence if i.ValueType == "TEXT"
               and i.ConceptNameCodeSequence[0].CodeMeaning == "Finding"][0]
    assert finding.TextValue == DUMMY_TEXT  # X/D
    impression = by_name["Impression"]  # not in the table: cleaned of the patient's name
    assert impression.TextValue.startswith("No change since ") and "Doewright" not in impression.TextValue
    code = [i for i in cleaned.ContentSequence if i.ValueType == "CODE"][0]
    assert code.ConceptCodeSequence[0].CodeMeaning == "Mass"  # a code is not identifying
    # With Clean Descriptors too, a finding is cleaned instead of replaced.
    both = _run({Option.CLEAN_STRUCTURED_CONTENT, Option.CLEAN_DESCRIPTORS}, **_report())
    finding = [i for i in both.ContentSequence if i.ValueType == "TEXT"
               and i.ConceptNameCodeSequence[0].CodeMeaning == "Finding"][0]
    assert finding.TextValue.startswith("Lesion, ") and "Doewright" not in finding.TextValue


def test_without_clean_structured_content_the_content_is_a_dummy():
    basic = _run(DEFAULT_OPTIONS, **_report())
    text = "".join(str(elem.value) for item in basic.ContentSequence for elem in item if elem.VR != "SQ")
    for original in ("ACC77", "SMITH", "Doewright", "Lesion"):
        assert original not in text
    assert all(item.ValueType for item in basic.ContentSequence)  # the structure stays


def test_each_option_adds_its_own_code():
    for option in Option:
        ds = _run({option})
        codes = [(item.CodeValue, item.CodeMeaning) for item in ds.DeidentificationMethodCodeSequence]
        assert codes == [("113100", "Basic Application Confidentiality Profile"),
                         (option.code.value, option.code.meaning)]
        assert ds.DeidentificationMethod.startswith("PS3.15 2026d Basic Profile + 1 option")


def test_the_method_names_the_edition_and_every_option_whole():
    """DeidentificationMethod is one LO of at most 64 characters: the text is
    never cut in the middle; the options are counted, and coded one by one."""
    every = frozenset(Option) - {Option.RETAIN_FULL_DATES}
    for options in (frozenset(), DEFAULT_OPTIONS, every):
        ds = _run(options)
        method = ds.DeidentificationMethod
        assert isinstance(method, str) and len(method) <= 64
        assert method.startswith("PS3.15 2026d Basic Profile")
        assert ("option" in method) == bool(options) and (f"+ {len(options)} option" in method or not options)
        assert "pacsdash" in method
        assert len(ds.DeidentificationMethodCodeSequence) == 1 + len(options)
