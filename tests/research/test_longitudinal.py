"""Longitudinal pseudonyms (PS3.15 E.3.6): one patient is one subject, with
one date shift, in every study, every run and after a restart; UIDs map one
to one, so references between studies still hold."""

from __future__ import annotations

import datetime as dt
import io
import os
import stat
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import CTImageStorage, generate_uid

from pacsdash.research import pseudonyms as pseudonyms_module
from pacsdash.research.deidentify import Deidentifier
from pacsdash.research.options import DEFAULT_OPTIONS
from pacsdash.research.pseudonyms import MAX_SHIFT_DAYS, SECRET_BYTES, SECRET_NAME, Pseudonymizer, load_secret
from tests.factories import PREFIX, make_instance

PATIENT = {"PatientID": "MRN-0042", "IssuerOfPatientID": "GENERAL HOSPITAL", "PatientName": "DOE^JANE^Q",
           "PatientBirthDate": "19700402"}


def _study(sop: str, study: str, date: str, time: str, **more) -> bytes:
    return make_instance(**PATIENT, SOPInstanceUID=sop, StudyInstanceUID=study, StudyDate=date, StudyTime=time,
                         SeriesDate=date, ContentDate=date, ContentTime=time, AcquisitionDateTime=f"{date}{time}",
                         **more)


def _read(raw: bytes) -> Dataset:
    return dcmread(io.BytesIO(raw))


def _days(a: str, b: str) -> int:
    return (dt.datetime.strptime(b, "%Y%m%d") - dt.datetime.strptime(a, "%Y%m%d")).days


def test_two_studies_of_one_patient_across_a_restart(tmp_path):
    sop_a, study_a, study_b = (generate_uid(PREFIX) for _ in range(3))
    first = _study(sop_a, study_a, "20200115", "101500")
    reference = Dataset()
    reference.ReferencedSOPClassUID = CTImageStorage
    reference.ReferencedSOPInstanceUID = sop_a
    unlisted = Dataset()  # an unlisted sequence holding a listed reference
    unlisted.ReferencedSOPClassUID = CTImageStorage
    unlisted.ReferencedSOPInstanceUID = sop_a
    unlisted.SeriesInstanceUID = generate_uid(PREFIX)
    second = _study(generate_uid(PREFIX), study_b, "20210301", "083000",
                    ReferencedImageSequence=Sequence([reference]), ReferencedSeriesSequence=Sequence([unlisted]))

    # Two runs of pacsdash: two de-identifiers, two pseudonymizers, one home.
    out_a = _read(Deidentifier(Pseudonymizer.for_home(tmp_path), DEFAULT_OPTIONS).deidentify_bytes(first).to_bytes())
    out_b = _read(Deidentifier(Pseudonymizer.for_home(tmp_path), DEFAULT_OPTIONS).deidentify_bytes(second).to_bytes())

    assert out_a.PatientID == out_b.PatientID != PATIENT["PatientID"]
    assert out_a.PatientName == out_b.PatientName
    assert "DOE" not in str(out_a.PatientName)
    # The same whole-day shift: the interval is kept to the day, times of day unchanged.
    assert _days(out_a.StudyDate, out_b.StudyDate) == _days("20200115", "20210301")
    assert out_a.StudyDate != "20200115" and out_b.StudyDate != "20210301"
    shift = _days("20200115", out_a.StudyDate)
    assert shift != 0 and abs(shift) <= MAX_SHIFT_DAYS
    assert _days("20210301", out_b.StudyDate) == shift
    assert out_a.StudyTime == "101500" and out_b.StudyTime == "083000"
    assert out_a.ContentTime == "101500"
    assert out_a.AcquisitionDateTime == out_a.StudyDate + "101500"
    # The UID map is the same: B's reference to A names A's new SOP Instance UID.
    assert out_a.SOPInstanceUID != sop_a
    assert out_b.ReferencedImageSequence[0].ReferencedSOPInstanceUID == out_a.SOPInstanceUID
    assert out_b.ReferencedSeriesSequence[0].ReferencedSOPInstanceUID == out_a.SOPInstanceUID
    assert out_b.StudyInstanceUID != out_a.StudyInstanceUID


def test_another_patient_and_another_issuer_are_other_subjects(tmp_path):
    pseudonyms = Pseudonymizer.for_home(tmp_path)
    deidentifier = Deidentifier(pseudonyms)
    base = {**PATIENT, "StudyDate": "20200115"}
    same = _read(deidentifier.deidentify_bytes(make_instance(**base)).to_bytes())
    again = _read(deidentifier.deidentify_bytes(make_instance(**base)).to_bytes())
    other = _read(deidentifier.deidentify_bytes(make_instance(**{**base, "PatientID": "MRN-0043"})).to_bytes())
    issuer = _read(deidentifier.deidentify_bytes(
        make_instance(**{**base, "IssuerOfPatientID": "OTHER HOSPITAL"})).to_bytes())
    assert same.PatientID == again.PatientID and same.StudyDate == again.StudyDate
    assert other.PatientID != same.PatientID
    assert issuer.PatientID != same.PatientID
    assert len({same.PatientID, other.PatientID, issuer.PatientID}) == 3
    assert pseudonyms.subject("MRN-0042", "A") != pseudonyms.subject("MRN-0042", "B")
    # A padded value is the same patient (DICOM pads with spaces).
    assert pseudonyms.subject("MRN-0042 ", "A ") == pseudonyms.subject("MRN-0042", "A")


def test_another_home_is_another_project(tmp_path):
    one = Pseudonymizer.for_home(tmp_path / "one")
    two = Pseudonymizer.for_home(tmp_path / "two")
    assert one.subject("MRN-0042") != two.subject("MRN-0042")
    assert one.uid("1.2.3") != two.uid("1.2.3")
    assert Pseudonymizer.for_home(tmp_path / "one").subject("MRN-0042") == one.subject("MRN-0042")


@settings(max_examples=300, deadline=None)
@given(patient_id=st.text(max_size=64), issuer=st.text(max_size=64))
def test_the_shift_is_never_zero_and_stays_in_range(patient_id, issuer):
    subject = Pseudonymizer(b"s" * SECRET_BYTES).subject(patient_id, issuer)
    assert subject.shift_days != 0
    assert 1 <= abs(subject.shift_days) <= MAX_SHIFT_DAYS
    assert subject.PatientID == subject.PatientName
    assert subject.PatientID.startswith("SUBJ-") and len(subject.PatientID) <= 16  # fits LO and a PN component
    assert Pseudonymizer(b"s" * SECRET_BYTES).subject(patient_id, issuer) == subject  # no state


def test_shifts_spread_over_both_directions():
    pseudonyms = Pseudonymizer(b"s" * SECRET_BYTES)
    shifts = [pseudonyms.subject(f"P{n}").shift_days for n in range(2000)]
    assert 0 not in shifts
    assert sum(s < 0 for s in shifts) > 800 and sum(s > 0 for s in shifts) > 800
    assert len(set(shifts)) > 1500


@settings(max_examples=200, deadline=None)
@given(a=st.tuples(st.text(max_size=12), st.text(max_size=12)), b=st.tuples(st.text(max_size=12), st.text(max_size=12)))
def test_different_patients_never_share_a_message(a, b):
    """(PatientID, Issuer) pairs that differ (after the padding is taken off)
    are different subjects: no separator inside a value makes two pairs one."""
    pseudonyms = Pseudonymizer(b"s" * SECRET_BYTES)
    if tuple(v.strip() for v in a) != tuple(v.strip() for v in b):
        assert pseudonyms.subject(*a) != pseudonyms.subject(*b)


def test_a_separator_inside_a_value_does_not_merge_two_patients():
    pseudonyms = Pseudonymizer(b"s" * SECRET_BYTES)
    assert pseudonyms.subject("A\x1fB", "C") != pseudonyms.subject("A", "B\x1fC")
    assert pseudonyms.subject("A\\", "\x1fB") != pseudonyms.subject("A", "\\\x1fB")


@settings(max_examples=60, deadline=None)
@given(uids=st.lists(st.from_regex(r"[1-9][0-9]{0,5}(\.(0|[1-9][0-9]{0,8})){1,8}", fullmatch=True),
                     min_size=2, max_size=20, unique=True))
def test_uids_map_one_to_one_to_valid_2_25_uids(uids):
    pseudonyms = Pseudonymizer(b"u" * SECRET_BYTES)
    mapped = [pseudonyms.uid(u) for u in uids]
    assert len(set(mapped)) == len(uids)
    for new in mapped:
        assert new.startswith("2.25.") and len(new) <= 64
        number = new[5:]
        assert number.isdigit() and (number == "0" or not number.startswith("0"))
    assert [Pseudonymizer(b"u" * SECRET_BYTES).uid(u) for u in uids] == mapped  # no state either
    assert [pseudonyms.uid(u + "\x00") for u in uids] == mapped  # UI padding is not part of the UID


def test_the_secret_is_private_to_its_owner(tmp_path):
    secret = load_secret(tmp_path)
    path = tmp_path / SECRET_NAME
    assert len(secret) == SECRET_BYTES and path.read_bytes() == secret
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert load_secret(tmp_path) == secret  # kept, not made again
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # nothing left beside it


@pytest.mark.parametrize("length", [0, 16, SECRET_BYTES - 1, SECRET_BYTES + 1])
def test_a_secret_of_the_wrong_length_is_refused(tmp_path, length):
    path = tmp_path / SECRET_NAME
    path.parent.mkdir(parents=True)
    path.write_bytes(b"x" * length)
    with pytest.raises(ValueError, match="not a pacsdash project secret"):
        Pseudonymizer.for_home(tmp_path)
    assert path.read_bytes() == b"x" * length  # never replaced: it may be the project's real key


def test_a_short_secret_is_refused():
    with pytest.raises(ValueError):
        Pseudonymizer(b"short")


def test_two_processes_making_the_secret_at_once_get_the_same_one(tmp_path, monkeypatch):
    """A second maker must never read the first one's file half-written."""
    real_fdopen = os.fdopen
    first_inside = threading.Event()
    calls = []

    def slow_fdopen(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            first_inside.set()
            threading.Event().wait(0.3)
        return real_fdopen(*args, **kwargs)

    monkeypatch.setattr(pseudonyms_module.os, "fdopen", slow_fdopen)
    results: dict[str, object] = {}

    def make() -> None:
        try:
            results["first"] = load_secret(tmp_path)
        except Exception as exc:  # noqa: BLE001 - reported below
            results["first"] = exc

    thread = threading.Thread(target=make)
    thread.start()
    assert first_inside.wait(5)
    second = load_secret(tmp_path)
    thread.join(5)
    assert results["first"] == second == (tmp_path / SECRET_NAME).read_bytes()
    assert [p.name for p in (tmp_path / SECRET_NAME).parent.iterdir()] == [os.path.basename(SECRET_NAME)]


def test_pseudonyms_do_not_change_between_versions():
    """A project's earlier exports must still match: the derivation of
    pseudonyms, shifts and UIDs from the secret is pinned."""
    pseudonyms = Pseudonymizer(bytes(range(SECRET_BYTES)))
    subject = pseudonyms.subject("MRN-0042", "GENERAL HOSPITAL")
    assert (subject.PatientID, subject.PatientName, subject.shift_days) == ("SUBJ-MUWUPCU63M", "SUBJ-MUWUPCU63M", 2199)
    assert pseudonyms.uid("1.2.840.113619.2.55.3.1234") == "2.25.37004946102489482322968075630345661459"
