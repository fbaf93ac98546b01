"""What the table says of a sequence reaches into its items: a dummy (D)
sequence keeps nothing of what it held, a kept (K) one is cleaned, an
X/Z/U* one keeps its references with new UIDs; and the record of changes."""

from __future__ import annotations

import datetime as dt
import io

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import CTImageStorage, generate_uid

from pacsdash.research.deidentify import DUMMY_TEXT, Deidentifier
from pacsdash.research.options import DEFAULT_OPTIONS, Option
from pacsdash.research.pseudonyms import Pseudonymizer
from tests.factories import PREFIX, make_dataset, make_instance

SECRET = b"q" * 32


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def _run(options, ds: Dataset) -> tuple[Dataset, bytes]:
    raw = io.BytesIO()
    ds.save_as(raw, enforce_file_format=True)
    out = Deidentifier(Pseudonymizer(SECRET), options).deidentify_bytes(raw.getvalue()).to_bytes()
    return dcmread(io.BytesIO(out)), out


def _operator() -> Dataset:
    person = Dataset()
    person.PersonIdentificationCodeSequence = Sequence([_code("BADGE-4471", "99HOSP", "Operator Anna Smithers")])
    person.InstitutionName = "Saint Elsewhere"
    person.PersonTelephoneNumbers = "555-0199"
    return person


def test_a_dummy_sequence_keeps_nothing_it_held():
    """Operator Identification Sequence (X/D) and the Person Identification
    Code Sequence (D) inside it: a badge number and a name in codes."""
    ds = make_dataset(PatientName="DOE^JANE", OperatorIdentificationSequence=Sequence([_operator()]))
    out, raw = _run(DEFAULT_OPTIONS, ds)
    for text in (b"BADGE-4471", b"Smithers", b"99HOSP", b"Saint Elsewhere", b"555-0199"):
        assert text not in raw
    person = out.OperatorIdentificationSequence[0]  # D: present, with dummy values
    code = person.PersonIdentificationCodeSequence[0]
    assert code.CodeValue == code.CodeMeaning == DUMMY_TEXT
    assert "PersonTelephoneNumbers" not in person  # listed: its own action (X)


def test_a_dummy_sequence_moves_its_dates_with_the_subject():
    item = _code("X1", "99LOCAL", "Verifier")
    item.add_new(0x0040A030, "DT", "20190704101500")  # Verification DateTime: listed
    item.add_new(0x00189151, "DT", "20190705080000")  # Frame Reference DateTime: listed
    item.add_new(0x00143076, "DA", "20190706")  # Date of Gain Calibration: not listed, in a dummy sequence
    ds = make_dataset(PatientID="MRN-1", VerifyingObserverSequence=Sequence([item]))
    out, _ = _run(DEFAULT_OPTIONS, ds)
    shift = Pseudonymizer(SECRET).subject("MRN-1").shift_days
    moved = out.VerifyingObserverSequence[0]
    for tag, day in ((0x0040A030, dt.date(2019, 7, 4)), (0x00189151, dt.date(2019, 7, 5)),
                     (0x00143076, dt.date(2019, 7, 6))):
        assert str(moved[tag].value)[:8] == (day + dt.timedelta(days=shift)).strftime("%Y%m%d")
    assert str(moved[0x0040A030].value)[8:] == "101500"
    basic, raw = _run(set(), ds)  # no date option: dummy dates
    assert basic.VerifyingObserverSequence[0][0x00143076].value == "19000101"
    assert b"20190706" not in raw


def test_a_kept_sequence_is_cleaned():
    """K keeps a sequence "cleaned": Retain Institution Identity keeps the
    Institution Code Sequence, but not the patient's name written into it."""
    code = _code("GH-01", "99LOCAL", "General Hospital, ward of DOEWRIGHT")
    ds = make_dataset(PatientName="DOEWRIGHT^JANE", InstitutionCodeSequence=Sequence([code]))
    out, raw = _run({Option.RETAIN_INSTITUTION_IDENTITY}, ds)
    kept = out.InstitutionCodeSequence[0]
    assert kept.CodeValue == "GH-01" and kept.CodingSchemeDesignator == "99LOCAL"
    assert kept.CodeMeaning.startswith("General Hospital, ward of ") and b"DOEWRIGHT" not in raw


def test_an_x_z_u_sequence_keeps_its_references_with_new_uids():
    target = generate_uid(PREFIX)
    reference = Dataset()
    reference.ReferencedSOPClassUID = CTImageStorage
    reference.ReferencedSOPInstanceUID = target
    reference.ReferencedFrameNumber = "3"
    ds = make_dataset(SourceImageSequence=Sequence([reference]))
    out, raw = _run(DEFAULT_OPTIONS, ds)
    kept = out.SourceImageSequence[0]
    assert kept.ReferencedSOPClassUID == CTImageStorage and kept.ReferencedFrameNumber == 3
    assert kept.ReferencedSOPInstanceUID == Pseudonymizer(SECRET).uid(target)
    assert target.encode() not in raw


def test_an_unlisted_sequence_keeps_what_the_table_does_not_list():
    region = _code("T-A0100", "SRT", "Brain")
    ds = make_dataset(AnatomicRegionSequence=Sequence([region]))
    out, _ = _run(DEFAULT_OPTIONS, ds)
    assert out.AnatomicRegionSequence[0].CodeMeaning == "Brain"


def test_private_attributes_go_at_every_depth():
    item = Dataset()
    item.ReferencedSOPClassUID = CTImageStorage
    item.ReferencedSOPInstanceUID = generate_uid(PREFIX)
    block = item.private_block(0x0029, "ACME 1.1", create=True)
    block.add_new(0x01, "LO", "DOEWRIGHT JANE")
    ds = make_dataset(ReferencedSeriesSequence=Sequence([item]))
    outer = ds.private_block(0x0011, "ACME 1.1", create=True)
    outer.add_new(0x01, "SQ", Sequence([_code("A", "B", "nested DOEWRIGHT")]))
    out, raw = _run(DEFAULT_OPTIONS, ds)
    assert b"DOEWRIGHT" not in raw and b"ACME 1.1" not in raw
    assert not any(elem.tag.is_private for elem in out)
    assert not any(elem.tag.is_private for elem in out.ReferencedSeriesSequence[0])


def test_the_record_of_changes():
    raw = make_instance(PatientName="DOE^JANE", PatientID="MRN-5", StudyDate="20190704",
                        InstitutionName="General Hospital", PatientAddress="1 Main Street")
    done = Deidentifier(Pseudonymizer(SECRET)).deidentify_bytes(raw, record=True)
    changes = {c.keyword: c for c in done.changes}
    assert changes["PatientName"].before == "DOE^JANE" and changes["PatientName"].after == done.subject.PatientName
    assert changes["PatientID"].column == "Basic Profile"
    assert changes["PatientAddress"].after is None and changes["PatientAddress"].action == "X"
    assert changes["StudyDate"].column == Option.RETAIN_MODIFIED_DATES.value and changes["StudyDate"].action == "C"
    assert changes["InstitutionName"].after == DUMMY_TEXT
    assert changes["SOPInstanceUID"].action == "U"
    assert changes["StudyDate"].path == "(0008,0020)"
    assert done.original_sop_uid and done.original_sop_uid != done.dataset.SOPInstanceUID
    assert Deidentifier(Pseudonymizer(SECRET)).deidentify_bytes(raw).changes == []  # only when asked


def test_the_file_meta_uid_is_replaced_without_a_sop_instance_uid():
    """(0002,0003) is U in Table E.1-1 whether or not the data set has its own copy."""
    raw = make_instance(SOPInstanceUID=None)
    original = dcmread(io.BytesIO(raw)).file_meta.MediaStorageSOPInstanceUID
    out = Deidentifier(Pseudonymizer(SECRET)).deidentify_bytes(raw).to_bytes()
    assert original.encode() not in out
    assert dcmread(io.BytesIO(out)).file_meta.MediaStorageSOPInstanceUID == Pseudonymizer(SECRET).uid(original)
    kept = Deidentifier(Pseudonymizer(SECRET), {Option.RETAIN_UIDS}).deidentify_bytes(raw).to_bytes()
    assert dcmread(io.BytesIO(kept)).file_meta.MediaStorageSOPInstanceUID == original
